"""Upstream faults: the real exporter process against the Kubecost API simulator's run-time fault injection.

Short intervals (refresh 1 s, no jitter, staleness limit 3 s, connect/read timeout 1 s, no retries, answers capped at
8 MiB). For every fault: the process stays up and keeps answering /metrics, `scrape_success` is 0 and exactly the
expected `scrape_errors_total{reason}` grows, the last good cost series are kept until the staleness limit and then
vanish (never frozen forever), and after the fault is cleared the costs are back within one refresh.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from testsupport.faults import SimAndExporter, rss_bytes, start_sim_and_exporter, wait_for

pytestmark = pytest.mark.e2e

REFRESH, STALENESS, TIMEOUT = 1.0, 3.0, 1.0
#: "within one refresh": the refresh interval, plus one refresh that may still be waiting on the fault (the read
#: timeout), plus scheduling slack on a shared 2-core machine.
RECOVERY_BOUND = REFRESH + TIMEOUT + 1.5

# (id, simulator fault body, reason the exporter must count)
FAULTS: list[tuple[str, dict[str, Any], str]] = [
    ("http500", {"mode": "http500"}, "http_status"),
    ("http403", {"mode": "http4xx", "status": 403}, "http_status"),
    ("http404", {"mode": "http4xx", "status": 404}, "http_status"),
    ("http429", {"mode": "http4xx", "status": 429}, "http_status"),
    ("nonjson-502-html", {"mode": "nonjson", "status": 502}, "http_status"),
    ("nonjson-200-html", {"mode": "nonjson", "status": 200}, "not_json"),
    ("code500-in-http200", {"mode": "code500"}, "api_error"),
    ("slow-beyond-timeout", {"mode": "delay", "seconds": 3.0}, "timeout"),
    ("truncated-body", {"mode": "truncated"}, "connection"),
    ("connection-reset", {"mode": "reset"}, "connection"),
    ("huge-response", {"mode": "huge", "size": 32 * 1024 * 1024}, "too_large"),
]
RESULTS: dict[str, dict[str, Any]] = {}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimAndExporter]:
    s = start_sim_and_exporter(tmp_path_factory.mktemp("faults"))
    try:
        wait_for(lambda: s.scrape().has_costs, 20, "first cost series")
        yield s
    finally:
        s.group.stop_all()
        (Path(s.group.workdir) / "fault-results.json").write_text(json.dumps(RESULTS, indent=1))
        print(f"\nupstream faults: {json.dumps(RESULTS)}")


def exercise_fault(s: SimAndExporter, fault: dict[str, Any], reason: str) -> dict[str, Any]:
    """Switch the fault on, check the health series and staleness, switch it off, time the recovery."""
    assert s.exporter.alive()
    wait_for(lambda: s.scrape().success == 1 and s.scrape().has_costs, 10, "a healthy exporter before the fault")
    before = s.scrape()
    s.fault(**fault)
    t0 = time.monotonic()
    detected = wait_for(
        lambda: (sc := s.scrape()).success == 0 and sc.errors[reason] > before.errors[reason],
        REFRESH + TIMEOUT + 5,
        f"scrape_success 0 and scrape_errors_total{{reason={reason!r}}} to grow",
    )
    during = s.scrape()
    others = {r: v for r, v in during.errors.items() if r != reason and v != before.errors[r]}
    assert others == {}, f"fault {fault} was counted under other reasons too: {others}"
    # The last good costs survive a failed refresh until the staleness limit ...
    if time.monotonic() - t0 < STALENESS - 1.0:
        assert during.has_costs, "cost series vanished before the staleness limit"
    # ... and are gone after it (measured from the last success, which was before the fault was switched on).
    wait_for(
        lambda: not s.scrape().has_costs, STALENESS + REFRESH + 3, "cost series to vanish after the staleness limit"
    )
    gone_after = time.monotonic() - t0
    stale = s.scrape()
    assert stale.success == 0, "health series must stay"
    assert stale.errors[reason] > before.errors[reason], "health series must stay"
    assert s.exporter.alive(), f"exporter exited during fault {fault}:\n{s.exporter.tail()}"
    rss = rss_bytes(s.exporter.popen.pid)
    s.fault("none")
    recovered = wait_for(
        lambda: (sc := s.scrape()).success == 1 and sc.has_costs, RECOVERY_BOUND + 5, "costs back after recovery"
    )
    assert recovered <= RECOVERY_BOUND, f"costs came back {recovered:.2f}s after recovery, bound {RECOVERY_BOUND}s"
    return {
        "reason": reason,
        "detected_s": round(detected, 2),
        "costs_gone_after_s": round(gone_after, 2),
        "recovered_s": round(recovered, 2),
        "rss_mib": round(rss / 2**20, 1),
    }


@pytest.mark.parametrize(("fault", "reason"), [pytest.param(f, r, id=i) for i, f, r in FAULTS])
def test_fault_is_reported_costs_go_stale_and_data_returns_within_one_refresh(
    stack: SimAndExporter, request: pytest.FixtureRequest, fault: dict[str, Any], reason: str
) -> None:
    RESULTS[request.node.callspec.id] = exercise_fault(stack, fault, reason)


def test_huge_response_is_refused_with_bounded_memory(stack: SimAndExporter) -> None:
    """A 32 MiB answer against an 8 MiB cap: refused while streaming, memory stays far below the answer's size."""
    pid = stack.exporter.popen.pid
    base = rss_bytes(pid)
    stack.fault("huge", size=32 * 1024 * 1024)
    try:
        wait_for(lambda: stack.scrape().success == 0, 10, "the huge answer to be refused")
        time.sleep(2 * REFRESH)  # a few more refused answers
        peak = rss_bytes(pid)
    finally:
        stack.fault("none")
    assert peak - base < 24 * 2**20, f"RSS grew {(peak - base) / 2**20:.1f} MiB on a refused 32 MiB answer"
    RESULTS["huge-response-rss-growth"] = {"mib": round((peak - base) / 2**20, 1)}


def test_api_down_connection_refused(stack: SimAndExporter) -> None:
    """The API process stops (connection refused), then comes back on the same address."""
    wait_for(lambda: stack.scrape().success == 1, 10, "a healthy exporter")
    before = stack.scrape()
    stack.stop_sim()
    t0 = time.monotonic()
    try:
        wait_for(
            lambda: (sc := stack.scrape()).success == 0 and sc.errors["connection"] > before.errors["connection"],
            REFRESH + TIMEOUT + 5,
            "connection errors to be counted",
        )
        wait_for(lambda: not stack.scrape().has_costs, STALENESS + REFRESH + 3, "costs to vanish while the API is down")
        gone = time.monotonic() - t0
        assert stack.exporter.alive()
    finally:
        stack.start_sim()
    recovered = wait_for(lambda: stack.scrape().has_costs, RECOVERY_BOUND + 5, "costs back after the API returned")
    assert recovered <= RECOVERY_BOUND
    RESULTS["api-down"] = {
        "reason": "connection",
        "costs_gone_after_s": round(gone, 2),
        "recovered_s": round(recovered, 2),
    }


@pytest.mark.parametrize("shape", ["[]", "[{}]", "[null]"])
def test_empty_data_is_a_success_with_no_cost_series(stack: SimAndExporter, shape: str) -> None:
    """Empty `data` is a valid answer (e.g. Kubecost still building its first hour): success, no made-up zeros."""
    wait_for(lambda: stack.scrape().has_costs, 10, "costs before the empty answer")
    errors = stack.scrape().errors
    stack.fault("empty", shape=shape)
    try:
        wait_for(lambda: not stack.scrape().namespaces, REFRESH + 3, "the empty answer to replace the snapshot")
        sc = stack.scrape()
        assert sc.success == 1
        assert sc.errors == errors, "an empty answer is not an error"
    finally:
        stack.fault("none")
    recovered = wait_for(lambda: stack.scrape().has_costs, RECOVERY_BOUND + 5, "costs back")
    assert recovered <= RECOVERY_BOUND
    RESULTS[f"empty-{shape}"] = {"reason": None, "recovered_s": round(recovered, 2)}


def test_process_survived_every_fault_and_serves_health(stack: SimAndExporter) -> None:
    assert stack.exporter.alive()
    sc = stack.scrape()
    assert sc.success == 1
    for reason in ("http_status", "not_json", "api_error", "timeout", "connection", "too_large"):
        assert sc.errors[reason] >= 1, f"no {reason} error was ever counted: {sc.errors}"
