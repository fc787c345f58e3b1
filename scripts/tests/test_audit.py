"""`make audit` (scripts/audit.sh) stops with exit code 3 and says why when the advisory service does not answer
(a package-index mirror that lacks PyPI's JSON API, or nothing listening), instead of pip-audit's obscure
"Dependency not found on PyPI"."""

from __future__ import annotations

import http.server
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.unit


def run_audit(probe: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, KCI_AUDIT_PROBE_URL=probe, KCI_VENV=str(Path(sys.executable).parent.parent))
    return subprocess.run(
        [str(ROOT / "scripts/audit.sh")], env=env, capture_output=True, text=True, timeout=60, check=False
    )


@pytest.fixture
def mirror() -> Iterator[str]:
    """An index mirror's answer to the JSON API: 404."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_error(404)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/pypi/requests/2.34.2/json"
    server.shutdown()
    server.server_close()


def test_a_mirror_without_the_json_api_stops_the_audit_with_3(mirror: str) -> None:
    out = run_audit(mirror)
    assert out.returncode == 3, out.stderr
    assert f"{mirror}: HTTP 404, no vulnerability data" in out.stderr
    assert "GitHub workflows run this audit" in out.stderr


def test_no_service_at_all_stops_the_audit_with_3() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = run_audit(f"http://127.0.0.1:{port}/pypi/requests/2.34.2/json")
    assert out.returncode == 3
    assert "ConnectionError" in out.stderr
