"""HTTP endpoints: /metrics (pre-rendered bytes, never calls the API), /healthz, /readyz."""

from __future__ import annotations

import logging
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from kubecost_allocation_exporter.refresher import Refresher

log = logging.getLogger(__name__)

INDEX = (
    b"<html><head><title>kubecost-allocation-exporter</title></head><body>"
    b"<h1>kubecost-allocation-exporter</h1><p><a href='/metrics'>/metrics</a> "
    b"<a href='/healthz'>/healthz</a> <a href='/readyz'>/readyz</a></p></body></html>\n"
)


class _Handler(BaseHTTPRequestHandler):
    server: ExporterServer
    protocol_version = "HTTP/1.1"
    # Headers and body are two writes; without TCP_NODELAY the body can wait for a delayed ACK.
    disable_nagle_algorithm = True

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
        refresher = self.server.refresher
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
                self._send(200, f"ready; last refresh failed: {refresher.last_error}\n".encode())
            else:
                self._send(200, b"ready\n")
        elif path == "/":
            self._send(200, INDEX, "text/html; charset=utf-8")
        else:
            self._send(404, b"not found\n")

    do_HEAD = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)


class ExporterServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, host: str, port: int, refresher: Refresher) -> None:
        if ":" in host:
            self.address_family = socket.AF_INET6
        super().__init__((host, port), _Handler)
        self.refresher = refresher

    def start(self) -> threading.Thread:
        t = threading.Thread(target=self.serve_forever, name="http", daemon=True)
        t.start()
        return t
