"""Assets API semantics of the simulator (a test double): what the cluster's assets cost for a window.

Kubecost 2.x/3.x `/model/assets` and OpenCost's `/assets` answer `{"code": 200, "data": [set]}` with one set per step
(`accumulate=true`: one), keyed by the aggregate (`type` -> `Node`, `cluster,type` -> `cluster-one/Node`); every asset
has `type`, `properties`, `window`, `start`, `end`, `minutes`, `adjustment` and `totalCost` (Node also `cpuCost`,
`ramCost`, `gpuCost`). The answer is consistent with the Allocation API's for the same window, as an engine's assets
are after reconciliation: Node = CPU + RAM + GPU of the allocations (incl. adjustments) and idle, Disk = PV,
LoadBalancer = LB, Network = network, ClusterManagement = shared, Cloud = external; allocations incl. idle add up to
the assets exactly.
`drift` (a `/__sim__/config` switch) prices the Node assets that much higher (1.1 = 10 % above the allocations).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from simulator.cluster import SyntheticCluster
from simulator.model import Flavour, Quirks, allocation_query

#: asset type -> the allocation cost fields (base and adjustment) it backs
_BACKS = {
    "Node": ("cpuCost", "cpuCostAdjustment", "ramCost", "ramCostAdjustment", "gpuCost", "gpuCostAdjustment"),
    "Disk": ("pvCost", "pvCostAdjustment"),
    "LoadBalancer": ("loadBalancerCost", "loadBalancerCostAdjustment"),
    "Network": ("networkCost", "networkCostAdjustment"),
    "ClusterManagement": ("sharedCost",),
    "Cloud": ("externalCost",),
}
_CATEGORY = {"Node": "Compute", "Disk": "Storage", "LoadBalancer": "Network", "Network": "Network"}


def assets_query(
    cluster: SyntheticCluster,
    params: Mapping[str, str],
    flavour: Flavour,
    now: datetime,
    *,
    scale: float = 1.0,
    drift: float = 1.0,
    quirks: Quirks | None = None,
) -> list[dict[str, Any]]:
    """The `data` of one Assets API answer (raises `model.ApiError` for a window the API refuses)."""
    alloc_params = {
        "window": params.get("window", ""),
        "aggregate": "cluster",
        "accumulate": "true",
        "idle": "true",
        "includeIdle": "true",
        "shareIdle": "false",
    }
    result = allocation_query(cluster, alloc_params, flavour, now, scale=scale, quirks=quirks or Quirks())
    by_cluster = "cluster" in (params.get("aggregate") or "").split(",")
    sets: list[dict[str, Any]] = []
    for rows in result.json_data():
        if not rows:
            sets.append({})
            continue
        first = next(iter(rows.values()))
        out: dict[str, Any] = {}
        for kind, fields in _BACKS.items():
            cost = sum(float(r.get(f) or 0.0) for r in rows.values() for f in fields)
            if kind == "Node":
                cost *= drift
            if cost == 0.0:
                continue  # an engine lists only the assets that exist
            asset: dict[str, Any] = {
                "type": kind,
                "properties": {"category": _CATEGORY.get(kind, "Management"), "cluster": cluster.name},
                "labels": {},
                "window": first["window"],
                "start": first["start"],
                "end": first["end"],
                "minutes": first["minutes"],
                "adjustment": 0,
                "totalCost": round(cost, 5),
            }
            if kind == "Node":
                for part in ("cpu", "ram", "gpu"):
                    asset[f"{part}Cost"] = round(
                        drift * sum(float(r.get(f"{part}Cost") or 0.0) + float(r.get(f"{part}CostAdjustment") or 0.0)
                                    for r in rows.values()), 5)  # fmt: skip
            out[f"{cluster.name}/{kind}" if by_cluster else kind] = asset
        sets.append(out)
    return sets
