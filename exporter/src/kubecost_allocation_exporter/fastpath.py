"""The common namespace answer, decoded into typed rows and turned into a snapshot column-wise.

Kubecost's `aggregate=namespace` answer carries ~60 fields (1.4 KB of JSON) per namespace; the
exporter needs 22 numbers, the name and the window. When an answer has exactly the usual shape —
one set per page, every needed field a JSON number, the window two strings, plain namespace keys
— msgspec decodes only those fields into small typed rows (no dict per allocation), and
`namespace_snapshot` computes the numbers over whole columns with C-level loops instead of a
Python loop per namespace.

Anything else (a null or a string number, a missing field, several sets, an error `code`, a key
with "/" or `__idle__` in it, an unusable window, rate mode without a window) makes `decode` or
`namespace_snapshot` return None, and the caller takes the general path (orjson +
`model.build_snapshot`). The two paths compute every number with the same float operations in the
same order, so the snapshot and its exposition are identical whichever path ran (checked by
tests/test_fastpath.py over generated answers and by every golden exposition).
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import repeat

import msgspec

from kubecost_allocation_exporter.model import (
    COST_PARTS,
    IDLE,
    ONE_FIELD_NAMES,
    ClusterSnapshot,
    Costs,
    Snapshot,
    _costs,
    _efficiencies_from_columns,
    _factor,
    _sum_known,
    _tidy_all,
    coverage,
    parse_time,
)

#: The numeric fields read from every row, in the general path's order.
FIELDS = ONE_FIELD_NAMES


class Window(msgspec.Struct, gc=False, frozen=True):
    start: str
    end: str


class Row(msgspec.Struct, gc=False, frozen=True, rename="camel"):
    """One allocation: only the fields the exporter reads; every other field is skipped unparsed.
    A JSON integer is accepted as a float (what `model.number` does); null, a string or a
    missing field fails the decode."""

    name: str
    window: Window
    total_cost: float
    cpu_cost: float
    cpu_cost_adjustment: float
    ram_cost: float
    ram_cost_adjustment: float
    pv_cost: float
    pv_cost_adjustment: float
    network_cost: float
    network_cost_adjustment: float
    load_balancer_cost: float
    load_balancer_cost_adjustment: float
    gpu_cost: float
    gpu_cost_adjustment: float
    shared_cost: float
    cpu_efficiency: float
    ram_efficiency: float
    total_efficiency: float
    minutes: float
    cpu_core_usage_average: float
    cpu_core_request_average: float
    ram_byte_usage_average: float
    ram_byte_request_average: float


class _Answer(msgspec.Struct, gc=False):
    data: list[dict[str, Row]]
    code: int = 200


_DECODER = msgspec.json.Decoder(_Answer)
_ATTRS = tuple(msgspec.structs.fields(Row)[i].name for i in range(2, 2 + len(FIELDS)))
_VALUES = operator.attrgetter(*_ATTRS)
_NAME = operator.attrgetter("name")


@dataclass(frozen=True)
class Page:
    """One page of the namespace answer in the usual shape: a single set, key -> row."""

    rows: dict[str, Row]

    @property
    def counted(self) -> int:
        """Rows that count for paging (what `fetch_pages` counts: every key but `__idle__`)."""
        return len(self.rows) - sum(1 for key in self.rows if IDLE in key)


def decode(body: bytes) -> Page | None:
    """A 2xx answer body -> its single set of typed rows, or None when it is not the usual shape
    (the general parser then reads it and reports whatever is wrong with it)."""
    try:
        answer = _DECODER.decode(body)
    except (msgspec.ValidationError, msgspec.DecodeError):
        return None
    if answer.code != 200 or len(answer.data) != 1:
        return None
    return Page(answer.data[0])


def _as_mapping(row: Row) -> dict[str, float]:
    return dict(zip(FIELDS, _VALUES(row), strict=True))


def namespace_snapshot(
    pages: Sequence[Page],
    *,
    requested_window: str,
    now: datetime,
    metric_mode: str,
    cluster_name: str,
) -> Snapshot | None:
    """`model.build_snapshot` of the pages' sets (single-cluster namespace query, pages joined the
    way `refresher._new_rows` joins them), or None when the answer needs the general path."""
    rows: list[Row] = []
    keys: list[str] = []
    idle: Row | None = None
    firsts: list[Row] = []
    seen: set[str] = set()
    for page in pages:
        part = page.rows
        if not part:
            continue
        if idle is not None and IDLE in part:
            # the idle row comes again in every page: kept once (as _new_rows does)
            part = dict(part)
            del part[IDLE]
            if not part:
                continue
        page_keys = list(part)
        if not seen.isdisjoint(page_keys):
            return None  # a repeated row: the general path reports the server ignoring offset
        seen.update(page_keys)
        joined = "\n".join(page_keys)
        page_rows = list(part.values())
        names = list(map(_NAME, page_rows))
        has_idle = IDLE in part
        if has_idle:
            if joined.count(IDLE) != 1:
                return None
            idle = part[IDLE]
            at = page_keys.index(IDLE)
            del page_keys[at], page_rows[at], names[at]
        elif IDLE in joined:
            return None
        if (
            "/" in joined
            or IDLE in names
            or "" in part
            or list(map(str.strip, page_keys)) != page_keys
        ):
            return None
        firsts.append(next(iter(part.values())))
        keys += page_keys
        rows += page_rows
    # coverage from each set's first row, as model.set_window takes it
    windows = []
    for first in firsts:
        start, end = parse_time(first.window.start), parse_time(first.window.end)
        if start is None or end is None or end <= start:
            return None
        windows.append({"": {"window": {"start": first.window.start, "end": first.window.end}}})
    n = len(rows)
    if n < 2:
        return None
    cov = coverage(windows, requested_window, now)
    factor = _factor(metric_mode, cov)
    if factor is None:
        return None
    cols = list(zip(*map(_VALUES, rows), strict=True))
    effs = _efficiencies_from_columns(
        (cols[17], cols[18], cols[19], cols[20], cols[21], cols[1], cols[2], cols[3], cols[4]),
        all_floats=True,
    )
    if effs is None:
        return None
    add = operator.add
    raw = [
        cols[0],
        *(tuple(map(add, cols[i], cols[i + 1])) for i in (1, 3, 5, 7, 9, 11)),
        cols[13],
    ]
    if factor != 1.0:
        raw = [tuple(map(operator.mul, c, repeat(factor))) for c in raw]
    # msgspec only decodes finite numbers; a sum or product that overflowed (values near 1e308)
    # makes its column's sum non-finite: the general path decides then
    sums = [sum(c) for c in (*raw, cols[14], cols[15], cols[16])]
    if sum(sums) - sum(sums) != 0.0:
        return None
    order = sorted(range(n), key=keys.__getitem__)
    pick = order.__iter__
    tidied: list[list[float]] = []
    texts: list[tuple[str, ...]] = []
    for c in raw:
        values, text = _tidy_all(list(map(c.__getitem__, pick())))
        tidied.append(values)
        texts.append(tuple(text))
    eff_cols = [list(map(cols[i].__getitem__, pick())) for i in (14, 15, 16)]
    namespaces = dict(
        zip(
            map(keys.__getitem__, pick()),
            map(tuple.__new__, repeat(Costs), zip(*tidied, *eff_cols, strict=True)),
            strict=True,
        )
    )
    idle_costs = _costs([_as_mapping(idle)], factor, False) if idle is not None else None
    parts: dict[str, float | None] = {}
    for i, p in enumerate(COST_PARTS):
        members: list[float | None] = list(tidied[i])
        if idle_costs is not None:
            members.append(idle_costs.part(p))
        parts[p] = _sum_known(members)
    cpu_e, ram_e, total_e = effs
    cluster = ClusterSnapshot(
        name=cluster_name,
        costs=Costs(**parts, cpu_efficiency=cpu_e, ram_efficiency=ram_e, total_efficiency=total_e),
        idle=idle_costs.total if idle_costs is not None else 0.0,
        namespaces=namespaces,
        texts=tuple(texts),
        columns=(*tidied, *eff_cols),
    )
    return Snapshot((cluster,), (), cov, metric_mode, n + (idle is not None))
