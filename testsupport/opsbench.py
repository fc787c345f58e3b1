"""Operations e2e bench (tests-e2e/operations): the pipeline of `testsupport.pipeline` (simulator -> exporter ->
Prometheus agent -> Thanos Receive, read through Thanos Query) for one tenant, plus a "monitoring" Prometheus in
server mode that scrapes the agent's /metrics and the exporter, as the in-cluster Prometheus (e.g.
kube-prometheus-stack) would. It holds the series Thanos never gets: `up` and the agent's
`prometheus_remote_storage_*` self-metrics, and it loads the chart's alert rules.

One bench per session, shared by the dashboard, query and verify tests; a test that breaks a link restores it, and a
test that must stop Thanos starts its own bench.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from testsupport.pipeline import (
    Tenant,
    TenantSpec,
    Thanos,
    prometheus_binary,
    start_tenant,
    start_thanos,
    wait_for_data,
)
from testsupport.procs import PortInUse, Ports, ProcessGroup, StartupError, ToolMissing, http_json, wait_until
from testsupport.render import CHART_DIR

RULES = CHART_DIR / "files" / "alerts" / "cloudtuner-kubecost.rules.yaml"
OPS_TENANT = TenantSpec("ops-tenant", "ops-cluster")


@dataclass
class OpsBench:
    group: ProcessGroup
    ports: Ports
    thanos: Thanos
    tenant: Tenant
    monitor_url: str

    def monitor_query(self, promql: str) -> list[dict[str, object]]:
        doc = http_json(f"{self.monitor_url}/api/v1/query?{urllib.parse.urlencode({'query': promql})}")
        return list(doc["data"]["result"])


def start_monitor(group: ProcessGroup, ports: Ports, tenant: Tenant, workdir: Path) -> str:
    """A server-mode Prometheus scraping the agent and the exporter every 2 s, with the chart's alert rules."""
    prom = prometheus_binary()
    port = ports.free("monitoring prometheus")
    agent = tenant.agent_url.removeprefix("http://")
    exporter = tenant.exporter_url.removeprefix("http://")
    cfg = {
        "global": {"scrape_interval": "2s", "scrape_timeout": "2s", "evaluation_interval": "2s"},
        "rule_files": [str(RULES)],
        "scrape_configs": [
            {"job_name": "kci-agent", "static_configs": [{"targets": [agent]}]},
            {
                "job_name": "kubecost-allocation-exporter",
                "honor_labels": True,
                "static_configs": [{"targets": [exporter]}],
            },
        ],
    }
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "monitor.yml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    proc = group.start(
        "prometheus-monitor",
        [
            prom.path,
            f"--config.file={path}",
            f"--storage.tsdb.path={workdir / 'monitor-data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=info",
        ],
    )
    url = f"http://127.0.0.1:{port}"
    group.wait_http(proc, f"{url}/-/ready", timeout=60)

    def scraped() -> bool:
        """Both targets up, and enough samples of the agent for rate() over them."""
        up = http_json(f"{url}/api/v1/query?{urllib.parse.urlencode({'query': 'up == 1'})}")
        q = "rate(prometheus_remote_storage_samples_total[1m])"
        rate = http_json(f"{url}/api/v1/query?{urllib.parse.urlencode({'query': q})}")
        return len(up["data"]["result"]) == 2 and bool(rate["data"]["result"])

    wait_until(scraped, 60, "monitoring Prometheus scraping agent and exporter", procs=[proc])
    return url


def start_ops_bench(workdir: Path, spec: TenantSpec = OPS_TENANT) -> OpsBench:
    group = ProcessGroup(workdir)
    try:
        ports = Ports()
        thanos = start_thanos(group, ports)
        tenant = start_tenant(group, ports, thanos, spec)
        wait_for_data(thanos, tenant, group)
        monitor = start_monitor(group, ports, tenant, workdir / "monitor")
    except (ToolMissing, PortInUse) as err:
        group.stop_all()
        pytest.fail(str(err), pytrace=False)
    except (StartupError, AssertionError, OSError, RuntimeError) as err:
        report = group.logs_report()
        group.stop_all()
        pytest.fail(f"operations bench did not come up: {err}\n\n{report}", pytrace=False)
    return OpsBench(group, ports, thanos, tenant, monitor)
