"""Operations e2e bench (tests-e2e/operations): the pipeline of `testsupport.pipeline` (simulator -> exporter ->
Prometheus agent -> Thanos Receive, read through Thanos Query) for one tenant, plus a "monitoring" Prometheus in
server mode that scrapes the agent's /metrics and the exporter, as the in-cluster Prometheus (e.g.
kube-prometheus-stack) would. It holds the series Thanos never gets: `up` and the agent's
`prometheus_remote_storage_*` self-metrics, and it loads the chart's alert rules. A Thanos Ruler evaluates the
forecast and budget recording rules over Thanos Query, as the platform does, and remote-writes what it records into
the tenant's Thanos Receive (the dashboards' month-to-date, forecast and budget panels read it there).

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
from testsupport.procs import (
    PortInUse,
    Ports,
    Proc,
    ProcessGroup,
    StartupError,
    ToolMissing,
    http_json,
    require_tool,
    wait_until,
)
from testsupport.render import CHART_DIR, objects, render, with_quickstart

RULES = CHART_DIR / "files" / "alerts" / "cloudtuner-kubecost.rules.yaml"
OPS_TENANT = TenantSpec("ops-tenant", "ops-cluster")
#: Budgets of the bench's cluster, rendered by the chart into the ruler's recording rules.
OPS_BUDGETS = [
    {"namespace": "default", "monthlyUSD": 5},
    {"namespace": "kube-system", "monthlyUSD": 500},
    {"cluster": True, "monthlyUSD": 200},
]


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
    """A server-mode Prometheus scraping the agent and the exporter every 2 s, with the chart's rules every 2 s."""
    prom = prometheus_binary()
    port = ports.free("monitoring prometheus")
    agent = tenant.agent_url.removeprefix("http://")
    exporter = tenant.exporter_url.removeprefix("http://")
    workdir.mkdir(parents=True, exist_ok=True)
    # The rules file with every group on the global 2 s interval (the forecast group's 5 minutes would leave it
    # unevaluated for minutes).
    rules = yaml.safe_load(RULES.read_text())
    for g in rules["groups"]:
        g.pop("interval", None)
    rules_path = workdir / "monitor.rules.yaml"
    rules_path.write_text(yaml.safe_dump(rules, sort_keys=False))
    cfg = {
        "global": {"scrape_interval": "2s", "scrape_timeout": "2s", "evaluation_interval": "2s"},
        "rule_files": [str(rules_path)],
        "scrape_configs": [
            {"job_name": "kci-agent", "static_configs": [{"targets": [agent]}]},
            {
                "job_name": "kubecost-allocation-exporter",
                "honor_labels": True,
                "static_configs": [{"targets": [exporter]}],
            },
        ],
    }
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


def ruler_rules(spec: TenantSpec, workdir: Path) -> list[Path]:
    """The forecast group of the rules file evaluated on every round (not every 5 minutes, so that the bench need not
    wait), and the budget group as the chart renders it for OPS_BUDGETS."""
    (rule,) = objects(
        render(
            with_quickstart(
                {
                    "tenantId": spec.tenant_id,
                    "clusterName": spec.cluster_name,
                    "global": {"clusterId": spec.cluster_name},
                    "prometheusRule": {"enabled": True, "groups": ["forecast", "budget"], "budgets": OPS_BUDGETS},
                }
            )
        ),
        "PrometheusRule",
    )
    groups = rule["spec"]["groups"]
    for g in groups:
        g.pop("interval", None)
    path = workdir / "ruler.rules.yaml"
    path.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    return [path]


def start_ruler(group: ProcessGroup, ports: Ports, thanos: Thanos, tenant: Tenant, workdir: Path) -> Proc:
    """A stateless Thanos Ruler querying Thanos Query every 2 s and remote-writing its series to Receive with the
    tenant's header; `wait_for_budgets` waits for its series."""
    binary = require_tool("thanos")
    workdir.mkdir(parents=True, exist_ok=True)
    http_port, grpc_port = ports.free("thanos rule HTTP"), ports.free("thanos rule gRPC")
    rw = {
        "remote_write": [
            {
                "name": "ruler",
                "url": f"http://127.0.0.1:{thanos.remote_write_port}/api/v1/receive",
                "headers": {"THANOS-TENANT": tenant.spec.tenant_id},
            }
        ]
    }
    args = [
        binary,
        "rule",
        f"--data-dir={workdir / 'ruler-data'}",
        f"--http-address=127.0.0.1:{http_port}",
        f"--grpc-address=127.0.0.1:{grpc_port}",
        f"--query={thanos.query_url.removeprefix('http://')}",
        "--eval-interval=2s",
        f"--remote-write.config={yaml.safe_dump(rw)}",
        '--label=ruler="bench"',
        "--log.level=info",
    ]
    args += [f"--rule-file={p}" for p in ruler_rules(tenant.spec, workdir)]
    proc = group.start("thanos-rule", args)
    group.wait_http(proc, f"http://127.0.0.1:{http_port}/-/ready", timeout=60)
    return proc


def wait_for_budgets(thanos: Thanos, tenant: Tenant, ruler: Proc) -> None:
    """Until a budget series (recorded from a month-to-date series the ruler recorded first) is back in Thanos: two
    trips through the ruler's remote write, about 15 s each (measured: the first send waits out its WAL replay)."""
    query = f'cloudtuner_kubecost:namespace_budget:monthly_usd{{tenant_id="{tenant.spec.tenant_id}"}}'
    wait_until(lambda: bool(thanos.query(query)), 90, f"{query} in Thanos", procs=[ruler, *thanos.procs])


def start_ops_bench(workdir: Path, spec: TenantSpec = OPS_TENANT, ruler: bool = True) -> OpsBench:
    """The bench; without the Thanos Ruler (and its forecast and budget series) when `ruler` is False."""
    group = ProcessGroup(workdir)
    try:
        ports = Ports()
        thanos = start_thanos(group, ports)
        tenant = start_tenant(group, ports, thanos, spec)
        wait_for_data(thanos, tenant, group)
        rule = start_ruler(group, ports, thanos, tenant, workdir / "ruler") if ruler else None
        monitor = start_monitor(group, ports, tenant, workdir / "monitor")  # while the ruler's first trips run
        if rule is not None:
            wait_for_budgets(thanos, tenant, rule)
    except (ToolMissing, PortInUse) as err:
        group.stop_all()
        pytest.fail(str(err), pytrace=False)
    except (StartupError, AssertionError, OSError, RuntimeError) as err:
        report = group.logs_report()
        group.stop_all()
        pytest.fail(f"operations bench did not come up: {err}\n\n{report}", pytrace=False)
    return OpsBench(group, ports, thanos, tenant, monitor)
