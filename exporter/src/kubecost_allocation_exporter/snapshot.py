"""The namespace query's rows -> an immutable `Snapshot` of the numbers to export.

Rows are kept compact while the pages arrive (`NamespaceRows`: 16 doubles and a name per row,
the decoded page is released before the next one), then `build` computes every number with the
cost functions of `costs.py`. Rules (docs/metrics.md): `__idle__` rows are never namespaces, they
are the cluster's idle cost and part of every cluster cost; `__unallocated__`/`__unmounted__` stay
namespaces; rows of one namespace in several sets are combined; rate mode divides costs (not
efficiencies) by the hours the answer covers. The cardinality guard (`--max-series`) is applied
before the namespaces' values are materialised, so a huge answer never builds them all.
"""

from __future__ import annotations

import logging
import math
import operator
from array import array
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from itertools import compress, islice, repeat
from typing import TypeAlias

from kubecost_allocation_exporter import costs
from kubecost_allocation_exporter.costs import NAN, Costs
from kubecost_allocation_exporter.decode import Page, Row
from kubecost_allocation_exporter.keys import IDLE, AnswerKeys, properties_of, split_key
from kubecost_allocation_exporter.savings import Key, Saving, accumulate, estimates
from kubecost_allocation_exporter.windows import Coverage, Interval, parse_time, row_windows

log = logging.getLogger(__name__)

# Row fields read, in this order: cost fields (base, adjustment), efficiencies, minutes, averages.
FIELDS = (
    *("total_cost", "cpu_cost", "cpu_cost_adjustment", "ram_cost", "ram_cost_adjustment"),
    *("pv_cost", "pv_cost_adjustment", "network_cost", "network_cost_adjustment"),
    *("load_balancer_cost", "load_balancer_cost_adjustment", "gpu_cost", "gpu_cost_adjustment"),
    *("shared_cost", "cpu_efficiency", "ram_efficiency", "total_efficiency", "minutes"),
    *("cpu_core_usage_average", "cpu_core_request_average"),
    *("ram_byte_usage_average", "ram_byte_request_average"),
)
_GETTERS = tuple(map(operator.attrgetter, FIELDS))
_NAME = operator.attrgetter("name")
# Stored columns: 8 cost parts, 3 engine efficiencies, minutes, cpu usage/request, ram usage/request
CPU, RAM, EFF, MINUTES, CPU_USE, CPU_REQ, RAM_USE, RAM_REQ = 1, 2, 8, 11, 12, 13, 14, 15
N_COLUMNS = 16


def row_columns(rows: Sequence[Row]) -> list[list[float]]:
    """The 16 stored columns of rows: cost parts incl. adjustments, efficiencies, minutes (or
    end - start when the row has no `minutes`), usage and request averages."""
    c = [costs.column(list(map(g, rows))) for g in _GETTERS]
    out = [c[0], *(costs.add(c[i], c[i + 1]) for i in (1, 3, 5, 7, 9, 11)), c[13], *c[14:]]
    minutes = out[MINUTES]  # a new list: costs.column never returns a list another column holds
    if not costs.known(minutes):
        for i, m in enumerate(minutes):
            if m - m != 0.0:
                a, b = parse_time(rows[i].start), parse_time(rows[i].end)
                minutes[i] = NAN if a is None or b is None else (b - a) / 60.0
    return out


def row_savings(
    rows: Sequence[Row], columns: Sequence[Sequence[float]] | None = None
) -> list[float]:
    """The savings estimate of every row (savings.estimates) from its stored columns."""
    cols = columns or row_columns(rows)
    return estimates(rows, [cols[i] for i in (CPU, RAM, CPU_USE, CPU_REQ, RAM_USE, RAM_REQ)])


class NamespaceRows:
    """The namespace query's rows, page by page: the namespace (and cluster) of every row and its
    16 numbers in `array('d')` columns; idle rows apart; the distinct windows of all rows."""

    def __init__(self, cluster_name: str, multi_cluster: bool, savings: bool = False) -> None:
        self.cluster_name = cluster_name
        self.multi_cluster = multi_cluster
        self.props = ("cluster", "namespace") if multi_cluster else ("namespace",)
        self.names: list[str] = []
        self.clusters: list[str] = []  # per row, with --multi-cluster only
        self.columns = [array("d") for _ in range(N_COLUMNS)]
        self.savings = array("d") if savings else None  # per non-idle row: the estimate
        self.idle: list[tuple[str, list[float]]] = []  # (cluster, 8 cost parts)
        self.windows: set[Interval] = set()
        self.rows = 0  # rows read, idle included
        self.skipped = 0
        self._answers = AnswerKeys()

    def add(self, page: Page) -> None:
        self.skipped += page.skipped
        for aset in self._answers.new_rows(page):
            if aset:
                self._add_set(aset)

    def _add_set(self, aset: Mapping[str, Row]) -> None:
        keys, rows = list(aset), list(aset.values())
        self.rows += len(rows)
        windows = row_windows(rows)
        if len(windows) > 1:
            log.debug(
                "rows of one set cover %d different windows (%s); costs are divided by their union",
                len(windows),
                ", ".join(f"{(e - s) / 3600:g} h" for s, e in sorted(windows)),
            )
        self.windows |= windows
        columns = row_columns(rows)
        est = row_savings(rows, columns) if self.savings is not None else []
        names, clusters, idle = self._classify(keys, rows)
        if idle:
            self.idle += ((cluster, [c[i] for c in columns[:8]]) for i, cluster in idle.items())
            keep = [i not in idle for i in range(len(rows))]
            columns = [list(compress(c, keep)) for c in columns]
            est = list(compress(est, keep))
        for store, col in zip(self.columns, columns, strict=True):
            store.extend(col)
        if self.savings is not None:
            self.savings.extend(est)
        self.names += names
        if self.multi_cluster:
            self.clusters += clusters

    def estimated(self) -> dict[Key, float]:
        """The savings estimate per (cluster, namespace, "")."""
        keys = zip(self.clusters or repeat(self.cluster_name), self.names, repeat(""))
        if not self.multi_cluster and len(set(self.names)) == len(self.names):
            return dict(zip(keys, self.savings or (), strict=False))  # the usual answer
        out: dict[Key, float] = {}
        for key, value in zip(keys, self.savings or (), strict=False):
            accumulate(out, key, value)
        return out

    def _classify(
        self, keys: list[str], rows: list[Row]
    ) -> tuple[list[str], list[str], dict[int, str]]:
        """Namespace and cluster of the non-idle rows, and the idle rows' clusters by index
        (`split_key` for every row gives the same answer; the usual answer skips it)."""
        names = list(map(_NAME, rows))
        if not self.multi_cluster:
            rest, rest_names, idle = keys, names, {}
            if IDLE in keys:  # the usual idle row
                at = keys.index(IDLE)
                rest, rest_names = keys[:at] + keys[at + 1 :], names[:at] + names[at + 1 :]
                idle = {at: self.cluster_name}
            joined = "\n".join(rest)
            if (
                "/" not in joined
                and IDLE not in joined
                and IDLE not in rest_names
                and "" not in rest
                and list(map(str.strip, rest)) == rest
            ):  # the usual answer: the key is the namespace
                return rest, [], idle
        out_names: list[str] = []
        out_clusters: list[str] = []
        idle = {}
        for i, (key, name) in enumerate(zip(keys, names, strict=True)):
            rk = split_key(key, name, properties_of(rows[i]), self.props)
            cluster = (rk.cluster if self.multi_cluster else None) or self.cluster_name
            if rk.idle:
                idle[i] = cluster
            else:
                out_names.append(rk.values[-1])
                out_clusters.append(cluster)
        return out_names, out_clusters, idle


@dataclass(frozen=True)
class BreakdownRow:
    cluster: str
    breakdown: str
    namespace: str
    value: str
    total: float


@dataclass(frozen=True)
class AssetCost:
    cluster: str
    type: str  # the engine's asset type (Node, Disk, LoadBalancer...) or "total"
    cost: float  # NaN = unknown


@dataclass(frozen=True)
class ClusterSnapshot:
    """One cluster's numbers. Namespaces are in name order; `columns` holds the 11 `Costs`
    fields of every namespace (NaN = unknown), `texts` the exposition text of the 8 cost parts."""

    name: str
    costs: Costs  # every allocation incl. idle
    idle: float | None  # sum of totalCost of the idle rows (0.0 when no idle row; None when null)
    names: tuple[str, ...] = ()
    columns: tuple[Sequence[float], ...] = field(default=(), compare=False, repr=False)
    texts: tuple[list[str], ...] = field(default=(), compare=False, repr=False)

    @cached_property
    def namespaces(self) -> dict[str, Costs]:
        """Every namespace's numbers (empty once `Snapshot.without_values` dropped them)."""
        if not self.columns:
            return {}
        return dict(zip(self.names, map(Costs.of, zip(*self.columns, strict=True)), strict=True))


@dataclass(frozen=True)
class Snapshot:
    clusters: tuple[ClusterSnapshot, ...]
    breakdowns: tuple[BreakdownRow, ...]
    coverage: Coverage
    assets: tuple[AssetCost, ...] = ()  # the Assets API's costs, when read
    savings: tuple[Saving, ...] = ()  # right-sizing savings per namespace and controller

    @property
    def namespace_count(self) -> int:
        return sum(len(c.names) for c in self.clusters)

    def without_values(self) -> Snapshot:
        """The snapshot without its namespaces' numbers and texts (kept between refreshes once the
        exposition is written: the cluster numbers and the names stay, for logs and reuse)."""
        return replace(
            self, clusters=tuple(replace(c, columns=(), texts=()) for c in self.clusters)
        )


def factor(metric_mode: str, cov: Coverage) -> float:
    """What costs are multiplied by: 1 in total mode, 1 / covered hours in rate mode."""
    if metric_mode == "total":
        return 1.0
    return NAN if cov.hours is None else 1.0 / cov.hours


Columns: TypeAlias = "list[array[float]]"  # doubles: 8 bytes per value, not a float object


def _combine(columns: Columns, names: list[str]) -> tuple[list[str], Columns, Columns]:
    """Rows -> one value set per namespace (first-appearance order): cost parts summed,
    efficiencies combined; also the rows in that order (cluster efficiencies are summed so)."""
    if len(set(names)) == len(names):  # every namespace is one row
        return names, columns[:11], columns
    groups: dict[str, list[int]] = {}
    for i, name in enumerate(names):
        groups.setdefault(name, []).append(i)
    rows = [array("d", (c[i] for g in groups.values() for i in g)) for c in columns]
    out = [array("d") for _ in range(11)]
    for g in groups.values():
        if len(g) == 1:
            values = [columns[j][g[0]] for j in range(11)]
        else:
            cols = [[columns[j][i] for i in g] for j in range(N_COLUMNS)]
            values = [*map(sum, cols[:8]), *_efficiencies(cols)]
        for j, v in enumerate(values):
            out[j].append(v)
    return list(groups), out, rows


def _efficiencies(rows: Sequence[Sequence[float]]) -> list[float]:
    """cpu, ram and total efficiency of rows (one row: its own; none: unknown)."""
    if len(rows[0]) == 1:
        return [rows[EFF][0], rows[EFF + 1][0], rows[EFF + 2][0]]
    cpu_e = costs.efficiency(rows[CPU_USE], rows[CPU_REQ], rows[MINUTES], rows[CPU], rows[EFF])
    ram_e = costs.efficiency(rows[RAM_USE], rows[RAM_REQ], rows[MINUTES], rows[RAM], rows[EFF + 1])
    return [cpu_e, ram_e, costs.total_efficiency(cpu_e, ram_e, sum(rows[CPU]), sum(rows[RAM]))]


@dataclass
class _Cluster:
    name: str
    names: list[str]  # sorted
    values: Columns  # 11 columns, unscaled, in `names` order
    idle: list[float] | None  # 8 cost parts summed, unscaled
    efficiencies: list[float]


def _clusters(rows: NamespaceRows) -> list[_Cluster]:
    by_cluster: dict[str, list[int]] = {}
    if rows.multi_cluster:
        for i, c in enumerate(rows.clusters):
            by_cluster.setdefault(c, []).append(i)
    elif rows.names:
        by_cluster[rows.cluster_name] = []  # empty: all rows, without copying them by index
    idle: dict[str, list[list[float]]] = {}
    for cluster, parts in rows.idle:
        idle.setdefault(cluster, []).append(parts)
    out = []
    for cluster in sorted(set(by_cluster) | set(idle)):
        index = by_cluster.get(cluster)
        if index is None:
            names, columns = [], [array("d") for _ in range(N_COLUMNS)]
        elif not index:  # all rows: the stored columns, given up by the store as they are sorted
            names, columns = rows.names, rows.columns
            rows.columns = []
        else:
            names = [rows.names[i] for i in index]
            columns = [array("d", map(c.__getitem__, index)) for c in rows.columns]
        order, values, ordered_rows = _combine(columns, names)
        effs = _efficiencies(ordered_rows)
        del columns, ordered_rows
        sort = sorted(range(len(order)), key=order.__getitem__)
        sorted_values = []
        for j in range(len(values)):  # one column at a time, each given up once sorted
            sorted_values.append(array("d", map(values[j].__getitem__, sort)))
            values[j] = array("d")
        del sort, values
        group = idle.get(cluster, [])  # one row: as it is (a sum would turn -0.0 into 0.0)
        idle_parts = (
            group[0] if len(group) == 1 else [sum(p, 0.0) for p in zip(*group, strict=True)] or None
        )
        out.append(_Cluster(cluster, sorted(order), sorted_values, idle_parts, effs))
    return out


def build(
    rows: NamespaceRows, cov: Coverage, metric_mode: str, max_series: int
) -> tuple[Snapshot, int]:
    """The snapshot of the namespace query and how many of its series the cardinality guard left
    out: at most `max_series` cost series (0 = no cap), counting cluster series first (always
    kept: cluster costs still cover every allocation), then namespaces by total cost, most
    expensive first, each with all its series. Breakdown rows come after (`cap_breakdowns`)."""
    f = factor(metric_mode, cov)
    clusters = _clusters(rows)
    per_cluster = 1 + (cov.start is not None) + (cov.end is not None) + (cov.ratio is not None)
    upper = sum(len(Costs._fields) + 1 + per_cluster + 11 * len(c.names) for c in clusters)
    may_cap = 0 < max_series < upper
    built = [_tidied(c, f, keep_texts=not may_cap) for c in clusters]
    keep: list[list[bool] | None] = [None] * len(clusters)
    dropped = 0
    if may_cap:
        used = sum(
            _count(b.sums) + _count(c.efficiencies) + _count((b.idle,)) + per_cluster
            for c, b in zip(clusters, built, strict=True)
        )
        counts = [n for b in built for n in b.counts]  # clusters by name, namespaces by name
        if used + sum(counts) > max_series:
            # most expensive first, unknown totals last; the sort is stable, so equal totals stay
            # in (cluster, namespace) order. One float per namespace, not a tuple.
            key = [-t if t - t == 0.0 else math.inf for b in built for t in b.parts[0]]
            chosen = bytearray(len(counts))
            budget = max_series - used
            for i in sorted(range(len(counts)), key=key.__getitem__):
                if counts[i] > budget:
                    break
                chosen[i] = 1
                budget -= counts[i]
            dropped = sum(compress(counts, map((0).__eq__, chosen)))
            marks = map(bool, chosen)
            keep = [list(islice(marks, len(c.names))) for c in clusters]
    out = []
    for c, b, mask in zip(clusters, built, keep, strict=True):
        values: Sequence[Sequence[float]] = c.values
        if mask is not None:
            values = [list(compress(v, mask)) for v in c.values]
        if b.texts is None:  # the kept namespaces' texts, tidied again
            done = [costs.tidy_all(costs.scale(v, f)) for v in values[:8]]
            parts, texts = [d[0] for d in done], [d[1] for d in done]
        else:
            parts, texts = b.parts, b.texts
        out.append(
            ClusterSnapshot(
                name=c.name,
                costs=Costs.of((*b.sums, *c.efficiencies)),
                # We always ask with idle=true: no __idle__ row means no unshared idle (shareIdle
                # spread it over the namespaces, or there was none), i.e. 0 — not unknown. Only a
                # null totalCost on an idle row leaves it unknown (series omitted).
                idle=b.idle if b.idle - b.idle == 0.0 else None,
                names=tuple(c.names if mask is None else compress(c.names, mask)),
                columns=(*parts, *values[8:]),
                texts=tuple(texts),
            )
        )
    return Snapshot(tuple(out), (), cov), dropped


@dataclass
class _Tidied:
    parts: list[list[float]]  # 8 cost parts, scaled and tidied
    texts: list[list[str]] | None  # their exposition texts (None: not kept)
    sums: list[float]  # cluster cost parts: namespaces and idle
    idle: float  # cluster idle cost (0.0 without an idle row)
    counts: list[int]  # known series per namespace


def _tidied(c: _Cluster, f: float, keep_texts: bool) -> _Tidied:
    parts: list[list[float]] = []
    texts: list[list[str]] = []
    sums = []
    idle = [costs.tidy(v * f) for v in c.idle] if c.idle is not None else None
    counts = [0] * len(c.names)  # only needed (and only counted) when the guard may cut
    for j, col in enumerate(c.values):
        values: Sequence[float] = col
        if j < 8:
            tidied, text = costs.tidy_all(costs.scale(col, f))
            sums.append(costs.sum_known(tidied + ([idle[j]] if idle is not None else [])))
            if keep_texts or j == 0:  # without texts only the totals (ranking) are needed
                parts.append(tidied)
            if keep_texts:
                texts.append(text)
            values = tidied
            del text
        if not keep_texts:
            finite = map((0.0).__eq__, map(operator.sub, values, values))
            counts = list(map(operator.add, counts, finite))
    return _Tidied(parts, texts if keep_texts else None, sums, idle[0] if idle else 0.0, counts)


def _count(values: Iterable[float]) -> int:
    return sum(1 for v in values if v - v == 0.0)


def cap_breakdowns(
    snapshot: Snapshot,
    rows: Sequence[BreakdownRow],
    max_series: int,
    savings: Sequence[Saving] = (),
) -> tuple[Snapshot, int]:
    """Breakdown rows, then savings, after the namespaces: as many as fit in the series left by
    `max_series`. Returns the snapshot with them and how many were left out."""
    if max_series <= 0:
        return replace(snapshot, breakdowns=tuple(rows), savings=tuple(savings)), 0
    cov = snapshot.coverage
    per_cluster = 1 + (cov.start is not None) + (cov.end is not None) + (cov.ratio is not None)
    used = sum(
        sum(v is not None for v in c.costs)
        + (c.idle is not None)
        + per_cluster
        + sum(map(_count, c.columns))
        for c in snapshot.clusters
    )
    room = max(max_series - used, 0)
    left = max(room - len(rows), 0)
    dropped = max(len(rows) - room, 0) + max(len(savings) - left, 0)
    return replace(snapshot, breakdowns=tuple(rows[:room]), savings=tuple(savings[:left])), dropped
