"""Snapshot rules on every recorded-shape fixture (research sections 2 and 4)."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import pytest
from exporter_testlib import fixture_json

from kubecost_allocation_exporter.kubecost import normalize_data
from kubecost_allocation_exporter.model import (
    OTHER,
    Snapshot,
    build_breakdown,
    build_snapshot,
    last_complete_hour,
    split_key,
    union_seconds,
    window_param,
)

pytestmark = pytest.mark.unit

HOUR = "2026-11-26T16:00:00Z,2026-11-26T17:00:00Z"
NOW = datetime(2026, 11, 26, 18, 20, tzinfo=UTC)
ALL_FIXTURES = (
    "kubecost2_namespace.json",
    "kubecost2_namespace_shareidle.json",
    "nulls.json",
    "negative_idle.json",
    "unmounted_unaggregated.json",
    "opencost_sample.json",
    "several_sets.json",
    "missing_extra_fields.json",
    "empty_list.json",
    "empty_set.json",
    "null_set.json",
    "null_data.json",
    "multi_cluster.json",
    "opencost_7d_daily_sets.json",
    "summary_shape.json",
    "pre1100_label_keys.json",
    "controller_namespaces.json",
)


def sets_of(name: str) -> list[dict[str, dict[str, Any]]]:
    sets, _ = normalize_data(fixture_json(name)["data"])
    return sets


def snap(name: str, mode: str = "total", multi: bool = False, window: str = HOUR) -> Snapshot:
    return build_snapshot(
        sets_of(name),
        requested_window=window,
        now=NOW,
        metric_mode=mode,
        cluster_name="c1",
        multi_cluster=multi,
    )


def raw_total(name: str, idle: bool | None = None) -> float:
    """Sum of totalCost straight from the fixture (idle=None: all rows)."""
    total = 0.0
    for s in sets_of(name):
        for key, a in s.items():
            is_idle = "__idle__" in key
            if idle is None or idle == is_idle:
                total += a.get("totalCost") or 0.0
    return total


@pytest.mark.parametrize("name", ALL_FIXTURES)
@pytest.mark.parametrize("mode", ["rate", "total"])
def test_idle_is_never_a_namespace_and_parts_sum_to_the_cluster_total(name: str, mode: str) -> None:
    s = snap(name, mode, multi=name == "multi_cluster.json")
    for c in s.clusters:
        assert all("__idle__" not in ns for ns in c.namespaces)
        ns_sum = sum(v.total for v in c.namespaces.values() if v.total is not None)
        if c.costs.total is not None:
            assert math.isclose(ns_sum + (c.idle or 0.0), c.costs.total, abs_tol=1e-9)
        for costs in [c.costs, *c.namespaces.values()]:
            for v in costs._asdict().values():
                assert v is None or math.isfinite(v)


def test_cluster_total_equals_the_apis_own_cluster_aggregate() -> None:
    s = snap("kubecost2_namespace.json")
    (cluster_row_sets,) = [sets_of("kubecost2_cluster.json")]
    api_total = sum(a["totalCost"] for a in cluster_row_sets[0].values())
    assert s.clusters[0].costs.total == pytest.approx(api_total, abs=1e-4)


def test_resource_costs_include_adjustments_and_add_up_to_total_cost() -> None:
    s = snap("kubecost2_namespace.json")
    default = s.clusters[0].namespaces["default"]
    assert default.cpu == pytest.approx(0.03162 - 0.00412)
    assert default.ram == pytest.approx(0.01021 - 0.00088)
    parts = [default.cpu, default.ram, default.pv, default.network, default.lb, default.gpu]
    assert sum(p or 0.0 for p in parts) + (default.shared or 0.0) == pytest.approx(
        default.total, abs=2e-5
    )


def test_idle_goes_to_cluster_idle_cost_and_into_cluster_resource_costs() -> None:
    c = snap("kubecost2_namespace.json").clusters[0]
    assert c.idle == pytest.approx(0.09871 + 0.04322)
    ns_cpu = sum(v.cpu or 0.0 for v in c.namespaces.values())
    assert c.costs.cpu == pytest.approx(ns_cpu + 0.09871)


def test_unallocated_and_unmounted_stay_namespaces() -> None:
    c = snap("kubecost2_namespace.json").clusters[0]
    assert {"__unallocated__", "__unmounted__"} <= set(c.namespaces)
    assert c.namespaces["__unmounted__"].pv == pytest.approx(0.02192)


def test_share_idle_keeps_the_residual_idle_row_apart() -> None:
    c = snap("kubecost2_namespace_shareidle.json").clusters[0]
    assert c.idle == pytest.approx(0.2051)
    assert c.costs.gpu == pytest.approx(0.2051)
    assert c.namespaces["default"].cpu == pytest.approx(0.06981 - 0.00412)


def test_null_values_omit_the_series_instead_of_zero() -> None:
    c = snap("nulls.json").clusters[0]
    default, monitoring, web = (c.namespaces[n] for n in ("default", "monitoring", "web"))
    assert default.ram is None
    assert default.total is None
    assert default.ram_efficiency is None
    assert default.cpu == pytest.approx(0.03162)
    assert monitoring.total is None
    assert monitoring.cpu_efficiency is None
    assert web.cpu is None  # null adjustment: unknown, not 0.02
    assert web.ram == pytest.approx(0.01)
    # cluster sums skip unknown members, so sum(namespace)+idle == cluster still holds
    assert c.costs.total == pytest.approx((web.total or 0) + (c.idle or 0))


def test_negative_idle_and_credits_are_kept_signed() -> None:
    c = snap("negative_idle.json").clusters[0]
    assert c.idle == pytest.approx(-0.25)
    assert c.namespaces["batch"].cpu == pytest.approx(0.28)
    assert c.costs.total == pytest.approx(raw_total("negative_idle.json"))
    assert c.namespaces["batch"].cpu_efficiency == 1.0  # zero request, usage > 0


def test_unaggregated_keys_with_empty_segments_map_to_their_namespace() -> None:
    c = snap("unmounted_unaggregated.json").clusters[0]
    assert set(c.namespaces) == {"__unmounted__", "default"}
    assert c.namespaces["default"].total == pytest.approx(0.02 + 0.006 + 0.01 + 0.005)
    assert c.idle == pytest.approx(0.04)


def test_several_sets_are_summed_over_the_union_of_their_windows() -> None:
    s = snap("several_sets.json", mode="rate")
    assert s.coverage.hours == pytest.approx(2.0)
    c = s.clusters[0]
    assert c.namespaces["default"].total == pytest.approx((0.04 + 0.08) / 2)
    assert c.namespaces["web"].total == pytest.approx(0.012 / 2)
    assert c.idle == pytest.approx((0.03 + 0.015) / 2)
    # efficiency combined as the API combines it: minute-weighted usage / request
    assert c.namespaces["default"].cpu_efficiency == pytest.approx((0.5 + 0.5) / (1.0 + 2.0))


def test_rate_divides_by_the_elapsed_hours_of_the_returned_window() -> None:
    total = snap("opencost_sample.json", mode="total")
    rate = snap("opencost_sample.json", mode="rate", window="7d")
    assert rate.coverage.hours == pytest.approx(7 * 24)
    t, r = total.clusters[0].costs.total, rate.clusters[0].costs.total
    assert t is not None
    assert r == pytest.approx(t / 168)
    # efficiencies are ratios, never divided nor x100
    assert rate.clusters[0].namespaces["opencost"].ram_efficiency == pytest.approx(
        total.clusters[0].namespaces["opencost"].ram_efficiency or 0
    )


def test_window_end_in_the_future_is_clamped_to_now() -> None:
    today = "2026-11-26T00:00:00Z,2026-11-27T00:00:00Z"
    s = build_snapshot(
        [],
        requested_window=today,
        now=NOW,
        metric_mode="rate",
        cluster_name="c1",
        multi_cluster=False,
    )
    assert s.coverage.hours == pytest.approx(18 + 20 / 60)


@pytest.mark.parametrize("name", ["empty_list.json", "empty_set.json", "null_set.json"])
def test_empty_data_gives_an_empty_snapshot(name: str) -> None:
    s = snap(name)
    assert s.clusters == ()
    assert s.namespace_count == 0


def test_multi_cluster_takes_the_cluster_from_the_data() -> None:
    s = snap("multi_cluster.json", multi=True)
    assert [c.name for c in s.clusters] == ["cluster-one", "cluster-two"]
    two = s.clusters[1]
    assert set(two.namespaces) == {"default", "kube-system"}
    assert two.idle == pytest.approx(0.175)
    assert two.costs.total == pytest.approx(2 * 0.075 + 0.175)


def test_missing_fields_are_tolerated_and_extra_fields_ignored() -> None:
    c = snap("missing_extra_fields.json").clusters[0]
    assert c.namespaces["default"].cpu == pytest.approx(0.03)  # no adjustment field = 0
    assert c.namespaces["default"].gpu is None  # no gpuCost at all: omitted
    assert c.namespaces["default"].total_efficiency is None
    assert c.namespaces["web"].shared is None
    assert c.idle == pytest.approx(0.03)


def test_pre_1100_label_keys_lose_their_key_prefix() -> None:
    old = build_breakdown(
        sets_of("pre1100_label_keys.json"),
        breakdown="label:app",
        requested_window=HOUR,
        now=NOW,
        metric_mode="total",
        cluster_name="c1",
        multi_cluster=False,
        top_n=10,
    )
    new = build_breakdown(
        sets_of("label_keys.json"),
        breakdown="label:app",
        requested_window=HOUR,
        now=NOW,
        metric_mode="total",
        cluster_name="c1",
        multi_cluster=False,
        top_n=10,
    )
    assert old == new
    assert {(r.namespace, r.value) for r in old} == {
        ("kubecost", "cost-analyzer"),
        ("kubecost", "prometheus"),
        ("kubecost", "__unallocated__"),
        ("default", "web"),
    }


def test_breakdown_is_capped_at_top_n_plus_one_other_series() -> None:
    rows = build_breakdown(
        sets_of("controller_breakdown.json"),
        breakdown="controller",
        requested_window=HOUR,
        now=NOW,
        metric_mode="total",
        cluster_name="c1",
        multi_cluster=False,
        top_n=3,
    )
    assert len(rows) == 4
    assert [r.value for r in rows[:3]] == [
        "deployment:svc-7",
        "deployment:svc-6",
        "deployment:svc-5",
    ]
    assert rows[3].value == OTHER
    assert rows[3].namespace == OTHER
    ns_total = sum(
        a["totalCost"]
        for k, a in sets_of("controller_breakdown.json")[0].items()
        if k != "__idle__"
    )
    assert sum(r.total for r in rows) == pytest.approx(ns_total)


def test_split_key_variants() -> None:
    assert split_key("__idle__", {}, ("namespace",)).idle
    k = split_key("cluster-two/__idle__", {}, ("cluster", "namespace"))
    assert k.idle
    assert k.cluster == "cluster-two"
    assert split_key("", {}, ("namespace",)).values == ("__unallocated__",)
    k = split_key("ns/a/b", {}, ("namespace", "annotation:path"))
    assert k.values == ("ns", "a/b")


def test_default_window_is_the_last_complete_hour_minus_lag() -> None:
    now = datetime(2026, 11, 26, 18, 10, tzinfo=UTC)
    assert last_complete_hour(now, 15 * 60) == (
        datetime(2026, 11, 26, 16, tzinfo=UTC),
        datetime(2026, 11, 26, 17, tzinfo=UTC),
    )
    assert window_param("", now, 0) == "2026-11-26T17:00:00Z,2026-11-26T18:00:00Z"
    assert window_param("today", now, 0) == "today"


def test_union_of_windows_counts_overlaps_once_and_skips_gaps() -> None:
    t = [datetime(2026, 1, 1, h, tzinfo=UTC) for h in range(6)]
    assert union_seconds([(t[0], t[2]), (t[1], t[3]), (t[4], t[5])]) == 4 * 3600


def test_seven_daily_sets_with_integer_numbers_and_zero_requests() -> None:
    """opencost#2495 shape: window=7d&step=1d, pod-level properties, ints, cpuEfficiency 1."""
    s = build_snapshot(
        sets_of("opencost_7d_daily_sets.json"),
        requested_window="7d",
        now=NOW,
        metric_mode="rate",
        cluster_name="c1",
        multi_cluster=False,
    )
    assert s.coverage.hours == pytest.approx(7 * 24)
    c = s.clusters[0]
    assert set(c.namespaces) == {"opencost"}
    oc = c.namespaces["opencost"]
    assert oc.total == pytest.approx(7 * 0.01283 / 168)
    assert c.idle == pytest.approx(7 * 0.7 / 168)
    assert oc.cpu_efficiency == 1.0  # zero request, usage > 0 (combined over the 7 sets)
    assert oc.ram_efficiency == pytest.approx(60817408 / 57671680)


def test_summary_endpoint_shape_is_read_too() -> None:
    """opencost#1270: /allocation/summary puts sets under data.sets[].allocations."""
    s = snap("summary_shape.json")
    c = s.clusters[0]
    assert set(c.namespaces) == {"kube-system", "default"}
    assert c.idle == 0.0  # no __idle__ row: no unshared idle, exported as 0 (not omitted)
    assert c.costs.total == pytest.approx(0.0313642040545 + 0.0051963269)
    assert c.namespaces["default"].pv == pytest.approx(0.0019230769)
