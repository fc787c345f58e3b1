"""Windows of real engines: the real exporter process against the simulator's window quirks.

* older Kubecost/OpenCost give every allocation its own window (`__idle__` known for the last 3 hours of a 24-hour
  query): the rate's divisor is the union (24 h), not the first row's 3 h (before: every rate 8x too high and the
  window start 21 hours late);
* an answer for another time than the one asked (a stale cache, a day old): the refresh fails with
  reason="window_mismatch", the last good costs stay until the staleness limit, as for any failure;
* an engine that answers in steps whatever `accumulate` says, with empty sets `{}` for steps without data: the rate
  is over the covered hours and `window_coverage_ratio` shows the gap.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from testsupport.faults import SimAndExporter, start_sim_and_exporter, wait_for
from testsupport.procs import http_get, http_json

pytestmark = pytest.mark.e2e

P = "cloudtuner_kubecost_"


def values(s: SimAndExporter) -> dict[str, float]:
    """`name{namespace}` (or `name`) -> value of the exporter's cost, window and health series."""
    text = http_get(f"{s.exporter_url}/metrics")[1].decode()
    out = {}
    for name, labels, value in re.findall(rf"^{P}(\w+)\{{([^}}]*)\}} (\S+)$", text, re.M):
        ns = re.search(r'namespace="([^"]*)"', labels)
        reason = re.search(r'reason="([^"]*)"', labels)
        key = name + (f"{{{ns.group(1)}}}" if ns else "") + (f"{{{reason.group(1)}}}" if reason else "")
        out[key] = float(value)
    return out


def sim_hourly(s: SimAndExporter, namespace: str) -> float:
    """The simulator's cost of one plain hour for a namespace (costs accrue linearly: every hour costs the same)."""
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)
    window = f"{hour:%Y-%m-%dT%H:%M:%SZ},{hour + timedelta(hours=1):%Y-%m-%dT%H:%M:%SZ}"
    status, body = http_get(
        f"{s.sim_url}/model/allocation?window={window}&aggregate=namespace&accumulate=true&idle=true&shareIdle=false"
    )
    assert status == 200
    return float(json.loads(body)["data"][0][namespace]["totalCost"])


@pytest.fixture
def stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimAndExporter]:
    env: dict[str, str] = request.param
    s = start_sim_and_exporter(tmp_path_factory.mktemp("windows"), {"SHARE_IDLE": "none", **env})
    try:
        yield s
    finally:
        s.group.stop_all()


def configure(s: SimAndExporter, quirks: dict[str, Any]) -> float:
    """Switch the simulator's quirks; returns the time after which a refresh sees them."""
    http_json(f"{s.sim_url}/__sim__/config", {"quirks": quirks})
    return time.time()


def refreshed_since(t: float) -> Any:
    return lambda v: v.get("last_success_timestamp_seconds", 0.0) > t


YESTERDAY = {"WINDOW": "yesterday", "STALENESS_LIMIT": "1h"}


@pytest.mark.parametrize("stack", [YESTERDAY], indirect=True)
def test_rows_with_their_own_windows_are_divided_by_the_union(stack: SimAndExporter) -> None:
    s = stack
    hourly_idle, hourly_default = sim_hourly(s, "__idle__"), sim_hourly(s, "default")
    since = configure(s, {"own_windows": True, "idle_hours": 3})
    got = wait_for_values(s, refreshed_since(since))
    start = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=1)
    assert got["window_start_timestamp_seconds"] == start.timestamp()  # was 21 hours later
    assert got["window_coverage_ratio"] == 1.0
    # each namespace ran the whole day: its cost per hour is the simulator's hourly cost (was 8x that)
    assert got["namespace_total_cost{default}"] == pytest.approx(hourly_default, rel=1e-2)
    # idle is known for 3 of the 24 hours: its cost spread over the day the numbers cover
    assert got["cluster_idle_cost"] == pytest.approx(hourly_idle * 3 / 24, rel=1e-2)
    assert got["scrape_success"] == 1.0


@pytest.mark.parametrize("stack", [{}], indirect=True)
def test_an_answer_for_another_time_is_refused_and_the_costs_go_stale(stack: SimAndExporter) -> None:
    s = stack
    wait_for(lambda: values(s).get("scrape_success") == 1.0, 20, "a first good refresh")
    good = values(s)["cluster_total_cost"]
    configure(s, {"shift_hours": 24})
    t0 = time.monotonic()
    got = wait_for_values(s, lambda v: v.get("scrape_errors_total{window_mismatch}", 0) >= 1)
    assert got["scrape_success"] == 0.0
    if time.monotonic() - t0 < 2.0:  # within the 3 s staleness limit: the last good costs are still served
        assert got["cluster_total_cost"] == good
    wait_for(lambda: "cluster_total_cost" not in values(s), 8, "the costs to go stale")
    assert "is for another time" in http_get(f"{s.exporter_url}/readyz")[1].decode()
    others = {k: v for k, v in values(s).items() if k.startswith("scrape_errors_total") and v and "window" not in k}
    assert others == {}
    configure(s, {})
    wait_for(lambda: values(s).get("scrape_success") == 1.0, 10, "recovery once the answers are current")


@pytest.mark.parametrize("stack", [{"WINDOW": "6h offset 1h", "STALENESS_LIMIT": "1h"}], indirect=True)
def test_empty_step_sets_show_as_partial_coverage(stack: SimAndExporter) -> None:
    s = stack
    hourly_default = sim_hourly(s, "default")
    since = configure(s, {"step_hours": 1, "empty_steps": [0, 3]})
    got = wait_for_values(s, refreshed_since(since))
    assert got["window_coverage_ratio"] == pytest.approx(4 / 6)
    assert got["namespace_total_cost{default}"] == pytest.approx(hourly_default, rel=1e-2)
    assert got["scrape_success"] == 1.0


def wait_for_values(s: SimAndExporter, check: Any, timeout: float = 20) -> dict[str, float]:
    got: dict[str, float] = {}

    def ok() -> bool:
        nonlocal got
        got = values(s)
        return bool(check(got))

    wait_for(ok, timeout, "the exporter's series to show the quirk")
    return got


@pytest.mark.parametrize("stack", [{"SAVINGS": "api", "BREAKDOWNS": "controller"}], indirect=True)
def test_savings_series_carry_the_simulators_recommendations_or_the_documented_estimate(
    stack: SimAndExporter,
) -> None:
    """docs/metrics.md "Savings": a namespace (controller) with Kubecost recommendations shows the sum of their
    monthlySavings.total (source="recommendation"); `default` (only a bare pod: none) shows the estimate from its
    allocation row, 730 x (request - usage) x cost / core-hours (byte-hours) for CPU and RAM."""
    s = stack
    wait_for(lambda: values(s).get("scrape_success") == 1.0, 20, "a first good refresh")
    recs = http_json(f"{s.sim_url}/model/savings/requestSizingV2?window=3d")["Recommendations"]
    text = http_get(f"{s.exporter_url}/metrics")[1].decode()
    got = {
        (m.group(1), m.group(2) or "", m.group(3), m.group(4)): float(m.group(5))
        for m in re.finditer(
            rf'^{P}(namespace|controller)_savings_monthly\{{cluster="[^"]*",(?:controller="([^"]*)",)?'
            r'namespace="([^"]*)",source="([^"]*)",tenant_id="[^"]*"\} (\S+)$',
            text,
            re.M,
        )
    }
    assert 'savings_api="present"' in text
    by_ns: dict[str, float] = {}
    for r in recs:
        by_ns[r["namespace"]] = by_ns.get(r["namespace"], 0.0) + r["monthlySavings"]["total"]
        key = ("controller", f"{r['controllerKind']}:{r['controllerName']}", r["namespace"], "recommendation")
        assert got[key] == pytest.approx(r["monthlySavings"]["total"], abs=1e-6), key
    for ns, want in by_ns.items():
        assert got[("namespace", "", ns, "recommendation")] == pytest.approx(want, abs=1e-6), ns
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)
    window = f"{hour:%Y-%m-%dT%H:%M:%SZ},{hour + timedelta(hours=1):%Y-%m-%dT%H:%M:%SZ}"
    row = http_json(
        f"{s.sim_url}/model/allocation?window={window}&aggregate=namespace&accumulate=true&idle=true&shareIdle=false"
    )["data"][0]["default"]
    cpu = max(row["cpuCoreRequestAverage"] - row["cpuCoreUsageAverage"], 0.0)
    ram = max(row["ramByteRequestAverage"] - row["ramByteUsageAverage"], 0.0)
    want = 730 * (
        cpu * (row["cpuCost"] + row["cpuCostAdjustment"]) / row["cpuCoreHours"]
        + ram * (row["ramCost"] + row["ramCostAdjustment"]) / row["ramByteHours"]
    )
    assert "default" not in by_ns
    assert got[("namespace", "", "default", "estimate")] == pytest.approx(want, rel=1e-3)
