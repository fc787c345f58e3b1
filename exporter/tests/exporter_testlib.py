"""Helpers for the exporter tests: fixture loading and a real local Kubecost-like HTTP server."""

from __future__ import annotations

import json
import shutil
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

FIXTURES = Path(__file__).parent / "fixtures"
GOLDEN = Path(__file__).parent / "golden"

GOLDEN = Path(__file__).parent / "golden"


def fixture_bytes(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def fixture_json(name: str) -> Any:
    return json.loads(fixture_bytes(name))


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    delay: float = 0.0  # seconds before answering (for timeouts)
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Seen:
    path: str
    params: dict[str, str]
    headers: dict[str, str]


@dataclass
class FakeKubecost:
    """Routes: (path, aggregate or None for any) -> list of replies (the last one repeats)."""

    url: str = ""
    routes: dict[tuple[str, str | None], list[Reply]] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def set(
        self,
        path: str,
        *replies: Reply,
        aggregate: str | None = None,
    ) -> None:
        with self.lock:
            self.routes[(path, aggregate)] = list(replies)

    def set_fixture(
        self,
        path: str,
        name: str,
        *,
        aggregate: str | None = None,
        status: int = 200,
    ) -> None:
        ctype = "application/json" if name.endswith(".json") else "text/plain; charset=utf-8"
        if name.endswith(".html"):
            ctype = "text/html"
        self.set(path, Reply(status, fixture_bytes(name), ctype), aggregate=aggregate)

    def reply_for(self, path: str, aggregate: str | None) -> Reply:
        with self.lock:
            replies = self.routes.get((path, aggregate)) or self.routes.get((path, None))
            if not replies:
                return Reply(404, b"404 page not found\n", "text/plain")
            return replies.pop(0) if len(replies) > 1 else replies[0]


def _handler(fake: FakeKubecost) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            params = {k: v[-1] for k, v in parse_qs(parts.query).items()}
            with fake.lock:
                fake.seen.append(Seen(parts.path, params, dict(self.headers.items())))
            reply = fake.reply_for(parts.path, params.get("aggregate"))
            if reply.delay:
                time.sleep(reply.delay)
            try:
                self.send_response(reply.status)
                self.send_header("Content-Type", reply.content_type)
                self.send_header("Content-Length", str(len(reply.body)))
                for k, v in reply.headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(reply.body)
            except (BrokenPipeError, ConnectionResetError):
                pass

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


def self_signed_cert(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, made by `openssl` (valid one day)."""
    openssl = shutil.which("openssl")
    assert openssl, "openssl not found (Debian package openssl): needed to make a test certificate"
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            *(openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"),
            *("-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


@contextmanager
def serve_fake(tls: tuple[Path, Path] | None = None) -> Iterator[FakeKubecost]:
    """A real HTTP server on 127.0.0.1 (ephemeral port) answering like the Allocation API; HTTPS
    with `tls` = (certificate, key)."""
    fake = FakeKubecost()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(fake))
    server.daemon_threads = True
    scheme = "http"
    if tls is not None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(*tls)
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
        scheme = "https"
    fake.url = f"{scheme}://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
