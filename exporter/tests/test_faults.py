"""Client faults on a real socket: oversized answers (declared or chunked), short bodies, resets.

The process-level behaviour (health series, staleness, recovery) is proven against the simulator in
tests-e2e/reliability/test_upstream_faults.py; these pin the client's reasons and messages.
"""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from exporter_testlib import fixture_bytes

from kubecost_allocation_exporter.config import load
from kubecost_allocation_exporter.kubecost import AllocationClient, ApiError

pytestmark = pytest.mark.unit

WINDOW = "2026-11-26T16:00:00Z,2026-11-26T17:00:00Z"
GOOD = fixture_bytes("kubecost2_namespace.json")
Behaviour = Callable[[BaseHTTPRequestHandler], None]


@contextmanager
def server(behaviour: Behaviour) -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            behaviour(self)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    thread = threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}"
    finally:
        srv.shutdown()
        srv.server_close()


def client(url: str, max_bytes: int = 64 * 1024) -> AllocationClient:
    cfg = load(
        [
            *(
                "--cluster-name",
                "c",
                "--tenant-id",
                "t",
                "--kubecost-url",
                url,
                "--api",
                "kubecost",
            ),
            *("--retries", "0", "--max-response-bytes", str(max_bytes), "--request-timeout", "2"),
        ],
        {},
    )
    return AllocationClient(cfg)


def chunked(body: bytes) -> Behaviour:
    def send(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()
        for i in range(0, len(body), 8192):
            part = body[i : i + 8192]
            h.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
        h.wfile.write(b"0\r\n\r\n")

    return send


def declared(body: bytes) -> Behaviour:
    def send(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    return send


def padded(size: int) -> bytes:
    head = GOOD.rstrip().rstrip(b"}") + b',"padding":"'
    return head + b"x" * (size - len(head) - 2) + b'"}'


@pytest.mark.parametrize("send", [declared, chunked], ids=["content-length", "chunked"])
def test_an_answer_over_the_cap_is_refused(send: Callable[[bytes], Behaviour]) -> None:
    with server(send(padded(256 * 1024))) as url:
        c = client(url)
        with pytest.raises(ApiError) as err:
            c.fetch(WINDOW, "namespace")
    assert err.value.reason == "bad_response"
    assert "larger than --max-response-bytes (65536 bytes)" in str(err.value)


@pytest.mark.parametrize("send", [declared, chunked], ids=["content-length", "chunked"])
def test_an_answer_under_the_cap_is_read_whole(send: Callable[[bytes], Behaviour]) -> None:
    body = padded(60 * 1024)
    with server(send(body)) as url:
        result = client(url).fetch(WINDOW, "namespace")
    assert result.body == body
    assert result.sets
    assert "default" in result.sets[0]


def test_a_body_cut_short_is_a_connection_error_naming_it() -> None:
    def cut(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(GOOD)))
        h.end_headers()
        h.wfile.write(GOOD[: len(GOOD) // 2])
        h.wfile.flush()
        h.close_connection = True
        h.connection.shutdown(socket.SHUT_RDWR)

    with server(cut) as url, pytest.raises(ApiError) as err:
        client(url).fetch(WINDOW, "namespace")
    assert err.value.reason == "connection"
    assert "was cut off" in str(err.value)
    assert "\n" not in str(err.value)


def test_a_connection_reset_is_a_connection_error() -> None:
    def reset(h: BaseHTTPRequestHandler) -> None:
        h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        h.close_connection = True
        h.connection.close()

    with server(reset) as url, pytest.raises(ApiError) as err:
        client(url).fetch(WINDOW, "namespace")
    assert err.value.reason == "connection"
