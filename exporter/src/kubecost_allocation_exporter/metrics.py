"""Snapshot and health -> exposition text (format 0.0.4): the one exposition writer.

Rendering happens once per refresh: the cost part and the health part are written to bytes
separately, so `/metrics` only concatenates bytes (and drops the cost part once it is stale). The
text is byte for byte what prometheus_client's `generate_latest` writes for the same families on a
private registry (a test compares them), written without Metric or Sample objects: one pass per
family over pre-escaped label strings and one join (110,000 samples at 10,000 namespaces). The
metric names and labels are a contract with the platform; docs/metrics.md documents each one.
"""

from __future__ import annotations

import operator
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import chain, compress, repeat
from typing import Any

from kubecost_allocation_exporter import __version__
from kubecost_allocation_exporter.config import Config
from kubecost_allocation_exporter.decode import REASONS
from kubecost_allocation_exporter.snapshot import Snapshot

PREFIX = "cloudtuner_kubecost_"
CURRENCY = "USD"
# (part, source) in exposition order; the same for cluster and namespace series.
COST_SOURCES: tuple[tuple[str, str], ...] = (
    ("total", "totalCost"),
    ("cpu", "cpuCost + cpuCostAdjustment"),
    ("ram", "ramCost + ramCostAdjustment"),
    ("pv", "pvCost + pvCostAdjustment"),
    ("network", "networkCost + networkCostAdjustment"),
    ("lb", "loadBalancerCost + loadBalancerCostAdjustment"),
    ("gpu", "gpuCost + gpuCostAdjustment"),
    ("shared", "sharedCost"),
)
EFFICIENCY_SOURCES = {
    "cpu": "cpuEfficiency (cpuCoreUsageAverage / cpuCoreRequestAverage)",
    "ram": "ramEfficiency (ramByteUsageAverage / ramByteRequestAverage)",
    "total": "totalEfficiency (cost-weighted CPU and RAM efficiency)",
}
WINDOW_SERIES = ("start_timestamp_seconds", "end_timestamp_seconds", "coverage_ratio")
COST_METRIC_NAMES: tuple[str, ...] = (
    *(f"{PREFIX}cluster_{p}_cost" for p, _ in COST_SOURCES),
    f"{PREFIX}cluster_idle_cost",
    *(f"{PREFIX}cluster_{e}_efficiency" for e in EFFICIENCY_SOURCES),
    *(f"{PREFIX}namespace_{p}_cost" for p, _ in COST_SOURCES),
    *(f"{PREFIX}namespace_{e}_efficiency" for e in EFFICIENCY_SOURCES),
    f"{PREFIX}breakdown_total_cost",
    f"{PREFIX}exported_namespaces",
    *(f"{PREFIX}window_{s}" for s in WINDOW_SERIES),
    f"{PREFIX}cluster_assets_cost",
    f"{PREFIX}namespace_savings_monthly",
    f"{PREFIX}controller_savings_monthly",
)
HEALTH_METRIC_NAMES: tuple[str, ...] = (
    f"{PREFIX}scrape_success",
    f"{PREFIX}scrape_duration_seconds",
    f"{PREFIX}scrape_errors_total",
    f"{PREFIX}dropped_series_total",
    f"{PREFIX}last_success_timestamp_seconds",
    f"{PREFIX}exporter_info",
)


@dataclass
class Health:
    """State of the last refresh (what the health series show)."""

    success: bool | None  # None: no refresh finished yet
    duration_seconds: float | None
    errors: dict[str, int] = field(default_factory=dict)  # reason -> count since start
    last_success_timestamp: float | None = None  # unix seconds
    api_flavour: str = "unknown"  # "kubecost", "opencost" or "unknown" before auto-detection
    dropped_series: int = 0  # cost series left out by --max-series since start
    assets: str = "unknown"  # the Assets API: present, absent, failed, disabled (unknown before)
    savings_api: str = "unknown"  # the request-sizing API: the same states


def _escape(v: str) -> str:
    if "\\" in v or "\n" in v or '"' in v:
        return v.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")
    return v


def _fmt(v: float) -> str:
    """prometheus_client's floatToGoString for finite values (Go-style exponent when large)."""
    r = repr(v)
    dot = r.find(".")
    if v >= 1e6 and dot > 6:
        mantissa = f"{r[0]}.{r[1:dot]}{r[dot + 1 :]}".rstrip("0.")
        return f"{mantissa}e+{dot - 1:02d}"
    return r


class _Text:
    """The exposition as bytes, one piece per family (so a 10 MB exposition is never also held as
    one str); each family is written only when it has samples."""

    def __init__(self) -> None:
        self.out: list[bytes] = []

    def family(self, name: str, doc: str, lines: Sequence[str], kind: str = "gauge") -> None:
        if lines:
            doc = doc.replace("\\", r"\\").replace("\n", r"\n")
            self.out.append(f"# HELP {name} {doc}\n# TYPE {name} {kind}\n".encode())
            self.out.append("".join(lines).encode())

    def samples(
        self, name: str, doc: str, pairs: Iterable[tuple[str, float | None]], kind: str = "gauge"
    ) -> None:
        """One sample per (label string, value); unknown and non-finite values are left out."""
        lines = [
            f"{name}{{{lab}}} {_fmt(v)}\n" for lab, v in pairs if v is not None and v - v == 0.0
        ]
        self.family(name, doc, lines, kind)

    def bytes(self) -> bytes:
        return b"".join(self.out)


def cost_help(cfg: Config) -> dict[str, str]:
    """The HELP text of every cost family."""
    unit = "USD over the queried window"
    if cfg.metric_mode == "rate":
        unit = "USD per hour (cost over the queried window divided by its elapsed hours)"
    share = "true" if cfg.share_idle == "weighted" else "false"
    cached = (
        f"Kubecost Allocation API, accumulate=true, shareIdle={share}; cached, refreshed in the "
        f"background every {cfg.refresh_interval:g}s."
    )
    eff = "efficiency ratio (may exceed 1, not a percentage)"
    helps = {
        f"{PREFIX}cluster_{p}_cost": f"Cluster {p} cost: sum of {src} over all allocations incl. "
        f"__idle__, {unit}. {cached}"
        for p, src in COST_SOURCES
    }
    helps[f"{PREFIX}cluster_idle_cost"] = (
        "Cluster idle cost: totalCost of the __idle__ allocations (part of cluster_total_cost, "
        f"never a namespace; 0 when shareIdle spread idle over the namespaces), {unit}. {cached}"
    )
    for e, src in EFFICIENCY_SOURCES.items():
        helps[f"{PREFIX}cluster_{e}_efficiency"] = (
            f"Cluster {e} {eff}: {src} over all non-idle allocations, combined as Kubecost "
            f"aggregates them. {cached}"
        )
    for p, src in COST_SOURCES:
        helps[f"{PREFIX}namespace_{p}_cost"] = (
            f"Namespace {p} cost: {src} of the namespace allocation, {unit}. {cached}"
        )
    for e, src in EFFICIENCY_SOURCES.items():
        helps[f"{PREFIX}namespace_{e}_efficiency"] = f"Namespace {e} {eff}: {src}. {cached}"
    helps[f"{PREFIX}breakdown_total_cost"] = (
        "totalCost per extra breakdown (--breakdowns): the top N values by cost per cluster and "
        f"one __other__ series with the rest; idle excluded, {unit}. {cached}"
    )
    helps[f"{PREFIX}exported_namespaces"] = (
        "Number of namespaces exported for the cluster in the current snapshot."
    )
    for edge in ("start", "end"):
        helps[f"{PREFIX}window_{edge}_timestamp_seconds"] = (
            f"{edge.capitalize()} of the time the current numbers cover (union of the returned "
            "windows, end clamped to the query time), unix seconds."
        )
    helps[f"{PREFIX}window_coverage_ratio"] = (
        "Share of the requested window the current numbers cover: covered / requested minutes "
        "(1 = all of it; less when Kubecost has data for part of it). In rate mode costs are "
        "divided by the covered hours."
    )
    helps[f"{PREFIX}cluster_assets_cost"] = (
        "Cost of the cluster's assets (Assets API totalCost, by asset type; type=total is their "
        f"sum) for the same window as the allocations, {unit}. Allocations incl. idle "
        "(cluster_total_cost) should add up to type=total."
    )
    for level in ("namespace", "controller"):
        helps[f"{PREFIX}{level}_savings_monthly"] = (
            f"Right-sizing saving per {level}, USD per month (whatever --metric-mode): "
            "source=recommendation is Kubecost's request-sizing recommendations (--savings api), "
            "source=estimate the requests above the average usage at the allocations' own unit "
            "prices x 730 h (docs/metrics.md)."
            + (" The top N per cluster, the rest in __other__." if level == "controller" else "")
        )
    return helps


def render_costs(snapshot: Snapshot, cfg: Config) -> bytes:
    """The cost part of the exposition."""
    w, helps = _Text(), cost_help(cfg)

    def put(name: str, pairs: Iterable[tuple[str, float | None]]) -> None:
        w.samples(name, helps[name], pairs)

    tenant = _escape(cfg.tenant_id)
    clusters = snapshot.clusters
    base = [(f'cluster="{_escape(c.name)}",tenant_id="{tenant}"', c) for c in clusters]
    for i, (part, _) in enumerate(COST_SOURCES):
        put(f"{PREFIX}cluster_{part}_cost", ((lab, c.costs[i]) for lab, c in base))
    put(f"{PREFIX}cluster_idle_cost", ((lab, c.idle) for lab, c in base))
    for i, e in enumerate(EFFICIENCY_SOURCES):
        put(f"{PREFIX}cluster_{e}_efficiency", ((lab, c.costs[8 + i]) for lab, c in base))
    # every namespace's label string up to the value (`...,tenant_id="t"} `), built with C-level
    # maps; names are escaped one by one only when one of them needs it
    labs: list[str] = []
    for c in clusters:
        names: Iterable[str] = c.names
        joined = "".join(c.names)
        if "\\" in joined or "\n" in joined or '"' in joined:
            names = map(_escape, names)
        first = f'cluster="{_escape(c.name)}",namespace="'
        labs += map(operator.add, map(first.__add__, names), repeat(f'",tenant_id="{tenant}"}} '))
    fields = [f"{PREFIX}namespace_{p}_cost" for p, _ in COST_SOURCES]
    fields += [f"{PREFIX}namespace_{e}_efficiency" for e in EFFICIENCY_SOURCES]
    for idx, name in enumerate(fields):
        pre = name + "{"
        col: Sequence[float] = (
            [v for c in clusters for v in c.columns[idx]]
            if len(clusters) != 1
            else clusters[0].columns[idx]
        )
        texts: Iterable[str] = map(repr, col)  # what the text of a value below 1e6 is
        if idx < 8:  # the cost parts: the text kept from tidying
            texts = chain.from_iterable(c.texts[idx] for c in clusters)
        names_, known = labs, True
        total = sum(col)
        if total - total != 0.0:  # unknown values are left out (NaN, or a sum that overflowed)
            keep = list(map((0.0).__eq__, map(operator.sub, col, col)))
            names_, col, texts = (
                list(compress(labs, keep)),
                list(compress(col, keep)),
                compress(texts, keep),
            )
            known = bool(col)
        if known and col and max(col) < 1e6:
            # one join over C-level maps (no Python work per sample)
            pieces = chain.from_iterable(zip(repeat(pre), names_, texts, repeat("\n")))
            w.family(name, helps[name], ["".join(pieces)])
        else:
            lines = [f"{pre}{lab}{_fmt(v)}\n" for lab, v in zip(names_, col, strict=True)]
            w.family(name, helps[name], lines)
    breakdowns = [
        (
            f'breakdown="{_escape(r.breakdown)}",cluster="{_escape(r.cluster)}",'
            f'namespace="{_escape(r.namespace)}",tenant_id="{tenant}",value="{_escape(r.value)}"',
            r.total,
        )
        for r in snapshot.breakdowns
    ]
    put(f"{PREFIX}breakdown_total_cost", breakdowns)
    put(f"{PREFIX}exported_namespaces", ((lab, float(len(c.names))) for lab, c in base))
    cov = snapshot.coverage
    for series, value in zip(WINDOW_SERIES, (cov.start, cov.end, cov.ratio), strict=True):
        put(f"{PREFIX}window_{series}", ((lab, value) for lab, _ in base))
    assets = [
        (f'cluster="{_escape(a.cluster)}",tenant_id="{tenant}",type="{_escape(a.type)}"', a.cost)
        for a in snapshot.assets
    ]
    put(f"{PREFIX}cluster_assets_cost", assets)
    # savings: one %-format per line (C level); the namespace's skips the empty controller (%.0s)
    split = list(map(operator.itemgetter(2), snapshot.savings)).count("")  # namespaces first
    tail = f'source="%s",tenant_id="{tenant.replace("%", "%%")}"}} %s\n'
    for level, sel, head in (
        ("namespace", snapshot.savings[:split], 'cluster="%s",namespace="%s"%.0s,'),
        ("controller", [(s[0], s[2], s[1], s[3], s[4]) for s in snapshot.savings[split:]],
         'cluster="%s",controller="%s",namespace="%s",'),
    ):  # fmt: skip
        name = f"{PREFIX}{level}_savings_monthly"
        rows: Sequence[tuple[Any, ...]] = sel
        texts = "".join(map("".join, map(operator.itemgetter(0, 1, 2), sel)))
        if sel and (max(r[4] for r in sel) >= 1e6 or any(c in texts for c in '\\\n"')):
            rows = [(*map(_escape, r[:4]), _fmt(r[4])) for r in sel]
        fmt = f"{name}{{{head}{tail}"
        w.family(name, helps[name], ["".join(map(fmt.__mod__, rows))] if rows else [])
    return w.bytes()


def render_health(health: Health, cfg: Config) -> bytes:
    """The health part of the exposition (always served, also when the costs are stale)."""
    w = _Text()
    cluster, tenant = _escape(cfg.cluster_name), _escape(cfg.tenant_id)
    lab = f'cluster="{cluster}",tenant_id="{tenant}"'
    success = None if health.success is None else float(health.success)
    w.samples(
        f"{PREFIX}scrape_success",
        "1 if the last query of the Kubecost Allocation API (background refresh) succeeded, "
        "else 0.",
        [(lab, success)],
    )
    w.samples(
        f"{PREFIX}scrape_duration_seconds",
        "Duration of the last background refresh (API queries, parsing, rendering), seconds.",
        [(lab, health.duration_seconds)],
    )
    reasons = {f'cluster="{cluster}",reason="{r}",tenant_id="{tenant}"': r for r in REASONS}
    w.samples(
        f"{PREFIX}scrape_errors_total",
        "Failed background refreshes since start, by reason (" + ", ".join(REASONS) + ").",
        [(lab_r, float(health.errors.get(r, 0))) for lab_r, r in reasons.items()],
        "counter",
    )
    w.samples(
        f"{PREFIX}dropped_series_total",
        "Cost series left out by the cardinality guard (--max-series) since start, summed over "
        "refreshes (the cheapest namespaces first; cluster series are always kept).",
        [(lab, float(health.dropped_series))],
        "counter",
    )
    w.samples(
        f"{PREFIX}last_success_timestamp_seconds",
        "Unix time of the last successful refresh (absent until the first one).",
        [(lab, health.last_success_timestamp)],
    )
    info = {
        "api": health.api_flavour,
        "assets": health.assets,
        "cluster": cfg.cluster_name,
        "currency": CURRENCY,
        "metric_mode": cfg.metric_mode,
        "multi_cluster": "true" if cfg.multi_cluster else "false",
        "savings_api": health.savings_api,
        "share_idle": cfg.share_idle,
        "tenant_id": cfg.tenant_id,
        "version": __version__,
        "window": cfg.window_label,
    }
    w.samples(
        f"{PREFIX}exporter_info",
        "Exporter build and settings: version, API flavour, metric mode, window, currency.",
        [(",".join(f'{k}="{_escape(v)}"' for k, v in info.items()), 1.0)],
    )
    return w.bytes()
