"""`cloudtuner_kubecost_queries` (the platform's PromQL, docs/queries.md) against real Thanos Query."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cloudtuner_kubecost_queries import (
    QueryError,
    QueryResult,
    ThanosClient,
    asset_coverage,
    cluster_totals,
    cost_per_day,
    efficiency,
    namespace_costs,
    selector,
)

from testsupport.procs import wait_until

pytestmark = pytest.mark.e2e

NAMESPACES = {
    "argocd",
    "cert-manager",
    "default",
    "ingress-nginx",
    "kube-state-metrics",
    "kube-system",
    "kubecost",
    "kubecost-dev",
}


def _client(bench: Any) -> ThanosClient:
    return ThanosClient(bench.thanos.query_url, timeout=20)


def _ids(bench: Any) -> tuple[str, str]:
    return bench.tenant.spec.cluster_name, bench.tenant.spec.tenant_id


def _thanos_one(bench: Any, promql: str) -> float:
    v = bench.thanos.value(promql)
    assert v is not None, promql
    return float(v)


def test_cluster_totals(ops_bench: Any) -> None:
    cluster, tenant = _ids(ops_bench)
    result = cluster_totals(_client(ops_bench), cluster, tenant)
    assert result.ok, result.reason
    total = _thanos_one(ops_bench, f"cloudtuner_kubecost_cluster_total_cost{selector(cluster, tenant)}")
    assert result.value["total"] == pytest.approx(total, rel=0.01)
    assert {"total", "cpu", "ram", "pv", "network", "lb"} <= set(result.value)
    parts = sum(v for k, v in result.value.items() if k in ("cpu", "ram", "pv", "network", "lb", "gpu", "shared"))
    assert parts == pytest.approx(result.value["total"], rel=1e-3)


def test_namespace_costs_over_a_range(ops_bench: Any) -> None:
    cluster, tenant = _ids(ops_bench)
    end = datetime.now(UTC)
    start = end - timedelta(minutes=10)
    result = namespace_costs(_client(ops_bench), cluster, tenant, start, end)
    assert result.ok, result.reason
    assert set(result.value) >= NAMESPACES
    assert "__idle__" not in result.value
    # Rate mode: USD over 10 minutes = hourly rate x 1/6 (the bench's rate is steady).
    rate = _thanos_one(ops_bench, f"sum(cloudtuner_kubecost_namespace_total_cost{selector(cluster, tenant)})")
    assert sum(result.value.values()) == pytest.approx(rate * 600 / 3600, rel=0.02)
    assert "avg_over_time" in result.queries[0]
    assert "* 600 / 3600" in result.queries[0]


def test_efficiency(ops_bench: Any) -> None:
    cluster, tenant = _ids(ops_bench)
    end = datetime.now(UTC)
    result = efficiency(_client(ops_bench), cluster, tenant, end - timedelta(minutes=5), end)
    assert result.ok, result.reason
    assert set(result.value.cluster) == {"cpu", "ram", "total"}
    assert all(0 < v < 5 for v in result.value.cluster.values())
    assert set(result.value.namespaces) >= {"kube-system", "default"}
    cpu = _thanos_one(ops_bench, f"cloudtuner_kubecost_cluster_cpu_efficiency{selector(cluster, tenant)}")
    assert result.value.cluster["cpu"] == pytest.approx(cpu, rel=0.01)


def test_cost_per_day(ops_bench: Any) -> None:
    cluster, tenant = _ids(ops_bench)
    end = datetime.now(UTC)
    start = end - timedelta(days=2)
    result = cost_per_day(_client(ops_bench), cluster, tenant, start, end)
    assert result.ok, result.reason
    today = end.date().isoformat()
    # Only today has data (the bench started minutes ago); days without data are absent, not 0.
    assert list(result.value) == [today], result.value
    midnight = datetime(end.year, end.month, end.day, tzinfo=UTC)
    rate = _thanos_one(ops_bench, f"cloudtuner_kubecost_cluster_total_cost{selector(cluster, tenant)}")
    assert result.value[today] == pytest.approx(rate * (end - midnight).total_seconds() / 3600, rel=0.05)


@pytest.mark.parametrize("which", ["tenant", "cluster", "past"])
def test_no_data_is_explicit(ops_bench: Any, which: str) -> None:
    cluster, tenant = _ids(ops_bench)
    end = datetime.now(UTC)
    start = end - timedelta(minutes=10)
    if which == "tenant":
        tenant = "another-tenant"
    elif which == "cluster":
        cluster = "no-such-cluster"
    else:
        end, start = end - timedelta(days=3), end - timedelta(days=4)
    client = _client(ops_bench)
    for result in (
        namespace_costs(client, cluster, tenant, start, end),
        efficiency(client, cluster, tenant, start, end),
        cost_per_day(client, cluster, tenant, start, end),
    ):
        assert result.status == "no_data"
        assert result.no_data
        assert not result.ok
        assert cluster in result.reason
        assert tenant in result.reason
    if which != "past":
        assert cluster_totals(client, cluster, tenant).no_data


def test_errors_raise(ops_bench: Any) -> None:
    with pytest.raises(QueryError):
        ThanosClient("http://127.0.0.1:9", timeout=2).instant("up")
    with pytest.raises(QueryError, match="HTTP 400"):
        _client(ops_bench).instant("sum(")
    with pytest.raises(ValueError, match="quotes"):
        selector('a"b', "t")


def test_asset_costs_reach_thanos_and_add_up_to_the_allocations(ops_bench: Any) -> None:
    """The exporter reads the simulator's Assets API (consistent with its allocations) for the same window: the
    series reaches Thanos through the agent, and the coverage query says allocations incl. idle == assets."""
    cluster, tenant = _ids(ops_bench)
    sel = selector(cluster, tenant, type="total")
    total = _thanos_one(ops_bench, f"cloudtuner_kubecost_cluster_assets_cost{sel}")
    node = _thanos_one(ops_bench, f"cloudtuner_kubecost_cluster_assets_cost{selector(cluster, tenant, type='Node')}")
    assert 0 < node < total
    info = ops_bench.thanos.query(f"cloudtuner_kubecost_exporter_info{selector(cluster, tenant)}")
    assert {s["metric"]["assets"] for s in info} == {"present"}
    result = asset_coverage(_client(ops_bench), cluster, tenant)
    assert result.ok, result.reason
    assert result.value == pytest.approx(1.0, abs=1e-3)  # 5-decimal rounding of ~0.27 USD/h
    assert asset_coverage(_client(ops_bench), "no-such-cluster", tenant).no_data


def test_asset_drift_and_a_failing_assets_api_reach_thanos(ops_bench: Any) -> None:
    """The simulator's drift switch (Node assets 10 % dearer) shows as coverage below 1 in Thanos; an Assets API
    that fails leaves the asset series out (info says assets="failed") while the allocation costs keep flowing."""
    cluster, tenant = _ids(ops_bench)
    client = _client(ops_bench)
    sel = selector(cluster, tenant)
    node = _thanos_one(ops_bench, f"cloudtuner_kubecost_cluster_assets_cost{selector(cluster, tenant, type='Node')}")
    assets = _thanos_one(ops_bench, f"cloudtuner_kubecost_cluster_assets_cost{selector(cluster, tenant, type='total')}")
    want = _thanos_one(ops_bench, f"cloudtuner_kubecost_cluster_total_cost{sel}") / (assets + 0.1 * node)
    try:
        ops_bench.tenant.sim_config(assets_drift=1.1)

        def drifted_coverage() -> QueryResult[float] | None:
            r = asset_coverage(client, cluster, tenant)
            return r if r.ok and r.value < 0.99 else None

        drifted = wait_until(drifted_coverage, 90, "drift in Thanos")
        assert drifted.value == pytest.approx(want, abs=1e-3)
        ops_bench.tenant.sim_config(assets="error")
        wait_until(
            lambda: (
                {s["metric"]["assets"] for s in ops_bench.thanos.query(f"cloudtuner_kubecost_exporter_info{sel}")}
                == {"failed"}
            ),
            90,
            'assets="failed" in Thanos',
        )
        assert _thanos_one(ops_bench, f"cloudtuner_kubecost_scrape_success{sel}") == 1.0
        wait_until(lambda: asset_coverage(client, cluster, tenant).status == "unsupported", 90, "no asset series")
        assert _thanos_one(ops_bench, f"cloudtuner_kubecost_cluster_total_cost{sel}") > 0
    finally:
        ops_bench.tenant.sim_config(assets="present", assets_drift=1.0)
        # The bench is shared: later tests (verify's) expect the exporter to have read the assets again.
        wait_until(
            lambda: (
                {s["metric"]["assets"] for s in ops_bench.thanos.query(f"cloudtuner_kubecost_exporter_info{sel}")}
                == {"present"}
            ),
            90,
            'assets="present" in Thanos again',
        )
