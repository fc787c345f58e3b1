"""Exposition: golden files per fixture (regenerate with --update-golden), and the contract."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
from exporter_testlib import GOLDEN, FakeKubecost, fixture_json
from pipeline import (
    HOUR,
    NOW,
    assets,
    breakdown,
    oracle,
    snapshot,
    with_breakdowns,
    with_savings,
)
from prometheus_client.parser import text_string_to_metric_families

from kubecost_allocation_exporter.config import Config, load
from kubecost_allocation_exporter.decode import REASONS
from kubecost_allocation_exporter.kubecost import AllocationClient
from kubecost_allocation_exporter.metrics import Health, render_costs, render_health
from kubecost_allocation_exporter.refresher import Refresher

pytestmark = pytest.mark.unit
HEALTH = Health(
    success=True,
    duration_seconds=0.25,
    errors={"timeout": 2},
    last_success_timestamp=1795717200.0,
    api_flavour="kubecost",
)

CLUSTER = "cloudtuner_kubecost_cluster_"
NAMESPACE = "cloudtuner_kubecost_namespace_"
CONTRACT = {
    **{f"{CLUSTER}{p}_cost": ("cluster", "tenant_id") for p in ("total", "cpu", "ram", "pv")},
    **{f"{CLUSTER}{p}_cost": ("cluster", "tenant_id") for p in ("network", "lb", "gpu")},
    **{f"{CLUSTER}{p}_cost": ("cluster", "tenant_id") for p in ("shared", "idle")},
    **{f"{CLUSTER}{e}_efficiency": ("cluster", "tenant_id") for e in ("cpu", "ram", "total")},
    **{
        f"{NAMESPACE}{p}_cost": ("cluster", "tenant_id", "namespace")
        for p in ("total", "cpu", "ram", "pv", "network", "lb", "gpu", "shared")
    },
    **{
        f"{NAMESPACE}{e}_efficiency": ("cluster", "tenant_id", "namespace")
        for e in ("cpu", "ram", "total")
    },
    "cloudtuner_kubecost_scrape_success": ("cluster", "tenant_id"),
    "cloudtuner_kubecost_scrape_duration_seconds": ("cluster", "tenant_id"),
    "cloudtuner_kubecost_scrape_errors_total": ("cluster", "tenant_id", "reason"),
    "cloudtuner_kubecost_dropped_series_total": ("cluster", "tenant_id"),
    "cloudtuner_kubecost_last_success_timestamp_seconds": ("cluster", "tenant_id"),
    "cloudtuner_kubecost_exported_namespaces": ("cluster", "tenant_id"),
    "cloudtuner_kubecost_window_start_timestamp_seconds": ("cluster", "tenant_id"),
    "cloudtuner_kubecost_window_end_timestamp_seconds": ("cluster", "tenant_id"),
    "cloudtuner_kubecost_window_coverage_ratio": ("cluster", "tenant_id"),
    f"{CLUSTER}assets_cost": ("cluster", "tenant_id", "type"),
    f"{NAMESPACE}savings_monthly": ("cluster", "tenant_id", "namespace", "source"),
}
INFO_LABELS = {
    "assets",
    "cluster",
    "tenant_id",
    "version",
    "api",
    "metric_mode",
    "window",
    "currency",
    "share_idle",
    "multi_cluster",
    "savings_api",
}


def config(*extra: str) -> Config:
    return load(["--cluster-name", "prod-eu-1", "--tenant-id", "acme", *extra], {})


def exposition(
    name: str, cfg: Config, bd: str | None = None, window: str = HOUR, asset_answer: str = ""
) -> str:
    snap = snapshot(
        name, window=window, mode=cfg.metric_mode, cluster=cfg.cluster_name, multi=cfg.multi_cluster
    )
    health = HEALTH
    if asset_answer:
        snap = replace(snap, assets=assets(asset_answer, cfg=cfg, window=window))
        health = replace(HEALTH, assets="present")
    if bd:
        rows = breakdown(
            bd,
            breakdown=cfg.breakdowns[0],
            top_n=cfg.breakdown_top_n,
            window=window,
            mode=cfg.metric_mode,
            cluster=cfg.cluster_name,
            multi=cfg.multi_cluster,
        )
        snap = with_breakdowns(snap, rows)
    snap = (
        snap
        if cfg.savings == "none"
        else with_savings(
            snap,
            name,
            controller=[bd] if bd and cfg.breakdowns == ("controller",) else [],
            top_n=cfg.breakdown_top_n,
            cluster=cfg.cluster_name,
            multi=cfg.multi_cluster,
        )
    )
    costs = render_costs(snap, cfg)
    assert costs == oracle(snap, cfg)
    return (render_health(health, cfg) + costs).decode()


DAY = "2026-11-25T17:00:00Z,2026-11-26T17:00:00Z"
GOLDEN_CASES = [
    ("kubecost2_namespace.json", (), None, HOUR),
    ("kubecost2_namespace.json", ("--metric-mode", "total"), None, HOUR),
    ("kubecost2_namespace_shareidle.json", (), None, HOUR),
    ("nulls.json", (), None, HOUR),
    ("negative_idle.json", (), None, HOUR),
    ("unmounted_unaggregated.json", (), None, HOUR),
    ("several_sets.json", (), None, HOUR),
    ("opencost_sample.json", ("--metric-mode", "total", "--api", "opencost"), None, HOUR),
    ("multi_cluster.json", ("--multi-cluster",), None, HOUR),
    ("missing_extra_fields.json", (), None, HOUR),
    ("empty_set.json", (), None, HOUR),
    (
        "controller_namespaces.json",
        ("--breakdowns", "controller", "--breakdown-top-n", "3"),
        "controller_breakdown.json",
        HOUR,
    ),
    ("label_keys.json", ("--breakdowns", "label:app"), "pre1100_label_keys.json", HOUR),
    # right-sizing savings (docs/metrics.md "Savings"): the estimate, per namespace and controller
    ("kubecost2_namespace.json", ("--savings", "estimate"), None, HOUR),
    ("multi_cluster.json", ("--multi-cluster", "--savings", "estimate"), None, HOUR),
    (
        "controller_namespaces.json",
        ("--breakdowns", "controller", "--breakdown-top-n", "3", "--savings", "estimate"),
        "controller_breakdown.json",
        HOUR,
    ),
    # window phenomena, real shapes (docs/metrics.md "Windows")
    ("per_row_windows.json", ("--window", DAY), None, DAY),
    (
        "step_empty_sets.json",
        ("--window", "2026-11-26T11:00:00Z,2026-11-26T17:00:00Z"),
        None,
        "2026-11-26T11:00:00Z,2026-11-26T17:00:00Z",
    ),
    ("partial_window.json", (), None, HOUR),
    (
        "zero_request_old_engine.json",
        ("--window", "2026-11-24T00:00:00Z,2026-11-26T00:00:00Z", "--metric-mode", "total"),
        None,
        "2026-11-24T00:00:00Z,2026-11-26T00:00:00Z",
    ),
]


def _golden_name(name: str, args: tuple[str, ...]) -> str:
    # the window is in the fixture's name already
    args = tuple(a for i, a in enumerate(args) if "--window" not in (a, args[i - 1] if i else ""))
    suffix = "-".join(a.lstrip("-").replace(":", "_") for a in args)
    return name.removesuffix(".json") + (f".{suffix}" if suffix else "") + ".prom"


@pytest.mark.parametrize(("name", "args", "bd", "window"), GOLDEN_CASES)
def test_exposition_matches_golden_file(
    name: str, args: tuple[str, ...], bd: str | None, window: str, update_golden: bool
) -> None:
    text = exposition(name, config(*args), bd, window)
    path = GOLDEN / _golden_name(name, args)
    if update_golden:
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"missing golden file {path}; run pytest with --update-golden"
    assert text == path.read_text(), f"{path} differs; if intended, rerun with --update-golden"


# with the Assets API's answer for the same hour: allocations incl. idle add up to the assets
ASSET_CASES = [((), "kubecost2_assets.json"), (("--metric-mode", "total"), "kubecost2_assets.json")]


@pytest.mark.parametrize(("args", "asset_answer"), ASSET_CASES)
def test_asset_costs_match_golden_file(
    args: tuple[str, ...], asset_answer: str, update_golden: bool
) -> None:
    text = exposition("kubecost2_namespace.json", config(*args), asset_answer=asset_answer)
    path = GOLDEN / _golden_name("kubecost2_namespace.json", (*args, "--assets"))
    if update_golden:
        path.write_text(text)
    assert text == path.read_text(), f"{path} differs; if intended, rerun with --update-golden"
    values = {
        s.labels["type"]: s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name == f"{CLUSTER}assets_cost"
    }
    assert set(values) == {"Disk", "LoadBalancer", "Network", "Node", "total"}
    assert values["total"] == pytest.approx(sum(v for k, v in values.items() if k != "total"))
    (total,) = [line for line in text.splitlines() if line.startswith(f"{CLUSTER}total_cost{{")]
    assert float(total.split()[-1]) == values["total"]  # the fixture reconciles exactly
    assert 'assets="present"' in text


@pytest.mark.parametrize(("name", "args", "bd", "window"), GOLDEN_CASES)
def test_names_and_labels_follow_the_contract(
    name: str, args: tuple[str, ...], bd: str | None, window: str
) -> None:
    text = exposition(name, config(*args), bd, window)
    for fam in text_string_to_metric_families(text):
        for sample in fam.samples:
            assert math.isfinite(sample.value), sample
            if sample.name == "cloudtuner_kubecost_exporter_info":
                assert set(sample.labels) == INFO_LABELS
            elif sample.name == "cloudtuner_kubecost_breakdown_total_cost":
                assert set(sample.labels) == {
                    "cluster",
                    "tenant_id",
                    "breakdown",
                    "namespace",
                    "value",
                }
            elif sample.name == "cloudtuner_kubecost_controller_savings_monthly":
                assert set(sample.labels) == {
                    *("cluster", "tenant_id", "namespace", "controller", "source"),
                }
            else:
                assert sample.name in CONTRACT, sample.name
                assert set(sample.labels) == set(CONTRACT[sample.name]), sample
            assert sample.labels["tenant_id"] == "acme"
            assert sample.labels.get("namespace") != "__idle__"
    assert "_total_cost_total" not in text
    assert "# TYPE cloudtuner_kubecost_scrape_errors_total counter" in text


def test_every_contract_series_is_present_for_a_full_answer() -> None:
    cfg = config("--savings", "estimate")
    text = exposition("kubecost2_namespace.json", cfg, asset_answer="kubecost2_assets.json")
    names = {s.name for f in text_string_to_metric_families(text) for s in f.samples}
    assert set(CONTRACT) <= names
    assert "cloudtuner_kubecost_exporter_info" in names


def test_error_counter_has_every_reason_preinitialised() -> None:
    text = render_health(HEALTH, config()).decode()
    reasons = {
        s.labels["reason"]
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name == "cloudtuner_kubecost_scrape_errors_total"
    }
    assert reasons == set(REASONS)
    assert 'reason="timeout",tenant_id="acme"} 2.0' in text


def test_help_says_where_numbers_come_from_and_that_they_are_cached() -> None:
    text = exposition("kubecost2_namespace.json", config("--metric-mode", "total"))
    help_line = next(
        line for line in text.splitlines() if line.startswith(f"# HELP {NAMESPACE}cpu_cost ")
    )
    assert "cpuCost + cpuCostAdjustment" in help_line
    assert "USD over the queried window" in help_line
    assert "refreshed in the background every 90s" in help_line


def test_rate_and_total_modes_differ_by_the_window_hours() -> None:
    def value(text: str) -> float:
        for f in text_string_to_metric_families(text):
            for s in f.samples:
                if s.name == f"{CLUSTER}total_cost":
                    return s.value
        raise AssertionError("no cluster_total_cost")

    total = value(exposition("several_sets.json", config("--metric-mode", "total")))
    rate = value(exposition("several_sets.json", config()))
    assert rate == pytest.approx(total / 2)


def test_fast_renderer_matches_the_registry_for_odd_label_values() -> None:
    cfg = config()
    w = {"start": "2026-11-26T16:00:00Z", "end": "2026-11-26T17:00:00Z"}
    odd = {'we"ird': 1.0, "back\\slash": 2.0, "new\nline": 3.0, "ünïcode": 4.5e-07, "big": 1.5e9}
    sets = [{k: {"totalCost": v, "window": w} for k, v in odd.items()}]
    snap = snapshot(sets, cluster=cfg.cluster_name)
    fast = render_costs(snap, cfg)
    assert fast == oracle(snap, cfg)
    parsed = {
        s.labels["namespace"]: s.value
        for f in text_string_to_metric_families(fast.decode())
        for s in f.samples
        if s.name == f"{NAMESPACE}total_cost"
    }
    assert parsed == odd


def test_overflowing_sums_and_ratios_are_omitted_not_inf() -> None:
    cfg = config("--metric-mode", "total")
    w = {"start": "2026-11-26T16:00:00Z", "end": "2026-11-26T17:00:00Z"}
    big = {"totalCost": 1.7e308, "cpuCost": 1.7e308, "cpuCostAdjustment": 1.7e308, "window": w}
    ratio = {"totalCost": 1.0, "cpuEfficiency": 1e308, "window": w}
    sets = [{"a": big, "b": dict(big), "c": ratio}, {"c": {**ratio, "cpuEfficiency": 1e308}}]
    snap = snapshot(sets, cluster=cfg.cluster_name)
    text = render_costs(snap, cfg).decode()
    assert "Inf" not in text
    assert "NaN" not in text
    assert 'namespace_total_cost{cluster="prod-eu-1",namespace="c",tenant_id="acme"} 2.0' in text
    assert "cloudtuner_kubecost_namespace_cpu_cost{" not in text  # inf sums omitted
    assert "cloudtuner_kubecost_namespace_cpu_efficiency{" not in text  # inf mean omitted


def test_answer_without_an_idle_row_exports_zero_idle_so_the_identity_has_both_sides() -> None:
    """With shareIdle=true Kubecost may spread all idle into the namespaces and send no __idle__
    row: cluster_idle_cost is then 0 (not missing), so
    `sum(namespace_total_cost) + cluster_idle_cost` is never an empty PromQL result."""
    doc = fixture_json("kubecost2_namespace.json")
    data = [{k: v for k, v in s.items() if "__idle__" not in k} for s in doc["data"]]
    snap = snapshot(data, mode="rate", cluster="prod-eu-1")
    cfg = config()
    families = {f.name: f for f in text_string_to_metric_families(render_costs(snap, cfg).decode())}
    idle = families["cloudtuner_kubecost_cluster_idle_cost"].samples
    expected = [({"cluster": "prod-eu-1", "tenant_id": "acme"}, 0.0)]
    assert [(s.labels, s.value) for s in idle] == expected
    ns_sum = sum(s.value for s in families["cloudtuner_kubecost_namespace_total_cost"].samples)
    (total,) = families["cloudtuner_kubecost_cluster_total_cost"].samples
    assert math.isclose(ns_sum + idle[0].value, total.value, rel_tol=1e-9)


def test_an_answer_for_another_time_is_refused_and_the_last_good_costs_stay(
    kubecost: FakeKubecost, update_golden: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """The last complete hour was asked; the answer is the same hour a day earlier (e.g. from a
    caching proxy). Before: published as current with scrape_success 1. Now the refresh fails
    with reason window_mismatch, one log line names both windows, and the previous snapshot is
    served until the staleness limit (golden: the exposition after the refusal)."""
    mono = [1000.0]
    cfg = config("--kubecost-url", kubecost.url, "--api", "kubecost", "--window", HOUR)
    refresher = Refresher(
        cfg, AllocationClient(cfg), wall_clock=lambda: NOW, monotonic=lambda: mono[0]
    )
    kubecost.set_fixture("/model/allocation", "kubecost2_namespace.json")
    assert refresher.refresh_once() is None
    kubecost.set_fixture("/model/allocation", "other_window.json")
    mono[0] += 60
    error = refresher.refresh_once()
    assert error is not None
    assert error.reason == "window_mismatch"
    [line] = [r.getMessage() for r in caplog.records if "refresh failed" in r.getMessage()]
    assert "2026-11-25T16:00:00Z..2026-11-25T17:00:00Z" in line
    assert "2026-11-26T16:00:00Z..2026-11-26T17:00:00Z was asked" in line
    text = refresher.exposition().decode()
    path = GOLDEN / "other_window.refused.prom"
    if update_golden:
        path.write_text(text)
    assert text == path.read_text(), f"{path} differs; if intended, rerun with --update-golden"
    assert 'scrape_success{cluster="prod-eu-1",tenant_id="acme"} 0.0' in text
    assert 'reason="window_mismatch",tenant_id="acme"} 1.0' in text
    assert "window_start_timestamp_seconds" in text  # the previous (right) hour's numbers
    start = "cloudtuner_kubecost_window_start_timestamp_seconds{"
    assert f'{start}cluster="prod-eu-1",tenant_id="acme"}} 1.7957088e+09' in text  # 16:00
