"""Aggregation keys: the label values of a row (its cluster, namespace, breakdown value), idle
rows, and the keys of a query's pages (a server that ignores `offset` repeats them).

Keys are the aggregation values joined by "/" (as the Allocation API names multi-property rows).
Tolerated: `__idle__` anywhere (`__idle__`, `cluster-one/__idle__`, `cluster/node/__idle__`), empty
segments, the unaggregated key `cluster//__unmounted__/__unmounted__/__unmounted__`, pre-1.100
`app=x` label values, annotation values holding "/".
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from kubecost_allocation_exporter.decode import ApiError, Page, Row

IDLE = "__idle__"
UNALLOCATED = "__unallocated__"
OTHER = "__other__"
SPECIAL_NAMES = (UNALLOCATED, "__unmounted__")


@dataclass(frozen=True)
class RowKey:
    cluster: str | None  # None: not known from the data
    idle: bool
    values: tuple[str, ...]  # one per aggregation property (empty for idle rows)


def properties_of(row: Row) -> Callable[[], Mapping[str, Any]]:
    """The row's `properties`, decoded only when a key needs them (odd keys, idle rows)."""

    def decode() -> Mapping[str, Any]:
        try:
            props = msgspec.json.decode(row.properties)
        except msgspec.MsgspecError:
            return {}
        return props if isinstance(props, dict) else {}

    return decode


def strip_label_prefix(prop: str, value: str) -> str:
    """Pre-1.100 label keys read `app=redis`; since 1.100 they are the bare value."""
    if prop.startswith(("label:", "annotation:")):
        key = prop.split(":", 1)[1]
        if value.startswith(key + "="):
            return value[len(key) + 1 :]
    return value


def _prop(props: Mapping[str, Any], prop: str) -> str | None:
    kind, _, key = prop.partition(":")
    if kind in ("label", "annotation") and key:
        inner = props.get("labels" if kind == "label" else "annotations")
        v = inner.get(key) if isinstance(inner, dict) else None
    else:
        v = props.get(prop)
    return v if isinstance(v, str) and v else None


def split_key(
    key: str, name: Any, properties: Callable[[], Mapping[str, Any]], props: Sequence[str]
) -> RowKey:
    """Aggregation key -> label values, one per property in `props` (the `aggregate` list), and
    the cluster when `props` has it (an idle row's from its key or properties)."""
    segs = key.split("/")
    if IDLE in segs or key.endswith(IDLE) or name == IDLE:
        cluster = _prop(properties(), "cluster")
        if cluster is None and len(segs) >= 2 and segs[0] not in (IDLE, ""):
            cluster = segs[0]
        return RowKey(cluster, True, ())
    if len(segs) == len(props):
        values = segs
    elif len(segs) == 5 and len(props) < 5:  # unaggregated cluster/node/namespace/pod/container
        positions = {"cluster": 0, "node": 1, "namespace": 2, "pod": 3, "container": 4}
        values = [
            segs[positions[p]] if p in positions else _prop(properties(), p) or "" for p in props
        ]
    elif len(segs) > len(props) and props and props[-1].startswith("annotation:"):
        head = len(props) - 1  # annotation values may contain "/"
        values = [*segs[:head], "/".join(segs[head:])]
    else:
        special = next((s for s in segs if s in SPECIAL_NAMES), None)
        values = [_prop(properties(), p) or special or key for p in props]
    out = tuple(
        strip_label_prefix(p, raw.strip()) or UNALLOCATED
        for p, raw in zip(props, values, strict=True)
    )
    return RowKey(out[props.index("cluster")] if "cluster" in props else None, False, out)


class AnswerKeys:
    """The keys of a query's answers (its pages), to catch a server that honours `limit` but not
    `offset`: a row of an earlier answer that comes again. Kubecost repeats the `__idle__` row in
    every page: that one is dropped (kept once), any other is an error."""

    def __init__(self) -> None:
        self.answers = 0
        self._earlier: set[str] = set()
        self._current: set[str] = set()

    def new_rows(self, page: Page) -> Iterator[Mapping[str, Row]]:
        """The page's sets without the rows of earlier answers."""
        if page.first:
            self.answers += 1
            self._earlier |= self._current
            self._current = set()
        for aset in page.sets:
            if self._earlier and not self._earlier.isdisjoint(aset):
                for key in self._earlier.intersection(aset):
                    if IDLE not in key:
                        raise ApiError(
                            "bad_response",
                            f"row {key!r} came again in page {self.answers}: the API ignores "
                            "'offset' (set --page-size 0)",
                        )
                aset = {k: v for k, v in aset.items() if k not in self._earlier}  # noqa: PLW2901
            self._current.update(aset)
            yield aset
