"""Alert rules: `promtool check rules` and `promtool test rules` on the standalone rules file and on the rules the
chart renders into its PrometheusRule (both Helm majors).

promtool: an upstream 3.x build in `$KCI_CACHE/bin` when present (what the chart's Prometheus image runs), else
Debian's /usr/bin/promtool (2.42). A missing promtool fails the tests (never skips).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from testsupport.render import CHART_DIR, kci_cache, objects, render, render_error, with_quickstart

pytestmark = pytest.mark.chart

RULES = CHART_DIR / "files" / "alerts" / "cloudtuner-kubecost.rules.yaml"
UNIT_TESTS = sorted((CHART_DIR / "tests" / "alerts").glob("*.test.yaml"))
GROUPS = {"exporter", "cost", "remote-write"}


def promtools() -> list[str]:
    """Every promtool present: the upstream 3.x build in $KCI_CACHE/bin first, then Debian's 2.42."""
    found: list[str] = []
    for cand in (kci_cache() / "bin" / "promtool", shutil.which("promtool"), "/usr/bin/promtool"):
        if cand and Path(cand).is_file() and str(Path(cand).resolve()) not in {str(Path(f).resolve()) for f in found}:
            found.append(str(cand))
    if not found:
        pytest.fail(
            "required tool 'promtool' not found in $KCI_CACHE/bin, PATH or /usr/bin: run `make tools`", pytrace=False
        )
    return found


def promtool() -> str:
    return promtools()[0]


def run_promtool(*args: str, cwd: Path | None = None, binary: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [binary or promtool(), *args], capture_output=True, text=True, timeout=300, check=False, cwd=cwd
    )


def rules_file() -> dict[str, Any]:
    loaded = yaml.safe_load(RULES.read_text())
    assert isinstance(loaded, dict)
    return loaded


def alert_names(groups: list[dict[str, Any]]) -> list[str]:
    return [r["alert"] for g in groups for r in g["rules"]]


def unit_tests_against(rules_path: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """The unit tests of tests/alerts/ run against `rules_path` (copies of the test files pointing at it)."""
    files = []
    for src in UNIT_TESTS:
        doc = yaml.safe_load(src.read_text())
        doc["rule_files"] = [str(rules_path)]
        test_file = tmp_path / src.name
        test_file.write_text(yaml.safe_dump(doc, sort_keys=False))
        files.append(str(test_file))
    return run_promtool("test", "rules", *files, cwd=tmp_path)


def rendered_groups(values: dict[str, Any], helm: str = "helm") -> list[dict[str, Any]]:
    docs = render(with_quickstart(values), helm=helm)
    (rule,) = objects(docs, "PrometheusRule")
    groups = rule["spec"]["groups"]
    assert isinstance(groups, list)
    return groups


@pytest.fixture(params=["first", "second"])
def each_promtool(request: pytest.FixtureRequest) -> str:
    """Each installed promtool (3.x and 2.42 when both are there; the single one twice otherwise)."""
    tools = promtools()
    return tools[0] if request.param == "first" else tools[-1]


def test_promtool_check_rules_on_the_standalone_file(each_promtool: str) -> None:
    proc = run_promtool("check", "rules", str(RULES), binary=each_promtool)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS: 16 rules found" in proc.stdout


def test_every_alert_has_a_firing_and_a_not_firing_unit_test() -> None:
    alerts = alert_names(rules_file()["groups"])
    assert len(alerts) == len(set(alerts)) == 16
    firing: set[str] = set()
    silent: set[str] = set()
    cases = [c for f in UNIT_TESTS for c in yaml.safe_load(f.read_text())["tests"]]
    assert len(UNIT_TESTS) == 2
    assert cases
    for case in cases:
        for t in case.get("alert_rule_test") or []:
            (firing if t.get("exp_alerts") else silent).add(t["alertname"])
    # A "not firing" check of an alert with look-alike series in the same case counts as its negative test.
    assert set(alerts) - firing == set(), "alerts without a firing test"
    negatives = {a for a in alerts if a in silent}
    # KubecostNamespaceLowEfficiency's negatives are the look-alike namespaces in the firing case itself.
    assert set(alerts) - negatives <= {"KubecostNamespaceLowEfficiency"}, set(alerts) - negatives


def test_promtool_unit_tests_pass(each_promtool: str) -> None:
    proc = run_promtool("test", "rules", *map(str, UNIT_TESTS), cwd=UNIT_TESTS[0].parent, binary=each_promtool)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("SUCCESS") == len(UNIT_TESTS), proc.stdout


def test_unit_tests_catch_a_broken_rule(tmp_path: Path) -> None:
    """The unit tests can fail: a changed threshold or a dropped `for` is caught."""
    text = RULES.read_text()
    for old, new in (
        ("> 1800", "> 7200"),  # KubecostCostDataStale never fires
        (
            "for: 15m\n        labels:\n          severity: warning",
            "for: 1m\n        labels:\n          severity: warning",
        ),
        ("> 1.5 *", "> 3 *"),  # cost spike threshold
        (") > 0.05\n", ") > 0.2\n"),  # drift from assets: 16.67 % no longer fires
        ("cluster_idle_cost) < 0", "cluster_idle_cost) < -1"),  # negative idle never fires
        (
            'remote_name="cloudtuner-thanos"}[5m]) > 0\n        for: 10m',
            'remote_name=~".+"}[5m]) > 0\n        for: 10m',
        ),
    ):
        assert old in text, old
        broken = tmp_path / "broken.rules.yaml"
        broken.write_text(text.replace(old, new, 1))
        assert run_promtool("check", "rules", str(broken)).returncode == 0
        proc = unit_tests_against(broken, tmp_path)
        assert proc.returncode != 0, f"unit tests still pass with {old!r} -> {new!r}"


def test_rendered_prometheusrule_is_the_rules_file(helm: str, tmp_path: Path) -> None:
    groups = rendered_groups({"prometheusRule": {"enabled": True}}, helm=helm)
    assert alert_names(groups) == alert_names(rules_file()["groups"])
    rendered = tmp_path / "rendered.rules.yaml"
    rendered.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    check = run_promtool("check", "rules", str(rendered))
    assert check.returncode == 0, check.stdout + check.stderr
    # The unit tests pass on the rendered rules too (the release-specific job matcher still matches the agent's job).
    proc = unit_tests_against(rendered, tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    exprs = "\n".join(r["expr"] for g in groups for r in g["rules"])
    assert 'up{job=~"kubecost-allocation-exporter|my-kubecost-kubecost-integration-exporter"}' in exprs
    assert exprs.count('remote_name="cloudtuner-thanos"') == 5
    assert "> 0.8 * 1073741824" in exprs  # the default WAL volume, 1Gi


def test_rendered_rules_follow_the_values(helm: str) -> None:
    groups = rendered_groups(
        {
            "prometheusRule": {
                "enabled": True,
                "labels": {"release": "kps"},
                "groups": ["exporter", "remote-write"],
                "disabledAlerts": ["KubecostExporterDown"],
                "alertLabels": {"team": "finops", "severity": "page"},
            },
            "remoteWrite": {"name": "platform-rw"},
        },
        helm=helm,
    )
    assert [g["name"] for g in groups] == ["kubecost-integration.exporter", "kubecost-integration.remote-write"]
    names = alert_names(groups)
    assert "KubecostExporterDown" not in names
    assert "KubecostClusterCostSpike" not in names
    assert "KubecostRemoteWriteBehind" in names
    for g in groups:
        for r in g["rules"]:
            assert r["labels"]["team"] == "finops"
            assert r["labels"]["severity"] in {"critical", "warning", "info"}, "an alert's own severity must win"
    rw = "\n".join(r["expr"] for g in groups for r in g["rules"] if g["name"].endswith("remote-write"))
    assert 'remote_name="platform-rw"' in rw
    assert "cloudtuner-thanos" not in rw


@pytest.mark.parametrize(("share", "threshold"), [(None, ") > 0.05"), (0.2, ") > 0.2"), (0.005, ") > 0.005")])
def test_assets_drift_share_sets_the_drift_alert_threshold(helm: str, share: float | None, threshold: str) -> None:
    values: dict[str, Any] = {"enabled": True}
    if share is not None:
        values["assetsDriftShare"] = share
    groups = rendered_groups({"prometheusRule": values}, helm=helm)
    [expr] = [r["expr"] for g in groups for r in g["rules"] if r["alert"] == "KubecostAllocationsDriftFromAssets"]
    assert threshold + "\n" in expr
    assert expr.count(")  > ") == 0
    assert expr.count(") > ") == 1


def test_schema_rejects_a_drift_share_of_zero(helm: str) -> None:
    err = render_error(with_quickstart({"prometheusRule": {"enabled": True, "assetsDriftShare": 0}}), helm=helm)
    assert "assetsDriftShare" in err, err


def test_rendered_prometheusrule_metadata(helm: str) -> None:
    docs = render(with_quickstart({"prometheusRule": {"enabled": True, "labels": {"release": "kps"}}}), helm=helm)
    (rule,) = objects(docs, "PrometheusRule")
    assert rule["metadata"]["labels"]["release"] == "kps"
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert not objects(render(with_quickstart({}), helm=helm), "PrometheusRule")


def test_schema_rejects_an_unknown_group(helm: str) -> None:
    err = render_error(with_quickstart({"prometheusRule": {"enabled": True, "groups": ["costs"]}}), helm=helm)
    assert "costs" in err or "prometheusRule" in err, err


@pytest.mark.parametrize(
    ("agent", "threshold"),
    [
        ({"walSizeLimit": "512Mi"}, "> 0.8 * 536870912"),
        ({"walSizeLimit": "1.5Gi"}, "> 0.8 * 1610612736"),
        ({"walSizeLimit": "2G"}, "> 0.8 * 2000000000"),
        ({"persistence": {"enabled": True, "size": "4Gi"}}, "> 0.8 * 4294967296"),
    ],
)
def test_the_wal_alert_is_sized_from_the_agents_wal_volume(helm: str, agent: dict[str, Any], threshold: str) -> None:
    groups = rendered_groups({"prometheusRule": {"enabled": True}, "prometheus": {"agent": agent}}, helm=helm)
    [rule] = [r for g in groups for r in g["rules"] if r["alert"] == "KubecostAgentWALNearSizeLimit"]
    assert threshold in rule["expr"], rule["expr"]
