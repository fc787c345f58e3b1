"""The benchmark's verdicts over repeated rounds (bench/run.py): a target is met only when every round
meets it, missed when the median of the rounds misses it, unsettled in between."""

from __future__ import annotations

import pytest

from bench.run import Figure, verdict

pytestmark = pytest.mark.unit


def ratios(*values: float) -> list[Figure]:
    """One round each: a refresh taking `value` times its baseline, against the 2.0x target."""
    return [Figure("refresh", v, "s", 1.0, "baseline", 2.0, on_ratio=True) for v in values]


def test_met_only_when_every_round_meets_the_target() -> None:
    assert verdict(ratios(1.5, 1.6, 2.0)) == "met"


def test_one_noisy_round_does_not_fail_the_target_but_does_not_pass_it() -> None:
    assert verdict(ratios(1.5, 1.6, 2.4)) == "unsettled"


def test_one_lucky_round_does_not_pass_the_target() -> None:
    assert verdict(ratios(1.5, 2.1, 2.4)) == "NOT met"


def test_a_value_target_bounds_the_value_not_the_ratio() -> None:
    peaks = [Figure("peak RSS", v, "MiB", 500.0, "baseline", 128) for v in (100.0, 120.0, 130.0)]
    assert verdict(peaks) == "unsettled"
    assert verdict(peaks[:2]) == "met"


def test_a_figure_without_a_target_has_no_verdict() -> None:
    assert verdict([Figure("CPU time", 0.16, "cpu-s")]) == "n/a"
