"""Baseline for the /metrics benchmark: what community exporters do, i.e. prometheus-client
rendering the same metric families on every scrape (`start_http_server`, default registry
machinery, families built from the snapshot inside `collect()`).

    python bench/baseline_exporter.py <allocation URL> <port file>
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from kubecost_allocation_exporter.config import load
from kubecost_allocation_exporter.kubecost import AllocationClient
from kubecost_allocation_exporter.metrics import Health, cost_families, health_families
from kubecost_allocation_exporter.model import build_snapshot
from prometheus_client import start_http_server
from prometheus_client.core import Metric
from prometheus_client.registry import Collector, CollectorRegistry

WINDOW = "2026-11-26T16:00:00Z,2026-11-26T17:00:00Z"


def main() -> int:
    url, port_file = sys.argv[1], sys.argv[2]
    cfg = load(
        [
            "--kubecost-url",
            url,
            "--cluster-name",
            "bench",
            "--tenant-id",
            "t",
            "--window",
            WINDOW,
        ],
        {},
    )
    res = AllocationClient(cfg).fetch(WINDOW, "namespace")
    snapshot = build_snapshot(
        res.sets,
        requested_window=WINDOW,
        now=datetime.now(UTC),
        metric_mode=cfg.metric_mode,
        cluster_name=cfg.cluster_name,
        multi_cluster=False,
    )
    health = Health(True, 0.1, {}, time.time(), "kubecost")

    class OnScrape(Collector):
        def collect(self) -> Iterator[Metric]:
            yield from health_families(health, cfg)
            yield from cost_families(snapshot, cfg)

    registry = CollectorRegistry(auto_describe=False)
    registry.register(OnScrape())
    server, _thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    Path(port_file).write_text(str(server.server_address[1]))
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    sys.exit(main())
