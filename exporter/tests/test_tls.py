"""TLS verification is on by default: an https Kubecost URL whose certificate no CA vouches for
is refused.

A real HTTPS server on 127.0.0.1 with a self-signed certificate made by `openssl`. The exporter has
no switch to turn verification off; `REQUESTS_CA_BUNDLE` pointing at the certificate (how a
private CA is trusted) makes the same server acceptable, which proves the refusal is about trust.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from exporter_testlib import self_signed_cert, serve_fake

from kubecost_allocation_exporter.config import SETTINGS

pytestmark = pytest.mark.unit


@pytest.fixture
def https_kubecost(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    cert, key = self_signed_cert(tmp_path)
    with serve_fake(tls=(cert, key)) as fake:
        fake.set_fixture("/model/allocation", "kubecost2_namespace.json")
        yield fake.url, cert


def run_once(url: str, extra_env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in {s.env for s in SETTINGS}}
    env.pop("REQUESTS_CA_BUNDLE", None)
    env.pop("CURL_CA_BUNDLE", None)
    env.update(extra_env)
    return subprocess.run(
        [
            *(sys.executable, "-m", "kubecost_allocation_exporter", "--once"),
            *("--cluster-name", "c", "--tenant-id", "t", "--kubecost-url", url),
            *("--api", "kubecost", "--retries", "0"),
            # the fixture's hour: an answer for another time than the one asked is refused
            *("--window", "2026-11-26T16:00:00Z,2026-11-26T17:00:00Z"),
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
