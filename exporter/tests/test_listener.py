"""The metrics listener under abuse: the exporter process keeps answering /metrics in its usual time
while other clients flood it with connections, trickle request heads (slowloris) or send oversized
heads, and none of them can grow its memory or its threads.

Process tests run the real exporter (`python -m kubecost_allocation_exporter`) on 127.0.0.1 against
a fake Kubecost and read its peak RSS (VmHWM) and thread count from /proc. They use no name from
the exporter's package, so they run unchanged against an older exporter on PYTHONPATH (how the
figures "before" in docs/reliability.md were taken). The bounds they check are the defaults of
`server.ListenerLimits` (asserted below). In-process tests cover keep-alive, pipelining, eviction,
the write deadline, 408, lingering after a refusal, gzip, bare LF and IPv6 with small limits.
"""

from __future__ import annotations

import contextlib
import gzip
import http.client
import os
import re
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from statistics import median
from typing import Any, cast

import pytest
from exporter_testlib import FakeKubecost

from kubecost_allocation_exporter.config import SETTINGS

pytestmark = pytest.mark.unit

HOUR = "2026-11-26T16:00:00Z,2026-11-26T17:00:00Z"
# server.ListenerLimits defaults (test_limits_are_the_documented_ones keeps them in step)
BACKLOG = 128
MAX_CONNECTIONS = 256
MAX_REQUEST_LINE = 8 * 1024
MAX_HEAD_BYTES = 16 * 1024
MAX_HEADERS = 64
HEAD_TIMEOUT = 10.0
# A scrape under attack must answer within this (an unloaded one takes a few ms; Prometheus' own
# scrape timeout in the chart is 30 s).
SCRAPE_BUDGET = 1.0
# Threads of the exporter: main, refresher, event loop, the gzip compressor, with room for the
# interpreter's own; a thread per connection would be hundreds. The tests also check that an
# attack adds none: the count under attack is the count before it.
MAX_THREADS = 6
MIB = 1024 * 1024


# ---------------------------------------------------------------------------------------- helpers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS / VmHWM in bytes and Threads of a process, from /proc."""
    out: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) * 1024
        elif key == "Threads":
            out[key] = int(value)
    return out


@dataclass
class Exporter:
    proc: subprocess.Popen[bytes]
    port: int

    @property
    def pid(self) -> int:
        return self.proc.pid

    def status(self) -> dict[str, int]:
        return proc_status(self.pid)

    def scrape(self, path: str = "/metrics", timeout: float = 5.0) -> tuple[int, float, bytes]:
        """One GET on a new connection: status, seconds from connect to the last byte, body."""
        t0 = time.monotonic()
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            body = resp.read()
            return resp.status, time.monotonic() - t0, body
        finally:
            conn.close()

    def scrapes(self, n: int) -> list[float]:
        """`n` scrapes of /metrics, each must be a 200 with cost series; their durations."""
        times = []
        for _ in range(n):
            status, seconds, body = self.scrape()
            assert status == 200, status
            assert b"cloudtuner_kubecost_namespace_total_cost{" in body
            times.append(seconds)
        return times


@contextmanager
def exporter_process(kubecost: FakeKubecost) -> Iterator[Exporter]:
    kubecost.set_fixture("/model/allocation", "kubecost2_namespace.json")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in {s.env for s in SETTINGS}}
    env.update(
        KUBECOST_URL=kubecost.url,
        KUBECOST_API="kubecost",
        CLUSTER_NAME="c1",
        TENANT_ID="t1",
        WINDOW=HOUR,
        RETRIES="0",
        REFRESH_INTERVAL="10m",
        LISTEN_ADDRESS=f"127.0.0.1:{port}",
        LOG_LEVEL="warning",
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "kubecost_allocation_exporter"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    exporter = Exporter(proc, port)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if exporter.scrape("/readyz")[0] == 200:
                    break
            except OSError:
                pass
            assert proc.poll() is None, "exporter exited"
            assert time.monotonic() < deadline, "exporter never became ready"
            time.sleep(0.1)
        yield exporter
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGCONT)  # in case a test stopped it
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def connect_many(port: int, n: int, wait: float) -> tuple[list[socket.socket], int]:
    """Start `n` non-blocking connects; after at most `wait` seconds, return every socket and how
    many had completed their handshake."""
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex(("127.0.0.1", port))
        socks.append(s)
    pending = set(socks)
    connected = 0
    deadline = time.monotonic() + wait
    while pending and time.monotonic() < deadline:
        _, writable, _ = select.select([], list(pending), [], max(0.0, deadline - time.monotonic()))
        for s in writable:
            pending.discard(s)
            if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
                connected += 1
    return socks, connected


def close_all(socks: list[socket.socket]) -> None:
    for s in socks:
        s.close()


def figures(name: str, **values: Any) -> None:
    """Printed with -s; the numbers quoted in docs/reliability.md."""
    print(f"\n[{name}] " + ", ".join(f"{k}={v}" for k, v in values.items()))


# ------------------------------------------------------------------------ oversized request heads


def oversized_request(headers: int, size: int) -> bytes:
    pad = b"a" * size
    lines = b"".join(b"X-Pad-%d: %s\r\n" % (i, pad) for i in range(headers))
    return b"GET /metrics HTTP/1.1\r\nHost: x\r\n" + lines + b"\r\n"


def send_and_read(port: int, payload: bytes) -> bytes:
    """Send `payload` (stopping if the server stops reading) and return what the server answered
    before closing; b"" if it only reset the connection."""
    s = socket.create_connection(("127.0.0.1", port), timeout=15)
    answer = b""
    try:
        with contextlib.suppress(OSError):  # the server closed while we were still sending
            s.sendall(payload)
        try:
            while chunk := s.recv(65536):
                answer += chunk
                if b"\r\n\r\n" in answer and not answer.startswith(b"HTTP/1.1 200"):
                    break
                if answer.startswith(b"HTTP/1.1 200") and len(answer) > 100:
                    break
        except OSError:
            pass
    finally:
        s.close()
    return answer


def test_four_requests_with_6_mb_of_headers_each_do_not_grow_the_exporter(
    kubecost: FakeKubecost,
) -> None:
    """98 headers of 64 KiB each (6.4 MB, just inside Python's own per-line and count caps) from 4
    clients at once: refused with 431 after MAX_HEAD_BYTES, peak RSS flat."""
    payload = oversized_request(98, 65_000)
    assert len(payload) > 6_300_000
    with exporter_process(kubecost) as exporter:
        exporter.scrapes(3)
        before = exporter.status()["VmHWM"]
        answers: list[bytes] = [b""] * 4

        def client(i: int) -> None:
            answers[i] = send_and_read(exporter.port, payload)

        threads = [threading.Thread(target=client, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        after = exporter.status()["VmHWM"]
        times = exporter.scrapes(5)
    growth = after - before
    figures(
        "oversized headers",
        answers=[a.split(b"\r\n", 1)[0].decode() or "reset" for a in answers],
        peak_rss_before_mib=round(before / MIB, 1),
        peak_rss_after_mib=round(after / MIB, 1),
        scrape_max_s=round(max(times), 3),
    )
    for answer in answers:
        assert not answer.startswith(b"HTTP/1.1 200"), "a 6.4 MB request head was accepted"
    assert any(a.startswith(b"HTTP/1.1 431") for a in answers), answers
    assert growth < 8 * MIB, f"peak RSS grew by {growth / MIB:.1f} MiB"


def test_too_many_headers_and_a_long_request_line_are_refused(kubecost: FakeKubecost) -> None:
    many = b"GET /metrics HTTP/1.1\r\nHost: x\r\n" + b"".join(
        b"X-H%d: 1\r\n" % i for i in range(MAX_HEADERS + 1)
    )
    long_line = b"GET /metrics?" + b"q" * (MAX_REQUEST_LINE + 10) + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    fine = b"GET /metrics HTTP/1.1\r\nHost: x\r\n" + b"".join(
        b"X-H%d: 1\r\n" % i for i in range(MAX_HEADERS - 1)
    )
    with exporter_process(kubecost) as exporter:
        assert send_and_read(exporter.port, many + b"\r\n").startswith(b"HTTP/1.1 431")
        assert send_and_read(exporter.port, long_line).startswith(b"HTTP/1.1 414")
        assert send_and_read(exporter.port, fine + b"\r\n").startswith(b"HTTP/1.1 200")


# ---------------------------------------------------------------------------------------- slowloris


def test_slowloris_connections_are_closed_and_do_not_delay_scrapes(kubecost: FakeKubecost) -> None:
    """40 connections each send a request line and then one byte of a header every 0.5 s, never
    finishing the head: scrapes meanwhile answer within SCRAPE_BUDGET, no thread is spent on them
    (the thread count stays what it was before), and the exporter closes each within
    HEAD_TIMEOUT."""
    clients = 40
    with exporter_process(kubecost) as exporter:
        baseline = exporter.scrapes(10)
        threads_before = exporter.status()["Threads"]
        socks, connected = connect_many(exporter.port, clients, wait=5)
        assert connected == clients
        for s in socks:
            s.setblocking(True)
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            s.setblocking(False)
        started = time.monotonic()
        closed_after: dict[int, float] = {}
        under_attack: list[float] = []
        threads = 0
        try:
            while len(closed_after) < clients and time.monotonic() - started < HEAD_TIMEOUT + 4:
                for i, s in enumerate(socks):
                    if i in closed_after:
                        continue
                    readable, _, _ = select.select([s], [], [], 0)
                    gone = bool(readable)
                    if not gone:
                        try:
                            s.send(b"a")
                        except OSError:
                            gone = True
                    if gone:
                        closed_after[i] = time.monotonic() - started
                if time.monotonic() - started < HEAD_TIMEOUT - 2:
                    under_attack += exporter.scrapes(2)
                    threads = max(threads, exporter.status()["Threads"])
                time.sleep(0.5)
        finally:
            close_all(socks)
    figures(
        "slowloris",
        scrape_median_before_ms=round(median(baseline) * 1000, 1),
        scrape_median_under_attack_ms=round(median(under_attack) * 1000, 1),
        scrape_max_under_attack_ms=round(max(under_attack) * 1000, 1),
        threads_before=threads_before,
        threads=threads,
        closed=len(closed_after),
        closed_after_s=round(max(closed_after.values()), 1) if closed_after else None,
    )
    assert max(under_attack) < SCRAPE_BUDGET
    assert threads <= MAX_THREADS, f"{threads} threads for {clients} idle connections"
    assert threads == threads_before, f"{threads_before} threads, then {threads} under attack"
    assert len(closed_after) == clients, f"only {len(closed_after)} of {clients} closed"
    assert max(closed_after.values()) < HEAD_TIMEOUT + 2


# --------------------------------------------------------------------------------- connection flood


def test_a_connection_flood_costs_no_threads_and_does_not_delay_scrapes(
    kubecost: FakeKubecost,
) -> None:
    """600 connections opened at once and held idle (over MAX_CONNECTIONS, so the oldest are
    closed to admit new ones): every scrape meanwhile answers within SCRAPE_BUDGET, and the
    thread count stays what it was before."""
    with exporter_process(kubecost) as exporter:
        baseline = exporter.scrapes(10)
        threads_before = exporter.status()["Threads"]
        socks, connected = connect_many(exporter.port, 600, wait=3)
        try:
            time.sleep(0.5)
            threads = exporter.status()["Threads"]
            under_attack = exporter.scrapes(20)
        finally:
            close_all(socks)
        after = exporter.scrapes(5)
    figures(
        "connection flood",
        connected_within_3s=connected,
        threads_before=threads_before,
        threads=threads,
        scrape_median_before_ms=round(median(baseline) * 1000, 1),
        scrape_max_under_flood_ms=round(max(under_attack) * 1000, 1),
    )
    assert threads <= MAX_THREADS, f"{threads} threads for 600 idle connections"
    assert threads == threads_before, f"{threads_before} threads, then {threads} under the flood"
    assert max(under_attack) < SCRAPE_BUDGET
    assert max(after) < SCRAPE_BUDGET


def test_the_listen_backlog_holds_a_burst(kubecost: FakeKubecost) -> None:
    """With the exporter stopped (SIGSTOP), the kernel completes handshakes only for as many
    connections as the listen backlog holds (plus one); the rest wait for a SYN retransmit."""
    expected = min(BACKLOG, int(Path("/proc/sys/net/core/somaxconn").read_text()))
    with exporter_process(kubecost) as exporter:
        os.kill(exporter.pid, signal.SIGSTOP)
        try:
            socks, connected = connect_many(exporter.port, expected + 50, wait=0.5)
        finally:
            os.kill(exporter.pid, signal.SIGCONT)
        close_all(socks)
        exporter.scrapes(2)
    figures("backlog", queued_while_stopped=connected, expected=expected)
    assert connected >= expected


# ------------------------------------------------------------------------------- in-process details


@dataclass
class StubRefresher:
    """What the listener calls on a Refresher, with a fixed exposition."""

    body: bytes = b"cloudtuner_kubecost_scrape_success 1.0\n"

    def __post_init__(self) -> None:
        self.attempted = threading.Event()
        self.attempted.set()
        self.last_error: Exception | None = None

    def exposition_parts(self) -> tuple[bytes, ...]:
        return (self.body,)

    def exposition_gzip(self) -> bytes:
        return self.body

    def healthy(self) -> bool:
        return True


@contextmanager
def listener(stub: StubRefresher, host: str = "127.0.0.1", **limits: Any) -> Iterator[int]:
    from kubecost_allocation_exporter.refresher import Refresher
    from kubecost_allocation_exporter.server import ExporterServer, ListenerLimits

    server = ExporterServer(host, 0, cast(Refresher, stub), ListenerLimits(**limits))
    thread = server.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_limits_are_the_documented_ones() -> None:
    from kubecost_allocation_exporter.server import ListenerLimits

    lim = ListenerLimits()
    assert (lim.backlog, lim.max_connections) == (BACKLOG, MAX_CONNECTIONS)
    assert (lim.max_request_line, lim.max_head_bytes, lim.max_headers) == (
        MAX_REQUEST_LINE,
        MAX_HEAD_BYTES,
        MAX_HEADERS,
    )
    assert lim.head_timeout == HEAD_TIMEOUT
    docs = (Path(__file__).parents[2] / "docs" / "configuration.md").read_text()
    for text in ("16 KiB", "64 header lines", "8 KiB", "10 s", "256 connections", "backlog 128"):
        assert text in docs, text


def raw_exchange(port: int, data: bytes, until: int, timeout: float = 5.0) -> bytes:
    """Send `data` on one connection and read until `until` answers have arrived (or EOF)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(data)
        out = b""
        while out.count(b"HTTP/1.1 ") < until or not out.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
        return out
    finally:
        s.close()


def test_keep_alive_and_pipelined_requests_are_answered_in_order() -> None:
    with listener(StubRefresher()) as port:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        for path in ("/metrics", "/healthz", "/readyz", "/metrics"):
            conn.request("GET", path)
            resp = conn.getresponse()
            assert resp.status == 200
            resp.read()
        conn.close()
        out = raw_exchange(
            port,
            b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /nope HTTP/1.1\r\nHost: x\r\n\r\n"
            b"HEAD /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            until=3,
        )
    statuses = re.findall(rb"HTTP/1\.1 [0-9]{3} [^\r]*", out)
    assert statuses == [b"HTTP/1.1 200 OK", b"HTTP/1.1 404 Not Found", b"HTTP/1.1 200 OK"]
    assert out.endswith(b"\r\n\r\n")  # HEAD: headers only


def test_a_request_with_a_body_is_answered_and_its_connection_closed() -> None:
    with listener(StubRefresher()) as port:
        out = raw_exchange(
            port,
            b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
            b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n",
            until=2,
        )
    assert out.startswith(b"HTTP/1.1 501")
    assert out.count(b"HTTP/1.1 ") == 1  # "hello GET ..." was never taken for a request


def test_idle_keep_alive_connections_are_closed_after_the_idle_timeout() -> None:
    with listener(StubRefresher(), idle_timeout=0.5) as port:
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        t0 = time.monotonic()
        data = b""
        while chunk := s.recv(4096):
            data += chunk
        s.close()
        assert data.startswith(b"HTTP/1.1 200")
        assert 0.4 < time.monotonic() - t0 < 3


def test_at_the_connection_cap_the_longest_waiting_connection_makes_room() -> None:
    with listener(StubRefresher(), max_connections=4) as port:
        idle = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(4)]
        time.sleep(0.2)
        out = raw_exchange(
            port, b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 1
        )
        assert out.startswith(b"HTTP/1.1 200")
        assert idle[0].recv(10) == b""  # the oldest was closed to admit the scrape
        close_all(idle)


def read_until_closed(s: socket.socket, seconds: float, pace: float = 0.0) -> tuple[int, bool]:
    """Read what `s` receives (sleeping `pace` between reads) until the server closes it or
    `seconds` pass: the bytes read and whether it was closed."""
    got = 0
    deadline = time.monotonic() + seconds
    s.settimeout(1.0)
    while time.monotonic() < deadline:
        try:
            chunk = s.recv(65536)
        except TimeoutError:
            continue
        except ConnectionResetError:
            return got, True
        if not chunk:
            return got, True
        got += len(chunk)
        time.sleep(pace)
    return got, False


def test_a_client_that_stops_reading_holds_up_nothing_and_is_closed_at_the_write_deadline() -> None:
    """Two clients ask for a 64 MiB answer and stop reading: meanwhile other requests answer within
    SCRAPE_BUDGET (the deadline is 2 s), the answers are written from the refresher's bytes (the
    process grows by less than one copy of them), and each stalled connection is closed at the
    write deadline, before its whole answer was sent."""
    size = 64 * MIB
    big = StubRefresher(body=b"#" * size)
    with listener(big, write_timeout=2.0) as port:
        rss_before = proc_status(os.getpid())["VmRSS"]
        stalled = []
        for _ in range(2):
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.connect(("127.0.0.1", port))
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            stalled.append(s)
        asked = time.monotonic()
        time.sleep(0.2)  # both answers are now stuck in full socket buffers
        waits = []
        for _ in range(5):
            t0 = time.monotonic()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("GET", "/healthz")
            resp = conn.getresponse()
            assert (resp.status, resp.read()) == (200, b"ok\n")
            conn.close()
            waits.append(time.monotonic() - t0)
        growth = proc_status(os.getpid())["VmRSS"] - rss_before
        time.sleep(max(0.0, asked + 2.5 - time.monotonic()))
        results = [read_until_closed(s, 5) for s in stalled]
        close_all(stalled)
    figures(
        "stalled readers",
        healthz_max_ms=round(max(waits) * 1000, 1),
        rss_growth_mib=round(growth / MIB, 1),
        read=results,
    )
    assert max(waits) < SCRAPE_BUDGET, waits
    assert growth < 16 * MIB, f"RSS grew by {growth / MIB:.1f} MiB while two 64 MiB answers stalled"
    for got, closed in results:
        assert closed, "a connection that stopped reading was kept open past the write deadline"
        assert got < size


def test_the_write_deadline_bounds_the_whole_answer_not_each_send() -> None:
    """A client that reads 64 KiB every 20 ms keeps every send moving, but at that pace its 64 MiB
    answer would take 20 s: it is closed at the 1 s write deadline (plus what the socket buffers
    already held), before the whole answer."""
    size = 64 * MIB
    with listener(StubRefresher(body=b"#" * size), write_timeout=1.0) as port:
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        t0 = time.monotonic()
        got, closed = read_until_closed(s, 15, pace=0.02)
        took = time.monotonic() - t0
        s.close()
    figures("slow reader", read_mib=round(got / MIB, 1), closed_after_s=round(took, 1))
    assert closed, f"still open after {took:.1f} s, {got / MIB:.1f} MiB read"
    assert got < size


def test_compressing_the_exposition_holds_up_no_other_request() -> None:
    """The first gzip scrape of a snapshot compresses it (a few hundred ms for 10 MB; here 2 s):
    meanwhile /healthz answers within SCRAPE_BUDGET. The gzip answer carries its encoding, Vary and
    length."""

    class SlowGzip(StubRefresher):
        def exposition_gzip(self) -> bytes:
            time.sleep(2.0)
            return gzip.compress(self.body)

    got: dict[str, Any] = {}

    def scrape(port: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/metrics", headers={"Accept-Encoding": "gzip"})
        resp = conn.getresponse()
        got.update(status=resp.status, headers=dict(resp.getheaders()), body=resp.read())
        conn.close()

    stub = SlowGzip()
    with listener(stub) as port:
        thread = threading.Thread(target=scrape, args=(port,))
        thread.start()
        time.sleep(0.2)
        t0 = time.monotonic()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/healthz")
        assert conn.getresponse().status == 200
        waited = time.monotonic() - t0
        conn.close()
        thread.join(timeout=10)
    assert waited < SCRAPE_BUDGET, waited
    assert got["status"] == 200
    assert got["headers"]["Content-Encoding"] == "gzip"
    assert got["headers"]["Vary"] == "Accept-Encoding"
    assert int(got["headers"]["Content-Length"]) == len(got["body"])
    assert gzip.decompress(got["body"]) == stub.body


def test_bare_lf_line_endings_are_accepted_as_http_client_does() -> None:
    with listener(StubRefresher()) as port:
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(b"GET /healthz HTTP/1.1\nHost: x\n\nGET /readyz HTTP/1.1\nConnection: close\n\n")
        out = b""
        while chunk := s.recv(4096):  # until the server closes, as the second request asked
            out += chunk
        s.close()
    statuses = re.findall(rb"HTTP/1\.1 [0-9]{3} [^\r]*", out)
    assert statuses == [b"HTTP/1.1 200 OK", b"HTTP/1.1 200 OK"]
    assert out.endswith(b"\r\n\r\nready\n")


def test_an_unfinished_head_gets_408_at_the_head_timeout() -> None:
    with listener(StubRefresher(), head_timeout=0.5) as port:
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        t0 = time.monotonic()
        answer = b""
        while chunk := s.recv(4096):
            answer += chunk
        took = time.monotonic() - t0
        s.close()
    assert answer.startswith(b"HTTP/1.1 408")
    assert 0.4 < took < 3, took


def test_a_refused_client_that_is_still_sending_reads_its_answer() -> None:
    """A head over 16 KiB is refused; the client goes on sending 100 KB more, and the listener,
    half-closed, reads and drops it (up to linger_bytes), so the client's sends succeed and it reads
    the 431, not a reset."""
    with listener(StubRefresher()) as port:
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(oversized_request(1, 20_000))
        time.sleep(0.3)  # refused by now
        for _ in range(10):
            s.sendall(b"X-More: " + b"a" * 10_000 + b"\r\n")
            time.sleep(0.02)
        answer = b""
        while chunk := s.recv(4096):
            answer += chunk
        s.close()
    assert answer.startswith(b"HTTP/1.1 431")
    assert answer.endswith(b"\r\n\r\n431 Request Header Fields Too Large\n")


def test_an_ipv6_host_is_served() -> None:
    with listener(StubRefresher(), host="::1") as port:
        conn = http.client.HTTPConnection("::1", port, timeout=5)
        conn.request("GET", "/healthz")
        resp = conn.getresponse()
        assert (resp.status, resp.read()) == (200, b"ok\n")
        conn.close()
