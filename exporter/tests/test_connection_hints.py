"""Connection errors say what to do: the exporter's refresh error and `verify`'s Thanos check,
against real servers on 127.0.0.1 (a plain-HTTP server spoken to over https, a closed port, a
Thanos-shaped answer that carries warnings) and the default in-cluster URL used outside a
cluster."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from typing import Any

import pytest
from exporter_testlib import Reply, serve_fake

from kubecost_allocation_exporter.config import SETTINGS
from kubecost_allocation_exporter.hints import connection_hint

pytestmark = pytest.mark.unit

IDS = ("--cluster-name", "c1", "--tenant-id", "t1")


def exporter(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in {s.env for s in SETTINGS}}
    return subprocess.run(
        [sys.executable, "-m", "kubecost_allocation_exporter", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port  # closed again: nothing listens there


def thanos_check(*args: str) -> dict[str, Any]:
    proc = exporter("verify", "--output", "json", *IDS, *args)
    doc = json.loads(proc.stdout)
    return next(c for c in doc["checks"] if c["name"] == "thanos")


def test_the_default_url_outside_a_cluster_says_to_set_the_url() -> None:
    proc = exporter("--once", *IDS, "--api", "kubecost", "--request-timeout", "5s")
    assert proc.returncode == 1
    err = proc.stderr
    assert "kubecost-cost-analyzer.kubecost" in err
    assert "is a cluster-internal Service name" in err
    assert "set --kubecost-url" in err
    assert "kubectl port-forward" in err
    assert len(err.strip().splitlines()) == 1, err


def test_https_to_a_plain_http_port_says_use_http() -> None:
    with serve_fake() as fake:
        fake.set("/model/allocation", Reply(200, b"{}"))
        https_url = fake.url.replace("http://", "https://")
        proc = exporter("--once", *IDS, "--api", "kubecost", "--kubecost-url", https_url)
    assert proc.returncode == 1
    assert "SSLError" not in proc.stderr, proc.stderr
    assert "speaks plain HTTP, not TLS: use http:// in --kubecost-url" in proc.stderr


def test_a_closed_port_says_nothing_listens() -> None:
    port = closed_port()
    proc = exporter(
        "--once", *IDS, "--api", "kubecost", "--kubecost-url", f"http://127.0.0.1:{port}"
    )
    assert proc.returncode == 1
    assert f"nothing listens on 127.0.0.1:{port}" in proc.stderr


def test_verify_with_thanos_down_says_so_in_one_line() -> None:
    port = closed_port()
    check = thanos_check("--thanos-url", f"http://127.0.0.1:{port}")
    assert check["status"] == "fail"
    summary = check["summary"]
    assert summary.startswith(f"Thanos Query at http://127.0.0.1:{port} is unreachable"), summary
    assert f"nothing listens on 127.0.0.1:{port}" in summary
    # not the library's message: no URL-encoded query, no exception class names
    assert "%7B" not in summary
    assert "query=" not in summary
    assert "ConnectionError" not in summary
    assert "\n" not in summary


def test_verify_shows_thanos_warnings() -> None:
    # What Thanos Query answers when a store (here Thanos Receive) is down: success, no series and
    # a warning naming the store
    warning = 'receive "127.0.0.1:10907" (StoreAPI): rpc error: code = Unavailable desc = refused'
    answer = {
        "status": "success",
        "data": {"resultType": "vector", "result": []},
        "warnings": [warning],
    }
    with serve_fake() as fake:
        fake.set("/api/v1/query", Reply(200, json.dumps(answer).encode()))
        check = thanos_check("--thanos-url", fake.url)
    assert check["status"] == "fail"
    assert "Thanos Query warned" in check["summary"]
    assert warning in check["summary"]
    assert check["details"]["thanos_warnings"] == [warning]


def test_verify_names_the_causes_when_thanos_has_no_series_at_all() -> None:
    empty = {"status": "success", "data": {"resultType": "vector", "result": []}}
    with serve_fake() as fake:
        fake.set("/api/v1/query", Reply(200, json.dumps(empty).encode()))
        check = thanos_check("--thanos-url", fake.url)
    assert check["status"] == "fail"
    assert "none under any tenant either" in check["summary"]
    assert "Thanos Receive" in check["summary"]


@pytest.mark.parametrize(
    ("error", "wanted"),
    [
        ("[Errno -2] Name or service not known", "is a cluster-internal Service name"),
        ("[Errno -3] Temporary failure in name resolution", "is a cluster-internal Service name"),
        (
            "[SSL: WRONG_VERSION_NUMBER] wrong version number",
            None,
        ),  # http URL: TLS is not the issue
        (
            "[Errno 111] Connection refused",
            "nothing listens on kubecost-cost-analyzer.kubecost:9090",
        ),
        ("RemoteDisconnected('Remote end closed connection')", None),
    ],
)
def test_hints_for_the_default_url(error: str, wanted: str | None) -> None:
    hint = connection_hint("http://kubecost-cost-analyzer.kubecost:9090", error)
    if wanted is None:
        assert hint == ""
    else:
        assert wanted in hint


def test_a_public_host_that_does_not_resolve_is_not_called_cluster_internal() -> None:
    hint = connection_hint("https://kubecost.example.invalid", "Name or service not known")
    assert "cluster-internal" not in hint
    assert "check the host name in --kubecost-url" in hint
