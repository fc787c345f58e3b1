"""Memory bounds: the real exporter process against hostile answers stays under the chart's memory limit.

`bench/hostile_stub.py` (its own process) serves the answers: a 62 MB answer of the usual shape read in pages and in
one piece, a 31 MB multi-cluster answer, one million minimal rows, the worst case the default limits allow (a
32 MiB answer of 149,000 rows, in one piece and in pages), an endless body, a 50 MB HTML page (HTTP 200 and 502) and
an answer that drips in. For each, the exporter runs with the defaults (only the refresh interval lowered to 1 s) for
several refreshes; its peak RSS (VmHWM, what the cgroup limit acts on) must stay under the chart's limit, the outcome
must be the expected one (a success, or a failure with the expected reason), and repeated failures must not grow the
RSS. docs/reliability.md ("Memory bounds") records the figures (`memory-bounds.json` in the work dir).
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from testsupport.faults import rss_bytes
from testsupport.pipeline import E2E_DIR
from testsupport.procs import Ports, ProcessGroup, http_get, require_tool

pytestmark = pytest.mark.e2e

WINDOW = "2026-11-26T16:00:00Z,2026-11-26T17:00:00Z"  # the hostile answers' hour
ROOT = E2E_DIR.parent
#: The exporter's memory limit of the default sizing preset (`small`, charts/kubecost-integration/files/sizing.yaml),
#: the one the exporter's default limits (MAX_ROWS, MAX_RESPONSE_BYTES) must keep it under.
_SMALL = yaml.safe_load((ROOT / "charts/kubecost-integration/files/sizing.yaml").read_text())["small"]
CHART_LIMIT = int(_SMALL["exporter"]["resources"]["limits"]["memory"].removesuffix("Mi")) * 2**20
RESULTS: dict[str, dict[str, Any]] = {}

# (id, path, extra env, refreshes to watch, expected: "ok" or the failure reason)
CASES: list[tuple[str, str, dict[str, str], int, str]] = [
    ("62MB-usual-shape-paged", "usual62", {}, 5, "ok"),
    ("62MB-usual-shape-one-answer", "whole62", {}, 5, "too_large"),
    ("31MB-multi-cluster", "multi31", {"MULTI_CLUSTER": "true"}, 5, "ok"),
    ("1M-minimal-rows", "minimal1m", {}, 5, "too_large"),
    ("worst-case-one-answer", "worst", {}, 5, "ok"),
    ("worst-case-paged", "worstpaged", {}, 5, "ok"),
    ("endless-body", "endless", {}, 8, "too_large"),
    ("50MB-html-200", "html50", {}, 8, "too_large"),  # its Content-Length is over the cap: not read
    ("50MB-html-502", "html50-502", {}, 8, "http_status"),
]
_LAST = re.compile(r"^cloudtuner_kubecost_last_success_timestamp_seconds\{[^}]*\} (\S+)$", re.M)
_ERR = re.compile(r'^cloudtuner_kubecost_scrape_errors_total\{[^}]*reason="(\w+)"[^}]*\} (\S+)$', re.M)
_SUCCESS = re.compile(r"^cloudtuner_kubecost_scrape_success\{[^}]*\} (\S+)$", re.M)


def vm(pid: int, key: str) -> int:
    m = re.search(rf"^{key}:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text(), re.M)
    assert m, key
    return int(m.group(1)) * 1024


@pytest.fixture(scope="module")
def stub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ProcessGroup, Ports, int]]:
    group = ProcessGroup(tmp_path_factory.mktemp("memory"))
    ports = Ports()
    port = ports.free("hostile stub")
    try:
        proc = group.start(
            "hostile-stub",
            [sys.executable, str(ROOT / "bench" / "hostile_stub.py"), "--port", str(port),
             "--only", "usual62,whole62,multi31,minimal1m,worst"],
        )  # fmt: skip
        group.wait_http(proc, f"http://127.0.0.1:{port}/usual62/model/allocation?limit=1", timeout=300)
        yield group, ports, port
    finally:
        group.stop_all()
        (Path(group.workdir) / "memory-bounds.json").write_text(json.dumps(RESULTS, indent=1))
        print(f"\nmemory bounds: {json.dumps(RESULTS)}")


def outcomes(text: str) -> tuple[set[str], dict[str, float]]:
    return set(_LAST.findall(text)), {r: float(v) for r, v in _ERR.findall(text)}


def run_exporter(
    stub: tuple[ProcessGroup, Ports, int], name: str, path: str, env: dict[str, str], refreshes: int
) -> dict[str, Any]:
    """The exporter against one answer until `refreshes` refreshes have finished; its peak RSS and what
    they gave."""
    group, ports, stub_port = stub
    port = ports.free(f"exporter {name}")
    exporter = require_tool("kubecost-allocation-exporter", [Path(sys.executable).parent], hint="run `make venv`")
    full = {
        "KUBECOST_URL": f"http://127.0.0.1:{stub_port}/{path}/model/allocation",
        "KUBECOST_API": "kubecost",
        "CLUSTER_NAME": "mem",
        "TENANT_ID": "mem",
        "WINDOW": WINDOW,
        "REFRESH_INTERVAL": "1s",
        "REFRESH_JITTER": "0",
        "STALENESS_LIMIT": "1h",
        "LISTEN_ADDRESS": f"127.0.0.1:{port}",
        "LOG_LEVEL": "warning",
        **env,
    }
    proc = group.start(f"exporter-{name}", [exporter], env=full)
    try:
        group.wait_http(proc, f"http://127.0.0.1:{port}/readyz", timeout=120)
        seen: set[str] = set()
        errors: dict[str, float] = {}
        rss_after: list[int] = []
        deadline = time.monotonic() + 60 + 15 * refreshes
        while time.monotonic() < deadline:
            status, body = http_get(f"http://127.0.0.1:{port}/metrics", timeout=30)
            assert status == 200
            now_seen, now_errors = outcomes(body.decode())
            if not now_seen <= seen or now_errors != errors:  # a refresh finished
                rss_after.append(rss_bytes(proc.popen.pid))
            seen, errors = seen | now_seen, now_errors
            if len(seen) + sum(errors.values()) >= refreshes:
                break
            assert proc.alive(), proc.tail()
            time.sleep(0.2)
        text = http_get(f"http://127.0.0.1:{port}/metrics", timeout=30)[1].decode()
        ready = http_get(f"http://127.0.0.1:{port}/readyz")[1].decode().strip()
        peak = vm(proc.popen.pid, "VmHWM")
    finally:
        proc.popen.terminate()
        proc.popen.wait(timeout=20)
    success = _SUCCESS.search(text)
    return {
        "peak_mib": round(peak / 2**20, 1),
        "rss_after_each_mib": [round(r / 2**20, 1) for r in rss_after],
        "successes": len(seen),
        "errors": {r: v for r, v in errors.items() if v},
        "scrape_success": float(success.group(1)) if success else None,
        "readyz": ready,
    }


@pytest.mark.parametrize(("name", "path", "env", "refreshes", "expected"), CASES, ids=[c[0] for c in CASES])
def test_the_exporter_stays_under_the_memory_limit(
    stub: tuple[ProcessGroup, Ports, int], name: str, path: str, env: dict[str, str], refreshes: int, expected: str
) -> None:
    got = run_exporter(stub, name, path, env, refreshes)
    RESULTS[name] = got
    limit_mib = CHART_LIMIT // 2**20
    assert got["peak_mib"] * 2**20 < CHART_LIMIT, f"{name}: peak RSS {got['peak_mib']} MiB >= {limit_mib} MiB: {got}"
    if expected == "ok":
        assert got["successes"] >= refreshes, got
        assert not got["errors"], got
        assert got["scrape_success"] == 1.0
    else:
        assert set(got["errors"]) == {expected}, got
        assert got["errors"][expected] >= refreshes - 1, got
        assert got["scrape_success"] == 0.0
        assert "last refresh failed" in got["readyz"]
        # repeated failures: nothing of the refused answers is kept (RSS after the later ones as after the first)
        after = got["rss_after_each_mib"]
        assert max(after[1:]) - after[1] < 8, f"RSS grew over repeated failures: {after}"


def test_a_dripping_answer_ends_at_the_refresh_deadline(stub: tuple[ProcessGroup, Ports, int]) -> None:
    """Each byte arrives within the read timeout, so no read times out; the refresh's deadline ends it: scrape_success
    0, reason timeout, /readyz names the failure (instead of a refresh that never ends while the costs go stale)."""
    got = run_exporter(stub, "drip", "drip", {"REFRESH_TIMEOUT": "3s", "REQUEST_TIMEOUT": "10s"}, 2)
    RESULTS["drip"] = got
    assert got["errors"] == {"timeout": got["errors"].get("timeout", 0)}, got
    assert got["errors"]["timeout"] >= 2, got
    assert got["scrape_success"] == 0.0
    assert "not finished within --refresh-timeout (3s)" in got["readyz"]
