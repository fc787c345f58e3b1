"""docs/configuration.md and docs/metrics.md stay in step with the code."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from kubecost_allocation_exporter.config import SETTINGS
from kubecost_allocation_exporter.metrics import COST_METRIC_NAMES, HEALTH_METRIC_NAMES

pytestmark = pytest.mark.unit

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_configuration_doc_lists_every_setting_as_the_code_declares_it() -> None:
    """Flag, env var, default, the allowed values (the converter's own text, the same as in the
    error message) and the help text."""
    text = (DOCS / "configuration.md").read_text()
    for s in SETTINGS:
        default = f"`{s.default}`" if s.default else "(empty)"
        row = f"| `{s.flag}` | `{s.env}` | {default} | {s.allowed} | {s.help} |"
        assert row in text, f"docs/configuration.md has no row {row!r}"


def test_metrics_doc_lists_exactly_the_exported_families() -> None:
    text = (DOCS / "metrics.md").read_text()
    documented = set(re.findall(r"`(cloudtuner_kubecost_[a-z_]+)`", text))
    exported = set(COST_METRIC_NAMES) | set(HEALTH_METRIC_NAMES)
    assert exported - documented == set(), "undocumented metrics"
    assert documented - exported == set(), "documented metrics the exporter does not export"
