"""Right-sizing savings in USD per month (docs/metrics.md "Savings", which defines them): Kubecost's
request-sizing recommendations (`source="recommendation"`, --savings api) where it has some for a
namespace (controller), else the estimate from the allocation rows (`source="estimate"`).
"""

from __future__ import annotations

import math
from collections.abc import Container, Iterable, Iterator, Mapping, Sequence
from itertools import chain, compress, repeat
from operator import add, attrgetter, itemgetter, mul, sub, truediv
from typing import Any

import msgspec

from kubecost_allocation_exporter import costs
from kubecost_allocation_exporter.decode import ApiError, Row

HOURS_PER_MONTH = 730.0
OTHER, RECOMMENDATION, ESTIMATE = "__other__", "recommendation", "estimate"
Key = tuple[str, str, str]  # (cluster, namespace, controller); controller "" = the namespace
Saving = tuple[str, str, str, str, float]  # a series: *Key, source, USD per month
_HOURS = tuple(map(attrgetter, ("cpu_core_hours", "ram_byte_hours")))


def _parts(
    cost: Sequence[float], hours: Sequence[float], req: Sequence[float], use: Sequence[float]
) -> Iterator[float]:
    """(request - usage, at least 0) x cost / hours (none: 0), in C-level maps."""
    hours = [h if h else math.inf for h in hours]
    return map(truediv, map(mul, map(max, map(sub, req, use), repeat(0.0)), cost), hours)


def estimates(rows: Sequence[Row], cols: Sequence[Sequence[float]]) -> list[float]:
    """Every row's estimate (NaN: unknown) from its cpu, ram cost, cpu usage, request, ram usage,
    request columns `cols`."""
    cpu, ram, cpu_use, cpu_req, ram_use, ram_req = cols
    cpu_h, ram_h = (costs.column(list(map(g, rows))) for g in _HOURS)
    both = map(add, _parts(cpu, cpu_h, cpu_req, cpu_use), _parts(ram, ram_h, ram_req, ram_use))
    return list(map(mul, both, repeat(HOURS_PER_MONTH)))


def accumulate(sums: dict[Key, float], key: Key, value: float) -> None:
    sums[key] = sums.get(key, 0.0) + value


class _Recommendation(msgspec.Struct, gc=False):
    cluster: Any = msgspec.field(default=None, name="clusterID")
    namespace: Any = None
    kind: Any = msgspec.field(default=None, name="controllerKind")
    controller: Any = msgspec.field(default=None, name="controllerName")
    saving: dict[str, Any] | None = msgspec.field(default=None, name="monthlySavings")


class _Answer(msgspec.Struct, gc=False):
    recs: list[_Recommendation] | None = msgspec.field(default=None, name="Recommendations")


_DECODER = msgspec.json.Decoder(list[_Recommendation] | _Answer)


def recommendations(body: Any, where: str, cluster: str, multi_cluster: bool) -> dict[Key, float]:
    """A requestSizingV2 answer (`{"Recommendations": [...]}`, or the bare list of older versions)
    -> monthly savings per namespace and controller (`kind:name`, the Allocation API's value)."""
    try:
        answer = _DECODER.decode(body)
    except msgspec.MsgspecError as exc:
        raise ApiError("bad_response", f"answer from {where}: {exc}") from None
    out: dict[Key, float] = {}
    for r in answer if isinstance(answer, list) else answer.recs or []:
        s = r.saving or {}
        value = costs.number(s.get("total"))
        if value - value != 0.0:
            value = costs.number(s.get("cpu")) + costs.number(s.get("memory"))
        if not isinstance(r.namespace, str) or not r.namespace or value - value != 0.0:
            continue
        c = r.cluster if multi_cluster and isinstance(r.cluster, str) and r.cluster else cluster
        accumulate(out, (c, r.namespace, ""), value)
        if r.kind and r.controller:
            accumulate(out, (c, r.namespace, f"{r.kind}:{r.controller}"), value)
    return out


def assemble(
    estimated: Mapping[Key, float],
    engine: Mapping[Key, float] | None,
    kept: Container[Key] | None,
    controllers: Mapping[Key, float] | None,
    top_n: int,
) -> tuple[list[Saving], int]:
    """The series: the namespaces of the snapshot (`kept` by the cardinality guard; None: all),
    then the top `top_n` controllers per cluster; and how many the guard left out."""
    engine = engine or {}
    ns = {k: v for k, v in engine.items() if not k[2] and k in estimated}
    out = merged(estimated, ns)
    left_out = len(out)
    out = out if kept is None else [s for s in out if s[:3] in kept]
    left_out -= len(out)
    if controllers is not None:
        out += top(merged(controllers, {k: v for k, v in engine.items() if k[2]}), top_n)
    return out, left_out


def merged(estimated: Mapping[Key, float], engine: Mapping[Key, float]) -> list[Saving]:
    """One Saving per key, the engine's else the known estimate; largest first (the guard drops
    from the end)."""
    vals = estimated.values()
    found = compress(estimated, map((0.0).__eq__, map(sub, vals, vals)))  # known estimates
    keys = [k for k in found if k not in engine] if engine else list(found)
    values = tidy(chain(engine.values(), map(estimated.__getitem__, keys)))
    sources = chain(repeat(RECOMMENDATION, len(engine)), repeat(ESTIMATE))
    out: list[Saving] = list(map(add, chain(engine, keys), zip(sources, values, strict=False)))
    out.sort(key=itemgetter(4), reverse=True)
    return out


def tidy(values: Iterable[float]) -> list[float]:
    return costs.tidy_all(list(values))[0]


def top(controllers: Iterable[Saving], top_n: int) -> list[Saving]:
    """The top `top_n` controllers per cluster and, per source, one `__other__` with the rest."""
    out: list[Saving] = []
    rest: dict[Key, float] = {}
    seen: dict[str, int] = {}
    for s in controllers:  # largest first
        seen[s[0]] = seen.get(s[0], 0) + 1
        if seen[s[0]] <= top_n:
            out.append(s)
        else:
            accumulate(rest, (s[0], s[3], ""), s[4])
    keys = sorted(rest)
    return out + [
        (c, OTHER, OTHER, src, v)
        for (c, src, _), v in zip(keys, tidy(map(rest.__getitem__, keys)), strict=True)
    ]
