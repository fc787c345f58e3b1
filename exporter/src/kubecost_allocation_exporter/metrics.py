"""Snapshot -> metric families -> exposition bytes (own CollectorRegistry, no global state).

Rendering happens once per refresh: the cost part and the health part are rendered to bytes
separately, so `/metrics` only concatenates bytes (and drops the cost part once it is stale).
The metric names and labels here are a contract with the platform (issue 2); docs/metrics.md
documents each one.
"""

from __future__ import annotations

import operator
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import chain, repeat
from typing import cast

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector, CollectorRegistry

from kubecost_allocation_exporter import __version__
from kubecost_allocation_exporter.config import Config
from kubecost_allocation_exporter.kubecost import REASONS
from kubecost_allocation_exporter.model import Costs, Coverage, Snapshot

PREFIX = "cloudtuner_kubecost_"
CURRENCY = "USD"
BASE = ("cluster", "tenant_id")
NS = ("cluster", "tenant_id", "namespace")

# (part, metric name suffix, source description) in exposition order.
CLUSTER_COSTS: tuple[tuple[str, str], ...] = (
    ("total", "totalCost"),
    ("cpu", "cpuCost + cpuCostAdjustment"),
    ("ram", "ramCost + ramCostAdjustment"),
    ("pv", "pvCost + pvCostAdjustment"),
    ("network", "networkCost + networkCostAdjustment"),
    ("lb", "loadBalancerCost + loadBalancerCostAdjustment"),
    ("gpu", "gpuCost + gpuCostAdjustment"),
    ("shared", "sharedCost"),
)
NAMESPACE_COSTS = CLUSTER_COSTS
EFFICIENCY_SOURCES = {
    "cpu": "cpuEfficiency (cpuCoreUsageAverage / cpuCoreRequestAverage)",
    "ram": "ramEfficiency (ramByteUsageAverage / ramByteRequestAverage)",
    "total": "totalEfficiency (cost-weighted CPU and RAM efficiency)",
}

# Every family name, for docs and tests.
COST_METRIC_NAMES: tuple[str, ...] = (
    *(f"{PREFIX}cluster_{p}_cost" for p, _ in CLUSTER_COSTS),
    f"{PREFIX}cluster_idle_cost",
    *(f"{PREFIX}cluster_{e}_efficiency" for e in EFFICIENCY_SOURCES),
    *(f"{PREFIX}namespace_{p}_cost" for p, _ in NAMESPACE_COSTS),
    *(f"{PREFIX}namespace_{e}_efficiency" for e in EFFICIENCY_SOURCES),
    f"{PREFIX}breakdown_total_cost",
    f"{PREFIX}exported_namespaces",
    f"{PREFIX}window_start_timestamp_seconds",
    f"{PREFIX}window_end_timestamp_seconds",
)
HEALTH_METRIC_NAMES: tuple[str, ...] = (
    f"{PREFIX}scrape_success",
    f"{PREFIX}scrape_duration_seconds",
    f"{PREFIX}scrape_errors_total",
    f"{PREFIX}dropped_series_total",
    f"{PREFIX}last_success_timestamp_seconds",
    f"{PREFIX}exporter_info",
)


@dataclass(frozen=True)
class Health:
    """Health of the last refresh (what the health series show)."""

    success: bool | None  # None: no refresh finished yet
    duration_seconds: float | None
    errors: dict[str, int]  # reason -> count since start
    last_success_timestamp: float | None  # unix seconds
    api_flavour: str  # "kubecost", "opencost" or "unknown" before auto-detection
    dropped_series: int = 0  # cost series left out by --max-series since start


class _Families(Collector):
    def __init__(self, families: Sequence[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterator[Metric]:
        yield from self._families


def render(families: Iterable[Metric]) -> bytes:
    """Exposition text (format 0.0.4) of the families through a private CollectorRegistry."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(list(families)))
    return generate_latest(registry)


def _unit(cfg: Config) -> str:
    if cfg.metric_mode == "rate":
        return "USD per hour (cost over the queried window divided by its elapsed hours)"
    return "USD over the queried window"


def _cached(cfg: Config) -> str:
    share = "true" if cfg.share_idle == "weighted" else "false"
    return (
        f"Kubecost Allocation API, accumulate=true, shareIdle={share}; cached, refreshed in the "
        f"background every {cfg.refresh_interval:g}s."
    )


@dataclass(frozen=True)
class Series:
    """One gauge family before rendering: name, HELP, label names and samples."""

    name: str
    help: str
    labels: tuple[str, ...]
    samples: list[tuple[tuple[str, ...], float]]


def cost_series(snapshot: Snapshot, cfg: Config) -> list[Series]:
    """The cost part; families with no sample are left out of the exposition."""
    return [s for s in _all_series(snapshot, cfg) if s.samples]


def _families_help(cfg: Config) -> list[Series]:
    """Every cost family with its HELP text (no samples)."""
    empty = Snapshot((), (), Coverage(None, None, None), cfg.metric_mode, 0)
    return _all_series(empty, cfg)


def _all_series(snapshot: Snapshot, cfg: Config) -> list[Series]:
    unit, cached = _unit(cfg), _cached(cfg)
    tenant = cfg.tenant_id
    out: list[Series] = []

    def add(name: str, help_: str, labels: tuple[str, ...]) -> list[tuple[tuple[str, ...], float]]:
        samples: list[tuple[tuple[str, ...], float]] = []
        out.append(Series(name, help_, labels, samples))
        return samples

    for part, source in CLUSTER_COSTS:
        samples = add(
            f"{PREFIX}cluster_{part}_cost",
            f"Cluster {part} cost: sum of {source} over all allocations incl. __idle__, {unit}. "
            + cached,
            BASE,
        )
        for c in snapshot.clusters:
            v = c.costs.part(part)
            if v is not None:
                samples.append(((c.name, tenant), v))
    samples = add(
        f"{PREFIX}cluster_idle_cost",
        f"Cluster idle cost: totalCost of the __idle__ allocations (part of cluster_total_cost, "
        f"never a namespace; 0 when shareIdle spread idle over the namespaces), {unit}. " + cached,
        BASE,
    )
    for c in snapshot.clusters:
        if c.idle is not None:
            samples.append(((c.name, tenant), c.idle))
    for eff, source in EFFICIENCY_SOURCES.items():
        samples = add(
            f"{PREFIX}cluster_{eff}_efficiency",
            f"Cluster {eff} efficiency ratio (may exceed 1, not a percentage): {source} over all "
            f"non-idle allocations, combined as Kubecost aggregates them. " + cached,
            BASE,
        )
        for c in snapshot.clusters:
            v = c.costs.part(f"{eff}_efficiency")
            if v is not None:
                samples.append(((c.name, tenant), v))

    ns_keys = {(c.name, ns): (c.name, tenant, ns) for c in snapshot.clusters for ns in c.namespaces}
    for part, source in NAMESPACE_COSTS:
        samples = add(
            f"{PREFIX}namespace_{part}_cost",
            f"Namespace {part} cost: {source} of the namespace allocation, {unit}. " + cached,
            NS,
        )
        for c in snapshot.clusters:
            for ns, costs in c.namespaces.items():
                v = getattr(costs, part)
                if v is not None:
                    samples.append((ns_keys[(c.name, ns)], v))
    for eff, source in EFFICIENCY_SOURCES.items():
        samples = add(
            f"{PREFIX}namespace_{eff}_efficiency",
            f"Namespace {eff} efficiency ratio (may exceed 1, not a percentage): {source}. "
            + cached,
            NS,
        )
        attr = f"{eff}_efficiency"
        for c in snapshot.clusters:
            for ns, costs in c.namespaces.items():
                v = getattr(costs, attr)
                if v is not None:
                    samples.append((ns_keys[(c.name, ns)], v))

    samples = add(
        f"{PREFIX}breakdown_total_cost",
        f"totalCost per extra breakdown (--breakdowns): the top N values by cost per cluster and "
        f"one __other__ series with the rest; idle excluded, {unit}. " + cached,
        ("cluster", "tenant_id", "breakdown", "namespace", "value"),
    )
    for row in snapshot.breakdowns:
        samples.append(((row.cluster, tenant, row.breakdown, row.namespace, row.value), row.total))

    samples = add(
        f"{PREFIX}exported_namespaces",
        "Number of namespaces exported for the cluster in the current snapshot.",
        BASE,
    )
    for c in snapshot.clusters:
        samples.append(((c.name, tenant), float(len(c.namespaces))))
    cov = snapshot.coverage
    for edge, when in (("start", cov.start), ("end", cov.end)):
        samples = add(
            f"{PREFIX}window_{edge}_timestamp_seconds",
            f"{edge.capitalize()} of the time the current numbers cover (union of the returned "
            "windows, end clamped to the query time), unix seconds.",
            BASE,
        )
        if when is not None:
            for c in snapshot.clusters:
                samples.append(((c.name, tenant), when.timestamp()))
    # Last line of defence: a sum or ratio that overflowed is unknown, never +Inf/NaN.
    for series in out:
        if any(v - v != 0.0 for _, v in series.samples):
            series.samples[:] = [(k, v) for k, v in series.samples if v - v == 0.0]
    return out


def cost_families(snapshot: Snapshot, cfg: Config) -> list[Metric]:
    """The cost part as prometheus_client families (for a CollectorRegistry)."""
    fams: list[Metric] = []
    for series in cost_series(snapshot, cfg):
        g = GaugeMetricFamily(series.name, series.help, labels=series.labels)
        for values, v in series.samples:
            g.add_metric(list(values), v)
        fams.append(g)
    return fams


def _escape_value(v: str) -> str:
    if "\\" in v or "\n" in v or '"' in v:
        return v.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")
    return v


def _go_float(v: float) -> str:
    """prometheus_client's floatToGoString for finite values (Go-style exponent when large)."""
    r = repr(v)
    dot = r.find(".")
    if v > 0 and dot > 6:
        mantissa = f"{r[0]}.{r[1:dot]}{r[dot + 1 :]}".rstrip("0.")
        return f"{mantissa}e+{dot - 1:02d}"
    return r


def _fmt(v: float) -> str:
    return repr(v) if v < 1e6 else _go_float(v)


def render_costs(snapshot: Snapshot, cfg: Config) -> bytes:
    """The cost part rendered directly: byte for byte what `render(cost_families(...))` gives
    (a test checks it). One pass per family over pre-escaped label strings and a single join: no
    Sample objects, no per-sample tuples (110k samples at 10k namespaces)."""
    out: list[str] = []
    append = out.append
    tenant = _escape_value(cfg.tenant_id)
    clusters = snapshot.clusters
    base_labels = [(f'cluster="{_escape_value(c.name)}",tenant_id="{tenant}"', c) for c in clusters]
    # every namespace's label string up to the value (`...,tenant_id="t"} `), built with C-level
    # maps; names are escaped one by one only when one of them needs it
    labs: list[str] = []
    ns_costs: list[Costs] = []
    for c in clusters:
        names: Iterable[str] = c.namespaces
        joined = "".join(names)
        if "\\" in joined or "\n" in joined or '"' in joined:
            names = map(_escape_value, names)
        first = f'cluster="{_escape_value(c.name)}",namespace="'
        labs += map(operator.add, map(first.__add__, names), repeat(f'",tenant_id="{tenant}"}} '))
        ns_costs += c.namespaces.values()
    helps = {s.name: s.help for s in _families_help(cfg)}

    def head(name: str) -> None:
        doc = helps[name].replace("\\", r"\\").replace("\n", r"\n")
        append(f"# HELP {name} {doc}\n# TYPE {name} gauge\n")

    def cluster_family(name: str, values: list[tuple[str, float | None]]) -> None:
        lines = [
            f"{name}{{{lab}}} {_fmt(v)}\n" for lab, v in values if v is not None and v - v == 0.0
        ]
        if lines:
            head(name)
            append("".join(lines))

    for part, _ in CLUSTER_COSTS:
        cluster_family(
            f"{PREFIX}cluster_{part}_cost", [(lab, c.costs.part(part)) for lab, c in base_labels]
        )
    cluster_family(f"{PREFIX}cluster_idle_cost", [(lab, c.idle) for lab, c in base_labels])
    for eff in EFFICIENCY_SOURCES:
        cluster_family(
            f"{PREFIX}cluster_{eff}_efficiency",
            [(lab, c.costs.part(f"{eff}_efficiency")) for lab, c in base_labels],
        )
    fields = [f"{PREFIX}namespace_{p}_cost" for p, _ in NAMESPACE_COSTS] + [
        f"{PREFIX}namespace_{e}_efficiency" for e in EFFICIENCY_SOURCES
    ]
    # the fast path hands over its columns (all finite floats); else transpose the Costs rows
    finite = all(c.columns is not None for c in clusters)
    columns: list[Sequence[float | None]]
    if finite and len(clusters) == 1 and clusters[0].columns is not None:
        columns = list(clusters[0].columns)
    elif finite:
        columns = [
            list(chain.from_iterable(c.columns[i] for c in clusters if c.columns is not None))
            for i in range(len(fields))
        ]
    else:
        columns = list(zip(*ns_costs, strict=True)) if ns_costs else []
    have_texts = all(c.texts is not None for c in clusters)
    for idx, name in enumerate(fields):  # Costs fields: 8 parts, then 3 efficiencies
        pre = name + "{"
        col = columns[idx] if columns else ()
        known = finite or (None not in col and sum(col) - sum(col) == 0.0)  # type: ignore[arg-type]
        if col and known and max(cast(Sequence[float], col)) < 1e6:
            # every value known, finite and below 1e6 (repr): one join over C-level maps, with
            # the text the model kept from tidying when it has it
            texts: Iterable[str] = map(repr, col)
            if idx < len(NAMESPACE_COSTS) and have_texts:
                texts = chain.from_iterable(c.texts[idx] for c in clusters if c.texts)
            head(name)
            out += chain.from_iterable(zip(repeat(pre), labs, texts, repeat("\n"), strict=False))
            continue
        lines = [
            f"{pre}{lab}{repr(v) if v < 1e6 else _go_float(v)}\n"
            for lab, costs in zip(labs, ns_costs, strict=True)
            if (v := costs[idx]) is not None and v - v == 0.0
        ]
        if lines:
            head(name)
            append("".join(lines))
    name = f"{PREFIX}breakdown_total_cost"
    lines = []
    for row in snapshot.breakdowns:
        v = row.total
        if v - v == 0.0:
            lab = (
                f'breakdown="{_escape_value(row.breakdown)}",cluster="{_escape_value(row.cluster)}",'
                f'namespace="{_escape_value(row.namespace)}",tenant_id="{tenant}",'
                f'value="{_escape_value(row.value)}"'
            )
            lines.append(f"{name}{{{lab}}} {_fmt(v)}\n")
    if lines:
        head(name)
        append("".join(lines))
    cluster_family(
        f"{PREFIX}exported_namespaces",
        [(lab, float(len(c.namespaces))) for lab, c in base_labels],
    )
    cov = snapshot.coverage
    for edge, when in (("start", cov.start), ("end", cov.end)):
        ts = when.timestamp() if when is not None else None
        cluster_family(
            f"{PREFIX}window_{edge}_timestamp_seconds", [(lab, ts) for lab, _ in base_labels]
        )
    return "".join(out).encode("utf-8")


def health_families(health: Health, cfg: Config) -> list[Metric]:
    labels = [cfg.cluster_name, cfg.tenant_id]
    fams: list[Metric] = []

    def single(family: GaugeMetricFamily | CounterMetricFamily, value: float | None) -> None:
        """One family with one sample for (cluster, tenant_id); no sample when unknown."""
        if value is not None:
            family.add_metric(labels, value)
        fams.append(family)

    success = None if health.success is None else (1.0 if health.success else 0.0)
    single(
        GaugeMetricFamily(
            f"{PREFIX}scrape_success",
            "1 if the last query of the Kubecost Allocation API (background refresh) "
            "succeeded, else 0.",
            labels=BASE,
        ),
        success,
    )
    single(
        GaugeMetricFamily(
            f"{PREFIX}scrape_duration_seconds",
            "Duration of the last background refresh (API queries, parsing, rendering), seconds.",
            labels=BASE,
        ),
        health.duration_seconds,
    )
    c = CounterMetricFamily(
        f"{PREFIX}scrape_errors",
        "Failed background refreshes since start, by reason (" + ", ".join(REASONS) + ").",
        labels=(*BASE, "reason"),
    )
    for reason in REASONS:
        c.add_metric([*labels, reason], float(health.errors.get(reason, 0)))
    fams.append(c)
    single(
        CounterMetricFamily(
            f"{PREFIX}dropped_series",
            "Cost series left out by the cardinality guard (--max-series) since start, summed over "
            "refreshes (the cheapest namespaces first; cluster series are always kept).",
            labels=BASE,
        ),
        float(health.dropped_series),
    )
    single(
        GaugeMetricFamily(
            f"{PREFIX}last_success_timestamp_seconds",
            "Unix time of the last successful refresh (absent until the first one).",
            labels=BASE,
        ),
        health.last_success_timestamp,
    )
    info = InfoMetricFamily(
        f"{PREFIX}exporter",
        "Exporter build and settings: version, API flavour, metric mode, window, currency.",
        labels=BASE,
    )
    info.add_metric(
        labels,
        {
            "version": __version__,
            "api": health.api_flavour,
            "metric_mode": cfg.metric_mode,
            "window": cfg.window_label,
            "currency": CURRENCY,
            "share_idle": cfg.share_idle,
            "multi_cluster": "true" if cfg.multi_cluster else "false",
        },
    )
    fams.append(info)
    return [f for f in fams if f.samples]
