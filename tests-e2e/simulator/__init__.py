"""Kubecost Allocation API simulator — a TEST DOUBLE, not Kubecost.

A real HTTP server (stdlib `ThreadingHTTPServer`) that answers the Allocation API the way Kubecost's API
documentation (https://docs.kubecost.com/apis/monitoring-apis/api-allocation), OpenCost's
(https://opencost.io/docs/integrations/api) and OpenCost's source (opencost/opencost `core/pkg/opencost`,
`pkg/costmodel`) describe it, for a synthetic cluster, so the exporter, the pipeline e2e
tests and `make demo` can run without a cluster:

* `/model/allocation` and `/model/allocation/compute` — Kubecost through the cost-analyzer frontend (`/model`
  prefix, `{"code":200,"status":"success","data":[...]}` envelope, `idle` parameter, reconciliation adjustments;
  `/compute` has none);
* `/allocation` and `/allocation/compute` — OpenCost (same handler for both, `includeIdle`, strict boolean
  parsing: `shareIdle=weighted` silently means `false`, unknown aggregate tokens are dropped, a bad `window` is a
  plain-text 400);
* `/model/assets` and `/assets` beside them — the Assets API, consistent with the allocations (`assets.py`: the
  assets cost what the allocations incl. idle cost, unless a drift is switched on).

The synthetic cluster (`cluster.py`) has the eight namespaces of the original deployment — argocd, cert-manager,
default, ingress-nginx, kube-state-metrics, kube-system, kubecost, kubecost-dev — on two nodes, at about
$0.27/hour in total (idle included). Costs accrue linearly with time, so any window gives the same hourly rate,
and every aggregation is derived from the same per-container figures (`model.py`), so `aggregate=cluster`
equals the sum over namespaces plus `__idle__`.

Run-time control (for tests): `POST /__sim__/fault`, `POST /__sim__/config` (cost scale, NaN quirk, window quirks,
Assets API present/absent/error and drift), `GET /__sim__/state`, `GET /__sim__/requests`, `POST /__sim__/reset`
— see `server.py`.

CLI: `python -m simulator --port 9090` (with `tests-e2e/` on `sys.path`).
"""

from simulator.cluster import DEFAULT_NAMESPACES, SyntheticCluster, default_cluster
from simulator.model import ApiError, Flavour, QueryResult, allocation_query
from simulator.server import SimulatorServer, SimulatorState, serve

__all__ = [
    "DEFAULT_NAMESPACES",
    "ApiError",
    "Flavour",
    "QueryResult",
    "SimulatorServer",
    "SimulatorState",
    "SyntheticCluster",
    "allocation_query",
    "default_cluster",
    "serve",
]
