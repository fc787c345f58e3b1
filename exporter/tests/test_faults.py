"""Client faults on a real socket: oversized answers (declared or chunked), short bodies, resets,
error pages, a dripping answer; and that a failed refresh keeps nothing of the answer it read.

The process-level behaviour (health series, staleness, recovery) is proven against the simulator in
tests-e2e/reliability/test_upstream_faults.py and under the chart's memory limit in
tests-e2e/reliability/test_memory_bounds.py; these pin the client's reasons, messages and memory.
"""

from __future__ import annotations

import contextlib
import gc
import socket
import struct
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from exporter_testlib import fixture_bytes

from kubecost_allocation_exporter.config import Config, load
from kubecost_allocation_exporter.kubecost import AllocationClient, ApiError
from kubecost_allocation_exporter.refresher import Refresher

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


def client(url: str, max_bytes: int = 64 * 1024, *extra: str) -> AllocationClient:
    return AllocationClient(config(url, max_bytes, *extra))


def config(url: str, max_bytes: int = 64 * 1024, *extra: str) -> Config:
    return load(
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
            *("--window", WINDOW, *extra),
        ],
        {},
    )


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
            list(c.query(WINDOW, "namespace"))
    assert err.value.reason == "too_large"
    assert "larger than --max-response-bytes (65536 bytes)" in str(err.value)


@pytest.mark.parametrize("send", [declared, chunked], ids=["content-length", "chunked"])
def test_an_answer_under_the_cap_is_read_whole(send: Callable[[bytes], Behaviour]) -> None:
    body = padded(60 * 1024)
    with server(send(body)) as url:
        pages = list(client(url).query(WINDOW, "namespace"))
    assert sum(page.rows for page in pages) == 6
    assert "default" in pages[0].sets[0]


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
        list(client(url).query(WINDOW, "namespace"))
    assert err.value.reason == "connection"
    assert "was cut off" in str(err.value)
    assert "\n" not in str(err.value)


def test_a_connection_reset_is_a_connection_error() -> None:
    def reset(h: BaseHTTPRequestHandler) -> None:
        h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        h.close_connection = True
        h.connection.close()

    with server(reset) as url, pytest.raises(ApiError) as err:
        list(client(url).query(WINDOW, "namespace"))
    assert err.value.reason == "connection"


def page(status: int, body: bytes, ctype: str = "text/html") -> Behaviour:
    def send(h: BaseHTTPRequestHandler) -> None:
        h.send_response(status)
        h.send_header("Content-Type", ctype)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            h.wfile.write(body)  # the client may read what it needs and close

    return send


HTML = b"<html><body>" + b"<p>upstream error</p>\n" * 400_000 + b"</body></html>"  # 8.8 MB


@pytest.mark.parametrize(
    ("status", "reason", "says"),
    [(502, "http_status", "HTTP 502 from"), (200, "not_json", "is not JSON (HTTP 200, text/html)")],
)
def test_an_error_page_is_read_only_as_far_as_its_message(
    status: int, reason: str, says: str
) -> None:
    """A large HTML error page (an ingress, a login page) is not read whole: the message needs
    its first bytes, and reading 50 MB on every refresh would hold them in memory each time."""
    with server(page(status, HTML)) as url:
        c = client(url, 64 * 1024 * 1024)
        tracemalloc.start()
        try:
            with pytest.raises(ApiError) as err:
                list(c.query(WINDOW, "namespace"))
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert err.value.reason == reason
    assert says in str(err.value)
    assert "upstream error" in str(err.value)
    assert len(str(err.value)) < 400
    assert peak < 4 * 2**20, (
        f"{peak / 2**20:.1f} MiB allocated for an {len(HTML) / 2**20:.1f} MiB page"
    )


def test_a_failed_refresh_keeps_no_reference_to_the_answer() -> None:
    """The error a refresh stores (served by /readyz, counted in the health series) holds no
    traceback, so the frames that read the answer, and the answer, are freed at once, not at
    the next full garbage collection (the cyclic GC is off here to prove it)."""
    body = GOOD.rstrip().rstrip(b"}") + b',"padding":"' + b"x" * 20_000_000 + b'"}'
    body = body.replace(b'"code": 200', b'"code": 503', 1).replace(b'"code":200', b'"code":503', 1)
    assert b'"code": 503' in body or b'"code":503' in body
    with server(declared(body)) as url:
        cfg = config(url, 64 * 1024 * 1024)
        refresher = Refresher(cfg, AllocationClient(cfg))
        enabled = gc.isenabled()
        gc.disable()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            error = refresher.refresh_once(log_failure=False)
            after, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
            if enabled:
                gc.enable()
    assert error is not None
    assert error.reason == "api_error"
    assert peak - before > len(body)  # the answer was read whole ...
    assert after - before < 2 * 2**20, (
        f"{(after - before) / 2**20:.1f} MiB still held"
    )  # ... and freed
    assert refresher.last_error is error
    assert error.__traceback__ is None
    assert error.__context__ is None
    assert error.__cause__ is None


def test_a_dripping_answer_fails_the_refresh_at_its_deadline() -> None:
    """Each byte arrives well within the read timeout, so no read ever times out; the refresh's
    own deadline (--refresh-timeout) ends it with reason timeout."""

    def drip(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(GOOD)))
        h.end_headers()
        try:
            for i in range(len(GOOD)):
                h.wfile.write(GOOD[i : i + 1])
                h.wfile.flush()
                time.sleep(0.05)
        except (BrokenPipeError, ConnectionResetError):
            pass

    with server(drip) as url:
        cfg = config(url, 64 * 1024 * 1024, "--refresh-timeout", "1s", "--request-timeout", "3s")
        refresher = Refresher(cfg, AllocationClient(cfg))
        started = time.monotonic()
        error = refresher.refresh_once(log_failure=False)
        took = time.monotonic() - started
    assert error is not None
    assert error.reason == "timeout"
    assert "not finished within --refresh-timeout (1s)" in str(error)
    assert 1.0 <= took < 2.0
