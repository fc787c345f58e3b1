"""Bad settings are refused at start in daemon mode (not only with --once): exit 2, one line
naming the setting and what is allowed, nothing on stdout, no port bound. test_cli.py covers 16
more cases through --once."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from kubecost_allocation_exporter.config import SETTINGS

pytestmark = pytest.mark.unit

GOOD = {"CLUSTER_NAME": "prod-eu-1", "TENANT_ID": "acme", "KUBECOST_URL": "http://127.0.0.1:9"}

# (id, env over GOOD, extra argv, the setting named in the message)
BAD: list[tuple[str, dict[str, str], tuple[str, ...], str]] = [
    ("tenant-empty", {"TENANT_ID": ""}, (), "--tenant-id/TENANT_ID"),
    ("tenant-blank", {"TENANT_ID": "   "}, (), "--tenant-id/TENANT_ID"),
    ("cluster-newline", {"CLUSTER_NAME": "prod\neu"}, (), "--cluster-name/CLUSTER_NAME"),
    ("cluster-too-long", {"CLUSTER_NAME": "c" * 300}, (), "--cluster-name/CLUSTER_NAME"),
    ("url-empty", {"KUBECOST_URL": ""}, (), "--kubecost-url/KUBECOST_URL"),
    ("url-ftp", {"KUBECOST_URL": "ftp://kubecost:9090"}, (), "--kubecost-url/KUBECOST_URL"),
    ("url-bad-port", {"KUBECOST_URL": "http://kubecost:99999"}, (), "--kubecost-url/KUBECOST_URL"),
    ("url-no-host", {}, ("--kubecost-url", "http://:9090"), "--kubecost-url/KUBECOST_URL"),
    ("refresh-zero", {"REFRESH_INTERVAL": "0s"}, (), "--refresh-interval/REFRESH_INTERVAL"),
    ("refresh-negative", {"REFRESH_INTERVAL": "-5s"}, (), "--refresh-interval/REFRESH_INTERVAL"),
    ("jitter-too-big", {"REFRESH_JITTER": "0.9"}, (), "--refresh-jitter/REFRESH_JITTER"),
    ("jitter-nan", {"REFRESH_JITTER": "nan"}, (), "--refresh-jitter/REFRESH_JITTER"),
    (
        "listen-port-range",
        {"LISTEN_ADDRESS": "127.0.0.1:70000"},
        (),
        "--listen-address/LISTEN_ADDRESS",
    ),
    ("listen-port-word", {}, ("--listen-address", ":metrics"), "--listen-address/LISTEN_ADDRESS"),
    ("connect-timeout-zero", {"CONNECT_TIMEOUT": "0"}, (), "--connect-timeout/CONNECT_TIMEOUT"),
    ("request-timeout-2h", {"REQUEST_TIMEOUT": "2h"}, (), "--request-timeout/REQUEST_TIMEOUT"),
    ("retry-backoff-negative", {"RETRY_BACKOFF": "-1"}, (), "--retry-backoff/RETRY_BACKOFF"),
    ("top-n-zero", {"BREAKDOWN_TOP_N": "0"}, (), "--breakdown-top-n/BREAKDOWN_TOP_N"),
    (
        "breakdown-label-key",
        {"BREAKDOWNS": "pod,label:app.kubernetes.io/name"},
        (),
        "--breakdowns/BREAKDOWNS",
    ),
    ("breakdown-unknown", {"BREAKDOWNS": "cluster"}, (), "--breakdowns/BREAKDOWNS"),
    ("data-lag-8d", {"DATA_LAG": "8d"}, (), "--data-lag/DATA_LAG"),
    ("window-unit", {"WINDOW": "7x"}, (), "--window/WINDOW"),
    (
        "max-response-tiny",
        {"MAX_RESPONSE_BYTES": "10"},
        (),
        "--max-response-bytes/MAX_RESPONSE_BYTES",
    ),
    ("once-word", {"ONCE": "perhaps"}, (), "--once/ONCE"),
    ("metric-mode-empty", {"METRIC_MODE": ""}, (), "--metric-mode/METRIC_MODE"),
    ("api-key-file-dir", {"API_KEY_FILE": "/"}, (), "--api-key-file/API_KEY_FILE"),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.mark.parametrize(
    ("env", "argv", "names"), [pytest.param(e, a, n, id=i) for i, e, a, n in BAD]
)
def test_bad_setting_refused_at_start_exit_2_one_line(
    env: dict[str, str], argv: tuple[str, ...], names: str
) -> None:
    port = free_port()
    full = {k: v for k, v in os.environ.items() if k not in {s.env for s in SETTINGS}}
    full.update(GOOD, LISTEN_ADDRESS=f"127.0.0.1:{port}")
    full.update(env)
    proc = subprocess.run(
        [sys.executable, "-m", "kubecost_allocation_exporter", *argv],
        env=full,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("kubecost-allocation-exporter: error: ")
    assert names in lines[0], lines[0]
    assert "allowed:" in lines[0], lines[0]
    assert proc.stdout == ""
    with socket.socket() as s:  # it never listened
        s.bind(("127.0.0.1", port))


@pytest.mark.parametrize("missing", ["CLUSTER_NAME", "TENANT_ID"])
def test_a_required_setting_left_out_is_named_as_not_set(missing: str) -> None:
    """Neither flag nor env var: the line says the setting is missing, not that '' is invalid."""
    full = {k: v for k, v in os.environ.items() if k not in {s.env for s in SETTINGS}}
    full.update({k: v for k, v in GOOD.items() if k != missing})
    proc = subprocess.run(
        [sys.executable, "-m", "kubecost_allocation_exporter", "--once"],
        env=full,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    flag = "--" + missing.lower().replace("_", "-")
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip() == (
        f"kubecost-allocation-exporter: error: {flag}/{missing}: "
        "not set and required (no default); "
        "allowed: a non-empty label value (at most 256 characters)"
    )


def test_at_least_15_bad_settings_are_tried_here() -> None:
    assert len(BAD) >= 15
    assert len({i for i, *_ in BAD}) == len(BAD)


def test_the_good_base_is_accepted(tmp_path: Path) -> None:
    """Control: without the bad value the same settings load (with --once against a closed port:
    exit 1, a runtime failure, not 2)."""
    full = {k: v for k, v in os.environ.items() if k not in {s.env for s in SETTINGS}}
    full.update(GOOD, RETRIES="0")
    proc = subprocess.run(
        [sys.executable, "-m", "kubecost_allocation_exporter", "--once"],
        env=full,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 1, proc.stderr
