"""Pipeline e2e layer: puts `tests-e2e/` on sys.path so the `simulator` package (a test double) is importable."""

import sys
from pathlib import Path

import pytest

HERE = str(Path(__file__).resolve().parent)
if HERE not in sys.path:
    sys.path.insert(0, HERE)


def pytest_terminal_summary(terminalreporter, exitstatus, config):  # type: ignore[no-untyped-def]
    """Print the measured pipeline latency (recorded by test_pipeline_latency) at the end of every run."""
    for reports in terminalreporter.stats.values():
        for rep in reports:
            for key, value in getattr(rep, "user_properties", []):
                if key == "pipeline_latency" and getattr(rep, "when", "") == "call":
                    terminalreporter.write_line(f"pipeline latency (simulator change -> Thanos): {value}")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):  # type: ignore[no-untyped-def]
    """A failing pipeline test shows the tail of every process log (full logs stay in the session tmp dir)."""
    outcome = yield
    rep = outcome.get_result()
    stack = getattr(item, "funcargs", {}).get("pipeline")
    if rep.failed and stack is not None:
        rep.sections.append(("pipeline process logs", stack.group.logs_report()))
