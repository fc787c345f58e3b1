"""No credential in any log line or health answer.

Process tests run the real exporter daemon (JSON logs at debug level, the most talkative) and read
its stderr and /readyz: a key file with a carriage return in it, a token file with a line feed, a
Kubecost URL with `?token=` and user:password. Before, requests refused the CR with an error that
quoted the header value, so the key's first characters reached the log and /readyz; the URL's query
was logged as is. They import nothing new from the exporter, so they also run against an older one.
The unit tests feed `redact_text` the messages the libraries really produce.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests
from exporter_testlib import FakeKubecost

from kubecost_allocation_exporter.config import SETTINGS

pytestmark = pytest.mark.unit

HOUR = "2026-11-26T16:00:00Z,2026-11-26T17:00:00Z"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def get(port: int, path: str) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read().decode()
    finally:
        conn.close()


@contextmanager
def daemon(extra_env: dict[str, str]) -> Iterator[tuple[int, list[str]]]:
    """The exporter daemon at debug level; yields (port, stderr lines so far, filled at exit)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in {s.env for s in SETTINGS}}
    env.update(
        KUBECOST_API="kubecost",
        CLUSTER_NAME="c1",
        TENANT_ID="t1",
        WINDOW=HOUR,
        RETRIES="0",
        REFRESH_INTERVAL="1s",
        STALENESS_LIMIT="10s",
        LISTEN_ADDRESS=f"127.0.0.1:{port}",
        LOG_FORMAT="json",
        LOG_LEVEL="debug",
        **extra_env,
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "kubecost_allocation_exporter"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if get(port, "/readyz")[0] == 200:
                    break
            except OSError:
                pass
            assert proc.poll() is None, "exporter exited"
            assert time.monotonic() < deadline, "exporter never became ready"
            time.sleep(0.1)
        time.sleep(1.5)  # a second refresh, and its log lines
        yield port, lines
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            _, err = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
        lines += err.splitlines()


def test_a_key_file_with_a_carriage_return_shows_none_of_the_key(
    kubecost: FakeKubecost, tmp_path: Path
) -> None:
    kubecost.set_fixture("/model/allocation", "kubecost2_namespace.json")
    key = tmp_path / "key"
    key.write_text("kc-key-4f1c\rtail-9d2e\n")
    with daemon({"KUBECOST_URL": kubecost.url, "API_KEY_FILE": str(key)}) as (port, lines):
        status, readyz = get(port, "/readyz")
    text = "\n".join(lines)
    print(f"\n[key with CR] readyz={readyz.strip()!r}")
    assert status == 200
    assert "last refresh failed" in readyz
    for fragment in ("kc-key", "4f1c", "tail-9d2e"):
        assert fragment not in readyz, readyz
        assert fragment not in text, [line for line in lines if fragment in line]
    assert "carriage return" in readyz, readyz
    failures = [json.loads(line) for line in lines if "refresh failed" in line]
    assert failures
    assert all(f.get("reason") == "auth" for f in failures), failures
    assert kubecost.seen == []  # nothing was sent with a broken header


def test_a_token_file_with_a_line_feed_inside_is_refused_unseen(
    kubecost: FakeKubecost, tmp_path: Path
) -> None:
    kubecost.set_fixture("/model/allocation", "kubecost2_namespace.json")
    token = tmp_path / "token"
    token.write_text("first-line-71aa\nsecond-line-e03b\n")
    with daemon({"KUBECOST_URL": kubecost.url, "AUTH_TOKEN_FILE": str(token)}) as (port, lines):
        readyz = get(port, "/readyz")[1]
    text = "\n".join([readyz, *lines])
    for fragment in ("first-line", "71aa", "second-line", "e03b"):
        assert fragment not in text
    assert "line feed" in readyz, readyz


def test_a_kubecost_url_with_a_token_and_a_password_is_logged_redacted(
    kubecost: FakeKubecost,
) -> None:
    """At debug level urllib3 logs every request line with its query; none of it shows the token."""
    kubecost.set_fixture("/model/allocation", "kubecost2_namespace.json")
    url = kubecost.url.replace("://", "://kci:pw-55e1@") + "/model/allocation?token=qt-81c4d9"
    with daemon({"KUBECOST_URL": url}) as (port, lines):
        assert get(port, "/readyz") == (200, "ready\n")
    text = "\n".join(lines)
    assert "qt-81c4d9" not in text
    assert "pw-55e1" not in text
    assert "/model/allocation?token=<redacted>" in text  # the URL is still recognisable
    assert kubecost.seen[-1].params.get("token") == "qt-81c4d9"  # and still used as given


# ------------------------------------------------------------------------------ redact_text units


def library_messages() -> list[tuple[str, str]]:
    """(secret, message) pairs as requests / http.client / urllib3 phrase them."""
    out = []
    try:
        requests.Request("GET", "http://x/", headers={"X-API-KEY": "lib-key-1\rrest"}).prepare()
    except requests.exceptions.InvalidHeader as exc:
        out.append(("lib-key-1", str(exc)))
    conn = http.client.HTTPConnection("127.0.0.1", 9)
    conn.putrequest("GET", "/")
    try:
        conn.putheader("Authorization", "Bearer lib-tok-2\r\nX: y")
    except ValueError as exc:
        out.append(("lib-tok-2", str(exc)))
    out.append(
        (
            "lib-q-3",
            "HTTPConnectionPool(host='k', port=9090): Max retries exceeded with url: "
            "/model/allocation?token=lib-q-3&window=today (Caused by NewConnectionError(...))",
        )
    )
    out.append(("lib-auth-4", "sending {'Authorization': 'Basic lib-auth-4', 'Accept': '*/*'}"))
    out.append(("lib-auth-5", "header Authorization: Bearer lib-auth-5"))
    out.append(("lib-pw-6", "cannot connect to http://user:lib-pw-6@k:9090/model/allocation"))
    return out


@pytest.mark.parametrize(("secret", "message"), library_messages())
def test_redact_text_masks_what_libraries_quote(secret: str, message: str) -> None:
    from kubecost_allocation_exporter.redact import redact_text

    assert secret in message  # the library really quotes it
    assert secret not in redact_text(message)


def test_redact_text_leaves_ordinary_messages_alone() -> None:
    from kubecost_allocation_exporter.redact import redact_text

    for text in (
        "cannot read token file /etc/auth/token: No such file or directory",
        "API key file /etc/auth/key is empty",
        "HTTP 503 from http://kubecost:9090/model/allocation: no healthy upstream",
        "using kubecost Allocation API at http://k:9090/model/allocation (detected)",
    ):
        assert redact_text(text) == text


def test_redact_url_keeps_host_port_path_and_parameter_names() -> None:
    from kubecost_allocation_exporter.redact import redact_url

    assert (
        redact_url("https://u:p@kc.example:9443/model/allocation?token=t&x=1#frag")
        == "https://kc.example:9443/model/allocation?token=<redacted>&x=<redacted>"
    )
    assert redact_url("http://[::1]:9090/a") == "http://[::1]:9090/a"
    assert redact_url("http://k:9090") == "http://k:9090"
