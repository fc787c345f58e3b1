"""`kubecost-allocation-exporter verify` against the e2e bench: healthy, then with each link broken.

The command runs as a subprocess (the installed console script), with URLs of the bench's processes. Broken links:
Kubecost API failing (simulator fault), exporter unreachable, wrong tenant, a Kubecost that disagrees with the
exporter (a second simulator at another scale), namespace sums that do not add up (a tampered copy of the exporter's
/metrics served locally), and on a bench of its own: Thanos Receive stopped, then the exporter stopped. The kube
context form runs here with a fake `kubectl` (a test double that port-forwards nowhere: it prints the bench's ports);
with the real kubectl (discovery on a real kube-apiserver, real `kubectl port-forward`s) it is covered by
tests-e2e/controlplane/test_verify_kube.py.
"""

from __future__ import annotations

import http.server
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from testsupport.opsbench import OpsBench, start_ops_bench
from testsupport.pipeline import E2E_DIR, TenantSpec
from testsupport.procs import http_json, require_tool, wait_until

pytestmark = pytest.mark.e2e

CHECKS = ["exporter", "target", "remote-write", "thanos", "sums", "accuracy", "kubecost"]


def verify_bin() -> str:
    return require_tool("kubecost-allocation-exporter", [Path(sys.executable).parent], hint="run `make venv`")


def run_verify(*args: str, env: dict[str, str] | None = None) -> tuple[int, dict[str, Any], str]:
    proc = subprocess.run(
        [verify_bin(), "verify", "--output", "json", "--sample-seconds", "3", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, **(env or {})},
    )
    try:
        doc = json.loads(proc.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"verify printed no JSON (rc {proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc.returncode, doc, proc.stderr


def url_args(bench: OpsBench, **override: str) -> list[str]:
    urls = {
        "exporter": bench.tenant.exporter_url,
        "prometheus": bench.tenant.agent_url,
        "thanos": bench.thanos.query_url,
        "kubecost": bench.tenant.sim_url,
        **override,
    }
    return [arg for k, v in urls.items() for arg in (f"--{k}-url", v)]


def statuses(doc: dict[str, Any]) -> dict[str, str]:
    return {c["name"]: c["status"] for c in doc["checks"]}


def summary(doc: dict[str, Any], name: str) -> str:
    return str(next(c["summary"] for c in doc["checks"] if c["name"] == name))


def exporter_success(bench: OpsBench) -> float | None:
    for line in bench.tenant.exporter_metrics().splitlines():
        if line.startswith("cloudtuner_kubecost_scrape_success{"):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_healthy_bench_passes(ops_bench: OpsBench) -> None:
    rc, doc, err = run_verify(*url_args(ops_bench))
    assert rc == 0, json.dumps(doc, indent=2) + err
    assert statuses(doc) == dict.fromkeys(CHECKS, "pass")
    assert doc["ok"] is True
    assert (doc["cluster"], doc["tenant_id"]) == (ops_bench.tenant.spec.cluster_name, ops_bench.tenant.spec.tenant_id)
    kc = next(c for c in doc["checks"] if c["name"] == "kubecost")["details"]
    assert kc["relative_difference"] < 0.005


def test_text_report_names_every_link(ops_bench: OpsBench) -> None:
    proc = subprocess.run(
        [verify_bin(), "verify", "--sample-seconds", "2", *url_args(ops_bench)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for name in CHECKS:
        assert f"PASS  {name}" in proc.stdout, proc.stdout
    assert proc.stdout.rstrip().endswith("RESULT: all checks passed")


def test_kubecost_api_failing(ops_bench: OpsBench) -> None:
    tenant = ops_bench.tenant
    timeout = 3 * tenant.refresh_seconds + 30
    tenant.sim_fault("http500")
    try:
        wait_until(lambda: exporter_success(ops_bench) == 0, timeout, "exporter scrape_success 0")
        rc, doc, _ = run_verify(*url_args(ops_bench))
        assert rc == 1
        assert doc["ok"] is False
        assert statuses(doc)["exporter"] == "fail"
        assert "scrape_success 0" in summary(doc, "exporter")
        assert "http_status" in summary(doc, "exporter")
        # The pipeline behind the exporter is fine.
        assert statuses(doc)["target"] == statuses(doc)["remote-write"] == "pass"
    finally:
        tenant.sim_fault("none")
    wait_until(lambda: exporter_success(ops_bench) == 1, timeout, "exporter scrape_success back to 1")


def test_exporter_unreachable(ops_bench: OpsBench) -> None:
    port = ops_bench.ports.free("nothing listens here")
    rc, doc, _ = run_verify(
        *url_args(ops_bench, exporter=f"http://127.0.0.1:{port}"),
        "--cluster-name",
        ops_bench.tenant.spec.cluster_name,
        "--tenant-id",
        ops_bench.tenant.spec.tenant_id,
    )
    assert rc == 1
    assert statuses(doc)["exporter"] == "fail"
    assert "connection refused" in summary(doc, "exporter")
    assert statuses(doc)["thanos"] == "pass"  # Thanos still has the cluster's recent data


def test_wrong_tenant(ops_bench: OpsBench) -> None:
    rc, doc, _ = run_verify(*url_args(ops_bench), "--tenant-id", "someone-else")
    assert rc == 1
    assert statuses(doc)["thanos"] == "fail"
    assert f"under tenant_id ['{ops_bench.tenant.spec.tenant_id}']" in summary(doc, "thanos")


def test_unknown_remote_write_queue(ops_bench: OpsBench) -> None:
    rc, doc, _ = run_verify(*url_args(ops_bench), "--remote-name", "not-ours")
    assert rc == 1
    assert statuses(doc)["remote-write"] == "fail"
    assert "cloudtuner-thanos" in summary(doc, "remote-write")


@pytest.fixture
def second_simulator(ops_bench: OpsBench) -> Iterator[Any]:
    """Start another Kubecost API simulator (same cluster) at a chosen scale; yields a starter."""
    started = []

    def start(scale: float) -> str:
        port = ops_bench.ports.free(f"simulator at scale {scale}")
        proc = ops_bench.group.start(
            f"simulator-scale-{scale}",
            [
                sys.executable,
                "-m",
                "simulator",
                "--port",
                str(port),
                "--cluster-name",
                ops_bench.tenant.spec.cluster_name,
                "--scale",
                str(scale),
            ],
            env={"PYTHONPATH": str(E2E_DIR)},
            cwd=E2E_DIR,
        )
        started.append(proc)
        ops_bench.group.wait_http(proc, f"http://127.0.0.1:{port}/healthz", timeout=30)
        return f"http://127.0.0.1:{port}"

    yield start
    for proc in started:
        os.killpg(proc.popen.pid, signal.SIGTERM)
        proc.popen.wait(timeout=10)


@pytest.mark.parametrize(("scale", "ok"), [(1.004, True), (1.01, False)])
def test_kubecost_disagrees(ops_bench: OpsBench, second_simulator: Any, scale: float, ok: bool) -> None:
    """Kubecost's own aggregate=cluster total vs the exporter's: 0.4 % passes, 1 % fails (tolerance 0.5 %)."""
    url = second_simulator(scale)
    rc, doc, _ = run_verify(*url_args(ops_bench, kubecost=url), "--skip", "remote-write")
    kc = next(c for c in doc["checks"] if c["name"] == "kubecost")
    assert kc["details"]["relative_difference"] == pytest.approx(scale - 1, rel=0.1, abs=2e-4), kc
    assert (kc["status"] == "pass") is ok, kc
    assert (rc == 0) is ok
    if not ok:
        assert "apart" in kc["summary"]


def test_sums_that_do_not_add_up(ops_bench: OpsBench) -> None:
    """A tampered copy of the exporter's /metrics (one namespace 0.01 higher) fails the sums check only."""
    text = ops_bench.tenant.exporter_metrics()
    lines = text.splitlines()
    idx = next(i for i, ln in enumerate(lines) if ln.startswith("cloudtuner_kubecost_namespace_total_cost{"))
    name, value = lines[idx].rsplit(" ", 1)
    lines[idx] = f"{name} {float(value) + 0.01}"
    body = ("\n".join(lines) + "\n").encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        rc, doc, _ = run_verify(
            *url_args(ops_bench, exporter=f"http://127.0.0.1:{server.server_port}"), "--skip", "target"
        )
    finally:
        server.shutdown()
    assert rc == 1
    assert statuses(doc)["sums"] == "fail"
    assert "differ" in summary(doc, "sums")
    assert statuses(doc)["exporter"] == statuses(doc)["kubecost"] == "pass"


def test_skipped_links_are_not_a_pass(ops_bench: OpsBench) -> None:
    rc, doc, _ = run_verify("--exporter-url", ops_bench.tenant.exporter_url)
    assert rc == 1
    st = statuses(doc)
    assert st["exporter"] == st["sums"] == st["accuracy"] == "pass"
    assert st["thanos"] == st["target"] == st["kubecost"] == "skip"
    # ...unless they are left out on purpose.
    rc, doc, _ = run_verify(
        "--exporter-url",
        ops_bench.tenant.exporter_url,
        "--skip",
        "target",
        "--skip",
        "remote-write",
        "--skip",
        "thanos",
        "--skip",
        "kubecost",
    )
    assert rc == 0, doc
    assert list(statuses(doc)) == ["exporter", "sums", "accuracy"]


FAKE_KUBECTL = textwrap.dedent(
    '''\
    #!{python}
    """Fake kubectl (test double): answers the verify command's `get` calls from $FAKE_KUBE and "port-forwards"
    by printing the local port of the bench process that stands for the Service."""
    import json, os, sys, time
    state = json.loads(os.environ["FAKE_KUBE"])
    args = sys.argv[1:]
    with open(state["log"], "a") as log:
        log.write(" ".join(args) + "\\n")
    if "port-forward" in args:
        svc = next(a for a in args if a.startswith("svc/"))[4:]
        ns = args[args.index("-n") + 1]
        port = state["forward"][ns + "/" + svc]
        print(f"Forwarding from 127.0.0.1:{{port}} -> {{svc}}", flush=True)
        time.sleep(600)
        sys.exit(0)
    selector = args[args.index("-l") + 1]
    if "get" in args and "service" in args:
        comp = selector.split(",")[0].split("=")[1]
        items = [s for s in state["services"] if s["component"] == comp]
        print(json.dumps({{"items": [{{"metadata": {{"name": s["name"]}}, "spec": {{"ports": [{{"port": s["port"]}}]}}}}
                                   for s in items]}}))
    elif "get" in args and "deployment" in args:
        env = [{{"name": "KUBECOST_URL", "value": state["kubecost_url"]}}]
        containers = [{{"name": "exporter", "env": env}}]
        print(json.dumps({{"items": [{{"spec": {{"template": {{"spec": {{"containers": containers}}}}}}}}]}}))
    else:
        sys.exit("fake kubectl: unexpected " + " ".join(args))
    '''
)


def test_kube_context_form(ops_bench: OpsBench, tmp_path: Path) -> None:
    kubectl = tmp_path / "kubectl"
    kubectl.write_text(FAKE_KUBECTL.format(python=sys.executable))
    kubectl.chmod(0o755)

    def port(url: str) -> int:
        return int(url.rsplit(":", 1)[1])

    log = tmp_path / "kubectl.log"
    state = {
        "log": str(log),
        "services": [
            {"component": "allocation-exporter", "name": "kci-kubecost-integration-exporter", "port": 9103},
            {"component": "agent", "name": "kci-kubecost-integration-agent", "port": 9090},
        ],
        "kubecost_url": "http://kci-cost-analyzer.kubecost.svc:9090",
        "forward": {
            "kci/kci-kubecost-integration-exporter": port(ops_bench.tenant.exporter_url),
            "kci/kci-kubecost-integration-agent": port(ops_bench.tenant.agent_url),
            "kubecost/kci-cost-analyzer": port(ops_bench.tenant.sim_url),
        },
    }
    rc, doc, err = run_verify(
        "--kube-context",
        "prod",
        "--kube-namespace",
        "kci",
        "--release",
        "kci",
        "--kubectl",
        str(kubectl),
        "--thanos-url",
        ops_bench.thanos.query_url,
        env={"FAKE_KUBE": json.dumps(state)},
    )
    assert rc == 0, json.dumps(doc, indent=2) + err
    assert statuses(doc) == dict.fromkeys(CHECKS, "pass")
    calls = log.read_text()
    assert "--context prod -n kci port-forward svc/kci-kubecost-integration-exporter :9103" in calls
    assert "-n kubecost port-forward svc/kci-cost-analyzer :9090" in calls
    assert "app.kubernetes.io/instance=kci" in calls


@pytest.fixture(scope="module")
def doomed_bench(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpsBench]:
    """A bench of its own for links that cannot be restored in place (Thanos Receive and the exporter stopped); no
    ruler: no test here reads a forecast or a budget."""
    spec = TenantSpec("doomed-tenant", "doomed-cluster")
    bench = start_ops_bench(tmp_path_factory.mktemp("doomed-bench"), spec, ruler=False)
    yield bench
    bench.group.stop_all(grace=2.0)  # the agent would try for a minute to flush to the stopped Receive


def _stop(bench: OpsBench, name: str) -> None:
    proc = next(p for p in bench.group.procs if p.name == name)
    os.killpg(proc.popen.pid, signal.SIGTERM)
    proc.popen.wait(timeout=30)


def test_thanos_receive_down_then_exporter_down(doomed_bench: OpsBench) -> None:
    rc, doc, _ = run_verify(*url_args(doomed_bench))
    assert rc == 0, doc
    _stop(doomed_bench, "thanos-receive")
    tenant = doomed_bench.tenant.spec
    ids = ["--cluster-name", tenant.cluster_name, "--tenant-id", tenant.tenant_id]
    # The agent notices at its next send (batch deadline 5 s, then backoff): poll until verify sees it.
    seen: list[dict[str, Any]] = []

    def remote_write_fails() -> bool:
        rc, doc, _ = run_verify(*url_args(doomed_bench), *ids)
        seen[:] = [doc]
        return rc == 1 and statuses(doc)["remote-write"] == "fail"

    wait_until(remote_write_fails, 60, "verify to report remote-write failing")
    doc = seen[0]
    st = statuses(doc)
    assert "retried" in summary(doc, "remote-write"), doc
    assert st["thanos"] == "fail", doc
    # the cause is named: Thanos's own warning about the unreachable store, or Receive among the causes
    assert "Thanos Receive" in summary(doc, "thanos"), doc
    assert st["exporter"] == st["target"] == st["sums"] == st["kubecost"] == "pass"

    # The monitoring Prometheus (scraping the agent) evaluates the chart's rules: the retry alert goes pending.
    def retrying_alert() -> bool:
        alerts = http_json(f"{doomed_bench.monitor_url}/api/v1/alerts")["data"]["alerts"]
        return any(a["labels"]["alertname"] == "KubecostRemoteWriteRetrying" for a in alerts)

    wait_until(retrying_alert, 60, "KubecostRemoteWriteRetrying pending in the monitoring Prometheus")

    _stop(doomed_bench, f"exporter-{tenant.tenant_id}")

    def target_down() -> bool:
        _rc, doc, _ = run_verify(*url_args(doomed_bench), *ids, "--skip", "remote-write", "--skip", "thanos")
        return statuses(doc)["target"] == "fail"

    wait_until(target_down, 30, "the agent to mark the exporter target down")
    rc, doc, _ = run_verify(*url_args(doomed_bench), *ids, "--skip", "remote-write")
    st = statuses(doc)
    assert st["exporter"] == "fail"
    assert "connection refused" in summary(doc, "exporter")
    assert st["target"] == "fail"
    assert "not up" in summary(doc, "target")
