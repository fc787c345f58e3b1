"""The refresh pipeline without HTTP, for tests: answer bytes -> decode -> rows -> snapshot, as
`refresher.collect` runs it, and an oracle for the exposition writer (prometheus_client's own
families and `generate_latest` on a private registry, what the writer must equal byte for byte)."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

from exporter_testlib import fixture_bytes
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector, CollectorRegistry

from kubecost_allocation_exporter.assets import asset_costs
from kubecost_allocation_exporter.breakdown import BreakdownTotals
from kubecost_allocation_exporter.config import Config
from kubecost_allocation_exporter.decode import decode
from kubecost_allocation_exporter.metrics import COST_SOURCES, EFFICIENCY_SOURCES, PREFIX, cost_help
from kubecost_allocation_exporter.savings import assemble, recommendations
from kubecost_allocation_exporter.snapshot import (
    AssetCost,
    BreakdownRow,
    NamespaceRows,
    Snapshot,
    build,
    cap_breakdowns,
    factor,
)
from kubecost_allocation_exporter.windows import coverage, requested_window

HOUR = "2026-11-26T16:00:00Z,2026-11-26T17:00:00Z"
NOW = datetime(2026, 11, 26, 18, 20, tzinfo=UTC).timestamp()
ROWS = 10_000_000


def body(doc: Any) -> bytes:
    """A document as the API would send it (a list of sets becomes the `data` of an answer)."""
    if isinstance(doc, list):
        doc = {"code": 200, "data": doc}
    return json.dumps(doc).encode()


def answer(source: str | bytes | Any) -> bytes:
    if isinstance(source, str):
        return fixture_bytes(source)
    return source if isinstance(source, bytes) else body(source)


def snapshot(
    *pages: str | bytes | Any,
    window: str = HOUR,
    now: float = NOW,
    mode: str = "total",
    cluster: str = "c1",
    multi: bool = False,
    max_series: int = 0,
) -> Snapshot:
    """The snapshot of the namespace query answered by `pages` (fixture names, bodies or
    documents; several = the pages of one query)."""
    snap, _ = snapshot_and_dropped(
        *pages,
        window=window,
        now=now,
        mode=mode,
        cluster=cluster,
        multi=multi,
        max_series=max_series,
    )
    return snap


def snapshot_and_dropped(
    *pages: str | bytes | Any,
    window: str = HOUR,
    now: float = NOW,
    mode: str = "total",
    cluster: str = "c1",
    multi: bool = False,
    max_series: int = 0,
) -> tuple[Snapshot, int]:
    rows = NamespaceRows(cluster, multi)
    for page in pages:
        for part in decode(200, answer(page), "application/json", "http://kc", ROWS):
            rows.add(part)
    cov = coverage(rows.windows, requested_window(window, now), now)
    return build(rows, cov, mode, max_series)


def breakdown(
    *pages: str | bytes | Any,
    breakdown: str,
    top_n: int,
    window: str = HOUR,
    now: float = NOW,
    mode: str = "total",
    cluster: str = "c1",
    multi: bool = False,
) -> list[BreakdownRow]:
    totals = BreakdownTotals(breakdown, cluster, multi)
    for page in pages:
        for part in decode(200, answer(page), "application/json", "http://kc", ROWS):
            totals.add(part)
    cov = coverage(totals.windows, requested_window(window, now), now)
    return totals.result(top_n, factor(mode, cov))


def assets(
    *pages: str | bytes | Any, cfg: Config, window: str = HOUR, now: float = NOW
) -> tuple[AssetCost, ...]:
    """The asset costs of an Assets API answer (`pages` as for `snapshot`)."""
    decoded = [
        part
        for page in pages
        for part in decode(200, answer(page), "application/json", "http://kc", ROWS)
    ]
    return asset_costs(decoded, cfg, requested_window(window, now), now)


def with_savings(
    snap: Snapshot,
    *pages: str | bytes | Any,
    controller: Sequence[str | bytes | Any] = (),
    engine: bytes | None = None,
    top_n: int = 20,
    cluster: str = "c1",
    multi: bool = False,
) -> Snapshot:
    """`snap` with the savings series of its namespace query (`pages`), of the controller
    breakdown's (`controller`) and of a requestSizingV2 answer (`engine`), as `collect` does."""
    rows = NamespaceRows(cluster, multi, savings=True)
    totals = BreakdownTotals("controller", cluster, multi, savings=True)
    for target, sources in ((rows, pages), (totals, controller)):
        for page in sources:
            for part in decode(200, answer(page), "application/json", "http://kc", ROWS):
                target.add(part)
    recs = recommendations(engine, "http://kc", cluster, multi) if engine is not None else None
    kept = {(c.name, n, "") for c in snap.clusters for n in c.names}
    by_controller = totals.savings if controller else None
    saved, _ = assemble(rows.estimated(), recs, kept, by_controller, top_n)
    return cap_breakdowns(snap, snap.breakdowns, 0, saved)[0]


def with_breakdowns(snap: Snapshot, rows: Sequence[BreakdownRow], max_series: int = 0) -> Snapshot:
    return cap_breakdowns(snap, rows, max_series)[0]


# -- the oracle: prometheus_client rendering the same families ------------------------------------


def families(snap: Snapshot, cfg: Config) -> list[Metric]:
    """The cost families as prometheus_client objects, built from the snapshot's public values."""
    helps = cost_help(cfg)
    tenant = cfg.tenant_id
    out: list[Metric] = []

    def family(
        name: str, labels: Sequence[str], samples: list[tuple[list[str], float | None]]
    ) -> None:
        g = GaugeMetricFamily(name, helps[name], labels=labels)
        for values, v in samples:
            if v is not None and v - v == 0.0:
                g.add_metric(values, v)
        if g.samples:
            out.append(g)

    base = ("cluster", "tenant_id")
    for i, (part, _) in enumerate(COST_SOURCES):
        family(
            f"{PREFIX}cluster_{part}_cost",
            base,
            [([c.name, tenant], c.costs[i]) for c in snap.clusters],
        )
    family(f"{PREFIX}cluster_idle_cost", base, [([c.name, tenant], c.idle) for c in snap.clusters])
    for i, e in enumerate(EFFICIENCY_SOURCES):
        family(
            f"{PREFIX}cluster_{e}_efficiency",
            base,
            [([c.name, tenant], c.costs[8 + i]) for c in snap.clusters],
        )
    ns_labels = ("cluster", "tenant_id", "namespace")
    names = [f"{PREFIX}namespace_{p}_cost" for p, _ in COST_SOURCES]
    names += [f"{PREFIX}namespace_{e}_efficiency" for e in EFFICIENCY_SOURCES]
    for i, name in enumerate(names):
        family(
            name,
            ns_labels,
            [
                ([c.name, tenant, ns], costs[i])
                for c in snap.clusters
                for ns, costs in c.namespaces.items()
            ],
        )
    family(
        f"{PREFIX}breakdown_total_cost",
        ("cluster", "tenant_id", "breakdown", "namespace", "value"),
        [
            ([r.cluster, tenant, r.breakdown, r.namespace, r.value], r.total)
            for r in snap.breakdowns
        ],
    )
    family(
        f"{PREFIX}exported_namespaces",
        base,
        [([c.name, tenant], float(len(c.names))) for c in snap.clusters],
    )
    cov = snap.coverage
    for series, value in (
        ("start_timestamp_seconds", cov.start),
        ("end_timestamp_seconds", cov.end),
        ("coverage_ratio", cov.ratio),
    ):
        family(f"{PREFIX}window_{series}", base, [([c.name, tenant], value) for c in snap.clusters])
    family(
        f"{PREFIX}cluster_assets_cost",
        (*base, "type"),
        [([a.cluster, tenant, a.type], a.cost) for a in snap.assets],
    )
    for level, labels in (
        ("namespace", ("cluster", "namespace", "source", "tenant_id")),
        ("controller", ("cluster", "controller", "namespace", "source", "tenant_id")),
    ):
        family(
            f"{PREFIX}{level}_savings_monthly",
            labels,
            [
                ([c, *([ctl] if ctl else []), ns, source, tenant], value)
                for c, ns, ctl, source, value in snap.savings
                if bool(ctl) == (level == "controller")
            ],
        )  # fmt: skip
    return out


class _Families(Collector):
    def __init__(self, fams: Sequence[Metric]) -> None:
        self._fams = fams

    def collect(self) -> Iterator[Metric]:
        yield from self._fams


def oracle(snap: Snapshot, cfg: Config) -> bytes:
    """What prometheus_client writes for the cost part (the writer must give the same bytes)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(families(snap, cfg)))
    return generate_latest(registry)
