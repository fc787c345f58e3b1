"""HTTP endpoints: /metrics (pre-rendered bytes, never calls the API), /healthz, /readyz.

Every pod can reach the metrics port unless a NetworkPolicy says otherwise, so the listener must
keep answering the scraper while other clients misbehave. It has two parts:

* One event-loop thread accepts connections and reads request heads from non-blocking sockets. A
  client that sends slowly, or nothing, costs a buffer of at most `max_head_bytes`, never a thread.
  A head must be complete within `head_timeout` (else 408), its request line at most
  `max_request_line` bytes (else 414), the whole head at most `max_head_bytes` bytes and
  `max_headers` header lines (else 431); the connection is then closed. At most `max_connections`
  are open: the next one closes the connection that has waited longest for its request.
* Complete requests go to a pool of `workers` threads, which write the answer within
  `write_timeout` and give kept-alive connections back to the loop (closed after `idle_timeout`
  without a request).

Only GET and HEAD are served; the connection of a request with a body is closed after the answer.
"""

from __future__ import annotations

import contextlib
import io
import logging
import queue
import re
import selectors
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any

from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from kubecost_allocation_exporter.redact import redact_text
from kubecost_allocation_exporter.refresher import Refresher

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

log = logging.getLogger(__name__)

INDEX = (
    b"<html><head><title>kubecost-allocation-exporter</title></head><body>"
    b"<h1>kubecost-allocation-exporter</h1><p><a href='/metrics'>/metrics</a> "
    b"<a href='/healthz'>/healthz</a> <a href='/readyz'>/readyz</a></p></body></html>\n"
)


@dataclass(frozen=True)
class ListenerLimits:
    """Bounds of the metrics listener (module docstring). A Prometheus scrape request is one short
    request line and about six headers, under 1 KiB; the chart's scrape timeout is 30 s."""

    # Pending connections the kernel queues before accept() (capped by net.core.somaxconn); the
    # socketserver default of 5 dropped SYNs under a burst, costing the scraper a 1 s retransmit.
    backlog: int = 128
    # Threads answering complete requests: an answer is a write of pre-rendered bytes.
    workers: int = 4
    max_connections: int = 256
    max_request_line: int = 8 * 1024
    max_head_bytes: int = 16 * 1024
    max_headers: int = 64
    head_timeout: float = 10.0
    idle_timeout: float = 30.0
    write_timeout: float = 30.0
    # After a 4xx the socket is half-closed and what the client still sends is read and dropped for
    # up to this long / this many bytes, so that the client reads the answer instead of a reset.
    linger_seconds: float = 2.0
    linger_bytes: int = 256 * 1024


# The end of a request head: an empty line (CRLF or bare LF, as http.client accepts).
_HEAD_END = re.compile(rb"\n\r?\n")
# How often the loop looks for connections past their deadline.
_TICK = 0.1
# Connections accepted per wake-up before the loop reads from the others again.
_ACCEPT_BURST = 64


class _Conn:
    """A client connection as the event loop sees it."""

    __slots__ = ("addr", "buf", "deadline", "discarded", "idle", "lingering", "sock")

    def __init__(self, sock: socket.socket, addr: Any, deadline: float) -> None:
        self.sock = sock
        self.addr = addr
        self.buf = bytearray()
        self.deadline = deadline
        self.idle = False  # kept alive, waiting for the first byte of its next request
        self.lingering = False  # answered with an error, draining before close
        self.discarded = 0


class _DeadlineWriter(io.BufferedIOBase):
    """Unbuffered writes to a blocking socket that all end by one deadline: a client that reads
    slowly cannot hold a worker longer than `write_timeout`, however many writes an answer takes."""

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        super().__init__()
        self._sock = sock
        self._deadline = deadline

    def writable(self) -> bool:
        return True

    def write(self, data: ReadableBuffer, /) -> int:
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("answer not written within the write timeout")
        self._sock.settimeout(remaining)
        self._sock.sendall(data)
        return memoryview(data).nbytes


class _Handler(BaseHTTPRequestHandler):
    """Answers one request whose head the event loop has already read."""

    protocol_version = "HTTP/1.1"

    def __init__(
        self, sock: socket.socket, addr: Any, head: bytes, wfile: io.BufferedIOBase, r: Refresher
    ) -> None:
        # Not BaseRequestHandler.__init__ (setup/handle/finish on a socket it reads itself): the
        # head is already here, and keeping or closing the connection is the server's decision.
        self.refresher = r
        self.request = sock
        self.connection = sock
        self.client_address = addr
        self.rfile = io.BytesIO(head)
        self.wfile = wfile
        self.close_connection = True
        self.handle_one_request()

    @property
    def keep_alive(self) -> bool:
        """May the connection carry another request? Not after a body we did not read."""
        headers = getattr(self, "headers", None)
        if self.close_connection or headers is None:
            return False
        return headers.get("Content-Length", "0").strip() in ("", "0") and (
            "Transfer-Encoding" not in headers
        )

    def _send(
        self,
        status: int,
        body: bytes | tuple[bytes, ...],
        ctype: str = "text/plain; charset=utf-8",
        encoding: str | None = None,
    ) -> None:
        parts = body if isinstance(body, tuple) else (body,)
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        if encoding:
            self.send_header("Content-Encoding", encoding)
            self.send_header("Vary", "Accept-Encoding")
        self.send_header("Content-Length", str(sum(map(len, parts))))
        self.end_headers()
        if self.command != "HEAD":
            for part in parts:
                self.wfile.write(part)

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        refresher = self.refresher
        if path == "/metrics":
            if "gzip" in self.headers.get("Accept-Encoding", ""):
                self._send(200, refresher.exposition_gzip(), CONTENT_TYPE_PLAIN_0_0_4, "gzip")
            else:
                self._send(200, refresher.exposition_parts(), CONTENT_TYPE_PLAIN_0_0_4)
        elif path == "/healthz":
            if refresher.healthy():
                self._send(200, b"ok\n")
            else:
                self._send(503, b"refresher stuck or dead\n")
        elif path == "/readyz":
            if not refresher.attempted.is_set():
                self._send(503, b"first refresh not finished\n")
            elif refresher.last_error is not None:
                # Ready to be scraped: the health series say what is wrong.
                why = redact_text(str(refresher.last_error))
                self._send(200, f"ready; last refresh failed: {why}\n".encode())
            else:
                self._send(200, b"ready\n")
        elif path == "/":
            self._send(200, INDEX, "text/html; charset=utf-8")
        else:
            self._send(404, b"not found\n")

    do_HEAD = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)


class ExporterServer:
    """The metrics listener. `start()` runs it in a thread; `shutdown()` then `server_close()`."""

    def __init__(
        self, host: str, port: int, refresher: Refresher, limits: ListenerLimits | None = None
    ) -> None:
        self.refresher = refresher
        self.limits = limits or ListenerLimits()
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.socket = socket.socket(family, socket.SOCK_STREAM)
        try:
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.socket.bind((host, port))
            self.socket.listen(self.limits.backlog)
            self.socket.setblocking(False)
        except OSError:
            self.socket.close()
            raise
        self.server_address: tuple[Any, ...] = self.socket.getsockname()
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._selector.register(self.socket, selectors.EVENT_READ)
        self._selector.register(self._wake_r, selectors.EVENT_READ)
        self._pool = ThreadPoolExecutor(self.limits.workers, thread_name_prefix="http")
        # Connections answered by a worker, back to the loop: (connection, keep it open).
        self._done: queue.SimpleQueue[tuple[_Conn, bool]] = queue.SimpleQueue()
        # Event-loop thread only. Waiting for a request head, oldest first (the eviction order).
        self._waiting: dict[_Conn, None] = {}
        self._busy: set[_Conn] = set()  # with a worker
        self._stop = threading.Event()
        self._stopped = threading.Event()
        self._stopped.set()

    def start(self) -> threading.Thread:
        t = threading.Thread(target=self.serve_forever, name="http", daemon=True)
        self._stopped.clear()
        t.start()
        return t

    def serve_forever(self) -> None:
        self._stopped.clear()
        next_scan = 0.0
        try:
            while not self._stop.is_set():
                for key, _ in self._selector.select(_TICK):
                    if key.fileobj is self.socket:
                        self._accept()
                    elif key.fileobj is self._wake_r:
                        self._drain_wake()
                    else:
                        self._on_readable(key.data)
                self._collect_done()
                now = time.monotonic()
                if now >= next_scan:
                    self._expire(now)
                    next_scan = now + _TICK
        finally:
            self._stopped.set()

    def shutdown(self) -> None:
        """Stop the loop and wait for it (like socketserver's `shutdown`)."""
        self._stop.set()
        self._wake()
        self._stopped.wait()

    def server_close(self) -> None:
        self._stop.set()
        self._pool.shutdown(wait=False, cancel_futures=True)
        for conn in [*self._waiting, *self._busy]:
            # shutdown() wakes a worker blocked in a write on it; close() alone would not.
            with contextlib.suppress(OSError):
                conn.sock.shutdown(socket.SHUT_RDWR)
            conn.sock.close()
        self._waiting.clear()
        self._busy.clear()
        self._selector.close()
        self.socket.close()
        self._wake_r.close()
        self._wake_w.close()

    # ---------------------------------------------------------------- event loop

    def _wake(self) -> None:
        # A full buffer means the loop is awake anyway; a closed one that it has stopped.
        with contextlib.suppress(OSError):
            self._wake_w.send(b"\0")

    def _drain_wake(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except OSError:
            pass

    def _accept(self) -> None:
        now = time.monotonic()
        for _ in range(_ACCEPT_BURST):
            try:
                sock, addr = self.socket.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # e.g. out of file descriptors: retried on the next tick
                log.debug("accept failed: %s", exc)
                return
            sock.setblocking(False)
            # Headers and body are two writes; without TCP_NODELAY the body can wait for a
            # delayed ACK.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if len(self._waiting) + len(self._busy) >= self.limits.max_connections:
                if not self._waiting:
                    sock.close()
                    continue
                self._close(next(iter(self._waiting)))
            conn = _Conn(sock, addr, now + self.limits.head_timeout)
            self._waiting[conn] = None
            self._selector.register(sock, selectors.EVENT_READ, conn)

    def _on_readable(self, conn: _Conn) -> None:
        limit = self.limits.max_head_bytes + 1 - len(conn.buf)
        try:
            data = conn.sock.recv(65536 if conn.lingering else max(limit, 1))
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(conn)
            return
        if not data:
            self._close(conn)
            return
        if conn.lingering:
            conn.discarded += len(data)
            if conn.discarded > self.limits.linger_bytes:
                self._close(conn)
            return
        if conn.idle:
            conn.idle = False
            conn.deadline = time.monotonic() + self.limits.head_timeout
        start = max(0, len(conn.buf) - 2)  # an end-of-head marker may straddle two reads
        conn.buf += data
        self._check_head(conn, start)

    def _check_head(self, conn: _Conn, start: int) -> None:
        lim = self.limits
        buf = conn.buf
        if buf.find(b"\n", 0, lim.max_request_line + 1) < 0 and len(buf) > lim.max_request_line:
            self._reject(conn, 414, "URI Too Long")
            return
        m = _HEAD_END.search(buf, start)
        if m is None:
            if len(buf) > lim.max_head_bytes:
                self._reject(conn, 431, "Request Header Fields Too Large")
            return
        end = m.end()
        # request line + header lines + the empty line
        if end > lim.max_head_bytes or buf.count(b"\n", 0, end) - 2 > lim.max_headers:
            self._reject(conn, 431, "Request Header Fields Too Large")
            return
        head = bytes(buf[:end])
        del buf[:end]  # anything after the head is the next (pipelined) request
        self._selector.unregister(conn.sock)
        del self._waiting[conn]
        self._busy.add(conn)
        self._pool.submit(self._serve, conn, head)

    def _reject(self, conn: _Conn, status: int, reason: str) -> None:
        body = f"{status} {reason}\n".encode()
        answer = (
            f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        ).encode() + body
        log.debug("%s: %d %s", conn.addr, status, reason)
        try:
            conn.sock.send(answer)  # a few hundred bytes: the send buffer takes them at once
            conn.sock.shutdown(socket.SHUT_WR)
        except OSError:
            self._close(conn)
            return
        conn.lingering = True
        conn.buf.clear()
        conn.deadline = time.monotonic() + self.limits.linger_seconds

    def _expire(self, now: float) -> None:
        for conn in [c for c in self._waiting if c.deadline <= now]:
            if conn.lingering or conn.idle or not conn.buf:
                self._close(conn)
            else:
                self._reject(conn, 408, "Request Timeout")
                self._close(conn)

    def _close(self, conn: _Conn) -> None:
        if conn in self._waiting:
            del self._waiting[conn]
            self._selector.unregister(conn.sock)
        conn.sock.close()

    def _collect_done(self) -> None:
        while True:
            try:
                conn, keep = self._done.get_nowait()
            except queue.Empty:
                return
            self._busy.discard(conn)
            if not keep or self._stop.is_set():
                conn.sock.close()
                continue
            now = time.monotonic()
            try:
                conn.sock.setblocking(False)
                self._selector.register(conn.sock, selectors.EVENT_READ, conn)
            except (OSError, ValueError):
                conn.sock.close()
                continue
            self._waiting[conn] = None
            if conn.buf:  # the next request arrived with the last one
                conn.deadline = now + self.limits.head_timeout
                self._check_head(conn, 0)
            else:
                conn.idle = True
                conn.deadline = now + self.limits.idle_timeout

    # ---------------------------------------------------------------- workers

    def _serve(self, conn: _Conn, head: bytes) -> None:
        keep = False
        try:
            writer = _DeadlineWriter(conn.sock, time.monotonic() + self.limits.write_timeout)
            keep = _Handler(conn.sock, conn.addr, head, writer, self.refresher).keep_alive
        except OSError as exc:  # the client went away or stopped reading
            log.debug("%s: %s", conn.addr, exc)
        except Exception:
            log.exception("error answering %s", conn.addr)
        finally:
            self._done.put((conn, keep))
            self._wake()
