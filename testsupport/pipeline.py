"""The whole pipeline as local processes, from the chart's rendered config — shared by the e2e test and `make demo`.

    Kubecost API simulator --> exporter --> Prometheus agent --remote_write--> Thanos Receive <-- Thanos Query

* The chart is rendered (agent mode) through `testsupport.render`; the exporter gets the env of the rendered
  Deployment's `exporter` container and the agent gets the rendered `prometheus.yml`, with only what cannot work
  outside a cluster rewritten: Service DNS names and the platform URL become loopback addresses, intervals are
  shortened when asked, secret-mounted credential files become local placeholder files.
* Thanos runs as one IngestorOnly `receive` (tenants from the `THANOS-TENANT` header, a mandatory `--label`, the
  Cap'n Proto listener moved to loopback) and one `query` pointed at it.
* Everything listens on 127.0.0.1; ports are free ones (tests) or fixed ones checked up front (demo).
"""

from __future__ import annotations

import copy
import math
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from testsupport.procs import (
    Ports,
    Proc,
    ProcessGroup,
    ToolMissing,
    http_get,
    http_json,
    require_tool,
    tools_hint,
    wait_until,
)
from testsupport.render import agent_config, deep_merge, exporter_env, kci_cache, render

ROOT = Path(__file__).resolve().parent.parent
E2E_DIR = ROOT / "tests-e2e"
EXPORTER_JOB = "kubecost-allocation-exporter"
METRIC_PREFIX = "cloudtuner_kubecost_"
RECEIVE_LABEL = ("receive", "kci-local")

Progress = Callable[[str], None]


def _quiet(_msg: str) -> None:
    pass


def parse_seconds(text: str) -> float:
    """Prometheus/exporter durations: `15s`, `2m`, `1h`, `500ms`, `120`."""
    text = str(text).strip()
    units = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
    for suffix in ("ms", "s", "m", "h", "d"):
        if text.endswith(suffix) and text[: -len(suffix)].replace(".", "", 1).isdigit():
            return float(text[: -len(suffix)]) * units[suffix]
    return float(text)


def _loopback(url: str, port: int) -> str:
    """Same path and query, scheme http, host 127.0.0.1:<port>."""
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(("http", f"127.0.0.1:{port}", parts.path, parts.query, ""))


# --------------------------------------------------------------------------------------------------------
# Prometheus


@dataclass(frozen=True)
class PrometheusBinary:
    path: str
    version: str

    @property
    def agent_flag(self) -> str:
        """Prometheus 3.x has `--agent`; 2.x has `--enable-feature=agent`."""
        return "--agent" if int(self.version.split(".")[0]) >= 3 else "--enable-feature=agent"


def prometheus_binary() -> PrometheusBinary:
    """The Prometheus the agent runs on: `$KCI_PROMETHEUS`, else `$KCI_CACHE/bin/prometheus`, else PATH.

    Debian's build (version `2.42.0+ds`, also 2.45 `+ds`) is refused: it silently drops remote_write `headers`
    (prometheus/prometheus#13030, checked here with a local receiver), so the chart's THANOS-TENANT header would
    never reach Thanos and every tenant would land in Thanos' default tenant.
    """
    cache_bin = kci_cache() / "bin" / "prometheus"
    path = os.environ.get("KCI_PROMETHEUS") or (str(cache_bin) if cache_bin.is_file() else shutil.which("prometheus"))
    if not path:
        raise ToolMissing(
            f"required tool 'prometheus' not found in {cache_bin.parent} or PATH: {tools_hint('prometheus')}"
        )
    out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30, check=False)
    text = out.stdout + out.stderr
    m = re.search(r"version (\d+\.\d+\.\S+)", text)
    if not m:
        raise ToolMissing(
            f"{path} --version did not print a version ({text.strip()[:200]!r}): {tools_hint('prometheus')}"
        )
    version = m.group(1)
    if "+ds" in version:
        raise ToolMissing(
            f"{path} is Debian's Prometheus {version}, which does not send remote_write `headers` "
            "(prometheus/prometheus#13030), so the THANOS-TENANT header never reaches Thanos; the pipeline needs "
            f"an upstream Prometheus build at {cache_bin} (or KCI_PROMETHEUS=<path>): {tools_hint('prometheus')}"
        )
    return PrometheusBinary(path, version)


# --------------------------------------------------------------------------------------------------------
# Thanos


@dataclass
class Thanos:
    query_url: str
    receive_http_url: str
    remote_write_port: int
    procs: list[Proc]

    def query(self, promql: str, at: float | None = None) -> list[dict[str, Any]]:
        """Instant query; the `result` vector (dedup off, so every sender's series shows)."""
        params = {"query": promql, "dedup": "false"}
        if at is not None:
            params["time"] = f"{at:.3f}"
        doc = http_json(f"{self.query_url}/api/v1/query?{urllib.parse.urlencode(params)}")
        if doc.get("status") != "success":
            raise RuntimeError(f"Thanos query {promql!r} failed: {doc}")
        return list(doc["data"]["result"])

    def value(self, promql: str) -> float | None:
        """The single sample of `promql`, None when there is none; more than one is an error."""
        result = self.query(promql)
        if not result:
            return None
        if len(result) > 1:
            raise AssertionError(f"{promql!r} returned {len(result)} series: {[r['metric'] for r in result]}")
        return float(result[0]["value"][1])

    def names(self, matcher: str) -> list[str]:
        """Metric names of every series matching `matcher` (e.g. `{tenant_id="acme"}`)."""
        url = f"{self.query_url}/api/v1/label/__name__/values?{urllib.parse.urlencode({'match[]': matcher})}"
        doc = http_json(url)
        return sorted(doc["data"])


def start_thanos(
    group: ProcessGroup, ports: Ports, fixed: Mapping[str, int] | None = None, progress: Progress = _quiet
) -> Thanos:
    """One IngestorOnly `thanos receive` and one `thanos query` on loopback; waits until Query sees Receive."""
    thanos = require_tool("thanos")
    hint = "stop whatever uses it, or run with --free-ports"

    def port(key: str, what: str) -> int:
        return ports.fixed(fixed[key], what, hint) if fixed and key in fixed else ports.free(what)

    r_grpc, r_http = port("receive_grpc", "thanos receive gRPC"), port("receive_http", "thanos receive HTTP")
    r_rw, r_capnp = port("receive_rw", "thanos receive remote-write"), port("receive_capnp", "thanos receive capnproto")
    q_http, q_grpc = port("query_http", "thanos query HTTP"), port("query_grpc", "thanos query gRPC")
    data = group.workdir / "thanos-receive"
    progress(f"starting thanos receive (remote write on 127.0.0.1:{r_rw}) and thanos query (127.0.0.1:{q_http})")
    recv = group.start(
        "thanos-receive",
        [
            thanos,
            "receive",
            f"--tsdb.path={data}",
            f"--grpc-address=127.0.0.1:{r_grpc}",
            f"--http-address=127.0.0.1:{r_http}",
            f"--remote-write.address=127.0.0.1:{r_rw}",
            f"--receive.capnproto-address=127.0.0.1:{r_capnp}",
            f'--label={RECEIVE_LABEL[0]}="{RECEIVE_LABEL[1]}"',
            "--receive.tenant-header=THANOS-TENANT",
            "--receive.default-tenant-id=default-tenant",
            "--receive.tenant-label-name=tenant_id",
            "--tsdb.retention=1d",
            "--log.level=info",
        ],
    )
    query = group.start(
        "thanos-query",
        [
            thanos,
            "query",
            f"--http-address=127.0.0.1:{q_http}",
            f"--grpc-address=127.0.0.1:{q_grpc}",
            # `--endpoint` is deprecated in v0.42; its successor is the endpoint SD config.
            f'--endpoint.sd-config=endpoints: [{{address: "127.0.0.1:{r_grpc}"}}]',
            "--query.default-tenant-id=default-tenant",
            "--log.level=info",
        ],
    )
    group.wait_http(recv, f"http://127.0.0.1:{r_http}/-/ready", timeout=90)
    group.wait_http(query, f"http://127.0.0.1:{q_http}/-/ready", timeout=60)

    def store_seen(status: int, body: bytes) -> bool:
        return status == 200 and f"127.0.0.1:{r_grpc}".encode() in body

    group.wait_http(query, f"http://127.0.0.1:{q_http}/api/v1/stores", timeout=60, ok=store_seen)
    return Thanos(f"http://127.0.0.1:{q_http}", f"http://127.0.0.1:{r_http}", r_rw, [recv, query])


# --------------------------------------------------------------------------------------------------------
# One tenant: simulator + exporter + agent, from one rendering of the chart


@dataclass(frozen=True)
class TenantSpec:
    tenant_id: str
    cluster_name: str
    #: Extra chart values (deep-merged over tenantId/clusterName and prometheus.mode=agent).
    values: Mapping[str, Any] = field(default_factory=dict)
    release: str = "kci"
    namespace: str = "kubecost-integration"
    sim_scale: float = 1.0
    #: Shorter than the chart's defaults so a run takes seconds; None keeps the rendered value.
    refresh_interval: str | None = "5s"
    scrape_interval: str | None = "2s"


@dataclass
class Tenant:
    spec: TenantSpec
    sim_url: str
    exporter_url: str
    agent_url: str
    exporter_env: dict[str, str]
    agent_config: dict[str, Any]
    workdir: Path
    procs: list[Proc]

    @property
    def refresh_seconds(self) -> float:
        return parse_seconds(self.exporter_env.get("REFRESH_INTERVAL", "90s"))

    @property
    def scrape_seconds(self) -> float:
        job = next(j for j in self.agent_config["scrape_configs"] if j["job_name"] == EXPORTER_JOB)
        return parse_seconds(job.get("scrape_interval") or self.agent_config["global"].get("scrape_interval", "1m"))

    @property
    def send_deadline_seconds(self) -> float:
        queue = self.agent_config["remote_write"][0].get("queue_config") or {}
        return parse_seconds(queue.get("batch_send_deadline", "5s"))

    # -- simulator control
    def sim_config(self, **body: Any) -> dict[str, Any]:
        return dict(http_json(f"{self.sim_url}/__sim__/config", body))

    def sim_fault(self, mode: str, **extra: Any) -> dict[str, Any]:
        return dict(http_json(f"{self.sim_url}/__sim__/fault", {"mode": mode, **extra}))

    def sim_requests(self, limit: int = 50) -> list[dict[str, Any]]:
        return list(http_json(f"{self.sim_url}/__sim__/requests?limit={limit}"))

    def exporter_metrics(self) -> str:
        status, body = http_get(f"{self.exporter_url}/metrics")
        if status != 200:
            raise RuntimeError(f"exporter /metrics answered {status}")
        return body.decode()


def render_tenant(spec: TenantSpec) -> list[dict[str, Any]]:
    values = deep_merge(
        {
            "tenantId": spec.tenant_id,
            "clusterName": spec.cluster_name,
            # the default engine (Kubecost 3) carries the cluster name as its global cluster id
            "global": {"clusterId": spec.cluster_name},
            "prometheus": {"mode": "agent"},
        },
        spec.values,
    )
    return render(values, release=spec.release, namespace=spec.namespace)


def local_exporter_env(
    docs: list[dict[str, Any]], sim_port: int, listen_port: int, refresh_interval: str | None
) -> dict[str, str]:
    """The rendered exporter env with the in-cluster URL and listen address made local."""
    env = exporter_env(docs)
    env["KUBECOST_URL"] = _loopback(env.get("KUBECOST_URL", "http://kubecost:9090"), sim_port)
    env["LISTEN_ADDRESS"] = f"127.0.0.1:{listen_port}"
    if refresh_interval:
        env["REFRESH_INTERVAL"] = refresh_interval
    return env


def local_agent_config(
    docs: list[dict[str, Any]],
    exporter_port: int,
    remote_write_port: int,
    scrape_interval: str | None,
    secrets_dir: Path,
) -> dict[str, Any]:
    """The rendered `prometheus.yml` with targets and remote_write URLs on loopback.

    Credential files (mounted from Secrets in the cluster) become placeholder files under `secrets_dir`;
    a job that is not the exporter's (e.g. `extraScrapeConfigs`) is kept only if it has static targets,
    which are pointed at the exporter as well, so the config stays loadable outside a cluster.
    """
    cfg = copy.deepcopy(agent_config(docs))
    target = f"127.0.0.1:{exporter_port}"
    glob = cfg.setdefault("global", {})
    if scrape_interval:
        glob["scrape_interval"] = scrape_interval
        glob["scrape_timeout"] = scrape_interval
    jobs = []
    for job in cfg.get("scrape_configs") or []:
        if any(k.endswith("_sd_configs") for k in job):
            continue  # needs the Kubernetes API; nothing to scrape outside a cluster
        for sc in job.get("static_configs") or []:
            sc["targets"] = [target for _ in sc.get("targets") or []]
        if scrape_interval:
            job["scrape_interval"] = scrape_interval
            job["scrape_timeout"] = scrape_interval
        jobs.append(job)
    if not any(j["job_name"] == EXPORTER_JOB for j in jobs):
        raise AssertionError(f"the rendered agent config has no {EXPORTER_JOB!r} job: {cfg.get('scrape_configs')}")
    cfg["scrape_configs"] = jobs
    secrets_dir.mkdir(parents=True, exist_ok=True)
    for i, rw in enumerate(cfg.get("remote_write") or []):
        rw["url"] = _loopback(rw["url"], remote_write_port)
        for section, keys in (
            ("authorization", ("credentials_file",)),
            ("basic_auth", ("username_file", "password_file")),
        ):
            for key in keys:
                if key in (rw.get(section) or {}):
                    placeholder = secrets_dir / f"rw{i}-{section}-{key}"
                    placeholder.write_text("local-placeholder\n")
                    rw[section][key] = str(placeholder)
        if "tls_config" in rw:
            rw["tls_config"] = {"insecure_skip_verify": True}  # plain http on loopback: no CA/cert files
    return cfg


def start_tenant(
    group: ProcessGroup,
    ports: Ports,
    thanos: Thanos,
    spec: TenantSpec,
    *,
    fixed: Mapping[str, int] | None = None,
    progress: Progress = _quiet,
) -> Tenant:
    """Render the chart for `spec` and start its simulator, exporter and agent; wait until each is ready."""
    prometheus = prometheus_binary()
    exporter_bin = require_tool(
        "kubecost-allocation-exporter",
        [Path(sys.executable).parent],
        hint="run `make venv` (it installs the exporter into the cache venv)",
    )
    hint = "stop whatever uses it, or run with --free-ports"
    name = spec.tenant_id

    def port(key: str, what: str) -> int:
        return ports.fixed(fixed[key], what, hint) if fixed and key in fixed else ports.free(what)

    sim_port = port("simulator", f"simulator ({name})")
    exp_port = port("exporter", f"exporter ({name})")
    agent_port = port("agent", f"prometheus agent ({name})")
    workdir = group.workdir / name
    workdir.mkdir(parents=True, exist_ok=True)

    progress(f"[{name}] rendering the chart (agent mode, tenantId={spec.tenant_id}, clusterName={spec.cluster_name})")
    docs = render_tenant(spec)
    env = local_exporter_env(docs, sim_port, exp_port, spec.refresh_interval)
    cfg = local_agent_config(docs, exp_port, thanos.remote_write_port, spec.scrape_interval, workdir / "secrets")
    cfg_path = workdir / "prometheus.yml"
    cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    (workdir / "exporter.env").write_text("".join(f"{k}={v}\n" for k, v in sorted(env.items())))

    progress(f"[{name}] starting the Kubecost API simulator on 127.0.0.1:{sim_port}")
    sim = group.start(
        f"simulator-{name}",
        [
            sys.executable,
            "-m",
            "simulator",
            "--port",
            str(sim_port),
            "--cluster-name",
            spec.cluster_name,
            "--scale",
            str(spec.sim_scale),
        ],
        env={"PYTHONPATH": str(E2E_DIR)},
        cwd=E2E_DIR,
    )
    group.wait_http(sim, f"http://127.0.0.1:{sim_port}/healthz", timeout=30)

    progress(f"[{name}] starting the exporter on 127.0.0.1:{exp_port} (KUBECOST_URL={env['KUBECOST_URL']})")
    exporter = group.start(f"exporter-{name}", [exporter_bin], env=env)
    group.wait_http(exporter, f"http://127.0.0.1:{exp_port}/readyz", timeout=60)

    progress(f"[{name}] starting Prometheus {prometheus.version} in agent mode on 127.0.0.1:{agent_port}")
    agent = group.start(
        f"prometheus-agent-{name}",
        [
            prometheus.path,
            prometheus.agent_flag,
            f"--config.file={cfg_path}",
            f"--storage.agent.path={workdir / 'agent-wal'}",
            f"--web.listen-address=127.0.0.1:{agent_port}",
            "--log.level=info",
        ],
    )
    group.wait_http(agent, f"http://127.0.0.1:{agent_port}/-/ready", timeout=60)
    return Tenant(
        spec,
        f"http://127.0.0.1:{sim_port}",
        f"http://127.0.0.1:{exp_port}",
        f"http://127.0.0.1:{agent_port}",
        env,
        cfg,
        workdir,
        [sim, exporter, agent],
    )


def wait_for_data(
    thanos: Thanos, tenant: Tenant, group: ProcessGroup, timeout: float = 120.0, progress: Progress = _quiet
) -> float:
    """Wait until the tenant's cluster total is queryable in Thanos; returns the seconds it took."""
    start = time.monotonic()
    promql = f'{METRIC_PREFIX}cluster_total_cost{{tenant_id="{tenant.spec.tenant_id}"}}'
    last_report = [0.0]

    def on_wait(elapsed: float) -> None:
        if elapsed - last_report[0] >= 5:
            last_report[0] = elapsed
            progress(f"[{tenant.spec.tenant_id}] waiting for data in Thanos ... {elapsed:.0f}s")

    def landed() -> bool:
        v = thanos.value(promql)
        return v is not None and math.isfinite(v)

    wait_until(
        landed, timeout, f"{promql} in Thanos", interval=0.5, procs=[*thanos.procs, *tenant.procs], on_wait=on_wait
    )
    return time.monotonic() - start
