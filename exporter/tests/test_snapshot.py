"""Snapshot rules on every recorded-shape fixture (answers shaped like the public samples:
https://opencost.io/allocation-example-output.json, kubecost/kubecost#2373 and #2272,
opencost/opencost#2495), through the one decode and cost path every answer takes."""

from __future__ import annotations

import json
import logging
import math
from datetime import UTC, datetime
from typing import Any

import pytest
from exporter_testlib import fixture_json
from pipeline import HOUR, NOW, breakdown, snapshot

from kubecost_allocation_exporter.decode import ApiError
from kubecost_allocation_exporter.keys import OTHER, split_key
from kubecost_allocation_exporter.windows import (
    last_complete_hour,
    parse_time,
    requested_window,
    union,
    window_param,
)

pytestmark = pytest.mark.unit

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
    "per_row_windows.json",
    "step_empty_sets.json",
    "partial_window.json",
    "zero_request_old_engine.json",
)
DAY = "2026-11-25T17:00:00Z,2026-11-26T17:00:00Z"


def ts(text: str) -> float:
    t = parse_time(text)
    assert t is not None
    return t


def raw_total(name: str, idle: bool | None = None) -> float:
    """Sum of totalCost straight from the fixture (idle=None: all rows)."""
    total = 0.0
    for s in fixture_json(name)["data"]:
        for key, a in (s or {}).items():
            if idle is None or idle == ("__idle__" in key):
                total += a.get("totalCost") or 0.0
    return total


@pytest.mark.parametrize("name", ALL_FIXTURES)
@pytest.mark.parametrize("mode", ["rate", "total"])
def test_idle_is_never_a_namespace_and_parts_sum_to_the_cluster_total(name: str, mode: str) -> None:
    s = snapshot(name, mode=mode, multi=name == "multi_cluster.json")
    for c in s.clusters:
        assert all("__idle__" not in ns for ns in c.namespaces)
        ns_sum = sum(v.total for v in c.namespaces.values() if v.total is not None)
        if c.costs.total is not None:
            assert math.isclose(ns_sum + (c.idle or 0.0), c.costs.total, abs_tol=1e-9)
        for costs in [c.costs, *c.namespaces.values()]:
            for v in costs._asdict().values():
                assert v is None or math.isfinite(v)


def test_cluster_total_equals_the_apis_own_cluster_aggregate() -> None:
    s = snapshot("kubecost2_namespace.json")
    api_total = sum(
        a["totalCost"] for a in fixture_json("kubecost2_cluster.json")["data"][0].values()
    )
    assert s.clusters[0].costs.total == pytest.approx(api_total, abs=1e-4)


def test_resource_costs_include_adjustments_and_add_up_to_total_cost() -> None:
    default = snapshot("kubecost2_namespace.json").clusters[0].namespaces["default"]
    assert default.cpu == pytest.approx(0.03162 - 0.00412)
    assert default.ram == pytest.approx(0.01021 - 0.00088)
    parts = [default.cpu, default.ram, default.pv, default.network, default.lb, default.gpu]
    assert sum(p or 0.0 for p in parts) + (default.shared or 0.0) == pytest.approx(
        default.total, abs=2e-5
    )


def test_idle_goes_to_cluster_idle_cost_and_into_cluster_resource_costs() -> None:
    c = snapshot("kubecost2_namespace.json").clusters[0]
    assert c.idle == pytest.approx(0.09871 + 0.04322)
    ns_cpu = sum(v.cpu or 0.0 for v in c.namespaces.values())
    assert c.costs.cpu == pytest.approx(ns_cpu + 0.09871)


def test_unallocated_and_unmounted_stay_namespaces() -> None:
    c = snapshot("kubecost2_namespace.json").clusters[0]
    assert {"__unallocated__", "__unmounted__"} <= set(c.namespaces)
    assert c.namespaces["__unmounted__"].pv == pytest.approx(0.02192)


def test_share_idle_keeps_the_residual_idle_row_apart() -> None:
    c = snapshot("kubecost2_namespace_shareidle.json").clusters[0]
    assert c.idle == pytest.approx(0.2051)
    assert c.costs.gpu == pytest.approx(0.2051)
    assert c.namespaces["default"].cpu == pytest.approx(0.06981 - 0.00412)


def test_null_values_omit_the_series_instead_of_zero() -> None:
    c = snapshot("nulls.json").clusters[0]
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


def test_string_numbers_and_odd_values_are_read_like_the_api_means_them() -> None:
    """One decoder for every answer: a number written as a string counts, a boolean or an object
    in a number field is unknown (omitted), and the rest of the row is still read."""
    doc = fixture_json("kubecost2_namespace.json")
    rows = doc["data"][0]
    plain = snapshot(doc).clusters[0].namespaces
    rows["default"]["cpuCost"] = str(rows["default"]["cpuCost"])
    rows["default"]["ramCost"] = True
    rows["kube-system"]["totalCost"] = {"value": 1}
    rows["kubecost"]["cpuEfficiency"] = "NaN"
    odd = snapshot(doc).clusters[0].namespaces
    assert odd["default"].cpu == plain["default"].cpu
    assert odd["default"].ram is None
    assert odd["default"].pv == plain["default"].pv
    assert odd["kube-system"].total is None
    assert odd["kube-system"].cpu == plain["kube-system"].cpu
    assert odd["kubecost"].cpu_efficiency is None
    assert odd["kubecost"].ram_efficiency == plain["kubecost"].ram_efficiency


def test_negative_idle_and_credits_are_kept_signed() -> None:
    c = snapshot("negative_idle.json").clusters[0]
    assert c.idle == pytest.approx(-0.25)
    assert c.namespaces["batch"].cpu == pytest.approx(0.28)
    assert c.costs.total == pytest.approx(raw_total("negative_idle.json"))
    assert c.namespaces["batch"].cpu_efficiency == 1.0  # zero request, usage > 0: the engine's 1


def test_unaggregated_keys_with_empty_segments_map_to_their_namespace() -> None:
    c = snapshot("unmounted_unaggregated.json").clusters[0]
    assert set(c.namespaces) == {"__unmounted__", "default"}
    assert c.namespaces["default"].total == pytest.approx(0.02 + 0.006 + 0.01 + 0.005)
    assert c.idle == pytest.approx(0.04)


def test_several_sets_are_summed_over_the_union_of_their_windows() -> None:
    s = snapshot("several_sets.json", mode="rate")
    assert s.coverage.hours == pytest.approx(2.0)
    c = s.clusters[0]
    assert c.namespaces["default"].total == pytest.approx((0.04 + 0.08) / 2)
    assert c.namespaces["web"].total == pytest.approx(0.012 / 2)
    assert c.idle == pytest.approx((0.03 + 0.015) / 2)
    # efficiency combined as the API combines it: minute-weighted usage / request
    assert c.namespaces["default"].cpu_efficiency == pytest.approx((0.5 + 0.5) / (1.0 + 2.0))


def test_rate_divides_by_the_elapsed_hours_of_the_returned_window() -> None:
    total = snapshot("opencost_sample.json", mode="total")
    rate = snapshot("opencost_sample.json", mode="rate", window="7d")
    assert rate.coverage.hours == pytest.approx(7 * 24)
    t, r = total.clusters[0].costs.total, rate.clusters[0].costs.total
    assert t is not None
    assert r == pytest.approx(t / 168)
    # efficiencies are ratios, never divided nor x100
    assert rate.clusters[0].namespaces["opencost"].ram_efficiency == pytest.approx(
        total.clusters[0].namespaces["opencost"].ram_efficiency or 0
    )


def test_window_end_in_the_future_is_clamped_to_now() -> None:
    rows = fixture_json("kubecost2_namespace.json")["data"][0]
    for r in rows.values():
        r["window"] = {"start": "2026-11-26T00:00:00Z", "end": "2026-11-27T00:00:00Z"}
    s = snapshot([rows], window="today", mode="rate")
    assert s.coverage.hours == pytest.approx(18 + 20 / 60)
    assert s.coverage.ratio == 1.0


@pytest.mark.parametrize("name", ["empty_list.json", "empty_set.json", "null_set.json"])
def test_empty_data_gives_an_empty_snapshot(name: str) -> None:
    s = snapshot(name)
    assert s.clusters == ()
    assert s.namespace_count == 0


def test_multi_cluster_takes_the_cluster_from_the_data() -> None:
    s = snapshot("multi_cluster.json", multi=True)
    assert [c.name for c in s.clusters] == ["cluster-one", "cluster-two"]
    two = s.clusters[1]
    assert set(two.namespaces) == {"default", "kube-system"}
    assert two.idle == pytest.approx(0.175)
    assert two.costs.total == pytest.approx(2 * 0.075 + 0.175)


def test_missing_fields_are_tolerated_and_extra_fields_ignored() -> None:
    c = snapshot("missing_extra_fields.json").clusters[0]
    assert c.namespaces["default"].cpu == pytest.approx(0.03)  # no adjustment field = 0
    assert c.namespaces["default"].gpu is None  # no gpuCost at all: omitted
    assert c.namespaces["default"].total_efficiency is None
    assert c.namespaces["web"].shared is None
    assert c.idle == pytest.approx(0.03)


def test_pre_1100_label_keys_lose_their_key_prefix() -> None:
    old = breakdown("pre1100_label_keys.json", breakdown="label:app", top_n=10)
    new = breakdown("label_keys.json", breakdown="label:app", top_n=10)
    assert old == new
    assert {(r.namespace, r.value) for r in old} == {
        ("kubecost", "cost-analyzer"),
        ("kubecost", "prometheus"),
        ("kubecost", "__unallocated__"),
        ("default", "web"),
    }


def test_breakdown_is_capped_at_top_n_plus_one_other_series() -> None:
    rows = breakdown("controller_breakdown.json", breakdown="controller", top_n=3)
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
        for k, a in fixture_json("controller_breakdown.json")["data"][0].items()
        if k != "__idle__"
    )
    assert sum(r.total for r in rows) == pytest.approx(ns_total)


def test_split_key_variants() -> None:
    def no_props() -> dict[str, Any]:
        return {}

    assert split_key("__idle__", None, no_props, ("namespace",)).idle
    k = split_key("cluster-two/__idle__", None, no_props, ("cluster", "namespace"))
    assert k.idle
    assert k.cluster == "cluster-two"
    assert split_key("", None, no_props, ("namespace",)).values == ("__unallocated__",)
    k = split_key("ns/a/b", None, no_props, ("namespace", "annotation:path"))
    assert k.values == ("ns", "a/b")
    assert split_key("web", "__idle__", no_props, ("namespace",)).idle  # by its name


def test_default_window_is_the_last_complete_hour_minus_lag() -> None:
    now = datetime(2026, 11, 26, 18, 10, tzinfo=UTC).timestamp()
    assert last_complete_hour(now, 15 * 60) == (
        ts("2026-11-26T16:00:00Z"),
        ts("2026-11-26T17:00:00Z"),
    )
    assert window_param("", now, 0) == "2026-11-26T17:00:00Z,2026-11-26T18:00:00Z"
    assert window_param("today", now, 0) == "today"


@pytest.mark.parametrize(
    ("spec", "start", "end"),
    [
        ("today", "2026-11-26T00:00:00Z", "2026-11-27T00:00:00Z"),
        ("yesterday", "2026-11-25T00:00:00Z", "2026-11-26T00:00:00Z"),
        ("week", "2026-11-22T00:00:00Z", "2026-11-27T00:00:00Z"),  # Sunday
        ("lastweek", "2026-11-15T00:00:00Z", "2026-11-22T00:00:00Z"),
        ("month", "2026-11-01T00:00:00Z", "2026-11-27T00:00:00Z"),
        ("lastmonth", "2026-10-01T00:00:00Z", "2026-11-01T00:00:00Z"),
        ("24h", "2026-11-25T19:00:00Z", "2026-11-26T19:00:00Z"),  # rounded forward
        ("7d", "2026-11-20T00:00:00Z", "2026-11-27T00:00:00Z"),
        ("3d offset 1d", "2026-11-23T00:00:00Z", "2026-11-26T00:00:00Z"),
        ("30m", "2026-11-26T17:51:00Z", "2026-11-26T18:21:00Z"),
        (HOUR, "2026-11-26T16:00:00Z", "2026-11-26T17:00:00Z"),
        ("1795708800,1795712400", "2026-11-26T16:00:00Z", "2026-11-26T17:00:00Z"),
    ],
)
def test_requested_window_follows_kubecosts_grammar(spec: str, start: str, end: str) -> None:
    assert requested_window(spec, NOW) == (ts(start), ts(end))


def test_union_of_windows_counts_overlaps_once_and_skips_gaps() -> None:
    t = [3600.0 * h for h in range(6)]
    merged = union([(t[0], t[2]), (t[1], t[3]), (t[4], t[5])])
    assert merged == [(t[0], t[3]), (t[4], t[5])]
    assert sum(e - s for s, e in merged) == 4 * 3600


def test_seven_daily_sets_with_integer_numbers_and_zero_requests() -> None:
    """opencost#2495 shape: window=7d&step=1d, pod-level properties, ints, cpuEfficiency 1."""
    s = snapshot("opencost_7d_daily_sets.json", window="7d", mode="rate")
    assert s.coverage.hours == pytest.approx(7 * 24)
    c = s.clusters[0]
    assert set(c.namespaces) == {"opencost"}
    oc = c.namespaces["opencost"]
    assert oc.total == pytest.approx(7 * 0.01283 / 168)
    assert c.idle == pytest.approx(7 * 0.7 / 168)
    assert oc.cpu_efficiency == 1.0  # zero request: the engine's own value (1) on every day
    assert oc.ram_efficiency == pytest.approx(60817408 / 57671680)


def test_summary_endpoint_shape_is_read_too() -> None:
    """opencost#1270: /allocation/summary puts sets under data.sets[].allocations."""
    c = snapshot("summary_shape.json").clusters[0]
    assert set(c.namespaces) == {"kube-system", "default"}
    assert c.idle == 0.0  # no __idle__ row: no unshared idle, exported as 0 (not omitted)
    assert c.costs.total == pytest.approx(0.0313642040545 + 0.0051963269)
    assert c.namespaces["default"].pv == pytest.approx(0.0019230769)


# -- window phenomena (docs/metrics.md "Windows") ----------------------------------------------


def test_rows_with_their_own_windows_are_divided_by_the_union(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Old Kubecost/OpenCost: every allocation has its own window; `__idle__` (first, as Go
    sorts keys) covers the last 3 hours of a 24-hour query. Before: the set's length was taken
    from that first row: every rate 8x too high, window start 21 hours late."""
    caplog.set_level(logging.DEBUG, "kubecost_allocation_exporter")
    s = snapshot("per_row_windows.json", window=DAY, mode="rate")
    c = s.clusters[0]
    assert s.coverage.hours == 24.0
    assert s.coverage.start == ts("2026-11-25T17:00:00Z")
    assert s.coverage.ratio == 1.0
    assert c.namespaces["default"].total == pytest.approx(2.4 / 24)  # was 0.8
    assert c.idle == pytest.approx(0.24 / 24)  # was 0.08
    assert c.costs.total == pytest.approx(4.32 / 24)  # was 1.44
    assert any("cover 2 different windows" in r.getMessage() for r in caplog.records)


def test_empty_step_sets_cover_nothing_and_show_as_partial_coverage() -> None:
    """A step answer whose hours without data are `{}`: the rate is over the 3 covered hours,
    and the coverage ratio says that only half of the 6 requested hours are covered."""
    window = "2026-11-26T11:00:00Z,2026-11-26T17:00:00Z"
    s = snapshot("step_empty_sets.json", window=window, mode="rate")
    assert s.coverage.hours == 3.0
    assert s.coverage.ratio == 0.5
    assert (s.coverage.start, s.coverage.end) == (
        ts("2026-11-26T12:00:00Z"),
        ts("2026-11-26T16:00:00Z"),
    )
    assert s.clusters[0].namespaces["default"].total == pytest.approx(3 * 0.037 / 3)


def test_partial_coverage_is_accepted_and_the_rate_is_over_the_covered_time() -> None:
    s = snapshot("partial_window.json", mode="rate")
    assert s.coverage.ratio == pytest.approx(40 / 60)
    assert s.clusters[0].namespaces["default"].total == pytest.approx(0.028 / (40 / 60))


def test_zero_requests_keep_the_engines_own_efficiency() -> None:
    """An old engine says cpuEfficiency 0 for a namespace with no request (newer ones say 1).
    Combined over two daily sets the namespace keeps the engine's value; before, the combined
    value applied the newer rule and said 1.0."""
    s = snapshot("zero_request_old_engine.json", window="2026-11-24T00:00:00Z,2026-11-26T00:00:00Z")
    c = s.clusters[0]
    assert c.namespaces["batch"].cpu_efficiency == 0.0  # was 1.0
    assert c.namespaces["batch"].ram_efficiency == 0.0  # was 1.0
    assert c.namespaces["web"].cpu_efficiency == pytest.approx(0.6)
    # the cluster has requests (web): usage / request over all rows, minute-weighted
    assert c.costs.cpu_efficiency == pytest.approx((0.25 + 0.6) / 1.0)


def test_the_same_answer_written_with_ints_and_strings_gives_the_same_snapshot() -> None:
    doc = fixture_json("kubecost2_namespace.json")
    plain = snapshot(doc)
    for row in doc["data"][0].values():
        for k, v in row.items():
            if isinstance(v, float) and v.is_integer():
                row[k] = int(v)
            elif isinstance(v, float) and k.endswith("Cost"):
                row[k] = repr(v)
    odd = snapshot(json.loads(json.dumps(doc)))
    assert odd == plain
    assert odd.clusters[0].namespaces == plain.clusters[0].namespaces


def test_an_idle_row_in_every_page_is_taken_once_and_any_other_repeat_is_an_error() -> None:
    w = {"start": "2026-11-26T16:00:00Z", "end": "2026-11-26T17:00:00Z"}
    idle = {"totalCost": 0.5, "window": w}
    one = [{"a/x": {"totalCost": 1.0, "window": w}, "__idle__": idle}]
    two = [{"b/y": {"totalCost": 2.0, "window": w}, "__idle__": idle}]
    rows = breakdown(one, two, breakdown="controller", top_n=10)
    assert [(r.namespace, r.value, r.total) for r in rows] == [("b", "y", 2.0), ("a", "x", 1.0)]
    assert snapshot(one, two).clusters[0].idle == 0.5  # the namespace query likewise
    with pytest.raises(ApiError, match="came again in page 2: the API ignores 'offset'"):
        breakdown(one, one, breakdown="controller", top_n=10)
