"""A Kubecost API simulator and the real exporter as local processes, for fault and soak tests.

`start_sim_and_exporter()` starts `python -m simulator` and the `kubecost-allocation-exporter` console script with
short intervals; `ExporterProbe` reads the exporter's `/metrics` and its process (RSS, threads, sockets) from /proc.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from testsupport.pipeline import E2E_DIR
from testsupport.procs import Ports, Proc, ProcessGroup, http_get, http_json, require_tool

PREFIX = "cloudtuner_kubecost_"
REASONS = (
    *("timeout", "connection", "http_status", "not_json", "api_error", "bad_response", "auth"),
    *("too_large", "window_mismatch"),
)

#: Short intervals: a refresh a second, no jitter, costs stale after 3 s, every query bounded to ~1 s.
FAST_ENV: dict[str, str] = {
    "CLUSTER_NAME": "fault-cluster",
    "TENANT_ID": "fault-tenant",
    "KUBECOST_API": "kubecost",
    "REFRESH_INTERVAL": "1s",
    "REFRESH_JITTER": "0",
    "STALENESS_LIMIT": "3s",
    "CONNECT_TIMEOUT": "1s",
    "REQUEST_TIMEOUT": "1s",
    "RETRIES": "0",
    "MAX_RESPONSE_BYTES": str(8 * 1024 * 1024),
    "LOG_LEVEL": "warning",
}


@dataclass
class Scrape:
    """One /metrics read: health values and the cost series present."""

    success: float | None
    errors: dict[str, float]
    costs: dict[tuple[str, tuple[tuple[str, str], ...]], float]

    @property
    def has_costs(self) -> bool:
        return any(name == f"{PREFIX}cluster_total_cost" for name, _ in self.costs)

    @property
    def namespaces(self) -> set[str]:
        return {
            dict(labels).get("namespace", "") for name, labels in self.costs if name.endswith("namespace_total_cost")
        }


def parse_scrape(text: str) -> Scrape:
    success: float | None = None
    errors: dict[str, float] = {}
    costs: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == f"{PREFIX}scrape_success":
                success = s.value
            elif s.name == f"{PREFIX}scrape_errors_total":
                errors[s.labels["reason"]] = s.value
            elif s.name.endswith("_cost") or s.name.endswith("_efficiency"):
                costs[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return Scrape(success, errors, costs)


@dataclass
class SimAndExporter:
    group: ProcessGroup
    sim: Proc
    exporter: Proc
    sim_port: int
    exporter_port: int
    env: dict[str, str]

    @property
    def sim_url(self) -> str:
        return f"http://127.0.0.1:{self.sim_port}"

    @property
    def exporter_url(self) -> str:
        return f"http://127.0.0.1:{self.exporter_port}"

    def fault(self, mode: str, **extra: object) -> None:
        http_json(f"{self.sim_url}/__sim__/fault", {"mode": mode, **extra})

    def scrape(self) -> Scrape:
        status, body = http_get(f"{self.exporter_url}/metrics", timeout=5)
        if status != 200:
            raise AssertionError(f"exporter /metrics answered {status}")
        return parse_scrape(body.decode())

    def stop_sim(self) -> None:
        self.sim.popen.terminate()
        self.sim.popen.wait(timeout=10)

    def start_sim(self) -> None:
        self.sim = _start_sim(self.group, self.sim_port, f"simulator-{len(self.group.procs)}")


def _start_sim(group: ProcessGroup, port: int, name: str = "simulator") -> Proc:
    sim = group.start(
        name,
        [sys.executable, "-m", "simulator", "--port", str(port), "--cluster-name", "fault-cluster"],
        env={"PYTHONPATH": str(E2E_DIR)},
        cwd=E2E_DIR,
    )
    group.wait_http(sim, f"http://127.0.0.1:{port}/healthz", timeout=30)
    return sim


def start_sim_and_exporter(
    workdir: Path, env: Mapping[str, str] | None = None, soak_refresh_seconds: float | None = None
) -> SimAndExporter:
    """Simulator and exporter on free loopback ports; returns once the exporter's first refresh finished.

    With `soak_refresh_seconds`, the exporter runs through `testsupport.soak_driver` (its own `serve()` with a
    sub-second refresh interval)."""
    exporter_bin = require_tool("kubecost-allocation-exporter", [Path(sys.executable).parent], hint="run `make venv`")
    group = ProcessGroup(workdir)
    ports = Ports()
    sim_port, exp_port = ports.free("simulator"), ports.free("exporter")
    try:
        sim = _start_sim(group, sim_port)
        full = dict(FAST_ENV)
        full.update(env or {})
        full["KUBECOST_URL"] = f"http://127.0.0.1:{sim_port}"
        full["LISTEN_ADDRESS"] = f"127.0.0.1:{exp_port}"
        argv = [exporter_bin]
        if soak_refresh_seconds is not None:
            argv = [sys.executable, "-m", "testsupport.soak_driver"]
            full["SOAK_REFRESH_SECONDS"] = str(soak_refresh_seconds)
            full["PYTHONPATH"] = str(E2E_DIR.parent)
        exporter = group.start("exporter", argv, env=full)
        group.wait_http(exporter, f"http://127.0.0.1:{exp_port}/readyz", timeout=60)
    except BaseException:
        group.stop_all()
        raise
    return SimAndExporter(group, sim, exporter, sim_port, exp_port, full)


# ------------------------------------------------------------------------------------------------------------
# the exporter process seen from /proc


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


def thread_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def socket_count(pid: int) -> int:
    n = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:"):
                n += 1
        except OSError:
            continue
    return n


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def wait_for(check: object, timeout: float, what: str, interval: float = 0.1) -> float:
    """Poll `check()` until truthy; returns the seconds it took, AssertionError on timeout."""
    assert callable(check)
    start = time.monotonic()
    while True:
        if check():
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            raise AssertionError(f"timed out after {timeout:.1f}s waiting for {what}")
        time.sleep(interval)
