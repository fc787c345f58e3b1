"""Pure data: Allocation API sets -> an immutable `Snapshot` of the numbers to export.

No I/O here. Rules (see docs/metrics.md):
- each resource cost = `<r>Cost + <r>CostAdjustment` (missing adjustment = 0; a null makes the value
  unknown, and an unknown value is omitted, never exported as 0 or NaN);
- `__idle__` rows are never namespaces: they go to the cluster's idle cost and are part of every
  cluster cost; `__unallocated__` / `__unmounted__` stay namespaces;
- several sets are combined: costs summed, the elapsed time is the union of their windows;
- rate mode divides costs (not efficiencies) by the elapsed hours.
"""

from __future__ import annotations

import math
import operator
import struct
from array import array
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from functools import reduce
from itertools import chain, compress, repeat
from typing import Any, NamedTuple

IDLE = "__idle__"
UNALLOCATED = "__unallocated__"
UNMOUNTED = "__unmounted__"
OTHER = "__other__"
SPECIAL_NAMES = (UNALLOCATED, UNMOUNTED)

# Exported cost parts: name -> (base field, adjustment field or None).
COST_PARTS: dict[str, tuple[str, str | None]] = {
    "total": ("totalCost", None),
    "cpu": ("cpuCost", "cpuCostAdjustment"),
    "ram": ("ramCost", "ramCostAdjustment"),
    "pv": ("pvCost", "pvCostAdjustment"),
    "network": ("networkCost", "networkCostAdjustment"),
    "lb": ("loadBalancerCost", "loadBalancerCostAdjustment"),
    "gpu": ("gpuCost", "gpuCostAdjustment"),
    "shared": ("sharedCost", None),
}
EFFICIENCIES = ("cpu", "ram", "total")


# ---------------------------------------------------------------------------------------------
# windows


def floor_hour(t: datetime) -> datetime:
    return t.replace(minute=0, second=0, microsecond=0)


def rfc3339(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def last_complete_hour(now: datetime, lag_seconds: float) -> tuple[datetime, datetime]:
    end = floor_hour(now.astimezone(UTC) - timedelta(seconds=lag_seconds))
    return end - timedelta(hours=1), end


def window_param(window: str, now: datetime, lag_seconds: float) -> str:
    """The `window` query parameter: the configured string, or the last complete hour."""
    if window:
        return window
    start, end = last_complete_hour(now, lag_seconds)
    return f"{rfc3339(start)},{rfc3339(end)}"


def parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        t = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return t


def explicit_window(window: str) -> tuple[datetime, datetime] | None:
    """Start/end of an RFC3339 or unix-seconds pair; None for keywords and durations."""
    a, sep, b = window.partition(",")
    if not sep:
        return None
    if a.isdigit() and b.isdigit():
        return datetime.fromtimestamp(int(a), UTC), datetime.fromtimestamp(int(b), UTC)
    start, end = parse_time(a), parse_time(b)
    if start is None or end is None:
        return None
    return start, end


def union_seconds(intervals: Iterable[tuple[datetime, datetime]]) -> float:
    """Length of the union of intervals (overlaps counted once, gaps not counted)."""
    total = 0.0
    cur_start: datetime | None = None
    cur_end: datetime | None = None
    for start, end in sorted(intervals):
        if end <= start:
            continue
        if cur_end is None or start > cur_end:
            if cur_start is not None and cur_end is not None:
                total += (cur_end - cur_start).total_seconds()
            cur_start, cur_end = start, end
        elif end > cur_end:
            cur_end = end
    if cur_start is not None and cur_end is not None:
        total += (cur_end - cur_start).total_seconds()
    return total


def set_window(aset: Mapping[str, Mapping[str, Any]]) -> tuple[datetime, datetime] | None:
    """A set's window: the `window` of its allocations (all equal within one set)."""
    for alloc in aset.values():
        w = alloc.get("window")
        if isinstance(w, dict):
            start, end = parse_time(w.get("start")), parse_time(w.get("end"))
            if start is not None and end is not None and end > start:
                return start, end
    return None


@dataclass(frozen=True)
class Coverage:
    """What time the numbers cover: the union of the sets' windows, `end` clamped to now."""

    start: datetime | None
    end: datetime | None
    seconds: float | None

    @property
    def hours(self) -> float | None:
        return None if not self.seconds else self.seconds / 3600.0


def coverage(
    sets: Sequence[Mapping[str, Mapping[str, Any]]], requested: str, now: datetime
) -> Coverage:
    intervals = [w for w in (set_window(s) for s in sets if s) if w is not None]
    if not intervals:
        req = explicit_window(requested)
        if req is None:
            # last resort: the allocations' own start/end
            for s in sets:
                for alloc in s.values():
                    st, en = parse_time(alloc.get("start")), parse_time(alloc.get("end"))
                    if st is not None and en is not None and en > st:
                        intervals.append((st, en))
        else:
            intervals = [req]
    clamped = [(s, min(e, now)) for s, e in intervals if min(e, now) > s]
    if not clamped:
        return Coverage(None, None, None)
    start = min(s for s, _ in clamped)
    end = max(e for _, e in clamped)
    return Coverage(start, end, union_seconds(clamped))


# ---------------------------------------------------------------------------------------------
# numbers


def number(alloc: Mapping[str, Any], name: str) -> float | None:
    """A numeric field; None when missing, null, NaN/Inf, or not a number."""
    v: Any = alloc.get(name)
    t = type(v)
    if t is float:
        return v if v - v == 0.0 else None  # NaN and +-Inf fail this
    if t is int:
        return float(v)
    if isinstance(v, bool) or not isinstance(v, int | float):
        if isinstance(v, str):
            try:
                f = float(v)
            except ValueError:
                return None
            return f if math.isfinite(f) else None
        return None
    f = float(v)
    return f if math.isfinite(f) else None


def cost_part(alloc: Mapping[str, Any], part: str) -> float | None:
    base_field, adj_field = COST_PARTS[part]
    base: Any = alloc.get(base_field)
    if type(base) is not float or base - base != 0.0:  # fast path: a finite float
        base = number(alloc, base_field)
        if base is None:
            return None
    if adj_field is None:
        return float(base)
    adj: Any = alloc.get(adj_field, 0.0)
    if type(adj) is not float or adj - adj != 0.0:
        if adj_field not in alloc:
            return float(base)
        adj = number(alloc, adj_field)
        if adj is None:
            return None
    return float(base + adj)


def part_sums(rows: Sequence[Mapping[str, Any]]) -> dict[str, float | None]:
    """Every cost part summed over rows; one unknown member makes that part unknown."""
    if len(rows) == 1:
        row = rows[0]
        return {p: cost_part(row, p) for p in COST_PARTS}
    out: dict[str, float | None] = {}
    for p in COST_PARTS:
        total: float | None = 0.0
        for row in rows:
            v = cost_part(row, p)
            if v is None:
                total = None
                break
            total += v  # type: ignore[operator]
        out[p] = total
    return out


def _minutes(alloc: Mapping[str, Any]) -> float | None:
    m = number(alloc, "minutes")
    if m is not None:
        return m
    st, en = parse_time(alloc.get("start")), parse_time(alloc.get("end"))
    if st is None or en is None:
        return None
    return (en - st).total_seconds() / 60.0


def _usage_ratio(usage: float, request: float, cost: float) -> float:
    """OpenCost's rule: usage/request; with no request 0 when nothing used or cost 0, else 1."""
    if request > 0:
        return usage / request
    return 0.0 if usage == 0 or cost == 0 else 1.0


def resource_efficiency(rows: Sequence[Mapping[str, Any]], res: str) -> float | None:
    """cpu/ram efficiency of several rows, combined as the API combines them (usage and request
    averages weighted by minutes). One row: the API's own value."""
    eff_field = f"{res}Efficiency"
    if len(rows) == 1:
        return number(rows[0], eff_field)
    usage_f, req_f = (
        ("cpuCoreUsageAverage", "cpuCoreRequestAverage")
        if res == "cpu"
        else ("ramByteUsageAverage", "ramByteRequestAverage")
    )
    usage = request = cost = 0.0
    complete = True
    for r in rows:
        u, q, m, c = number(r, usage_f), number(r, req_f), _minutes(r), cost_part(r, res)
        if u is None or q is None or m is None:
            complete = False
            break
        usage += u * m
        request += q * m
        cost += c or 0.0
    if complete:
        return _usage_ratio(usage, request, cost)
    # fallback: cost-weighted mean of the rows' efficiencies
    pairs = [(number(r, eff_field), cost_part(r, res)) for r in rows]
    known = [(e, c or 0.0) for e, c in pairs if e is not None]
    if not known:
        return None
    weight = sum(abs(c) for _, c in known)
    if weight == 0:
        return sum(e for e, _ in known) / len(known)
    return sum(e * abs(c) for e, c in known) / weight


def total_efficiency(rows: Sequence[Mapping[str, Any]]) -> float | None:
    """(cpuEff*cpuCost + ramEff*ramCost) / (cpuCost + ramCost), costs incl. adjustments."""
    if len(rows) == 1:
        return number(rows[0], "totalEfficiency")
    return combine_total_efficiency(
        resource_efficiency(rows, "cpu"), resource_efficiency(rows, "ram"), part_sums(rows)
    )


def combine_total_efficiency(
    cpu_e: float | None, ram_e: float | None, parts: Mapping[str, float | None]
) -> float | None:
    cc, rc = parts["cpu"], parts["ram"]
    if cpu_e is None or ram_e is None or cc is None or rc is None:
        return None
    if cc + rc == 0:
        return 0.0
    return (cpu_e * cc + ram_e * rc) / (cc + rc)


# ---------------------------------------------------------------------------------------------
# keys


@dataclass(frozen=True)
class RowKey:
    cluster: str | None  # None: not known from the data
    idle: bool
    values: tuple[str, ...]  # one per aggregation property (empty for idle rows)


def _strip_label_prefix(prop: str, value: str) -> str:
    """Pre-1.100 label keys read `app=redis`; since 1.100 they are the bare value."""
    if prop.startswith(("label:", "annotation:")):
        key = prop.split(":", 1)[1]
        if value.startswith(key + "="):
            return value[len(key) + 1 :]
    return value


def _prop_from_properties(props: Mapping[str, Any], prop: str) -> str | None:
    if prop.startswith("label:"):
        labels = props.get("labels")
        v = labels.get(prop[6:]) if isinstance(labels, dict) else None
    elif prop.startswith("annotation:"):
        ann = props.get("annotations")
        v = ann.get(prop[11:]) if isinstance(ann, dict) else None
    else:
        v = props.get(prop)
    return v if isinstance(v, str) and v else None


def split_key(
    key: str, alloc: Mapping[str, Any], props: Sequence[str], *, want_cluster: bool = True
) -> RowKey:
    """Aggregation key -> label values, one per property in `props` (the `aggregate` list).

    Keys are the values joined by "/". Tolerated: `__idle__` anywhere (`__idle__`,
    `cluster-one/__idle__`, `cluster/node/__idle__`), empty segments, the unaggregated key
    `cluster//__unmounted__/__unmounted__/__unmounted__`, pre-1.100 `app=x` label values.
    """
    properties = alloc.get("properties")
    properties = properties if isinstance(properties, dict) else {}
    segs = key.split("/")
    if IDLE in segs or key.endswith(IDLE) or alloc.get("name") == IDLE:
        cluster = _prop_from_properties(properties, "cluster")
        if cluster is None and len(segs) >= 2 and segs[0] not in (IDLE, ""):
            cluster = segs[0]
        return RowKey(cluster, True, ())
    if len(segs) == len(props):
        values = list(segs)
    elif len(segs) == 5 and len(props) < 5:
        # unaggregated cluster/node/namespace/pod/container
        positions = {"cluster": 0, "node": 1, "namespace": 2, "pod": 3, "container": 4}
        values = [
            segs[positions[p]] if p in positions else (_prop_from_properties(properties, p) or "")
            for p in props
        ]
    elif len(segs) > len(props) and props and props[-1].startswith("annotation:"):
        # annotation values may contain "/"
        head = len(props) - 1
        values = [*segs[:head], "/".join(segs[head:])]
    else:
        special = next((s for s in segs if s in SPECIAL_NAMES), None)
        values = [_prop_from_properties(properties, p) or special or key for p in props]
    out: list[str] = []
    for p, raw in zip(props, values, strict=True):
        v = _strip_label_prefix(p, raw.strip())
        out.append(v or UNALLOCATED)
    cluster = None
    if "cluster" in props:
        cluster = out[props.index("cluster")]
    elif want_cluster:
        cluster = _prop_from_properties(properties, "cluster")
    return RowKey(cluster, False, tuple(out))


# ---------------------------------------------------------------------------------------------
# snapshot


class Costs(NamedTuple):
    """One exported label set: cost parts (USD or USD/h) and efficiencies; None = omitted."""

    total: float | None = None
    cpu: float | None = None
    ram: float | None = None
    pv: float | None = None
    network: float | None = None
    lb: float | None = None
    gpu: float | None = None
    shared: float | None = None
    cpu_efficiency: float | None = None
    ram_efficiency: float | None = None
    total_efficiency: float | None = None

    def part(self, name: str) -> float | None:
        v: float | None = getattr(self, name)
        return v


@dataclass(frozen=True)
class ClusterSnapshot:
    name: str
    costs: Costs  # every allocation incl. idle
    idle: float | None  # sum of totalCost of the idle rows (0.0 when no idle row; None when null)
    namespaces: Mapping[str, Costs]
    # The 8 cost parts of every namespace as exposition text, one column per part in `namespaces`
    # order (`repr` of each value, kept from tidying); None when not every namespace has it.
    texts: tuple[tuple[str, ...], ...] | None = field(default=None, compare=False, repr=False)
    # The 11 Costs fields of every namespace as columns in `namespaces` order, when every value is
    # a finite float (the fast path knows it); lets rendering skip transposing and checking.
    columns: tuple[Sequence[float], ...] | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class BreakdownRow:
    cluster: str
    breakdown: str
    namespace: str
    value: str
    total: float


@dataclass(frozen=True)
class Snapshot:
    clusters: tuple[ClusterSnapshot, ...]
    breakdowns: tuple[BreakdownRow, ...]
    coverage: Coverage
    metric_mode: str
    allocations: int  # rows read

    @property
    def namespace_count(self) -> int:
        return sum(len(c.namespaces) for c in self.clusters)


def tidy(v: float) -> float:
    """Drop float noise from sums of 5-decimal API values (0.027500000000000004 -> 0.0275)."""
    return float(f"{v:.12g}")


def _scale(v: float | None, factor: float | None) -> float | None:
    if v is None or factor is None:
        return None
    return tidy(v * factor)


_PART_FIELDS = tuple(COST_PARTS.values())


#: The numeric fields of an allocation the exporter reads (cost parts, efficiencies, usage).
ONE_FIELD_NAMES = (
    "totalCost",
    "cpuCost",
    "cpuCostAdjustment",
    "ramCost",
    "ramCostAdjustment",
    "pvCost",
    "pvCostAdjustment",
    "networkCost",
    "networkCostAdjustment",
    "loadBalancerCost",
    "loadBalancerCostAdjustment",
    "gpuCost",
    "gpuCostAdjustment",
    "sharedCost",
    "cpuEfficiency",
    "ramEfficiency",
    "totalEfficiency",
    "minutes",
    "cpuCoreUsageAverage",
    "cpuCoreRequestAverage",
    "ramByteUsageAverage",
    "ramByteRequestAverage",
)
_ONE_FIELDS = operator.itemgetter(*ONE_FIELD_NAMES)
_ALL_FLOAT = frozenset({float})


def _costs_one(row: Mapping[str, Any], factor: float | None) -> Costs:
    """`_costs([row], factor, True)` for the common case (one allocation per namespace, 10k per
    refresh): every field present and a finite float is read in one C call; anything else takes
    the general path, so the results are the same."""
    if factor is not None:
        try:
            v = _ONE_FIELDS(row)
        except KeyError:
            v = None
        if v is not None and set(map(type, v)) == _ALL_FLOAT and sum(v) - sum(v) == 0.0:
            return Costs(
                float(f"{v[0] * factor:.12g}"),
                float(f"{(v[1] + v[2]) * factor:.12g}"),
                float(f"{(v[3] + v[4]) * factor:.12g}"),
                float(f"{(v[5] + v[6]) * factor:.12g}"),
                float(f"{(v[7] + v[8]) * factor:.12g}"),
                float(f"{(v[9] + v[10]) * factor:.12g}"),
                float(f"{(v[11] + v[12]) * factor:.12g}"),
                float(f"{v[13] * factor:.12g}"),
                v[14],
                v[15],
                v[16],
            )
    return _costs_one_general(row, factor)


def _costs_one_general(row: Mapping[str, Any], factor: float | None) -> Costs:
    """`_costs([row], factor, True)` without the per-part calls. Same rules: finite floats take
    the fast path, anything else goes through `number`."""
    get = row.get
    vals: list[float | None] = []
    add = vals.append
    for base_f, adj_f in _PART_FIELDS:
        b: Any = get(base_f)
        if type(b) is not float or b - b != 0.0:
            b = number(row, base_f)
            if b is None:
                add(None)
                continue
        if adj_f is not None:
            a: Any = get(adj_f, 0.0)
            if type(a) is not float or a - a != 0.0:
                if adj_f in row:
                    a = number(row, adj_f)
                    if a is None:
                        add(None)
                        continue
                else:
                    a = 0.0
            b = b + a
        add(None if factor is None else float(f"{b * factor:.12g}"))
    vals += (
        number(row, "cpuEfficiency"),
        number(row, "ramEfficiency"),
        number(row, "totalEfficiency"),
    )
    return Costs._make(vals)


_NEGATIVE_ZERO = struct.pack("<d", -0.0)


def _tidy_all(values: Sequence[float]) -> tuple[list[float], list[str]]:
    """`[tidy(v) for v in values]` with the formatting and parsing done in C loops, and the text of
    each result, `repr(tidy(v))` (from the `%.12g` text: 12 significant digits identify a double,
    and below 1e6 both use the same notation; see `_texts`). When values repeat (most pv/lb/gpu/
    shared parts are 0.0) each distinct value is formatted once, unless a -0.0 is among them (it
    equals 0.0 as a dict key but is written `-0.0`). Every path gives the same result per value;
    the choice is only about speed."""
    if not values:
        return [], []
    distinct = set(values)
    if len(distinct) * 2 > len(values) or (0.0 in distinct and _has_negative_zero(values)):
        formatted = list(map("%.12g".__mod__, values))
        floats = list(map(float, formatted))
        return floats, _texts(formatted, floats)
    ordered = list(distinct)
    formatted = list(map("%.12g".__mod__, ordered))
    floats = list(map(float, formatted))
    texts = _texts(formatted, floats)
    if len(ordered) == 1:
        return floats * len(values), texts * len(values)
    as_float = dict(zip(ordered, floats, strict=True))
    as_text = dict(zip(ordered, texts, strict=True))
    return list(map(as_float.__getitem__, values)), list(map(as_text.__getitem__, values))


def _has_negative_zero(values: Sequence[float]) -> bool:
    raw = array("d", values).tobytes()
    pos = raw.find(_NEGATIVE_ZERO)
    while pos != -1 and pos % 8:
        pos = raw.find(_NEGATIVE_ZERO, pos + 1)
    return pos != -1


def _texts(formatted: list[str], floats: list[float]) -> list[str]:
    """`repr` of each tidied value from its `%.12g` text: an integer gets its `.0` (`1e+20`
    needs none); a tiny value (exponent -3xx, where subnormals have fewer than 12 digits) makes
    `repr` write them all."""
    if "e-3" in "".join(formatted):  # texts end in a digit: a match never spans two of them
        return list(map(repr, floats))
    texts = formatted
    for i in compress(range(len(floats)), map(float.is_integer, floats)):
        if "e" not in texts[i]:
            if texts is formatted:
                texts = list(formatted)
            texts[i] += ".0"
    return texts


class _NamespaceCosts(NamedTuple):
    costs: dict[str, Costs]
    texts: tuple[tuple[str, ...], ...] | None  # see ClusterSnapshot.texts
    raw: dict[str, tuple[float, ...]]  # the fields read for the fast namespaces


def _namespace_costs(
    groups: Sequence[tuple[str, Sequence[Mapping[str, Any]]]], factor: float | None
) -> _NamespaceCosts:
    """`{ns: _costs(rows, factor, True)}` in the order given. Namespaces that are one allocation
    whose fields are all present finite floats (the usual case, 10k per refresh) are done in bulk:
    one itemgetter call per row, then every value tidied at once; the rest take `_costs`."""
    slow: dict[str, Costs] = {}
    fast_names: list[str] = []
    raw: list[float] = []
    effs: list[tuple[float, float, float]] = []
    fields: dict[str, tuple[float, ...]] = {}
    if factor is not None:
        for ns, rows in groups:
            if len(rows) == 1:
                try:
                    v = _ONE_FIELDS(rows[0])
                except KeyError:
                    v = None
                if v is not None and set(map(type, v)) == _ALL_FLOAT and sum(v) - sum(v) == 0.0:
                    fast_names.append(ns)
                    fields[ns] = v
                    raw += (
                        v[0],
                        v[1] + v[2],
                        v[3] + v[4],
                        v[5] + v[6],
                        v[7] + v[8],
                        v[9] + v[10],
                        v[11] + v[12],
                        v[13],
                    )
                    effs.append((v[14], v[15], v[16]))
                    continue
            slow[ns] = _costs(rows, factor, True)
    else:
        slow = {ns: _costs(rows, factor, True) for ns, rows in groups}
    if not fast_names:
        return _NamespaceCosts(slow, None, fields)
    if factor is not None and factor != 1.0:
        raw = [x * factor for x in raw]
    tidied, texts = _tidy_all(raw)
    it = iter(tidied)
    parts8 = zip(it, it, it, it, it, it, it, it, strict=True)
    # tuple.__new__(Costs, values) is what Costs._make does, without a Python-level call per row
    costs = map(tuple.__new__, repeat(Costs), map(operator.add, parts8, effs))
    fast: dict[str, Costs] = dict(zip(fast_names, costs, strict=True))
    if not slow:
        tt = iter(texts)
        columns = tuple(zip(*zip(tt, tt, tt, tt, tt, tt, tt, tt, strict=True), strict=True))
        return _NamespaceCosts(fast, columns, fields)
    merged = {ns: fast[ns] if ns in fast else slow[ns] for ns, _ in groups}
    return _NamespaceCosts(merged, None, fields)


def _costs(rows: Sequence[Mapping[str, Any]], factor: float | None, with_efficiency: bool) -> Costs:
    if with_efficiency and len(rows) == 1:
        return _costs_one(rows[0], factor)
    parts = part_sums(rows)
    kw: dict[str, float | None] = {p: _scale(v, factor) for p, v in parts.items()}
    if with_efficiency:
        if len(rows) == 1:
            row = rows[0]
            kw["cpu_efficiency"] = number(row, "cpuEfficiency")
            kw["ram_efficiency"] = number(row, "ramEfficiency")
            kw["total_efficiency"] = number(row, "totalEfficiency")
        else:
            cpu_e, ram_e = resource_efficiency(rows, "cpu"), resource_efficiency(rows, "ram")
            kw["cpu_efficiency"] = cpu_e
            kw["ram_efficiency"] = ram_e
            kw["total_efficiency"] = combine_total_efficiency(cpu_e, ram_e, parts)
    return Costs(**kw)


_EFF_FIELDS = operator.itemgetter(
    "minutes",
    "cpuCoreUsageAverage",
    "cpuCoreRequestAverage",
    "ramByteUsageAverage",
    "ramByteRequestAverage",
    "cpuCost",
    "cpuCostAdjustment",
    "ramCost",
    "ramCostAdjustment",
)


def _efficiencies_from_columns(
    cols: Sequence[Sequence[Any]], all_floats: bool = False
) -> tuple[float, float, float | None] | None:
    """cluster_efficiencies' loop as C loops over columns (same sequential sums), for rows whose
    fields are all floats (`all_floats`: the caller knows, e.g. typed rows); None when one is
    not, or NaN/Inf (which makes a sum non-finite: inf*0 is nan), and then the general loop
    decides."""
    m, u1, q1, u2, q2, c1, a1, c2, a2 = cols
    if not all_floats and set(map(type, chain.from_iterable(cols))) != _ALL_FLOAT:
        return None
    cu = reduce(operator.add, map(operator.mul, u1, m), 0.0)
    cq = reduce(operator.add, map(operator.mul, q1, m), 0.0)
    ru = reduce(operator.add, map(operator.mul, u2, m), 0.0)
    rq = reduce(operator.add, map(operator.mul, q2, m), 0.0)
    cpu_sum = reduce(operator.add, map(operator.add, c1, a1), 0.0)
    ram_sum = reduce(operator.add, map(operator.add, c2, a2), 0.0)
    checks = (cu, cq, ru, rq, cpu_sum, ram_sum)
    if sum(checks) - sum(checks) != 0.0:
        return None
    cpu_e = _usage_ratio(cu, cq, cpu_sum)
    ram_e = _usage_ratio(ru, rq, ram_sum)
    return cpu_e, ram_e, combine_total_efficiency(cpu_e, ram_e, {"cpu": cpu_sum, "ram": ram_sum})


def cluster_efficiencies(
    rows: Sequence[Mapping[str, Any]],
) -> tuple[float | None, float | None, float | None]:
    """cpu, ram and total efficiency of all non-idle rows in one pass (10k rows per refresh);
    same results as resource_efficiency / total_efficiency."""
    if not rows:
        return None, None, None
    if len(rows) == 1:
        r = rows[0]
        return (
            number(r, "cpuEfficiency"),
            number(r, "ramEfficiency"),
            number(r, "totalEfficiency"),
        )
    cu = cq = ru = rq = 0.0
    cpu_cost: float | None = 0.0
    ram_cost: float | None = 0.0
    complete = True
    try:
        cols = list(zip(*map(_EFF_FIELDS, rows), strict=True))
    except KeyError:
        cols = []
    if cols:
        fast = _efficiencies_from_columns(cols)
        if fast is not None:
            return fast
    for r in rows:
        # not all present and finite floats: the general path
        m = _minutes(r)
        u1, q1 = number(r, "cpuCoreUsageAverage"), number(r, "cpuCoreRequestAverage")
        u2, q2 = number(r, "ramByteUsageAverage"), number(r, "ramByteRequestAverage")
        if m is None or u1 is None or q1 is None or u2 is None or q2 is None:
            complete = False
            break
        cu += u1 * m
        cq += q1 * m
        ru += u2 * m
        rq += q2 * m
        c1, c2 = cost_part(r, "cpu"), cost_part(r, "ram")
        cpu_cost = None if cpu_cost is None or c1 is None else cpu_cost + c1
        ram_cost = None if ram_cost is None or c2 is None else ram_cost + c2
    if not complete:
        cpu_e, ram_e = resource_efficiency(rows, "cpu"), resource_efficiency(rows, "ram")
        return cpu_e, ram_e, combine_total_efficiency(cpu_e, ram_e, part_sums(rows))
    cpu_e = _usage_ratio(cu, cq, cpu_cost or 0.0)
    ram_e = _usage_ratio(ru, rq, ram_cost or 0.0)
    parts = {"cpu": cpu_cost, "ram": ram_cost}
    return cpu_e, ram_e, combine_total_efficiency(cpu_e, ram_e, parts)


def _sum_known(values: Iterable[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return tidy(sum(known)) if known else None


def _factor(mode: str, cov: Coverage) -> float | None:
    if mode == "total":
        return 1.0
    hours = cov.hours
    return None if hours is None else 1.0 / hours


def build_snapshot(
    sets: Sequence[Mapping[str, Mapping[str, Any]]],
    *,
    requested_window: str,
    now: datetime,
    metric_mode: str,
    cluster_name: str,
    multi_cluster: bool,
) -> Snapshot:
    """The namespace query's sets -> cluster and namespace numbers."""
    props = ("cluster", "namespace") if multi_cluster else ("namespace",)
    cov = coverage(sets, requested_window, now)
    factor = _factor(metric_mode, cov)
    ns_groups: dict[str, dict[str, list[Mapping[str, Any]]]] = {}
    idle_groups: dict[str, list[Mapping[str, Any]]] = {}
    rows = 0
    for aset in sets:
        for key, alloc in aset.items():
            rows += 1
            if (
                not multi_cluster
                and "/" not in key
                and not key.endswith(IDLE)
                and alloc.get("name") != IDLE
            ):
                # aggregate=namespace: the key is the namespace (what split_key returns)
                cluster = cluster_name
                namespace = key.strip() or UNALLOCATED
            else:
                rk = split_key(key, alloc, props, want_cluster=multi_cluster)
                cluster = (rk.cluster if multi_cluster else None) or cluster_name
                if rk.idle:
                    idle_groups.setdefault(cluster, []).append(alloc)
                    continue
                namespace = rk.values[-1]
            per = ns_groups.get(cluster)
            if per is None:
                per = ns_groups[cluster] = {}
            group = per.get(namespace)
            if group is None:
                per[namespace] = [alloc]
            else:
                group.append(alloc)
    clusters: list[ClusterSnapshot] = []
    for cluster in sorted(set(ns_groups) | set(idle_groups)):
        groups = ns_groups.get(cluster, {})
        nsc = _namespace_costs(sorted(groups.items()), factor)
        namespaces = nsc.costs
        idle_rows = idle_groups.get(cluster)
        idle_costs = _costs(idle_rows, factor, False) if idle_rows else None
        parts: dict[str, float | None] = {}
        columns = list(zip(*namespaces.values(), strict=True)) if namespaces else []
        for i, p in enumerate(COST_PARTS):
            members: list[float | None] = list(columns[i]) if columns else []
            if idle_costs is not None:
                members.append(idle_costs.part(p))
            parts[p] = _sum_known(members)
        effs: tuple[float | None, float | None, float | None] | None = None
        if len(groups) > 1 and len(nsc.raw) == len(groups):
            # every namespace is one allocation already read: its columns, in the API's order
            ordered = [nsc.raw[ns] for ns in groups]
            c = list(zip(*ordered, strict=True))
            effs = _efficiencies_from_columns(
                (c[17], c[18], c[19], c[20], c[21], c[1], c[2], c[3], c[4])
            )
        if effs is None:
            effs = cluster_efficiencies([r for g in groups.values() for r in g])
        cpu_e, ram_e, total_e = effs
        cluster_costs = Costs(
            **parts, cpu_efficiency=cpu_e, ram_efficiency=ram_e, total_efficiency=total_e
        )
        clusters.append(
            ClusterSnapshot(
                name=cluster,
                costs=cluster_costs,
                # We always ask with idle=true: no __idle__ row means no unshared idle (shareIdle
                # spread it over the namespaces, or there was none), i.e. 0 — not unknown. Only a
                # null totalCost on an idle row leaves it unknown (series omitted).
                idle=idle_costs.total if idle_costs is not None else 0.0,
                namespaces=namespaces,
                texts=nsc.texts,
            )
        )
    return Snapshot(tuple(clusters), (), cov, metric_mode, rows)


def _known(values: Iterable[float | None]) -> int:
    return sum(1 for v in values if v is not None and v - v == 0.0)


def cap_series(snapshot: Snapshot, max_series: int) -> tuple[Snapshot, int]:
    """The cardinality guard: at most `max_series` cost series (0 = no cap). Cluster series are
    always kept (a few per cluster; cluster costs still cover every allocation); then namespaces
    by total cost, most expensive first, with all their series; then breakdown rows in order.
    Returns the snapshot to export and how many series were left out."""
    if max_series <= 0:
        return snapshot, 0
    per_ns = len(Costs._fields)
    upper = sum(len(c.costs) + 4 + per_ns * len(c.namespaces) for c in snapshot.clusters)
    if upper + len(snapshot.breakdowns) <= max_series:  # cannot be over: no counting
        return snapshot, 0
    cov = snapshot.coverage
    edges = (cov.start is not None) + (cov.end is not None)
    cluster_series = sum(_known(c.costs) + _known((c.idle,)) + 1 + edges for c in snapshot.clusters)
    ns_series = [
        (c.name, ns, _known(costs), costs.total)
        for c in snapshot.clusters
        for ns, costs in c.namespaces.items()
    ]
    total = cluster_series + sum(n for _, _, n, _ in ns_series) + len(snapshot.breakdowns)
    if total <= max_series:
        return snapshot, 0
    budget = max_series - cluster_series
    ranked = sorted(
        ns_series,
        key=lambda r: (r[3] is None or r[3] - r[3] != 0.0, -(r[3] or 0.0), r[0], r[1]),
    )
    keep: set[tuple[str, str]] = set()
    for cluster, ns, n, _ in ranked:
        if n > budget:
            break
        keep.add((cluster, ns))
        budget -= n
    kept_rows = snapshot.breakdowns[: max(budget, 0)]
    clusters = tuple(
        replace(
            c,
            namespaces={ns: v for ns, v in c.namespaces.items() if (c.name, ns) in keep},
            texts=None,
            columns=None,
        )
        for c in snapshot.clusters
    )
    kept = (
        cluster_series
        + sum(n for cluster, ns, n, _ in ns_series if (cluster, ns) in keep)
        + len(kept_rows)
    )
    return replace(snapshot, clusters=clusters, breakdowns=kept_rows), total - kept


class BreakdownTotals:
    """A breakdown query (aggregate=[cluster,]namespace,<breakdown>) accumulated page by page:
    totalCost per (namespace, value) and cluster. `rows()` gives the top N rows by total cost per
    cluster plus one `__other__` row with the rest. Idle rows are not part of it, so per cluster
    the rows sum to sum(namespace_total_cost). A key seen in an earlier page is an error (the
    server honoured `limit` but not `offset`)."""

    def __init__(
        self,
        *,
        breakdown: str,
        requested_window: str,
        now: datetime,
        metric_mode: str,
        cluster_name: str,
        multi_cluster: bool,
    ) -> None:
        self.breakdown = breakdown
        self._props = (
            ("cluster", "namespace", breakdown) if multi_cluster else ("namespace", breakdown)
        )
        self._window = requested_window
        self._now = now
        self._mode = metric_mode
        self._cluster_name = cluster_name
        self._multi = multi_cluster
        self._factor: float | None = None
        self._pages = 0
        self._seen: set[str] = set()
        self.totals: dict[str, dict[tuple[str, str], float]] = {}

    def add(self, sets: Sequence[Mapping[str, Mapping[str, Any]]]) -> None:
        """One page (or the whole answer). Raises ValueError on a row repeated across pages."""
        self._pages += 1
        if self._pages == 1:
            self._factor = _factor(self._mode, coverage(sets, self._window, self._now))
        factor = self._factor
        if factor is None:
            return
        check = self._pages > 1
        seen = self._seen
        for aset in sets:
            for key, alloc in aset.items():
                if check and key in seen:
                    raise ValueError(
                        f"row {key!r} came again in page {self._pages}: the API ignores 'offset' "
                        "(set --page-size 0)"
                    )
                seen.add(key)
                rk = split_key(key, alloc, self._props)
                total = number(alloc, "totalCost")
                if rk.idle or total is None:
                    continue
                cluster = (rk.cluster if self._multi else None) or self._cluster_name
                slot = (rk.values[-2], rk.values[-1])
                per = self.totals.get(cluster)
                if per is None:
                    per = self.totals[cluster] = {}
                per[slot] = per.get(slot, 0.0) + total * factor

    def rows(self, top_n: int) -> tuple[BreakdownRow, ...]:
        out: list[BreakdownRow] = []
        for cluster in sorted(self.totals):
            ranked = sorted(self.totals[cluster].items(), key=lambda kv: (-kv[1], kv[0]))
            for (ns, value), total in ranked[:top_n]:
                out.append(BreakdownRow(cluster, self.breakdown, ns, value, tidy(total)))
            rest = ranked[top_n:]
            if rest:
                other = tidy(sum(t for _, t in rest))
                out.append(BreakdownRow(cluster, self.breakdown, OTHER, OTHER, other))
        return tuple(out)


def build_breakdown(
    sets: Sequence[Mapping[str, Mapping[str, Any]]],
    *,
    breakdown: str,
    requested_window: str,
    now: datetime,
    metric_mode: str,
    cluster_name: str,
    multi_cluster: bool,
    top_n: int,
) -> tuple[BreakdownRow, ...]:
    """A whole breakdown answer -> its rows (see BreakdownTotals)."""
    acc = BreakdownTotals(
        breakdown=breakdown,
        requested_window=requested_window,
        now=now,
        metric_mode=metric_mode,
        cluster_name=cluster_name,
        multi_cluster=multi_cluster,
    )
    acc.add(sets)
    return acc.rows(top_n)
