"""The chart's alert rules loaded by a real Prometheus (the bench's monitoring Prometheus, which scrapes the agent
and the exporter like an in-cluster Prometheus would): every rule evaluates without error, and a healthy pipeline
raises no exporter or remote_write alert. The firing side is covered by promtool unit tests (test_alerts.py) and by
test_verify's Thanos-down case, which also waits for KubecostRemoteWriteRetrying to go pending here."""

from __future__ import annotations

import time

import pytest
import yaml

from testsupport.opsbench import RULES, OpsBench
from testsupport.procs import http_json

pytestmark = pytest.mark.e2e


def test_rules_load_and_evaluate_cleanly(ops_bench: OpsBench) -> None:
    deadline = time.monotonic() + 30
    while True:
        groups = http_json(f"{ops_bench.monitor_url}/api/v1/rules")["data"]["groups"]
        rules = [r for g in groups for r in g["rules"]]
        if rules and all(r.get("lastEvaluation", "").startswith("2") and r["health"] != "unknown" for r in rules):
            break
        assert time.monotonic() < deadline, "rules never evaluated"
        time.sleep(1)
    assert sorted(g["name"] for g in groups) == [
        "kubecost-integration.anomaly",
        "kubecost-integration.budget",
        "kubecost-integration.cost",
        "kubecost-integration.exporter",
        "kubecost-integration.forecast",
        "kubecost-integration.remote-write",
    ]
    # Every rule of the chart's file is loaded (the file, not a count kept by hand, says how many).
    in_file = [r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]
    assert len(in_file) >= 13, (len(rules), len(in_file))
    assert len(rules) == len(in_file), (len(rules), len(in_file))
    assert sorted(r["name"] for r in rules) == sorted(r.get("alert") or r["record"] for r in in_file)
    bad = [(r["name"], r.get("lastError")) for r in rules if r["health"] != "ok"]
    assert not bad, bad


def test_a_healthy_pipeline_raises_no_pipeline_alert(ops_bench: OpsBench) -> None:
    alerts = http_json(f"{ops_bench.monitor_url}/api/v1/alerts")["data"]["alerts"]
    pipeline = [
        a
        for a in alerts
        if a["labels"]["alertname"] not in {"KubecostClusterLowEfficiency", "KubecostNamespaceLowEfficiency"}
    ]
    assert pipeline == [], pipeline
