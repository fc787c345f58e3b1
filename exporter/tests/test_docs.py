"""docs/configuration.md and docs/metrics.md stay in step with the code."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from kubecost_allocation_exporter.config import SETTINGS
from kubecost_allocation_exporter.metrics import COST_METRIC_NAMES, HEALTH_METRIC_NAMES
from kubecost_allocation_exporter.verify.cli import parser as verify_parser

pytestmark = pytest.mark.unit

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_configuration_doc_lists_every_setting_as_the_code_declares_it() -> None:
    """Flag, env var, default, the allowed values (the converter's own text, the same as in the
    error message) and the help text."""
    text = (DOCS / "configuration.md").read_text()
    for s in SETTINGS:
        default = f"`{s.default}`" if s.default else "(empty)"
        row = f"| `{s.flag}` | `{s.env}` | {default} | {s.converter.allowed} | {s.help} |"
        assert row in text, f"docs/configuration.md has no row {row!r}"


def test_metrics_doc_lists_exactly_the_exported_families() -> None:
    text = (DOCS / "metrics.md").read_text()
    documented = set(re.findall(r"`(cloudtuner_kubecost_[a-z_]+)`", text))
    exported = set(COST_METRIC_NAMES) | set(HEALTH_METRIC_NAMES)
    assert exported - documented == set(), "undocumented metrics"
    assert documented - exported == set(), "documented metrics the exporter does not export"


GOLDEN = Path(__file__).resolve().parent / "golden"


def test_troubleshooting_counts_the_series_names_the_default_answer_exports() -> None:
    """verify's example output (against `make demo-up`): the number of names is that of the
    exporter's exposition for the default answer with the chart's default `assets: true`, which
    adds cluster_assets_cost (the golden file of the Kubecost 2.x namespace fixture with assets)."""
    text = (DOCS / "troubleshooting.md").read_text()
    quoted = [
        int(n) for n in re.findall(r"PASS  thanos +(\d+) cloudtuner_kubecost_\* series", text)
    ]
    assert next(s for s in SETTINGS if s.attr == "assets").default == "true"
    golden = (GOLDEN / "kubecost2_namespace.assets.prom").read_text()
    names = set(re.findall(r"^(cloudtuner_kubecost_[a-z_]+)[{ ]", golden, re.M))
    assert quoted, "no verify example with a series-name count in docs/troubleshooting.md"
    assert set(quoted) == {len(names)}


def test_troubleshooting_verify_example_reads_the_queue_over_the_default_interval() -> None:
    """The example runs without --sample-seconds, so its remote-write line says the default."""
    text = (DOCS / "troubleshooting.md").read_text()
    quoted = {float(n) for n in re.findall(r"no failures or retries in (\d+)s", text)}
    assert quoted == {verify_parser().get_default("sample_seconds")}


def test_queries_doc_says_idle_is_always_present() -> None:
    """The exporter writes cluster_idle_cost for every cluster, 0 without an idle row."""
    golden = (GOLDEN / "kubecost2_namespace_shareidle.prom").read_text()
    assert re.search(r"^cloudtuner_kubecost_cluster_idle_cost\{", golden, re.M)
    text = (DOCS / "queries.md").read_text()
    assert "`cluster_idle_cost` is always present" in text
    assert "cluster_idle_cost` is absent" not in text


def test_upgrading_names_a_version_in_every_heading() -> None:
    """Each release section says which version it is about; "the next version" ages badly."""
    root = DOCS.parent
    headings = re.findall(r"^## (.+)$", (root / "UPGRADING.md").read_text(), re.M)
    versioned = [
        h for h in headings if h not in ("General procedure",) and not h.startswith("Phase 1")
    ]
    assert versioned
    for heading in versioned:
        assert re.search(r"\b\d+\.\d+\.\d+\b", heading), heading
        assert "next" not in heading.lower(), heading


CLOSED = "http://127.0.0.1:9"


def test_configuration_doc_quotes_once_against_a_closed_port_as_it_prints() -> None:
    """The `--once` example a reader can reproduce on any machine (nothing listens on port 9):
    the line in docs/configuration.md is the exporter's own, hint included."""
    env = {k: v for k, v in os.environ.items() if k not in {s.env for s in SETTINGS}}
    args = ["--once", "--retries", "0", "--cluster-name", "c", "--tenant-id", "t"]
    proc = subprocess.run(
        [sys.executable, "-m", "kubecost_allocation_exporter", *args, "--kubecost-url", CLOSED],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 1, proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert f"    {line}\n" in (DOCS / "configuration.md").read_text(), line
