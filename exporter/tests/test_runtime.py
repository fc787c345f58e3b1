"""Runtime: background refresher, snapshot swap, staleness, HTTP endpoints, SIGTERM, logs."""

from __future__ import annotations

import gzip
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import pytest
from exporter_testlib import FakeKubecost, Reply

from kubecost_allocation_exporter.config import SETTINGS, Config, load
from kubecost_allocation_exporter.kubecost import AllocationClient
from kubecost_allocation_exporter.refresher import Refresher
from kubecost_allocation_exporter.server import ExporterServer

pytestmark = pytest.mark.unit

HOUR = "2026-11-26T16:00:00Z,2026-11-26T17:00:00Z"
COST = b"cloudtuner_kubecost_namespace_total_cost{"
HEALTH = b"cloudtuner_kubecost_scrape_success{"


class Clock:
    def __init__(self) -> None:
        self.mono = 1000.0
        self.wall = 1795717200.0

    def advance(self, seconds: float) -> None:
        self.mono += seconds
        self.wall += seconds


def cfg(url: str, *extra: str) -> Config:
    return load(
        [
            "--kubecost-url",
            url,
            "--api",
            "kubecost",
            "--cluster-name",
            "c1",
            "--tenant-id",
            "t1",
            "--window",
            HOUR,
            "--retries",
            "0",
            "--refresh-interval",
            "60s",
            "--staleness-limit",
            "5m",
            *extra,
        ],
        {},
    )


def refresher(fake: FakeKubecost, clock: Clock, *extra: str) -> Refresher:
    c = cfg(fake.url, *extra)
    return Refresher(
        c, AllocationClient(c), wall_clock=lambda: clock.wall, monotonic=lambda: clock.mono
    )


def test_cost_series_vanish_after_staleness_while_health_series_stay(
    kubecost: FakeKubecost,
) -> None:
    clock = Clock()
    kubecost.set_fixture("/model/allocation", "kubecost2_namespace.json")
    r = refresher(kubecost, clock)
    assert r.refresh_once() is None
    assert COST in r.exposition()
    kubecost.set("/model/allocation", Reply(503, b"down", "text/plain"))
    clock.advance(60)
    err = r.refresh_once()
    assert err is not None
    assert err.reason == "http_status"
    out = r.exposition()
    assert COST in out  # last good snapshot still served while fresh
    assert b'cloudtuner_kubecost_scrape_success{cluster="c1",tenant_id="t1"} 0.0' in out
    assert b'reason="http_status",tenant_id="t1"} 1.0' in out
    clock.advance(241)  # 301 s after the last success > 5 m
    out = r.exposition()
    assert COST not in out
    assert b"cloudtuner_kubecost_cluster_total_cost" not in out
    assert HEALTH in out
    assert b"cloudtuner_kubecost_last_success_timestamp_seconds{" in out
    assert b"cloudtuner_kubecost_exporter_info{" in out


def test_each_refresh_swaps_in_a_whole_new_snapshot(kubecost: FakeKubecost) -> None:
    clock = Clock()
    kubecost.set_fixture("/model/allocation", "kubecost2_namespace.json")
    r = refresher(kubecost, clock)
    r.refresh_once()
    assert b'namespace="kube-system"' in r.exposition()
    kubecost.set_fixture("/model/allocation", "negative_idle.json")
    r.refresh_once()
    out = r.exposition()
    assert b'namespace="kube-system"' not in out  # vanished namespace gone, no leftovers
    assert b'namespace="batch"' in out


def test_an_unforeseen_answer_does_not_crash_the_refresher(kubecost: FakeKubecost) -> None:
    clock = Clock()
    weird = b'{"code":200,"data":[{"ns":{"totalCost":"a lot","window":17,"properties":[]}}]}'
    kubecost.set("/model/allocation", Reply(body=weird))
    r = refresher(kubecost, clock)
    r.refresh_once()
    assert HEALTH in r.exposition()
    kubecost.set("/model/allocation", Reply(body=b'{"code":200,"data":7}'))
    err = r.refresh_once()
    assert err is not None
    assert err.reason == "bad_response"


def test_refresh_interval_has_bounded_jitter(kubecost: FakeKubecost) -> None:
    r = refresher(kubecost, Clock(), "--refresh-jitter", "0.2")
    delays = [r.next_delay() for _ in range(200)]
    assert all(48 <= d <= 72 for d in delays)
    assert len(set(delays)) > 100


@contextmanager
def running_server(r: Refresher) -> Iterator[str]:
    server = ExporterServer("127.0.0.1", 0, r)
    thread = server.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def get(url: str) -> tuple[int, bytes, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read(), resp.headers.get("Content-Type", "")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), exc.headers.get("Content-Type", "")


def test_scrapes_never_call_the_api_and_readiness_follows_the_first_refresh(
    kubecost: FakeKubecost,
) -> None:
    kubecost.set_fixture("/model/allocation", "kubecost2_namespace.json")
    r = refresher(kubecost, Clock())
    with running_server(r) as url:
        assert get(url + "/readyz")[0] == 503
        assert get(url + "/healthz")[0] == 200
        r.refresh_once()
        calls = len(kubecost.seen)
        for _ in range(5):
            status, body, ctype = get(url + "/metrics")
            assert status == 200
            assert COST in body
            assert ctype.startswith("text/plain; version=0.0.4")
        assert len(kubecost.seen) == calls
        assert get(url + "/readyz")[0] == 200
        assert get(url + "/nope")[0] == 404


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_daemon_serves_refreshes_in_background_and_stops_cleanly_on_sigterm(
    kubecost: FakeKubecost, tmp_path: Path
) -> None:
    kubecost.set_fixture("/model/allocation", "kubecost2_namespace.json")
    token = tmp_path / "token"
    token.write_text("very-secret-token-123")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in {s.env for s in SETTINGS}}
    env.update(
        KUBECOST_URL=kubecost.url,
        CLUSTER_NAME="c1",
        TENANT_ID="t1",
        WINDOW=HOUR,
        REFRESH_INTERVAL="1s",
        STALENESS_LIMIT="10s",
        LISTEN_ADDRESS=f"127.0.0.1:{port}",
        LOG_FORMAT="json",
        LOG_LEVEL="debug",
        AUTH_TOKEN_FILE=str(token),
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "kubecost_allocation_exporter"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if get(url + "/readyz")[0] == 200:
                    break
            except OSError:
                pass
            time.sleep(0.1)
        else:
            pytest.fail("exporter never became ready")
        assert COST in get(url + "/metrics")[1]
        time.sleep(2.5)
        assert len([s for s in kubecost.seen if s.path == "/model/allocation"]) >= 2
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    stderr = proc.stderr.read() if proc.stderr else ""
    assert rc == 0, stderr
    lines = [json.loads(line) for line in stderr.splitlines() if line.strip()]
    assert any("SIGTERM" in d["msg"] for d in lines)
    assert lines[-1]["msg"] == "stopped"
    assert any(d.get("api") == "kubecost" for d in lines)
    assert "very-secret-token-123" not in stderr
    assert kubecost.seen[-1].headers.get("Authorization") == "Bearer very-secret-token-123"


def test_port_in_use_is_one_line_exit_1() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if k not in {s.env for s in SETTINGS}}
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "kubecost_allocation_exporter",
                "--cluster-name",
                "c",
                "--tenant-id",
                "t",
                "--listen-address",
                f"127.0.0.1:{port}",
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    assert proc.returncode == 1
    assert "cannot listen on 127.0.0.1" in proc.stderr


def test_liveness_fails_when_the_refresher_thread_died(kubecost: FakeKubecost) -> None:
    kubecost.set_fixture("/model/allocation", "kubecost2_namespace.json")
    r = refresher(kubecost, Clock())
    stop = threading.Event()
    stop.set()  # loop exits at once: the thread ends
    t = r.start(stop)
    t.join(timeout=5)
    assert not r.healthy()


def test_refresher_thread_runs_at_a_lower_cpu_priority_than_the_server(
    kubecost: FakeKubecost,
) -> None:
    """So a scrape answers first when a refresh and a scrape want the CPU at once (bench:
    /metrics while a refresh runs)."""
    import os

    from kubecost_allocation_exporter.refresher import REFRESHER_NICE

    kubecost.set_fixture("/model/allocation", "kubecost2_namespace.json")
    r = refresher(kubecost, Clock())
    stop = threading.Event()
    t = r.start(stop)
    try:
        assert r.attempted.wait(10)
        assert t.native_id is not None
        mine = os.getpriority(os.PRIO_PROCESS, 0)
        assert os.getpriority(os.PRIO_PROCESS, t.native_id) == min(19, mine + REFRESHER_NICE)
        assert os.getpriority(os.PRIO_PROCESS, 0) == mine  # the calling thread is unchanged
    finally:
        stop.set()
        t.join(timeout=5)


def test_breakdowns_are_queried_and_capped_through_http(kubecost: FakeKubecost) -> None:
    kubecost.set_fixture("/model/allocation", "controller_namespaces.json", aggregate="namespace")
    kubecost.set_fixture(
        "/model/allocation", "controller_breakdown.json", aggregate="namespace,controller"
    )
    r = refresher(kubecost, Clock(), "--breakdowns", "controller", "--breakdown-top-n", "2")
    assert r.refresh_once() is None
    allocation = [s for s in kubecost.seen if s.path == "/model/allocation"]
    assert [s.params["aggregate"] for s in allocation] == ["namespace", "namespace,controller"]
    out = r.exposition().decode()
    rows = [
        line
        for line in out.splitlines()
        if line.startswith("cloudtuner_kubecost_breakdown_total_cost{")
    ]
    assert len(rows) == 3
    assert 'namespace="__other__"' in rows[-1]
    assert 'value="deployment:svc-7"' in rows[0]


def test_multi_cluster_labels_cost_series_from_the_data(kubecost: FakeKubecost) -> None:
    kubecost.set_fixture("/model/allocation", "multi_cluster.json")
    r = refresher(kubecost, Clock(), "--multi-cluster")
    assert r.refresh_once() is None
    assert kubecost.seen[-2].params["aggregate"] == "cluster,namespace"
    assert kubecost.seen[-2].params["splitIdle"] == "true"
    assert (kubecost.seen[-1].path, kubecost.seen[-1].params["aggregate"]) == (
        "/model/assets",
        "cluster,type",
    )
    out = r.exposition().decode()
    assert 'cloudtuner_kubecost_cluster_idle_cost{cluster="cluster-two",tenant_id="t1"}' in out
    assert (
        'cloudtuner_kubecost_namespace_total_cost{cluster="cluster-one",namespace="default"' in out
    )
    assert 'cloudtuner_kubecost_scrape_success{cluster="c1",tenant_id="t1"} 1.0' in out


def test_metrics_are_gzipped_when_asked_and_compressed_once_per_snapshot(
    kubecost: FakeKubecost,
) -> None:
    kubecost.set_fixture("/model/allocation", "kubecost2_namespace.json")
    r = refresher(kubecost, Clock())
    r.refresh_once()
    with running_server(r) as url:
        req = urllib.request.Request(url + "/metrics", headers={"Accept-Encoding": "gzip"})
        with urllib.request.urlopen(req, timeout=5) as resp:
            assert resp.headers["Content-Encoding"] == "gzip"
            assert gzip.decompress(resp.read()) == r.exposition()
        first = r.exposition_gzip()
        assert r.exposition_gzip() is first  # cached for this snapshot
        r.refresh_once()
        assert r.exposition_gzip() is not first
        assert gzip.decompress(r.exposition_gzip()) == r.exposition()


def test_identical_answers_for_a_closed_window_reuse_the_snapshot(kubecost: FakeKubecost) -> None:
    kubecost.set_fixture("/model/allocation", "kubecost2_namespace.json")
    r = refresher(kubecost, Clock())
    assert r.refresh_once() is None
    assert not r.reused
    first = r.exposition()
    assert r.refresh_once() is None
    assert r.reused
    assert (
        r.exposition().split(b"# HELP cloudtuner_kubecost_cluster_total_cost")[1]
        == (first.split(b"# HELP cloudtuner_kubecost_cluster_total_cost")[1])
    )
    kubecost.set_fixture("/model/allocation", "negative_idle.json")
    assert r.refresh_once() is None
    assert not r.reused
    assert b'namespace="batch"' in r.exposition()


def test_open_windows_are_never_reused(kubecost: FakeKubecost) -> None:
    kubecost.set_fixture("/model/allocation", "kubecost2_namespace.json")
    r = refresher(kubecost, Clock(), "--window", "today")
    r.refresh_once()
    r.refresh_once()
    assert not r.reused


def test_a_changed_breakdown_answer_rebuilds_everything(kubecost: FakeKubecost) -> None:
    kubecost.set_fixture("/model/allocation", "controller_namespaces.json", aggregate="namespace")
    kubecost.set_fixture(
        "/model/allocation", "controller_breakdown.json", aggregate="namespace,controller"
    )
    r = refresher(kubecost, Clock(), "--breakdowns", "controller")
    r.refresh_once()
    kubecost.set_fixture(
        "/model/allocation", "pre1100_label_keys.json", aggregate="namespace,controller"
    )
    assert r.refresh_once() is None
    assert not r.reused
    out = r.exposition()
    assert b'value="app=web"' in out  # the new breakdown answer is used
    assert b'namespace="shop"' in out  # the unchanged namespace answer was parsed again


def test_gzip_cache_never_serves_a_freed_expositions_body(kubecost: FakeKubecost) -> None:
    """A new exposition may be allocated where a freed one was (same id()): the gzip cache must
    still tell them apart. The loop makes CPython reuse the freed memory, then checks the body."""
    kubecost.set_fixture("/model/allocation", "kubecost2_namespace.json")
    r = refresher(kubecost, Clock())
    r.refresh_once()
    reused = 0
    for i in range(50):
        old = r._state
        r._state = replace(old, costs=old.costs + b"# %d\n" % i)
        compressed = r.exposition_gzip()
        old_id = id(r._state)
        del old
        # two swaps, as two refreshes without a gzip scrape: the second new exposition is
        # allocated while the compressed one is already freed
        r._state = replace(r._state, health=r._state.health)
        r._state = replace(r._state, costs=r._state.costs + b"# next\n")
        reused += id(r._state) == old_id
        assert gzip.decompress(r.exposition_gzip()) == r.exposition(), f"round {i}"
        assert r.exposition_gzip() is not compressed
    assert reused, "CPython never reused the freed exposition's memory: the case is not exercised"
