"""TLS verification is on by default: an https Kubecost URL whose certificate no CA vouches for
is refused.

A real HTTPS server on 127.0.0.1 with a self-signed certificate made by `openssl`. The exporter has
no switch to turn verification off; `REQUESTS_CA_BUNDLE` pointing at the certificate (how a
private CA is trusted) makes the same server acceptable, which proves the refusal is about trust.
"""

from __future__ import annotations

import os
import shutil
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from exporter_testlib import fixture_bytes

from kubecost_allocation_exporter.config import SETTINGS

pytestmark = pytest.mark.unit


@pytest.fixture
def https_kubecost(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    openssl = shutil.which("openssl")
    assert openssl, "openssl not found (Debian package openssl): needed to make a test certificate"
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
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
    body = fixture_bytes("kubecost2_namespace.json")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}", cert
    finally:
        server.shutdown()
        server.server_close()


def run_once(url: str, extra_env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in {s.env for s in SETTINGS}}
    env.pop("REQUESTS_CA_BUNDLE", None)
    env.pop("CURL_CA_BUNDLE", None)
    env.update(extra_env)
    return subprocess.run(
        [
            *(sys.executable, "-m", "kubecost_allocation_exporter", "--once"),
            *("--cluster-name", "c", "--tenant-id", "t", "--kubecost-url", url),
            *("--api", "kubecost", "--retries", "0", "--window", "today"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_untrusted_certificate_is_refused_by_default(https_kubecost: tuple[str, Path]) -> None:
    url, _ = https_kubecost
    proc = run_once(url, {})
    assert proc.returncode == 1, proc.stderr
    assert "certificate verify failed" in proc.stderr, proc.stderr
    assert proc.stdout == ""


def test_the_same_server_is_accepted_once_its_ca_is_trusted(
    https_kubecost: tuple[str, Path],
) -> None:
    url, cert = https_kubecost
    proc = run_once(url, {"REQUESTS_CA_BUNDLE": str(cert)})
    assert proc.returncode == 0, proc.stderr
    assert "cloudtuner_kubecost_scrape_success" in proc.stdout
