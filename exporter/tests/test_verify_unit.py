"""`kubecost-allocation-exporter verify` without a bench: arguments, exit codes, kubectl failures,
and the exporter/sums checks against a real local HTTP server serving a recorded exposition. The
full command against real Prometheus and Thanos runs in tests-e2e/operations/test_verify.py, and
its kube-context form (real kubectl port-forward through kube-apiserver and kwok) in
tests-e2e/controlplane/test_verify_kube.py."""

from __future__ import annotations

import http.server
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kubecost_allocation_exporter.verify import main
from kubecost_allocation_exporter.verify.kube import PortForward

pytestmark = pytest.mark.unit

EXPOSITION = """\
# TYPE cloudtuner_kubecost_exporter_info gauge
cloudtuner_kubecost_exporter_info{api="kubecost",assets="ASSETS",cluster="c1",currency="USD",\
metric_mode="rate",multi_cluster="false",share_idle="none",tenant_id="t1",version="0.1.0",\
window="1h"} 1.0
# TYPE cloudtuner_kubecost_scrape_success gauge
cloudtuner_kubecost_scrape_success{cluster="c1",tenant_id="t1"} SUCCESS
# TYPE cloudtuner_kubecost_scrape_errors_total counter
cloudtuner_kubecost_scrape_errors_total{cluster="c1",reason="timeout",tenant_id="t1"} 3.0
cloudtuner_kubecost_scrape_errors_total{cluster="c1",reason="window_mismatch",tenant_id="t1"} \
REFUSED
# TYPE cloudtuner_kubecost_cluster_total_cost gauge
cloudtuner_kubecost_cluster_total_cost{cluster="c1",tenant_id="t1"} 1.0
# TYPE cloudtuner_kubecost_cluster_idle_cost gauge
cloudtuner_kubecost_cluster_idle_cost{cluster="c1",tenant_id="t1"} IDLE
# TYPE cloudtuner_kubecost_window_coverage_ratio gauge
cloudtuner_kubecost_window_coverage_ratio{cluster="c1",tenant_id="t1"} RATIO
# TYPE cloudtuner_kubecost_cluster_assets_cost gauge
cloudtuner_kubecost_cluster_assets_cost{cluster="c1",tenant_id="t1",type="Node"} 0.9
cloudtuner_kubecost_cluster_assets_cost{cluster="c1",tenant_id="t1",type="total"} ASSETTOTAL
# TYPE cloudtuner_kubecost_namespace_total_cost gauge
cloudtuner_kubecost_namespace_total_cost{cluster="c1",namespace="a",tenant_id="t1"} 0.5
cloudtuner_kubecost_namespace_total_cost{cluster="c1",namespace="b",tenant_id="t1"} NSB
"""


@pytest.fixture
def exporter() -> Iterator[dict[str, str]]:
    """A local HTTP server serving EXPOSITION with the placeholders from the returned dict."""
    values = {"SUCCESS": "1.0", "NSB": "0.25", "IDLE": "0.25", "RATIO": "1.0", "REFUSED": "0.0"}
    values |= {"ASSETS": "present", "ASSETTOTAL": "1.02"}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            text = EXPOSITION
            for k, v in values.items():
                text = text.replace(k, v)
            body = text.encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    values["url"] = f"http://127.0.0.1:{server.server_port}"
    yield values
    server.shutdown()


def run_json(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, object]]:
    rc = main(["--output", "json", *args])
    return rc, json.loads(capsys.readouterr().out)


def statuses(doc: dict[str, object]) -> dict[str, str]:
    checks = doc["checks"]
    assert isinstance(checks, list)
    return {c["name"]: c["status"] for c in checks}


ONLY_LOCAL = [
    "--skip",
    "target",
    "--skip",
    "remote-write",
    "--skip",
    "thanos",
    "--skip",
    "kubecost",
]


def test_exporter_and_sums_pass(
    exporter: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    rc, doc = run_json(capsys, "--exporter-url", exporter["url"], *ONLY_LOCAL)
    assert rc == 0, doc
    assert statuses(doc) == {"exporter": "pass", "sums": "pass", "accuracy": "pass"}
    assert (doc["cluster"], doc["tenant_id"]) == ("c1", "t1")
    (accuracy,) = [c for c in doc["checks"] if c["name"] == "accuracy"]  # type: ignore[attr-defined]
    assert accuracy["summary"] == "window fully covered, idle >= 0, allocations / assets 98.04%"


def test_scrape_success_zero_names_the_reasons(
    exporter: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    exporter["SUCCESS"] = "0.0"
    rc, doc = run_json(capsys, "--exporter-url", exporter["url"], *ONLY_LOCAL)
    assert rc == 1
    (check,) = [c for c in doc["checks"] if c["name"] == "exporter"]  # type: ignore[attr-defined]
    assert check["status"] == "fail"
    assert "timeout=3" in check["summary"]


def test_sums_mismatch_fails(exporter: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    exporter["NSB"] = "0.26"
    rc, doc = run_json(capsys, "--exporter-url", exporter["url"], *ONLY_LOCAL)
    assert rc == 1
    assert statuses(doc) == {"exporter": "pass", "sums": "fail", "accuracy": "pass"}


def test_accuracy_warns_with_each_figure_and_its_meaning_without_failing(
    exporter: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """Before: verify passed on all of these without a word. Now each is named with its figure."""
    exporter.update(IDLE="-0.25", NSB="0.75", RATIO="0.75", REFUSED="2.0", ASSETTOTAL="1.2")
    rc, doc = run_json(capsys, "--exporter-url", exporter["url"], *ONLY_LOCAL)
    assert rc == 0, doc  # a warning does not fail
    assert statuses(doc) == {"exporter": "pass", "sums": "pass", "accuracy": "warn"}
    (check,) = [c for c in doc["checks"] if c["name"] == "accuracy"]  # type: ignore[attr-defined]
    parts = check["summary"].split("; ")
    assert parts[0].startswith("2 refreshes refused with window_mismatch: Kubecost answered for")
    assert parts[1].startswith("c1: the numbers cover 75.0% of the requested window")
    assert parts[2].startswith("c1: idle cost is negative (-0.2500 USD/h): the allocations are")
    assert "custom pricing" in parts[2]
    assert parts[3].startswith("c1: allocations incl. idle are 83.33% of the assets' cost")
    assert check["details"]["c1"] == {
        "window_coverage_ratio": 0.75,
        "idle": -0.25,
        "allocations_over_assets": pytest.approx(1 / 1.2),
    }
    assert main(["--exporter-url", exporter["url"], *ONLY_LOCAL]) == 0
    out = capsys.readouterr().out
    assert "  WARN  accuracy      2 refreshes refused" in out
    assert out.rstrip().endswith("RESULT: all checks passed, with warnings (accuracy)")


@pytest.mark.parametrize(("state", "status"), [("absent", "pass"), ("failed", "warn")])
def test_accuracy_says_whether_assets_could_be_read(
    exporter: dict[str, str], capsys: pytest.CaptureFixture[str], state: str, status: str
) -> None:
    exporter.update(ASSETS=state, ASSETTOTAL="NaN")
    rc, doc = run_json(capsys, "--exporter-url", exporter["url"], *ONLY_LOCAL)
    assert rc == 0
    (check,) = [c for c in doc["checks"] if c["name"] == "accuracy"]  # type: ignore[attr-defined]
    assert check["status"] == status
    assert f"assets={state}" in check["summary"]


def test_nothing_given_is_all_skipped_and_not_ok(capsys: pytest.CaptureFixture[str]) -> None:
    rc, doc = run_json(capsys)
    assert rc == 1
    assert doc["ok"] is False
    assert set(statuses(doc).values()) == {"skip"}


def test_a_skipped_check_says_how_to_run_it_or_leave_it_out(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Nothing given: every check is SKIP and the run fails; the last line says what to do."""
    assert main([]) == 1
    out = capsys.readouterr().out
    assert out.rstrip().endswith(
        "; a SKIP fails too: give the check what its line asks for, or --skip it"
    )
    assert "  SKIP  thanos        no Thanos Query URL (--thanos-url)" in out


def test_text_output(exporter: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--exporter-url", exporter["url"], *ONLY_LOCAL]) == 0
    out = capsys.readouterr().out
    assert "PASS  exporter" in out
    assert out.rstrip().endswith("RESULT: all checks passed")


def test_kubectl_failure_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    kubectl = tmp_path / "kubectl"
    kubectl.write_text("#!/bin/sh\necho 'error: context \"nope\" does not exist' >&2\nexit 1\n")
    kubectl.chmod(0o755)
    rc = main(["--kube-namespace", "kci", "--kube-context", "nope", "--kubectl", str(kubectl)])
    assert rc == 2
    err = capsys.readouterr().err
    assert 'context "nope" does not exist' in err
    assert "--context nope -n kci get service" in err


def test_bad_arguments_exit_2() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "kubecost_allocation_exporter", "verify", "--max-lag", "soon"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert "'soon' is not a duration" in proc.stderr


class FakeAgent:
    """An agent-like server: /api/v1/targets answers 404; /metrics has the job's discovered target
    and a dialer-failure counter that grows by `step` per request."""

    def __init__(self) -> None:
        self.step = 0.0
        self.failures = 0.0
        agent = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.startswith("/api/v1/targets"):
                    self.send_response(404)
                    self.end_headers()
                    return
                agent.failures += agent.step
                job = "kubecost-allocation-exporter"
                body = (
                    "# TYPE prometheus_sd_discovered_targets gauge\n"
                    f'prometheus_sd_discovered_targets{{config="{job}",name="scrape"}} 1\n'
                    "# TYPE net_conntrack_dialer_conn_failed_total counter\n"
                    "net_conntrack_dialer_conn_failed_total"
                    f'{{dialer_name="{job}",reason="refused"}} {agent.failures}\n'
                ).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def fake_agent() -> Iterator[FakeAgent]:
    agent = FakeAgent()
    yield agent
    agent.server.shutdown()


@pytest.mark.parametrize(("step", "status"), [(0.0, "pass"), (1.0, "fail")])
def test_target_from_self_metrics_when_the_targets_api_is_missing(
    fake_agent: FakeAgent, capsys: pytest.CaptureFixture[str], step: float, status: str
) -> None:
    fake_agent.step = step
    rc, doc = run_json(
        capsys,
        "--prometheus-url",
        fake_agent.url,
        "--sample-seconds",
        "0.1",
        *[
            a
            for c in ("exporter", "remote-write", "thanos", "sums", "accuracy", "kubecost")
            for a in ("--skip", c)
        ],
    )
    checks = doc["checks"]
    assert isinstance(checks, list)
    (check,) = checks
    assert check["status"] == status, check
    assert "self-metrics; targets API answered 404" in check["summary"]
    assert rc == (0 if status == "pass" else 1)


# ------------------------------------------------------------------ kubectl port-forward handling
# A scripted kubectl (the real one runs against kube-apiserver + kwok in
# tests-e2e/controlplane/test_verify_kube.py): `get service` finds one exporter Service, no agent,
# no Deployment; `port-forward` behaves as $FAKE_PF says.

FAKE_KUBECTL = """#!{python}
import json, os, sys, time
args = sys.argv[1:]
with open(os.environ["FAKE_LOG"], "a") as log:
    log.write(" ".join(args) + "\\n")
if "port-forward" in args:
    mode, port = os.environ["FAKE_PF"].split(":")
    if mode == "silent":  # waits for a pod that never runs
        time.sleep(60)
        sys.exit(1)
    print(f"Forwarding from 127.0.0.1:{{port}} -> 9103", flush=True)
    if mode == "flood":  # far more than a pipe buffer of per-connection lines
        for _ in range(20000):
            print(f"Handling connection for {{port}}")
        sys.stdout.flush()
        open(os.environ["FAKE_LOG"] + ".flooded", "w").close()
    elif mode == "lost":
        print('E1126 20:51:15.004838    1771 portforward.go:522] "Unhandled Error" err="an error '
              'occurred forwarding 1 -> 9103: error forwarding port 9103 to pod kci-x/kci, uid : '
              'no forward found for port 9103 in pod \\\\"kci/kci-x\\\\""', flush=True)
        print("error: lost connection to pod", flush=True)
        sys.exit(1)
    time.sleep(60)
    sys.exit(0)
if "service" in args and "component=allocation-exporter" in args[args.index("-l") + 1]:
    print(json.dumps({{"items": [{{"metadata": {{"name": "kci-exporter"}},
                                 "spec": {{"ports": [{{"port": 9103}}]}}}}]}}))
else:
    print(json.dumps({{"items": []}}))
"""

EXPORTER_ONLY = ["--skip", "target", "--skip", "remote-write", "--skip", "thanos"]


@pytest.fixture
def fake_kubectl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    kubectl = tmp_path / "kubectl"
    kubectl.write_text(FAKE_KUBECTL.format(python=sys.executable))
    kubectl.chmod(0o755)
    monkeypatch.setenv("FAKE_LOG", str(tmp_path / "kubectl.log"))
    return kubectl


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def test_port_forward_that_never_starts_is_bounded_by_the_timeout(
    fake_kubectl: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """kubectl waits up to a minute for a running pod, silently: verify gives up after --timeout."""
    monkeypatch.setenv("FAKE_PF", "silent:0")
    started = time.monotonic()
    rc = main(["--kube-namespace", "kci", "--kubectl", str(fake_kubectl), "--timeout", "1"])
    took = time.monotonic() - started
    assert rc == 2
    err = capsys.readouterr().err
    assert "port-forward svc/kci-exporter :9103" in err, err
    assert "not forwarding after 6s" in err, err
    assert "--pod-running-timeout=1s" in err
    assert took < 20, f"took {took:.1f}s"


def test_port_forward_output_is_drained(
    fake_kubectl: Path,
    exporter: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """kubectl prints a line per connection; a pipe nobody reads would block it after 64 KiB."""
    monkeypatch.setenv("FAKE_PF", f"flood:{exporter['url'].rsplit(':', 1)[1]}")
    rc, doc = run_json(
        capsys, "--kube-namespace", "kci", "--kubectl", str(fake_kubectl), *ONLY_LOCAL
    )
    assert rc == 0, doc
    assert statuses(doc) == {"exporter": "pass", "sums": "pass", "accuracy": "pass"}


def test_port_forward_keeps_reading_while_it_is_open(
    fake_kubectl: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The flood (about 600 KB) finishes only if someone reads the pipe. Waiting for it while the
    forward is open, rather than after a verify run, does not depend on how fast verify's checks
    are: those can end, and stop kubectl, before an unhindered flood is written."""
    monkeypatch.setenv("FAKE_PF", f"flood:{closed_port()}")
    flooded = Path(os.environ["FAKE_LOG"] + ".flooded")
    forward = PortForward([str(fake_kubectl), "port-forward"], "kci/svc/kci-exporter:9103")
    try:
        forward.wait_ready(30)
        deadline = time.monotonic() + 60
        while not flooded.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert flooded.exists(), "kubectl blocked writing: its output was not read"
        assert forward.proc.poll() is None, "kubectl exited while forwarding"
    finally:
        forward.stop()


def test_port_forward_error_is_named_in_the_failed_check(
    fake_kubectl: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FAKE_PF", f"lost:{closed_port()}")
    rc, doc = run_json(
        capsys, "--kube-namespace", "kci", "--kubectl", str(fake_kubectl), *EXPORTER_ONLY
    )
    assert rc == 1
    (check,) = [c for c in doc["checks"] if c["name"] == "exporter"]  # type: ignore[attr-defined]
    assert check["status"] == "fail"
    summary = check["summary"]
    assert "connection refused or unreachable" in summary
    assert "[kubectl port-forward kci/svc/kci-exporter:9103: an error occurred" in summary
    assert 'no forward found for port 9103 in pod "kci/kci-x"' in summary
    assert summary.endswith("; error: lost connection to pod; kubectl exited 1]"), summary
    assert check["details"]["port_forward"]["target"] == "kci/svc/kci-exporter:9103"
