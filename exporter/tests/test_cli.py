"""The console script as a user runs it: config errors (exit 2) and `--once` (exit 0 / 1)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from exporter_testlib import FakeKubecost, Reply, fixture_bytes
from prometheus_client.parser import text_string_to_metric_families

from kubecost_allocation_exporter.config import PROG, SETTINGS, ConfigError, load, parse_duration

pytestmark = pytest.mark.unit

HOUR = "2026-11-26T16:00:00Z,2026-11-26T17:00:00Z"


def script() -> str:
    path = Path(sys.executable).parent / "kubecost-allocation-exporter"
    found = str(path) if path.exists() else shutil.which("kubecost-allocation-exporter")
    assert found, "console script kubecost-allocation-exporter not installed: run make venv"
    return found


def run(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in {s.env for s in SETTINGS}}
    base.update(env or {})
    return subprocess.run(
        [script(), *args],
        capture_output=True,
        text=True,
        env=base,
        timeout=timeout,
        check=False,
    )


REQUIRED = ("--cluster-name", "prod-eu-1", "--tenant-id", "acme")


@pytest.mark.parametrize(
    ("args", "env", "names"),
    [
        ((), {}, "--cluster-name/CLUSTER_NAME"),
        (("--cluster-name", "c"), {}, "--tenant-id/TENANT_ID"),
        (REQUIRED, {"METRIC_MODE": "hourly"}, "--metric-mode/METRIC_MODE"),
        ((*REQUIRED, "--share-idle", "even"), {}, "--share-idle/SHARE_IDLE"),
        ((*REQUIRED, "--api", "v2"), {}, "--api/KUBECOST_API"),
        ((*REQUIRED, "--refresh-interval", "2x"), {}, "--refresh-interval/REFRESH_INTERVAL"),
        (REQUIRED, {"WINDOW": "last tuesday"}, "--window/WINDOW"),
        (REQUIRED, {"LISTEN_ADDRESS": "9103"}, "--listen-address/LISTEN_ADDRESS"),
        ((*REQUIRED, "--log-format", "xml"), {}, "--log-format/LOG_FORMAT"),
        ((*REQUIRED, "--log-level", "trace"), {}, "--log-level/LOG_LEVEL"),
        (REQUIRED, {"KUBECOST_URL": "kubecost:9090"}, "--kubecost-url/KUBECOST_URL"),
        ((*REQUIRED, "--auth-token-file", "/nonexistent"), {}, "--auth-token-file"),
        (REQUIRED, {"STALENESS_LIMIT": "60s"}, "--staleness-limit/STALENESS_LIMIT"),
        ((*REQUIRED, "--breakdowns", "namespace"), {}, "--breakdowns/BREAKDOWNS"),
        ((*REQUIRED, "--retries", "99"), {}, "--retries/RETRIES"),
        (REQUIRED, {"MULTI_CLUSTER": "maybe"}, "--multi-cluster/MULTI_CLUSTER"),
    ],
)
def test_bad_setting_exits_2_with_one_line_naming_it(
    args: tuple[str, ...], env: dict[str, str], names: str
) -> None:
    proc = run(*args, "--once", env=env)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("kubecost-allocation-exporter: error: ")
    assert names in lines[0]
    assert "allowed:" in lines[0]
    assert proc.stdout == ""


def test_unknown_flag_exits_2_with_one_line() -> None:
    proc = run(*REQUIRED, "--no-such-flag")
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1
    assert "--no-such-flag" in proc.stderr


def test_allowed_values_are_listed() -> None:
    proc = run(*REQUIRED, "--metric-mode", "hourly")
    assert "allowed: rate, total" in proc.stderr


def test_version_and_help() -> None:
    assert run("--version").stdout.startswith("kubecost-allocation-exporter ")
    helped = run("--help")
    assert helped.returncode == 0
    for s in SETTINGS:
        assert s.flag in helped.stdout
        assert s.env in helped.stdout
    # the `verify` command has its own parser: the main help is where a user finds out it exists
    assert f"{PROG} verify" in helped.stdout
    assert run("verify", "--help").returncode == 0


def test_flags_win_over_env_and_env_over_defaults() -> None:
    env = {"CLUSTER_NAME": "from-env", "TENANT_ID": "t", "METRIC_MODE": "total"}
    cfg = load(["--cluster-name", "from-flag"], env)
    assert cfg.cluster_name == "from-flag"
    assert cfg.metric_mode == "total"
    assert cfg.refresh_interval == 90
    assert (cfg.listen_host, cfg.listen_port) == ("0.0.0.0", 9103)
    assert cfg.share_idle == "weighted"
    assert cfg.window == ""
    cfg = load(["--multi-cluster", "--listen-address", "[::1]:9200"], env)
    assert cfg.multi_cluster
    assert (cfg.listen_host, cfg.listen_port) == ("::1", 9200)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("120", 120), ("120s", 120), ("2m", 120), ("1h", 3600), ("1h30m", 5400), ("500ms", 0.5)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    "window",
    [
        "today",
        "lastweek",
        "7d",
        "48h",
        "2w",
        "7d offset 1d",
        HOUR,
        "2026-11-26T16:00:00+01:00,2026-11-26T17:00:00+01:00",
        "1795708800,1795712400",
        "last-complete-hour",
    ],
)
def test_any_kubecost_window_string_is_accepted(window: str) -> None:
    cfg = load(["--cluster-name", "c", "--tenant-id", "t", "--window", window], {})
    assert cfg.window in (window, "")


def test_bad_breakdown_key_is_refused() -> None:
    with pytest.raises(ConfigError, match="label:<key>"):
        load(["--cluster-name", "c", "--tenant-id", "t", "--breakdowns", "label:"], {})


# -- --once ------------------------------------------------------------------------------------


def series(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
    }


def test_once_prints_every_contract_series_with_correct_values(kubecost: FakeKubecost) -> None:
    kubecost.set_fixture("/model/allocation", "kubecost2_namespace.json")
    env = {
        "KUBECOST_URL": kubecost.url,
        "CLUSTER_NAME": "prod-eu-1",
        "TENANT_ID": "acme",
        "WINDOW": HOUR,
    }
    proc = run("--once", env=env)
    assert proc.returncode == 0, proc.stderr
    got = series(proc.stdout)
    base = frozenset({("cluster", "prod-eu-1"), ("tenant_id", "acme")})

    def ns(name: str) -> frozenset[tuple[str, str]]:
        return base | {("namespace", name)}

    p = "cloudtuner_kubecost_"
    expected = {
        (f"{p}cluster_total_cost", base): 0.3161,
        (f"{p}cluster_cpu_cost", base): 0.16364,
        (f"{p}cluster_ram_cost", base): 0.08656,
        (f"{p}cluster_pv_cost", base): 0.03836,
        (f"{p}cluster_network_cost", base): 0.00254,
        (f"{p}cluster_lb_cost", base): 0.025,
        (f"{p}cluster_gpu_cost", base): 0.0,
        (f"{p}cluster_shared_cost", base): 0.0,
        (f"{p}cluster_idle_cost", base): 0.14193,
        (f"{p}namespace_total_cost", ns("default")): 0.06944,
        (f"{p}namespace_cpu_cost", ns("default")): 0.0275,
        (f"{p}namespace_ram_cost", ns("default")): 0.00933,
        (f"{p}namespace_pv_cost", ns("default")): 0.00548,
        (f"{p}namespace_network_cost", ns("default")): 0.00213,
        (f"{p}namespace_lb_cost", ns("default")): 0.025,
        (f"{p}namespace_gpu_cost", ns("default")): 0.0,
        (f"{p}namespace_shared_cost", ns("default")): 0.0,
        (f"{p}namespace_cpu_efficiency", ns("default")): 0.4123,
        (f"{p}namespace_ram_efficiency", ns("default")): 0.59618,
        (f"{p}namespace_total_efficiency", ns("default")): 0.45888,
        (f"{p}namespace_total_cost", ns("__unmounted__")): 0.02192,
        (f"{p}namespace_total_cost", ns("__unallocated__")): 0.00163,
        (f"{p}namespace_ram_efficiency", ns("kube-system")): 1.24658,
        (f"{p}scrape_success", base): 1.0,
        (f"{p}exported_namespaces", base): 5.0,
    }
    for key, value in expected.items():
        assert key in got, key
        assert got[key] == pytest.approx(value), key
    for eff in ("cpu", "ram", "total"):
        assert 0 < got[(f"{p}cluster_{eff}_efficiency", base)] < 2
    assert (f"{p}scrape_duration_seconds", base) in got
    assert (f"{p}last_success_timestamp_seconds", base) in got
    assert not any(dict(k[1]).get("namespace") == "__idle__" for k in got)
    ns_sum = sum(v for (n, _), v in got.items() if n == f"{p}namespace_total_cost")
    assert ns_sum + got[(f"{p}cluster_idle_cost", base)] == pytest.approx(
        got[(f"{p}cluster_total_cost", base)]
    )
    info = [k for k in got if k[0] == f"{p}exporter_info"]
    assert len(info) == 1
    labels = dict(info[0][1])
    assert labels["api"] == "kubecost"
    assert labels["metric_mode"] == "rate"
    assert labels["currency"] == "USD"
    assert labels["window"] == HOUR


@pytest.mark.parametrize(
    ("setup", "extra", "cause"),
    [
        (Reply(503, b"no healthy upstream", "text/plain"), (), "HTTP 503 from http://127.0.0.1"),
        (
            Reply(body=fixture_bytes("plain_text_error.txt"), content_type="text/plain"),
            (),
            "is not JSON",
        ),
        (Reply(body=fixture_bytes("code500_http200.json")), (), "API error code 500"),
        (
            Reply(body=fixture_bytes("kubecost2_namespace.json"), delay=2.0),
            ("--request-timeout", "0.3"),
            "within 0.3s (read timeout)",
        ),
    ],
)
def test_once_failure_is_one_line_naming_the_cause_and_exit_1(
    kubecost: FakeKubecost, setup: Reply, extra: tuple[str, ...], cause: str
) -> None:
    kubecost.set("/model/allocation", setup)
    proc = run(
        "--once",
        *REQUIRED,
        "--kubecost-url",
        kubecost.url,
        "--api",
        "kubecost",
        "--retries",
        "0",
        *extra,
    )
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("kubecost-allocation-exporter: error: ")
    assert cause in lines[0]
    assert "Traceback" not in proc.stderr
    assert proc.stdout == ""


def test_once_connection_refused_is_one_line() -> None:
    proc = run("--once", *REQUIRED, "--kubecost-url", "http://127.0.0.1:9", "--retries", "0")
    assert proc.returncode == 1
    assert len(proc.stderr.strip().splitlines()) == 1
    assert "cannot connect to http://127.0.0.1:9/model/allocation" in proc.stderr


def test_once_with_debug_shows_the_traceback(kubecost: FakeKubecost) -> None:
    kubecost.set("/model/allocation", Reply(body=fixture_bytes("code500_http200.json")))
    proc = run(
        "--once",
        *REQUIRED,
        "--kubecost-url",
        kubecost.url,
        "--api",
        "kubecost",
        "--log-level",
        "debug",
    )
    assert proc.returncode == 1
    assert "Traceback" in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("kubecost-allocation-exporter: error:")


def test_python_dash_m_entry_point(kubecost: FakeKubecost) -> None:
    kubecost.set_fixture("/allocation", "opencost_sample.json")
    env = {k: v for k, v in os.environ.items() if k not in {s.env for s in SETTINGS}}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "kubecost_allocation_exporter",
            "--once",
            *REQUIRED,
            "--kubecost-url",
            kubecost.url,
            "--metric-mode",
            "total",
            "--window",
            HOUR,
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert 'api="opencost"' in proc.stdout
    assert 'namespace="opencost"' in proc.stdout
