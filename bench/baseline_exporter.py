"""Baseline for the /metrics benchmark: what community exporters do, i.e. prometheus-client
rendering the metric families on every scrape (`start_http_server`, default registry machinery,
families built from the snapshot inside `collect()`).

    python bench/baseline_exporter.py <allocation URL> <port file>
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path

from kubecost_allocation_exporter.config import load
from kubecost_allocation_exporter.kubecost import AllocationClient
from kubecost_allocation_exporter.metrics import COST_SOURCES, EFFICIENCY_SOURCES, PREFIX, cost_help
from kubecost_allocation_exporter.refresher import collect
from kubecost_allocation_exporter.snapshot import Snapshot
from prometheus_client import start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

WINDOW = "2026-11-26T16:00:00Z,2026-11-26T17:00:00Z"


def families(snap: Snapshot, helps: dict[str, str], tenant: str) -> Iterator[Metric]:
    """Every cost family as prometheus_client objects, built from the snapshot."""
    for i, (part, _) in enumerate(COST_SOURCES):
        name = f"{PREFIX}cluster_{part}_cost"
        g = GaugeMetricFamily(name, helps[name], labels=("cluster", "tenant_id"))
        for c in snap.clusters:
            if (cost := c.costs[i]) is not None:
                g.add_metric([c.name, tenant], cost)
        yield g
    names = [f"{PREFIX}namespace_{p}_cost" for p, _ in COST_SOURCES]
    names += [f"{PREFIX}namespace_{e}_efficiency" for e in EFFICIENCY_SOURCES]
    for i, name in enumerate(names):
        g = GaugeMetricFamily(name, helps[name], labels=("cluster", "tenant_id", "namespace"))
        for c in snap.clusters:
            for ns, costs in c.namespaces.items():
                if (value := costs[i]) is not None:
                    g.add_metric([c.name, tenant, ns], value)
        yield g


def main() -> int:
    url, port_file = sys.argv[1], sys.argv[2]
    args = ["--kubecost-url", url, "--cluster-name", "bench", "--tenant-id", "t"]
    cfg = load([*args, "--window", WINDOW, "--page-size", "0"], {})
    snapshot = collect(AllocationClient(cfg), cfg, time.time()).snapshot
    helps = cost_help(cfg)

    class OnScrape(Collector):
        def collect(self) -> Iterator[Metric]:
            yield from families(snapshot, helps, cfg.tenant_id)

    registry = CollectorRegistry(auto_describe=False)
    registry.register(OnScrape())
    server, _thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    Path(port_file).write_text(str(server.server_address[1]))
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    sys.exit(main())
