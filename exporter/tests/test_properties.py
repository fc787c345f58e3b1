"""Property-based tests (hypothesis) of the invariants the platform relies on."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pipeline import breakdown, oracle
from pipeline import snapshot as build
from prometheus_client.parser import text_string_to_metric_families

from kubecost_allocation_exporter.config import load
from kubecost_allocation_exporter.keys import OTHER
from kubecost_allocation_exporter.metrics import render_costs

pytestmark = pytest.mark.unit

T0 = datetime(2026, 11, 26, 0, tzinfo=UTC)
NOW = datetime(2026, 11, 27, 0, tzinfo=UTC).timestamp()
NAMES = ["default", "kube-system", "web", "__unallocated__", "__unmounted__", "team-a"]
money = st.floats(min_value=-5, max_value=50, allow_nan=False).map(lambda x: round(x, 5))
maybe_money = st.one_of(st.none(), money)
ratio = st.one_of(st.none(), st.floats(min_value=0, max_value=5, allow_nan=False))
PARTS = [
    ("cpuCost", "cpuCostAdjustment"),
    ("ramCost", "ramCostAdjustment"),
    ("pvCost", "pvCostAdjustment"),
    ("networkCost", "networkCostAdjustment"),
    ("loadBalancerCost", "loadBalancerCostAdjustment"),
    ("gpuCost", "gpuCostAdjustment"),
]


@st.composite
def allocation(draw: st.DrawFn, window: dict[str, str], idle: bool) -> dict[str, Any]:
    a: dict[str, Any] = {"window": window, "minutes": 60.0}
    total: float | None = 0.0
    for base, adj in PARTS:
        v = draw(maybe_money)
        a[base] = v
        mode = draw(st.sampled_from(["missing", "value", "null"]))
        if idle or mode == "missing":
            av: float | None = 0.0
        elif mode == "null":
            a[adj] = av = None
        else:
            a[adj] = av = draw(money)
        total = None if total is None or v is None or av is None else total + v + av
    a["sharedCost"] = shared = draw(maybe_money)
    total = None if total is None or shared is None else total + shared
    a["totalCost"] = draw(st.one_of(st.just(total), st.none()))
    for f in ("cpuEfficiency", "ramEfficiency", "totalEfficiency"):
        a[f] = draw(ratio)
    for f in ("cpuCoreRequestAverage", "cpuCoreUsageAverage"):
        a[f] = draw(st.one_of(st.none(), st.floats(min_value=0, max_value=8)))
    return a


@st.composite
def answer(draw: st.DrawFn) -> list[dict[str, dict[str, Any]]]:
    sets = []
    for i in range(draw(st.integers(min_value=0, max_value=3))):
        start = T0 + timedelta(hours=draw(st.integers(min_value=0, max_value=5)) + i)
        w = {
            "start": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "end": (start + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        keys = draw(st.lists(st.sampled_from(NAMES), unique=True, max_size=5))
        s = {k: draw(allocation(w, idle=False)) for k in keys}
        if draw(st.booleans()):
            s["__idle__"] = draw(allocation(w, idle=True))
        sets.append(s)
    return sets


def snapshot(sets: list[dict[str, dict[str, Any]]], mode: str) -> Any:
    return build(sets, window="2026-11-26T00:00:00Z,2026-11-26T01:00:00Z", now=NOW, mode=mode)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(answer())
def test_namespaces_plus_idle_equal_the_cluster_total(sets: list[dict[str, Any]]) -> None:
    for mode in ("rate", "total"):
        s = snapshot(sets, mode)
        for c in s.clusters:
            assert "__idle__" not in c.namespaces
            known = [v.total for v in c.namespaces.values() if v.total is not None]
            if c.idle:  # 0.0 (no __idle__ row) adds nothing; None (null idle) is unknown
                known.append(c.idle)
            if known:
                assert c.costs.total is not None
                assert math.isclose(sum(known), c.costs.total, rel_tol=1e-9, abs_tol=1e-6)
            else:
                assert c.costs.total is None


@settings(max_examples=100, deadline=None)
@given(answer())
def test_parts_add_up_to_total_and_nulls_are_omitted(sets: list[dict[str, Any]]) -> None:
    s = snapshot(sets, "total")
    rows: dict[str, list[dict[str, Any]]] = {}
    for aset in sets:
        for k, a in aset.items():
            rows.setdefault(k, []).append(a)
    for c in s.clusters:
        for ns, costs in c.namespaces.items():
            members = rows[ns]
            if any(a["totalCost"] is None for a in members):
                assert costs.total is None
                continue
            parts = [costs.cpu, costs.ram, costs.pv, costs.network, costs.lb, costs.gpu]
            if all(p is not None for p in parts) and costs.shared is not None:
                assert costs.total is not None
                total = sum(p for p in parts if p is not None) + costs.shared
                assert math.isclose(total, costs.total, rel_tol=1e-9, abs_tol=1e-6)


@settings(max_examples=100, deadline=None)
@given(answer())
def test_rate_is_total_divided_by_covered_hours(sets: list[dict[str, Any]]) -> None:
    total, rate = snapshot(sets, "total"), snapshot(sets, "rate")
    hours = rate.coverage.hours
    assert hours is not None
    assert hours > 0
    for ct, cr in zip(total.clusters, rate.clusters, strict=True):
        for ns, costs in ct.namespaces.items():
            t, r = costs.total, cr.namespaces[ns].total
            assert (t is None) == (r is None)
            if t is not None and r is not None:
                assert math.isclose(r, t / hours, rel_tol=1e-9, abs_tol=1e-9)
            assert costs.cpu_efficiency == cr.namespaces[ns].cpu_efficiency


@settings(max_examples=100, deadline=None)
@given(answer(), st.sampled_from(["rate", "total"]))
def test_exposition_never_has_nan_idle_namespaces_or_mixed_label_sets(
    sets: list[dict[str, Any]], mode: str
) -> None:
    cfg = load(["--cluster-name", "c1", "--tenant-id", "t1", "--metric-mode", mode], {})
    snap = snapshot(sets, mode)
    fast = render_costs(snap, cfg)
    assert fast == oracle(snap, cfg)
    text = fast.decode()
    assert "NaN" not in text
    assert "Inf" not in text
    for fam in text_string_to_metric_families(text):
        label_sets = {frozenset(s.labels) for s in fam.samples}
        assert len(label_sets) <= 1, fam.name
        for sample in fam.samples:
            assert math.isfinite(sample.value)
            assert sample.labels.get("namespace") != "__idle__"


@settings(max_examples=100, deadline=None)
@given(
    st.dictionaries(
        st.tuples(st.sampled_from(NAMES), st.text("abcdefgh", min_size=1, max_size=3)),
        money,
        max_size=30,
    ),
    st.integers(min_value=1, max_value=10),
)
def test_breakdown_cap_keeps_top_n_plus_one_other_and_the_sum(
    totals: dict[tuple[str, str], float], top_n: int
) -> None:
    w = {"start": "2026-11-26T00:00:00Z", "end": "2026-11-26T01:00:00Z"}
    aset = {f"{ns}/{v}": {"totalCost": t, "window": w} for (ns, v), t in totals.items()}
    aset["__idle__"] = {"totalCost": 99.0, "window": w}
    rows = breakdown([aset], breakdown="controller", top_n=top_n, window="", now=NOW)
    assert len(rows) <= top_n + 1
    assert sum(1 for r in rows if r.value == OTHER) == (1 if len(totals) > top_n else 0)
    assert math.isclose(sum(r.total for r in rows), sum(totals.values()), abs_tol=1e-6)
    kept = [r.total for r in rows if r.value != OTHER]
    assert kept == sorted(kept, reverse=True)
