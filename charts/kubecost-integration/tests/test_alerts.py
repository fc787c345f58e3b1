"""Alert rules: `promtool check rules` and `promtool test rules` on the standalone rules file and on the rules the
chart renders into its PrometheusRule (both Helm majors).

promtool: an upstream 3.x build in `$KCI_CACHE/bin` when present (what the chart's Prometheus image runs), else
Debian's /usr/bin/promtool (2.42). A missing promtool fails the tests (never skips).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml

from testsupport.render import CHART_DIR, kci_cache, objects, render, render_error, with_quickstart

pytestmark = pytest.mark.chart

RULES = CHART_DIR / "files" / "alerts" / "cloudtuner-kubecost.rules.yaml"
UNIT_TESTS = sorted((CHART_DIR / "tests" / "alerts").glob("*.test.yaml"))
# The `anomaly` group's tests (weeks of history, the slow ones) and the others.
ANOMALY_TESTS = [f for f in UNIT_TESTS if f.name.startswith("cloudtuner-kubecost-anomaly")]
# The forecast and budget tests (34 days of history) and the current hour of the month to date.
BUDGET_TESTS = CHART_DIR / "tests" / "alerts" / "cloudtuner-kubecost-budget.test.yaml"
COST_TESTS = CHART_DIR / "tests" / "alerts" / "cloudtuner-kubecost-cost.test.yaml"
CORE_TESTS = [f for f in UNIT_TESTS if f not in ANOMALY_TESTS and f != BUDGET_TESTS]
GROUPS = {"exporter", "cost", "forecast", "budget", "remote-write", "anomaly"}
ANOMALY_ALERTS = {"KubecostNamespaceCostAnomaly", "KubecostClusterCostAnomaly"}
RECORDINGS = [
    "cloudtuner_kubecost:namespace_cost:avg_1h",
    "cloudtuner_kubecost:namespace_cost:baseline_4w",
    "cloudtuner_kubecost:cluster_cost:avg_1h",
    "cloudtuner_kubecost:cluster_cost:baseline_4w",
]
FORECAST_RECORDS = [
    f"cloudtuner_kubecost:{level}_cost:{what}"
    for level in ("cluster", "namespace", "breakdown")
    for what in ("month_to_date_usd", "month_end_forecast_usd")
]


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
    return [r["alert"] for g in groups for r in g["rules"] if "alert" in r]


def record_names(groups: list[dict[str, Any]]) -> list[str]:
    return [r["record"] for g in groups for r in g["rules"] if "record" in r]


# promtool processes one test runs at once: the runs are independent, and the other test workers mostly wait on
# processes (more than two at once starved the listener's timing tests on 2 cores).
PROMTOOLS_AT_ONCE = 2
# A series name in a rule or a test, and a regex on the name (`{__name__=~"cloudtuner_kubecost:.+_cost:.+"}`).
NAME = re.compile(r"cloudtuner_kubecost:[a-z0-9_]+:[a-z0-9_]+")
NAME_REGEX = re.compile(r'__name__=~"([^"]+)"')


def observed_groups(test: dict[str, Any], groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The groups whose results a unit-test file can observe: those of the alerts it names and of the recorded series
    its expressions read (by name or by a regex on the name), then those whose recorded series these read, and so on.

    promtool evaluates every group of its rules files at every step of a test's whole span: the forecast group's
    31-day subqueries over weeks of history took most of its time in tests that never read a forecast. Groups meet
    only through the series they record (no rule reads ALERTS), so leaving out a group nothing observed reads cannot
    change any result; if a rule ever reads ALERTS, every group is kept."""
    exprs = [t["expr"] for case in test["tests"] for t in case.get("promql_expr_test") or []]
    alerts = {t["alertname"] for case in test["tests"] for t in case.get("alert_rule_test") or []}
    if any("ALERTS" in r["expr"] for g in groups for r in g["rules"]):
        return groups

    def reads(expr: str, group: dict[str, Any]) -> bool:
        """`expr` reads a series `group` records: by its name, or by a regex on the name."""
        named, regexes = set(NAME.findall(expr)), NAME_REGEX.findall(expr)
        return any(n in named or any(re.fullmatch(x, n) for x in regexes) for n in record_names([group]))

    kept = [g for g in groups if any(r.get("alert") in alerts for r in g["rules"]) or any(reads(e, g) for e in exprs)]
    while True:
        more = [g for g in groups if g not in kept and any(reads(r["expr"], g) for k in kept for r in k["rules"])]
        if not more:
            return [g for g in groups if g in kept]  # in the file's order
        kept += more


def unit_tests_against(
    groups: list[dict[str, Any]],
    tmp_path: Path,
    tests: list[Path] | None = None,
    binary: str | None = None,
    at_once: int = PROMTOOLS_AT_ONCE,
) -> subprocess.CompletedProcess[str]:
    """The unit tests of tests/alerts/ (or `tests`), each run against the rule groups of `groups` it can observe
    (copies pointing at a rules file of their own). One promtool process per file, `at_once` at a time; their
    outputs joined, the first failing exit status."""
    files = []
    for src in UNIT_TESTS if tests is None else tests:
        doc = yaml.safe_load(src.read_text())
        rules = tmp_path / src.name.replace(".test.yaml", ".rules.yaml")
        rules.write_text(yaml.safe_dump({"groups": observed_groups(doc, groups)}, sort_keys=False))
        doc["rule_files"] = [str(rules)]
        test_file = tmp_path / src.name
        test_file.write_text(yaml.safe_dump(doc, sort_keys=False))
        files.append(str(test_file))
    with ThreadPoolExecutor(at_once) as pool:
        procs = list(pool.map(lambda f: run_promtool("test", "rules", f, cwd=tmp_path, binary=binary), files))
    return subprocess.CompletedProcess(
        [p.args for p in procs],
        next((p.returncode for p in procs if p.returncode), 0),
        "".join(p.stdout for p in procs),
        "".join(p.stderr for p in procs),
    )


def groups_of(text: str) -> list[dict[str, Any]]:
    groups = yaml.safe_load(text)["groups"]
    assert isinstance(groups, list)
    return groups


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
    assert "SUCCESS: 30 rules found" in proc.stdout


def test_every_alert_has_a_firing_and_a_not_firing_unit_test() -> None:
    alerts = alert_names(rules_file()["groups"])
    assert len(alerts) == len(set(alerts)) == 20
    assert set(alerts) >= ANOMALY_ALERTS
    firing: set[str] = set()
    silent: set[str] = set()
    cases = [c for f in UNIT_TESTS for c in yaml.safe_load(f.read_text())["tests"]]
    assert len(UNIT_TESTS) == 5
    assert len(ANOMALY_TESTS) == 2
    assert cases
    for case in cases:
        for t in case.get("alert_rule_test") or []:
            (firing if t.get("exp_alerts") else silent).add(t["alertname"])
    # A "not firing" check of an alert with look-alike series in the same case counts as its negative test.
    assert set(alerts) - firing == set(), "alerts without a firing test"
    negatives = {a for a in alerts if a in silent}
    # KubecostNamespaceLowEfficiency's negatives are the look-alike namespaces in the firing case itself.
    assert set(alerts) - negatives <= {"KubecostNamespaceLowEfficiency"}, set(alerts) - negatives


def test_every_recording_rule_has_value_tests() -> None:
    """Each recording rule's values are asserted (promql_expr_test), including an expected absence."""
    groups = rules_file()["groups"]
    [anomaly] = [g for g in groups if g["name"] == "kubecost-integration.anomaly"]
    assert record_names([anomaly]) == RECORDINGS
    assert [r.get("record") for r in anomaly["rules"][:4]] == RECORDINGS
    exprs = [
        t["expr"] for f in ANOMALY_TESTS for c in yaml.safe_load(f.read_text())["tests"] for t in c["promql_expr_test"]
    ]
    for name in RECORDINGS:
        assert any(e.startswith(name) for e in exprs), f"no promql_expr_test reads {name}"


def test_anomaly_rules_keep_the_labels_and_fold_restarts() -> None:
    """Every aggregation of the anomaly group keeps cluster and tenant_id (and namespace), and folds the series of
    a restarted exporter with max (a sum would count the old and the new pod twice)."""
    [anomaly] = [g for g in rules_file()["groups"] if g["name"] == "kubecost-integration.anomaly"]
    for rule in anomaly["rules"]:
        if "record" not in rule:
            continue
        by = "(cluster, tenant_id, namespace)" if "namespace_cost" in rule["record"] else "(cluster, tenant_id)"
        assert rule["record"].startswith("cloudtuner_kubecost:")
        assert rule["expr"].count(" by ") == rule["expr"].count(f" by {by}") >= 1, rule["expr"]
        assert "sum" not in rule["expr"]
        assert "unless on (cluster, tenant_id)\n" in rule["expr"]


def test_each_unit_test_file_gets_the_groups_it_observes() -> None:
    """What `unit_tests_against` gives each file: the groups of its alerts and of the series it reads, by name or by
    a regex on the name (the budget and cost files' absence checks, which the anomaly records could fail), and the
    groups those read in turn."""
    groups = rules_file()["groups"]

    def short(test: Path) -> list[str]:
        return [
            g["name"].removeprefix("kubecost-integration.")
            for g in observed_groups(yaml.safe_load(test.read_text()), groups)
        ]

    got = {f.name.removeprefix("cloudtuner-kubecost").removesuffix(".test.yaml"): short(f) for f in UNIT_TESTS}
    assert got == {
        "": ["exporter", "remote-write"],
        "-anomaly": ["cost", "anomaly"],
        "-anomaly-gaps": ["cost", "anomaly"],
        "-budget": ["forecast", "budget", "anomaly"],
        "-cost": ["cost", "forecast", "anomaly"],
    }
    # by a regex on the name alone
    absent = {"tests": [{"promql_expr_test": [{"expr": '{__name__=~"cloudtuner_kubecost:.+_cost:month_.+"}'}]}]}
    assert [g["name"] for g in observed_groups(absent, groups)] == ["kubecost-integration.forecast"]
    # a rule reading ALERTS would observe every group
    alerts = [*groups, {"name": "x", "rules": [{"alert": "A", "expr": 'ALERTS{alertname="B"}'}]}]
    assert observed_groups({"tests": [{"alert_rule_test": [{"alertname": "A"}]}]}, alerts) == alerts


def test_promtool_unit_tests_pass(each_promtool: str, tmp_path: Path) -> None:
    proc = unit_tests_against(rules_file()["groups"], tmp_path, binary=each_promtool)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("SUCCESS") == len(UNIT_TESTS), proc.stdout
    # A rule that cannot be evaluated (e.g. over promtool's sample limit) is only logged; it must not happen.
    assert "err:" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr


def assert_each_is_caught(mutants: list[tuple[str, list[Path], str]], tmp_path: Path) -> None:
    """Each (rules text, unit-test files, what was changed): the rules pass `promtool check rules` and fail the unit
    tests. PROMTOOLS_AT_ONCE mutants at a time (one promtool process each), each in a directory of its own."""

    def caught(i: int) -> str | None:
        text, tests, what = mutants[i]
        where = tmp_path / f"mutant-{i}"
        where.mkdir()
        broken = where / "broken.rules.yaml"
        broken.write_text(text)
        check = run_promtool("check", "rules", str(broken))
        if check.returncode != 0:
            return f"{what}: promtool check rules fails: {check.stdout + check.stderr}"
        proc = unit_tests_against(groups_of(text), where, tests, at_once=1)
        out = proc.stdout + proc.stderr
        return None if proc.returncode != 0 and "FAILED" in out else f"unit tests do not fail with {what}: {out}"

    with ThreadPoolExecutor(PROMTOOLS_AT_ONCE) as pool:
        problems = [p for p in pool.map(caught, range(len(mutants))) if p]
    assert problems == []


def test_unit_tests_catch_a_broken_rule(tmp_path: Path) -> None:
    """The unit tests can fail: a changed threshold or a dropped `for` is caught."""
    text = RULES.read_text()
    mutants: list[tuple[str, list[Path], str]] = []
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
        mutants.append((text.replace(old, new, 1), CORE_TESTS, f"{old!r} -> {new!r}"))
    assert_each_is_caught(mutants, tmp_path)


NS_AVG = "max by (cluster, tenant_id, namespace) (avg_over_time(cloudtuner_kubecost_namespace_total_cost[1h]))"
NS_FOR = "\n".join(
    [
        "        for: 1h",
        "        labels:",
        "          severity: warning",
        "        annotations:",
        "          summary: A namespace",
    ]
)
TOTAL_MODE = (
    "unless on (cluster, tenant_id)\n"
    '          last_over_time(cloudtuner_kubecost_exporter_info{metric_mode="total"}[1h])'
)
CL_FOR = NS_FOR.replace("A namespace", "A cluster")


def without_forecast_and_budget(text: str) -> str:
    """The rules file without the forecast and budget groups: the forecast group averages the same series over an
    hour in the same words as the anomaly group, so an edit meant for one would hit both."""
    start = text.index("  - name: kubecost-integration.forecast\n")
    end = text.index("  - name: kubecost-integration.remote-write\n")
    return text[:start] + text[end:]


#: Edits of the anomaly group and the file of tests that must catch each.
ANOMALY_EDITS: list[tuple[list[tuple[str, str]], str]] = [
    # The minimum increase: `tiny` (+0.18 USD/h, 10 times its baseline) pages.
    ([("namespace_cost:baseline_4w > 0.5\n", "namespace_cost:baseline_4w > 0.1\n")], "anomaly"),
    # The cluster's minimum increase: c1's spike (+2.18 USD/h) no longer pages.
    ([("cluster_cost:baseline_4w > 0.5\n", "cluster_cost:baseline_4w > 5\n")], "anomaly"),
    # The ratio: `growing` (1.43 times its baseline) pages.
    ([("> 1.5 * cloudtuner_kubecost:namespace_cost", "> 1.2 * cloudtuner_kubecost:namespace_cost")], "anomaly"),
    # A baseline of the past 4 days instead of 4 weeks: Monday after the weekend pages.
    (
        [(f"namespace_total_cost[1h] offset {n}w)", f"namespace_total_cost[1h] offset {n}d)") for n in range(1, 5)],
        "anomaly",
    ),
    # `for: 1h` of each anomaly alert: it fires while it should still be pending.
    ([(NS_FOR, NS_FOR.replace("for: 1h", "for: 15m"))], "anomaly"),
    ([(CL_FOR, CL_FOR.replace("for: 1h", "for: 15m"))], "anomaly"),
    # Without the seasonal check KubecostClusterCostSpike pages on the nightly batch.
    ([("<= 1.5 * last_over_time(", "<= 0.5 * last_over_time(")], "anomaly"),
    # Total mode is not left out: c9 (USD since midnight) gets an hourly average.
    ([(f"{NS_AVG}\n          {TOTAL_MODE}", NS_AVG)], "anomaly"),
    # A sum over the series of a restarted exporter counts it twice.
    ([(NS_AVG, NS_AVG.replace("max by", "sum by"))], "gaps"),
    # The instant value instead of the hour's average: a scrape gap restarts `for`.
    ([(NS_AVG, "max by (cluster, tenant_id, namespace) (cloudtuner_kubecost_namespace_total_cost)")], "gaps"),
]


def test_anomaly_unit_tests_catch_a_broken_rule(tmp_path: Path) -> None:
    base = without_forecast_and_budget(RULES.read_text())
    mutants: list[tuple[str, list[Path], str]] = []
    for edits, tests in ANOMALY_EDITS:
        rest = base
        for old, new in edits:
            assert rest.count(old) == 1, old
            rest = rest.replace(old, new)
        [test_file] = [f for f in ANOMALY_TESTS if f.name.endswith("-gaps.test.yaml") == (tests == "gaps")]
        mutants.append((rest, [test_file], repr(edits)))
    assert_each_is_caught(mutants, tmp_path)


BUDGET_TOTAL_MODE = 'cloudtuner_kubecost_exporter_info{metric_mode="total"}'


def test_unit_tests_catch_a_broken_forecast_or_budget_rule(tmp_path: Path) -> None:
    """The forecast and budget tests can fail: a month to date that does not restart on the 1st, a wrong number of
    hours left, total mode not left out, a changed threshold or a dropped `for` is caught (every occurrence changed)."""
    text = RULES.read_text()
    mutants: list[tuple[str, list[Path], str]] = []
    for old, new in (
        # the day (hour) that ended at midnight counted in the new month: February's month to date starts at 24
        ("month(vector(time() - 1800))", "month(vector(time()))"),
        ("floor(vector(time() - 1800) / 86400)", "floor(vector(time()) / 86400)"),  # the hour before midnight as today
        ("(days_in_month() - day_of_month() + 1) * 24", "(days_in_month() - day_of_month()) * 24"),
        (f"unless on (cluster, tenant_id) {BUDGET_TOTAL_MODE}\n      - record", "\n      - record"),  # total mode kept
        (") > 1\n        for: 1h", ") > 1.25\n        for: 1h"),  # web's projected 124 % no longer fires
        (") > 1\n        for: 15m", ") > 1\n        for: 0s"),  # month to date over budget without holding it
        (") > 1\n        for: 1h", ") > 1\n        for: 2h"),
    ):
        assert old in text, old
        mutants.append((text.replace(old, new), [BUDGET_TESTS], f"{old!r} -> {new!r}"))
    # The current hour left out (the cost file's test evaluates between two whole hours).
    hour = " * (time() % 3600) / 3600,"
    assert hour in text
    mutants.append((text.replace(hour, " * 0,"), [COST_TESTS], "the current hour left out"))
    assert_each_is_caught(mutants, tmp_path)


def test_every_recording_rule_has_unit_tests() -> None:
    """Each recorded series is checked for its value (exp_samples), and for being absent in total mode."""
    [forecast] = [g for g in rules_file()["groups"] if g["name"] == "kubecost-integration.forecast"]
    assert record_names([forecast]) == FORECAST_RECORDS
    checked: set[str] = set()
    absent: list[str] = []
    for f in (BUDGET_TESTS, COST_TESTS):
        for case in yaml.safe_load(f.read_text())["tests"]:
            for t in case.get("promql_expr_test") or []:
                if t["exp_samples"]:
                    checked |= {s["labels"].split("{")[0] for s in t["exp_samples"]}
                else:
                    absent.append(t["expr"])
    assert set(FORECAST_RECORDS) <= checked, set(FORECAST_RECORDS) - checked
    assert '{__name__=~"cloudtuner_kubecost:.+_cost:.+", cluster="c2"}' in absent


def test_rendered_prometheusrule_is_the_rules_file(helm: str, tmp_path: Path) -> None:
    groups = rendered_groups({"prometheusRule": {"enabled": True}}, helm=helm)
    assert alert_names(groups) == alert_names(rules_file()["groups"])
    assert record_names(groups) == [*FORECAST_RECORDS, *RECORDINGS]
    assert [(g["name"], g.get("interval")) for g in groups] == [
        (g["name"], g.get("interval")) for g in rules_file()["groups"]
    ]
    exprs = "\n".join(r["expr"] for g in groups for r in g["rules"])
    assert 'up{job=~"kubecost-allocation-exporter|my-kubecost-kubecost-integration-exporter"}' in exprs
    assert exprs.count('remote_name="cloudtuner-thanos"') == 5
    assert "> 0.8 * 1073741824" in exprs  # the default WAL volume, 1Gi
    if helm != "helm":
        # Helm 4 renders the very rules Helm 3 does: the promtool run below would prove nothing new for it.
        assert groups == rendered_groups({"prometheusRule": {"enabled": True}}, helm="helm")
        return
    rendered = tmp_path / "rendered.rules.yaml"
    rendered.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    check = run_promtool("check", "rules", str(rendered))
    assert check.returncode == 0, check.stdout + check.stderr
    # The unit tests pass on the rendered rules too (the release-specific job matcher still matches the agent's job).
    proc = unit_tests_against(groups, tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr


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


def rules_by_name(groups: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r.get("alert") or r["record"]: r for g in groups for r in g["rules"]}


@pytest.mark.parametrize(
    ("anomaly", "ratio", "minimum"),
    [(None, "1.5", "0.5"), ({"ratio": 2, "minIncreaseUSDPerHour": 1.25}, "2", "1.25"), ({"ratio": 1.1}, "1.1", "0.5")],
)
def test_anomaly_thresholds_follow_the_values(
    helm: str, anomaly: dict[str, Any] | None, ratio: str, minimum: str
) -> None:
    values: dict[str, Any] = {"enabled": True}
    if anomaly is not None:
        values["anomaly"] = anomaly
    rules = rules_by_name(rendered_groups({"prometheusRule": values}, helm=helm))
    for level in ("namespace", "cluster"):
        expr = rules[f"Kubecost{level.capitalize()}CostAnomaly"]["expr"]
        assert f"cloudtuner_kubecost:{level}_cost:baseline_4w > {minimum}\n" in expr, expr
        assert f"> {ratio} * cloudtuner_kubecost:{level}_cost:baseline_4w" in expr, expr
        assert expr.count(" > ") == 2, expr
    spike = rules["KubecostClusterCostSpike"]["expr"]
    assert f"<= {ratio} * last_over_time(cloudtuner_kubecost:cluster_cost:baseline_4w[1h])" in spike, spike
    # The spike's own ratio against the 7-day average is not the anomaly ratio.
    assert "> 1.5 * avg_over_time(cloudtuner_kubecost_cluster_total_cost[7d] offset 1h)" in spike, spike
    # Recording rules have no thresholds: identical to the file's.
    file_rules = rules_by_name(rules_file()["groups"])
    for name in RECORDINGS:
        assert rules[name] == file_rules[name]


def test_a_lower_minimum_increase_reaches_promtool(tmp_path: Path) -> None:
    """A lower minimum increase renders into rules under which `tiny` (+0.18 USD/h) pages: the values reach
    promtool, and only the expected assertion fails."""
    groups = rendered_groups({"prometheusRule": {"enabled": True, "anomaly": {"minIncreaseUSDPerHour": 0.1}}})
    proc = unit_tests_against(groups, tmp_path, [f for f in ANOMALY_TESTS if not f.name.endswith("-gaps.test.yaml")])
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    assert 'namespace="tiny"' in out, out
    assert out.count("alertname: KubecostNamespaceCostAnomaly") == 1, out


def test_disabling_the_anomaly_group_removes_it(helm: str) -> None:
    groups = rendered_groups(
        {"prometheusRule": {"enabled": True, "groups": ["exporter", "cost", "remote-write"]}}, helm=helm
    )
    assert [g["name"] for g in groups] == [
        "kubecost-integration.exporter",
        "kubecost-integration.cost",
        "kubecost-integration.remote-write",
    ]
    assert record_names(groups) == []
    assert not ANOMALY_ALERTS & set(alert_names(groups))
    # KubecostClusterCostSpike stays: without the recordings its seasonal check holds nothing back.
    assert "KubecostClusterCostSpike" in alert_names(groups)
    only = rendered_groups({"prometheusRule": {"enabled": True, "groups": ["anomaly"]}}, helm=helm)
    assert [g["name"] for g in only] == ["kubecost-integration.anomaly"]
    assert record_names(only) == RECORDINGS
    assert sorted(alert_names(only)) == sorted(ANOMALY_ALERTS)


def test_alert_labels_and_disabled_alerts_leave_recording_rules_alone(helm: str) -> None:
    groups = rendered_groups(
        {
            "prometheusRule": {
                "enabled": True,
                "groups": ["anomaly"],
                "alertLabels": {"team": "finops"},
                "disabledAlerts": ["KubecostClusterCostAnomaly"],
            }
        },
        helm=helm,
    )
    rules = rules_by_name(groups)
    assert sorted(rules) == sorted([*RECORDINGS, "KubecostNamespaceCostAnomaly"])
    for name in RECORDINGS:
        assert "labels" not in rules[name], rules[name]  # a label here would change the recorded series
    assert rules["KubecostNamespaceCostAnomaly"]["labels"] == {"severity": "warning", "team": "finops"}


@pytest.mark.parametrize(
    ("anomaly", "needle"),
    [
        ({"ratio": 0.9}, "ratio"),
        ({"minIncreaseUSDPerHour": 0}, "minIncreaseUSDPerHour"),
        ({"minIncreaseUSDPerHour": "1"}, "minIncreaseUSDPerHour"),
        ({"window": "2w"}, "window"),
    ],
)
def test_schema_rejects_bad_anomaly_thresholds(helm: str, anomaly: dict[str, Any], needle: str) -> None:
    err = render_error(with_quickstart({"prometheusRule": {"enabled": True, "anomaly": anomaly}}), helm=helm)
    assert needle in err, err


@pytest.mark.parametrize(("share", "threshold"), [(None, ") > 0.05"), (0.2, ") > 0.2"), (0.005, ") > 0.005")])
def test_assets_drift_share_sets_the_drift_alert_threshold(helm: str, share: float | None, threshold: str) -> None:
    values: dict[str, Any] = {"enabled": True}
    if share is not None:
        values["assetsDriftShare"] = share
    groups = rendered_groups({"prometheusRule": values}, helm=helm)
    [expr] = [r["expr"] for g in groups for r in g["rules"] if r.get("alert") == "KubecostAllocationsDriftFromAssets"]
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
    [rule] = [r for g in groups for r in g["rules"] if r.get("alert") == "KubecostAgentWALNearSizeLimit"]
    assert threshold in rule["expr"], rule["expr"]


BUDGETS: list[dict[str, Any]] = [
    {"namespace": "web", "monthlyUSD": 600},
    {"label": "team", "value": "a", "monthlyUSD": 400.5},
    {"cluster": True, "monthlyUSD": 5000},
]

#: A unit test of the rendered rules: budgets of cluster c1 only; web and team a over budget by the projection.
RENDERED_BUDGET_TEST = """
evaluation_interval: 15m
group_eval_order: [kubecost-integration.forecast, kubecost-integration.budget]
tests:
  - interval: 15m
    input_series:
      - series: 'cloudtuner_kubecost_exporter_info{cluster="c1",tenant_id="t1",metric_mode="rate"}'
        values: 1x12
      - series: 'cloudtuner_kubecost_exporter_info{cluster="c2",tenant_id="t1",metric_mode="rate"}'
        values: 1x12
      # 1 USD/h: 744 USD projected for January, over web's 600; c2 is not in budgetClusters.
      - series: 'cloudtuner_kubecost_namespace_total_cost{cluster="c1",tenant_id="t1",namespace="web"}'
        values: 1x12
      - series: 'cloudtuner_kubecost_namespace_total_cost{cluster="c2",tenant_id="t1",namespace="web"}'
        values: 1x12
      - series: 'cloudtuner_kubecost_namespace_total_cost{cluster="c1",tenant_id="t1",namespace="nobudget"}'
        values: 5x12
      - series: 'cloudtuner_kubecost_cluster_total_cost{cluster="c1",tenant_id="t1"}'
        values: 6x12
      - series: >-
          cloudtuner_kubecost_breakdown_total_cost{cluster="c1",tenant_id="t1",
          breakdown="label:team",namespace="web",value="a"}
        values: 1x12
    promql_expr_test:
      - expr: '{__name__=~"cloudtuner_kubecost:.+_budget:monthly_usd"}'
        eval_time: 2h
        exp_samples:
          - labels: 'cloudtuner_kubecost:namespace_budget:monthly_usd{cluster="c1",tenant_id="t1",namespace="web"}'
            value: 600
          - labels: >-
              cloudtuner_kubecost:breakdown_budget:monthly_usd{cluster="c1",tenant_id="t1",
              breakdown="label:team",value="a"}
            value: 400.5
          - labels: 'cloudtuner_kubecost:cluster_budget:monthly_usd{cluster="c1",tenant_id="t1"}'
            value: 5000
    alert_rule_test:
      - eval_time: 2h
        alertname: KubecostBudgetExceeded
        exp_alerts: []
      - eval_time: 2h
        alertname: KubecostBudgetForecastOverspend
        exp_alerts:
          - exp_labels: {severity: warning, team: finops, cluster: c1, tenant_id: t1, namespace: web}
            exp_annotations:
              summary: Projected month-end cost is over the monthly budget.
              description: >-
                Namespace web on cluster c1 (tenant t1) is projected to spend 124% of its monthly budget by the end
                of the month (month-to-date cost plus the last 24 hours' average rate for the hours left), for an
                hour now. See the budget panels of the cluster overview and namespace breakdown dashboards.
          - exp_labels: {severity: warning, team: finops, cluster: c1, tenant_id: t1, breakdown: "label:team", value: a}
            exp_annotations:
              summary: Projected month-end cost is over the monthly budget.
              description: >-
                label:team=a on cluster c1 (tenant t1) is projected to spend 185.8% of its monthly budget by the end
                of the month (month-to-date cost plus the last 24 hours' average rate for the hours left), for an
                hour now. See the budget panels of the cluster overview and namespace breakdown dashboards.
"""


def test_budgets_render_into_rules_that_fire(helm: str, tmp_path: Path) -> None:
    groups = rendered_groups(
        {
            "prometheusRule": {
                "enabled": True,
                "budgets": BUDGETS,
                "budgetClusters": ["c1"],
                "alertLabels": {"team": "finops"},
            }
        },
        helm=helm,
    )
    [forecast] = [g for g in groups if g["name"] == "kubecost-integration.forecast"]
    assert forecast["interval"] == "5m"
    assert record_names([forecast]) == FORECAST_RECORDS
    assert all("labels" not in r for r in forecast["rules"]), "alertLabels must not relabel recorded series"
    [budget] = [g for g in groups if g["name"] == "kubecost-integration.budget"]
    assert budget["rules"][:3] == [
        {
            "expr": "600 * group by (cluster, tenant_id, namespace) (last_over_time("
            'cloudtuner_kubecost:namespace_cost:month_to_date_usd{cluster=~"c1", namespace="web"}[10m]))',
            "record": "cloudtuner_kubecost:namespace_budget:monthly_usd",
        },
        {
            "expr": "400.5 * group by (cluster, tenant_id, breakdown, value) (last_over_time("
            'cloudtuner_kubecost:breakdown_cost:month_to_date_usd{cluster=~"c1", breakdown="label:team", value="a"}'
            "[10m]))",
            "record": "cloudtuner_kubecost:breakdown_budget:monthly_usd",
        },
        {
            "expr": "5000 * group by (cluster, tenant_id) (last_over_time("
            'cloudtuner_kubecost:cluster_cost:month_to_date_usd{cluster=~"c1"}[10m]))',
            "record": "cloudtuner_kubecost:cluster_budget:monthly_usd",
        },
    ]
    assert alert_names([budget]) == ["KubecostBudgetForecastOverspend", "KubecostBudgetExceeded"]
    rendered = tmp_path / "rendered.rules.yaml"
    rendered.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    for binary in promtools():
        check = run_promtool("check", "rules", str(rendered), binary=binary)
        assert check.returncode == 0, check.stdout + check.stderr
        assert "SUCCESS: 33 rules found" in check.stdout
    test_file = tmp_path / "rendered-budget.test.yaml"
    unit = {"rule_files": [str(rendered)], **yaml.safe_load(RENDERED_BUDGET_TEST)}
    test_file.write_text(yaml.safe_dump(unit, sort_keys=False))
    proc = run_promtool("test", "rules", str(test_file), cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_budgets_default_to_this_releases_cluster(helm: str) -> None:
    groups = rendered_groups(
        {"prometheusRule": {"enabled": True, "budgets": [{"namespace": "web", "monthlyUSD": 10}]}}, helm=helm
    )
    [budget] = [g for g in groups if g["name"] == "kubecost-integration.budget"]
    assert 'cluster=~"prod-eu-1", namespace="web"' in budget["rules"][0]["expr"]
    several = rendered_groups(
        {
            "prometheusRule": {
                "enabled": True,
                "budgets": [{"cluster": True, "monthlyUSD": 10}],
                "budgetClusters": ["eu.1", "us-2"],
                "groups": ["forecast", "budget"],
                "disabledAlerts": ["KubecostBudgetExceeded"],
            }
        },
        helm=helm,
    )
    assert [g["name"] for g in several] == ["kubecost-integration.forecast", "kubecost-integration.budget"]
    assert 'cluster=~"eu\\\\.1|us-2"' in several[1]["rules"][0]["expr"]
    assert alert_names(several) == ["KubecostBudgetForecastOverspend"]
    # Without budgets the group keeps its alerts only.
    plain = rendered_groups({"prometheusRule": {"enabled": True}}, helm=helm)
    [budget] = [g for g in plain if g["name"] == "kubecost-integration.budget"]
    assert record_names([budget]) == []


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"monthlyUSD": 10}, 'prometheusRule.budgets[1] ({"monthlyUSD":10}) must say what it budgets'),
        ({"namespace": "a", "cluster": True, "monthlyUSD": 10}, "exactly one of namespace, label (with value) or"),
        ({"label": "team", "monthlyUSD": 10}, 'budgets label "team": give the label\'s value too'),
        ({"namespace": "a", "value": "x", "monthlyUSD": 10}, "has a value but no label"),
        ({"namespace": "web", "monthlyUSD": 20}, "budgets namespace=web, as prometheusRule.budgets[0] does"),
        ({"namespace": "a", "monthlyUSD": 0}, "monthlyUSD"),
        ({"namespace": "a", "monthlyUSD": "100"}, "monthlyUSD"),
        ({"namespace": "a"}, "monthlyUSD"),
        ({"namespace": "a", "monthlyUSD": 10, "team": "x"}, "team"),
        ({"cluster": False, "monthlyUSD": 10}, "cluster"),
        ({"namespace": "Not A Namespace", "monthlyUSD": 10}, "namespace"),
    ],
)
def test_bad_budget_entries_are_refused(helm: str, entry: dict[str, Any], message: str) -> None:
    values = {"prometheusRule": {"enabled": True, "budgets": [{"namespace": "web", "monthlyUSD": 600}, entry]}}
    err = render_error(with_quickstart(values), helm=helm)
    assert "budgets" in err, err
    assert message in err, err


def test_budgets_without_the_budget_group_are_refused(helm: str) -> None:
    values = {
        "prometheusRule": {
            "enabled": True,
            "groups": ["exporter"],
            "budgets": [{"namespace": "web", "monthlyUSD": 600}],
        }
    }
    err = render_error(with_quickstart(values), helm=helm)
    assert "prometheusRule.groups leaves out budget" in err, err
    assert 'groups: ["exporter","forecast","budget"]' in err, err
    # Off, the budgets are not in the way.
    values["prometheusRule"]["enabled"] = False
    assert not objects(render(with_quickstart(values), helm=helm), "PrometheusRule")
