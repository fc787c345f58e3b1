"""The Assets API's answer -> what the cluster's assets cost, by asset type: the other side of the
reconciliation "allocations incl. idle == assets" (docs/metrics.md "Assets").

The answer has the Allocation API's shape (sets of rows keyed by asset key), so it takes the one
decoder; its numbers follow the same rules (`costs.py`: unknown stays unknown, tidied sums) and the
same window rule (the union of the rows' windows; rate mode divides by its hours). A row's type
is its `type` field (every asset has one, also when an engine ignores `aggregate=type` and sends
each asset apart: the types stay a handful), else `__unknown__`; with --multi-cluster its
cluster is the first part of its key (`cluster/type`).
"""

from __future__ import annotations

from collections.abc import Iterable

from kubecost_allocation_exporter import costs
from kubecost_allocation_exporter.config import Config
from kubecost_allocation_exporter.decode import ApiError, Page
from kubecost_allocation_exporter.snapshot import AssetCost, factor
from kubecost_allocation_exporter.windows import Interval, coverage, mismatch, row_windows

UNKNOWN = "__unknown__"


def asset_costs(
    pages: Iterable[Page], cfg: Config, requested: Interval | None, now: float
) -> tuple[AssetCost, ...]:
    """Per cluster: one cost per asset type and their `total` (unknown when one asset's is).
    Raises ApiError `window_mismatch` for an answer for another time than `requested`."""
    sums: dict[tuple[str, str], float] = {}
    windows: set[Interval] = set()
    for page in pages:
        for aset in page.sets:
            windows |= row_windows(list(aset.values()))
            for key, row in aset.items():
                kind = row.type if isinstance(row.type, str) and row.type else UNKNOWN
                cluster = (
                    key.split("/", 1)[0] if cfg.multi_cluster and "/" in key else cfg.cluster_name
                )
                sums[cluster, kind] = sums.get((cluster, kind), 0.0) + costs.number(row.total_cost)
    if (why := mismatch(windows, requested, now)) is not None:
        raise ApiError("window_mismatch", f"the Assets API answer is for another time: {why}")
    f = factor(cfg.metric_mode, coverage(windows, requested, now))
    out: list[AssetCost] = []
    for cluster in sorted({c for c, _ in sums}):
        parts = sorted((k, v) for (c, k), v in sums.items() if c == cluster)
        out += [AssetCost(cluster, k, costs.tidy(v * f)) for k, v in parts]
        out.append(AssetCost(cluster, "total", costs.tidy(sum(v for _, v in parts) * f)))
    return tuple(out)
