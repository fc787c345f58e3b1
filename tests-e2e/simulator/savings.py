"""Request-sizing (savings) API of the simulator (a test double): Kubecost 2.x/3.x `/model/savings/requestSizingV2`.

The answer's shape is what Kubecost's own tooling reads from it (kubecost/kubecost-utilities
`api-scripts/requestSizing-json-2-csv.py`, https://github.com/kubecost/kubecost-utilities): an object whose
`Recommendations` list holds one entry per container spec of a controller, with `clusterID`, `namespace`,
`controllerKind`, `controllerName`, `containerName`, `recommendedRequest`/`latestKnownRequest` (`cpu`, `memory` as
Kubernetes quantities), `monthlySavings` (`cpu`, `memory`, `total`, USD per month) and `currentEfficiency`. The
parameters are those of the API's documentation
(https://github.com/kubecost/docs/blob/v1.x/apis/apis-overview/api-request-right-sizing-v2.md): `window` is
required, and Kubecost 2.x answers 400 to a parameter it does not know (https://github.com/kubecost/kubecost/issues/3337).

Recommendations follow the documented defaults: the `max` algorithm (peak usage: the allocations'
`cpuCoreUsageMax`/`ramByteUsageMax`, 1.6x and 1.3x the average here) over `targetCPUUtilization` =
`targetRAMUtilization` = 0.7, at least 10 mCPU and 20 MiB; the saving is (request - recommendation) x unit price
x 730 h for every pod of the controller (negative when the recommendation is above the request). Bare pods have no
controller: no recommendation.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from simulator.cluster import GIB, SyntheticCluster
from simulator.model import ApiError

PARAMS = frozenset(
    {"window", "filter", "algorithmCPU", "algorithmRAM", "qCPU", "qRAM", "targetCPUUtilization"}
    | {"targetRAMUtilization", "minRecCPUMillicores", "minRecRAMBytes", "sortBy", "sortByOrder", "offset", "limit"}
)
TARGET, MIN_CPU, MIN_RAM, HOURS_PER_MONTH = 0.7, 0.010, 20 * 1024 * 1024, 730.0
#: the simulator's peaks relative to the average usage (model.container_alloc's cpuCoreUsageMax / ramByteUsageMax)
PEAK_CPU, PEAK_RAM = 1.6, 1.3


def _cpu(cores: float) -> str:
    return f"{round(cores * 1000)}m"


def _mem(nbytes: float) -> str:
    return f"{round(nbytes / 1024 / 1024)}Mi"


def request_sizing(cluster: SyntheticCluster, params: Mapping[str, str], *, scale: float = 1.0) -> dict[str, Any]:
    """The answer of one requestSizingV2 query (raises `model.ApiError` 400 as Kubecost does)."""
    unknown = sorted(set(params) - PARAMS)
    if unknown:
        raise ApiError(
            400, f"Failed to parse request into request sizing options: invalid HTTP parameters present: {unknown}"
        )
    if not params.get("window"):
        raise ApiError(400, "Failed to parse request into request sizing options: missing window")
    pods: dict[tuple[str, str, str], list[Any]] = {}
    for c in cluster.containers():
        if c.controller_kind and c.controller:
            pods.setdefault((c.namespace, c.controller_kind, c.controller), []).append(c)
    p = cluster.prices
    recs = []
    for (ns, kind, name), cs in sorted(pods.items()):
        c = cs[0]  # one container spec per controller
        cpu = max(c.cpu_usage * PEAK_CPU / TARGET, MIN_CPU)
        ram = max(c.ram_usage_bytes * PEAK_RAM / TARGET, MIN_RAM)
        cpu_saving = (c.cpu_request - cpu) * p.cpu_core_hour * HOURS_PER_MONTH * scale * len(cs)
        ram_saving = (c.ram_request_bytes - ram) / GIB * p.ram_gib_hour * HOURS_PER_MONTH * scale * len(cs)
        recs.append(
            {
                "clusterID": cluster.name,
                "namespace": ns,
                "controllerKind": kind,
                "controllerName": name,
                "containerName": c.container,
                "recommendedRequest": {"cpu": _cpu(cpu), "memory": _mem(ram)},
                "latestKnownRequest": {"cpu": _cpu(c.cpu_request), "memory": _mem(c.ram_request_bytes)},
                "monthlySavings": {
                    "cpu": round(cpu_saving, 5),
                    "memory": round(ram_saving, 5),
                    "total": round(cpu_saving + ram_saving, 5),
                },
                "currentEfficiency": {
                    "cpu": round(c.cpu_usage / c.cpu_request, 5) if c.cpu_request else 0.0,
                    "memory": round(c.ram_usage_bytes / c.ram_request_bytes, 5) if c.ram_request_bytes else 0.0,
                    "total": round(
                        (c.cpu_usage + c.ram_usage_bytes / GIB) / (c.cpu_request + c.ram_request_bytes / GIB), 5
                    ),
                },
            }
        )
    return {"Recommendations": recs}
