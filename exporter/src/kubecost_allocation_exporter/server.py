"""HTTP endpoints: /metrics (pre-rendered bytes, never calls the API), /healthz, /readyz.

Every pod can reach the metrics port unless a NetworkPolicy says otherwise, so the listener must
keep answering the scraper while other clients misbehave. One asyncio event loop in one thread
serves every connection as a coroutine on its non-blocking socket: a client that sends slowly,
sends nothing or stops reading costs a suspended coroutine and a buffer of at most
`max_head_bytes`, never a thread. A head must be complete within `head_timeout` (else 408), its
request line at most `max_request_line` bytes (else 414), the whole head at most `max_head_bytes`
bytes and `max_headers` header lines (else 431). An answer is written from the refresher's
pre-rendered bytes straight to the socket, all of it within `write_timeout`. At most
`max_connections` are open: the next one closes the connection that has waited longest for its
request. Only GET and HEAD are served; a request with a body is answered, then its connection
closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import re
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from email.utils import formatdate
from http import HTTPStatus
from typing import Any, NamedTuple

from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from kubecost_allocation_exporter.redact import redact_text
from kubecost_allocation_exporter.refresher import Refresher

log = logging.getLogger(__name__)

INDEX = (
    b"<html><head><title>kubecost-allocation-exporter</title></head><body>"
    b"<h1>kubecost-allocation-exporter</h1><p><a href='/metrics'>/metrics</a> "
    b"<a href='/healthz'>/healthz</a> <a href='/readyz'>/readyz</a></p></body></html>\n"
)
_TEXT = "text/plain; charset=utf-8"
_CONTENT_TYPES = {"/metrics": CONTENT_TYPE_PLAIN_0_0_4, "/": "text/html; charset=utf-8"}


@dataclass(frozen=True)
class ListenerLimits:
    """Bounds of the metrics listener (module docstring). A Prometheus scrape request is one short
    request line and about six headers, under 1 KiB; the chart's scrape timeout is 30 s."""

    # Pending connections the kernel queues before accept() (capped by net.core.somaxconn); the
    # socketserver default of 5 dropped SYNs under a burst, costing the scraper a 1 s retransmit.
    backlog: int = 128
    max_connections: int = 256
    max_request_line: int = 8 * 1024
    max_head_bytes: int = 16 * 1024
    max_headers: int = 64
    head_timeout: float = 10.0
    idle_timeout: float = 30.0  # a kept-alive connection without a request is closed
    write_timeout: float = 30.0
    # After a 4xx the socket is half-closed and what the client still sends is read and dropped for
    # up to this long / this many bytes, so that the client reads the answer instead of a reset.
    linger_seconds: float = 2.0
    linger_bytes: int = 256 * 1024


# The end of a request head: an empty line (CRLF or bare LF, as http.client accepts).
_HEAD_END = re.compile(rb"\n\r?\n")


class _Request(NamedTuple):
    head_only: bool  # HEAD
    path: str
    gzip: bool  # the client accepts it
    keep_alive: bool  # HTTP/1.1 without `Connection: close` (1.0 with keep-alive), and no body


def _parse(head: bytes) -> _Request | HTTPStatus:
    """A request head, or the status to refuse it with. By hand: four headers matter here, and
    http.client.parse_headers (the email parser) takes four times as long for a 1 KiB head."""
    line, *lines = head.decode("latin-1").split("\n")
    words = line.split()
    if len(words) != 3 or not words[2].startswith("HTTP/"):
        return HTTPStatus.BAD_REQUEST
    method, target, version = words
    if version not in ("HTTP/1.0", "HTTP/1.1"):
        return HTTPStatus.HTTP_VERSION_NOT_SUPPORTED
    if method not in ("GET", "HEAD"):
        return HTTPStatus.NOT_IMPLEMENTED
    pairs = (h.partition(":") for h in lines)
    fields = [(n.strip().lower(), v.strip().lower()) for n, colon, v in pairs if colon]
    headers = dict(fields)
    connection = headers.get("connection", "")
    keep = "keep-alive" in connection if version == "HTTP/1.0" else "close" not in connection
    # A body is not read: what follows it would be taken for the next request.
    body = any(
        n == "transfer-encoding" or (n == "content-length" and v not in ("", "0"))
        for n, v in fields
    )
    gzip = "gzip" in headers.get("accept-encoding", "")
    return _Request(method == "HEAD", target.split("?", 1)[0], gzip, keep and not body)


def _head(status: int, ctype: str, length: int, keep_alive: bool, gzip: bool = False) -> bytes:
    return (
        f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\nDate: {formatdate(usegmt=True)}\r\n"
        f"Content-Type: {ctype}\r\nContent-Length: {length}\r\n"
        + ("Content-Encoding: gzip\r\nVary: Accept-Encoding\r\n" if gzip else "")
        + ("" if keep_alive else "Connection: close\r\n")
        + "\r\n"
    ).encode()


class ExporterServer:
    """The metrics listener. `start()` runs it in a thread; `shutdown()` then `server_close()`."""

    def __init__(
        self, host: str, port: int, refresher: Refresher, limits: ListenerLimits | None = None
    ) -> None:
        self.refresher = refresher
        self.limits = limits or ListenerLimits()
        self.socket = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        try:
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.socket.bind((host, port))
            self.socket.listen(self.limits.backlog)
            self.socket.setblocking(False)
        except OSError:
            self.socket.close()
            raise
        self.server_address: tuple[Any, ...] = self.socket.getsockname()
        self._loop = asyncio.new_event_loop()
        self._stop = asyncio.Event()
        self._thread: threading.Thread | None = None
        # gzip-compressing a 10 MB exposition (once per snapshot) takes a few hundred ms: not on
        # the loop's thread, which would answer nobody meanwhile.
        self._gzip = ThreadPoolExecutor(1, thread_name_prefix="gzip")
        # Loop thread only: every open connection, and those waiting for a request (the others are
        # being answered), longest-waiting first: the order in which they make room.
        self._conns: dict[socket.socket, asyncio.Task[None]] = {}
        self._waiting: dict[socket.socket, None] = {}

    def start(self) -> threading.Thread:
        serve = functools.partial(self._loop.run_until_complete, self._serve())
        self._thread = threading.Thread(target=serve, name="http", daemon=True)
        self._thread.start()
        return self._thread

    def shutdown(self) -> None:
        """Stop the loop and wait for it (like socketserver's `shutdown`)."""
        if self._thread is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join()
            self._thread = None

    def server_close(self) -> None:
        self.socket.close()
        self._gzip.shutdown(wait=False, cancel_futures=True)
        if not self._loop.is_running():
            self._loop.close()

    async def _serve(self) -> None:
        tasks = [asyncio.create_task(self._accept())]
        await self._stop.wait()
        tasks += self._conns.values()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _accept(self) -> None:
        while True:
            try:
                sock, addr = await asyncio.get_running_loop().sock_accept(self.socket)
            except OSError as exc:  # e.g. out of file descriptors: try again shortly
                log.debug("accept failed: %s", exc)
                await asyncio.sleep(0.1)
                continue
            # The head and a large body are two sends: the body must not wait for a delayed ACK.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if len(self._conns) >= self.limits.max_connections:
                if not self._waiting:
                    sock.close()
                    continue
                oldest = next(iter(self._waiting))
                del self._waiting[oldest]
                self._conns.pop(oldest).cancel()  # its socket is closed when its task ends
            task = asyncio.create_task(self._connection(sock, addr))
            task.add_done_callback(functools.partial(self._closed, sock))
            self._conns[sock] = task
            self._waiting[sock] = None
            await asyncio.sleep(0)  # a burst of connections does not hold up the others

    def _closed(self, sock: socket.socket, _task: asyncio.Task[None]) -> None:
        self._conns.pop(sock, None)
        self._waiting.pop(sock, None)
        sock.close()

    async def _connection(self, sock: socket.socket, addr: Any) -> None:
        buf = bytearray()  # received and not yet answered: a head, maybe pipelined requests
        idle = False
        try:
            while True:
                try:
                    head = await self._read_head(sock, buf, idle)
                except TimeoutError:  # 408 if a head was begun, else the client was just idle
                    head = HTTPStatus.REQUEST_TIMEOUT if buf else None
                request = _parse(head) if isinstance(head, bytes) else head
                if isinstance(request, HTTPStatus):
                    await self._refuse(sock, addr, request)
                if not isinstance(request, _Request):
                    return
                del self._waiting[sock]
                await self._answer(sock, addr, request)
                if not request.keep_alive:
                    return
                self._waiting[sock] = None
                idle = True
        except OSError as exc:  # the client went away or stopped reading (TimeoutError)
            log.debug("%s: %r", addr, exc)
        except Exception:
            log.exception("error answering %s", addr)

    async def _read_head(
        self, sock: socket.socket, buf: bytearray, idle: bool
    ) -> bytes | HTTPStatus | None:
        """The next request head, taken off `buf` (what follows is the next request); or a status
        to refuse it with; or None if the client closes first. TimeoutError past its deadline."""
        lim, loop = self.limits, asyncio.get_running_loop()
        idle = idle and not buf  # a kept-alive connection has idle_timeout to begin a request
        async with asyncio.timeout(lim.idle_timeout if idle else lim.head_timeout) as deadline:
            start = 0
            while True:
                line_end = buf.find(b"\n")
                if (len(buf) if line_end < 0 else line_end) > lim.max_request_line:
                    return HTTPStatus.REQUEST_URI_TOO_LONG
                m = _HEAD_END.search(buf, start)
                end = m.end() if m else len(buf)
                if end > lim.max_head_bytes or buf.count(b"\n", 0, end) - 2 > lim.max_headers:
                    return HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE
                if m:
                    head = bytes(buf[:end])
                    del buf[:end]
                    return head
                start = max(0, len(buf) - 2)  # an end-of-head marker may straddle two reads
                data = await loop.sock_recv(sock, lim.max_head_bytes + 1 - len(buf))
                if not data:
                    return None
                if idle and not buf:  # the request's first byte: from now on, head_timeout
                    deadline.reschedule(loop.time() + lim.head_timeout)
                buf += data

    async def _refuse(self, sock: socket.socket, addr: Any, status: HTTPStatus) -> None:
        """Answer `status`, half-close, and read and drop what the client still sends (up to
        linger_bytes / linger_seconds), so that it reads the answer rather than a reset."""
        log.debug("%s: %d %s", addr, status, status.phrase)
        body = f"{status.value} {status.phrase}\n".encode()
        sock.send(_head(status, _TEXT, len(body), keep_alive=False) + body)  # fits the buffer
        sock.shutdown(socket.SHUT_WR)
        dropped = 0
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.limits.linger_seconds):
                while dropped <= self.limits.linger_bytes:
                    data = await asyncio.get_running_loop().sock_recv(sock, 65536)
                    if not data:
                        return
                    dropped += len(data)

    async def _answer(self, sock: socket.socket, addr: Any, req: _Request) -> None:
        """Answer one request, all of it within write_timeout."""
        status, body = await self._route(req)
        ctype = _CONTENT_TYPES.get(req.path, _TEXT)
        gzip = req.gzip and req.path == "/metrics"
        head = _head(status, ctype, sum(map(len, body)), req.keep_alive, gzip)
        parts = [head] if req.head_only else [head, *body]
        if len(parts) > 1 and len(parts[1]) <= 65536:  # a small body goes with the head: one send
            parts[:2] = [parts[0] + parts[1]]
        log.debug("%s: %s %s %d", addr, "HEAD" if req.head_only else "GET", req.path, status)
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(self.limits.write_timeout):
            for part in parts:
                await loop.sock_sendall(sock, part)  # from the refresher's bytes: no copy

    async def _route(self, req: _Request) -> tuple[int, tuple[bytes, ...]]:
        refresher = self.refresher
        if req.path == "/metrics" and req.gzip:
            loop = asyncio.get_running_loop()
            return 200, (await loop.run_in_executor(self._gzip, refresher.exposition_gzip),)
        if req.path == "/metrics":
            return 200, refresher.exposition_parts()
        if req.path == "/healthz":
            ok = refresher.healthy()
            return (200, (b"ok\n",)) if ok else (503, (b"refresher stuck or dead\n",))
        if req.path == "/readyz":
            if not refresher.attempted.is_set():
                return 503, (b"first refresh not finished\n",)
            if refresher.last_error is None:
                return 200, (b"ready\n",)
            # Ready to be scraped: the health series say what is wrong.
            why = redact_text(str(refresher.last_error))
            return 200, (f"ready; last refresh failed: {why}\n".encode(),)
        if req.path == "/":
            return 200, (INDEX,)
        return 404, (b"not found\n",)
