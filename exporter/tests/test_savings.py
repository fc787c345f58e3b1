"""Right-sizing savings: the estimate from the allocation rows (docs/metrics.md "Savings"), and
Kubecost's request-sizing recommendations read through HTTP beside the Allocation API with
--savings api; an engine without them, or a failing one, never fails the refresh and
exporter_info says which it is."""

from __future__ import annotations

import json
import re

import pytest
from exporter_testlib import FakeKubecost, Reply, fixture_json
from prometheus_client.parser import text_string_to_metric_families
from test_runtime import Clock, refresher

from kubecost_allocation_exporter.decode import ApiError
from kubecost_allocation_exporter.savings import recommendations

pytestmark = pytest.mark.unit
NS, CTRL = (
    "cloudtuner_kubecost_namespace_savings_monthly",
    "cloudtuner_kubecost_controller_savings_monthly",
)
SIZING = "/model/savings/requestSizingV2"


def _documented_estimate(row: dict[str, float]) -> float:
    """docs/metrics.md: (request - usage, never negative) x (cost incl. adjustment / hours) x 730,
    for CPU and RAM."""
    cpu = (
        max(row["cpuCoreRequestAverage"] - row["cpuCoreUsageAverage"], 0.0)
        * (row["cpuCost"] + row["cpuCostAdjustment"])
        / row["cpuCoreHours"]
    )
    ram = (
        max(row["ramByteRequestAverage"] - row["ramByteUsageAverage"], 0.0)
        * (row["ramCost"] + row["ramCostAdjustment"])
        / row["ramByteHours"]
    )
    return (cpu + ram) * 730


def _series(text: str) -> tuple[dict[tuple[str, ...], tuple[str, float]], dict[str, str]]:
    """((namespace[, controller]) -> (source, value), exporter_info labels)."""
    out: dict[tuple[str, ...], tuple[str, float]] = {}
    info: dict[str, str] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == NS:
                out[(s.labels["namespace"],)] = (s.labels["source"], s.value)
            elif s.name == CTRL:
                out[(s.labels["namespace"], s.labels["controller"])] = (s.labels["source"], s.value)
            elif s.name == "cloudtuner_kubecost_exporter_info":
                info = s.labels
    return out, info


def test_estimate_with_the_documented_formula_and_no_extra_query(
    kubecost: FakeKubecost,
) -> None:
    kubecost.set_fixture("/model/allocation", "kubecost2_namespace.json")
    kubecost.set_fixture(SIZING, "kubecost2_request_sizing.json")
    off = refresher(kubecost, Clock())
    assert off.refresh_once() is None
    assert _series(off.exposition().decode())[0] == {}  # off by default
    r = refresher(kubecost, Clock(), "--metric-mode", "total", "--savings", "estimate")
    assert r.refresh_once() is None
    got, info = _series(r.exposition().decode())
    assert info["savings_api"] == "disabled"
    assert not [s for s in kubecost.seen if s.path == SIZING]
    rows = fixture_json("kubecost2_namespace.json")["data"][0]
    for ns in ("default", "kube-system", "kubecost"):
        assert got[(ns,)][0] == "estimate"
        assert got[(ns,)][1] == pytest.approx(_documented_estimate(rows[ns]), rel=1e-9)
    assert got[("default",)][1] == pytest.approx(14.54845, abs=1e-5)  # worked example in the doc
    assert got[("kube-system",)][1] == pytest.approx(13.38812, abs=1e-5)  # RAM over-used: 0
    assert got[("__unallocated__",)] == ("estimate", 0.0)  # no core-hours: nothing to save
    assert ("__idle__",) not in got


def test_recommendations_replace_the_estimate_where_kubecost_has_them(
    kubecost: FakeKubecost,
) -> None:
    kubecost.set_fixture("/model/allocation", "kubecost2_namespace.json")
    kubecost.set_fixture(SIZING, "kubecost2_request_sizing.json")
    r = refresher(kubecost, Clock(), "--savings", "api")
    assert r.refresh_once() is None
    [seen] = [s for s in kubecost.seen if s.path == SIZING]
    assert seen.params == {"window": "3d"}  # Kubecost 2.x refuses any parameter it does not know
    got, info = _series(r.exposition().decode())
    assert info["savings_api"] == "present"
    # 6.20453 + (0.5 - 0.25: no total, cpu + memory)
    assert got[("kubecost",)] == ("recommendation", 6.45453)
    assert got[("default",)][0] == "estimate"
    assert ("retired",) not in got  # no allocation this window: not a namespace of the snapshot


@pytest.mark.parametrize(
    ("reply", "state"),
    [
        (Reply(404, b"404 page not found\n", "text/plain"), "absent"),
        (Reply(500, b'{"code": 500, "message": "no ETL"}', "application/json"), "failed"),
        (Reply(200, b'{"Recommendations": {"bad": 1}}', "application/json"), "failed"),
    ],
)
def test_an_engine_without_or_with_failing_recommendations_keeps_the_estimates(
    kubecost: FakeKubecost, reply: Reply, state: str
) -> None:
    kubecost.set_fixture("/model/allocation", "kubecost2_namespace.json")
    kubecost.set(SIZING, reply)
    r = refresher(kubecost, Clock(), "--savings", "api")
    assert r.refresh_once() is None
    got, info = _series(r.exposition().decode())
    assert info["savings_api"] == state
    assert {source for source, _ in got.values()} == {"estimate"}
    assert len(got) == 5


def test_controllers_top_n_with_recommendations_and_other(kubecost: FakeKubecost) -> None:
    kubecost.set_fixture("/model/allocation", "controller_namespaces.json", aggregate="namespace")
    kubecost.set_fixture(
        "/model/allocation", "controller_breakdown.json", aggregate="namespace,controller"
    )
    engine = {
        "Recommendations": [
            {
                "namespace": "default",
                "controllerKind": "deployment",
                "controllerName": "svc-0",
                "monthlySavings": {"cpu": 90.0, "memory": 10.0, "total": 100.0},
            }
        ]
    }
    kubecost.set(SIZING, Reply(200, json.dumps(engine).encode(), "application/json"))
    args = ("--savings", "api", "--breakdowns", "controller", "--breakdown-top-n", "2")
    r = refresher(kubecost, Clock(), *args)
    assert r.refresh_once() is None
    got, _ = _series(r.exposition().decode())
    controllers = {k: v for k, v in got.items() if len(k) == 2}
    # svc-0 estimated 0.25 x 0.02 + 0.5e9 x 0.002e-9 = 0.006/h: ranked first by its recommendation
    assert controllers[("default", "deployment:svc-0")] == ("recommendation", 100.0)
    assert controllers[("shop", "deployment:svc-7")] == ("estimate", 35.04)
    assert controllers[("__other__", "__other__")][0] == "estimate"
    assert len(controllers) == 3
    assert got[("default",)] == ("recommendation", 100.0)


def test_both_answer_shapes_and_a_broken_one() -> None:
    doc = fixture_json("kubecost2_request_sizing.json")
    whole = recommendations(json.dumps(doc).encode(), "kc", "c1", False)
    bare = recommendations(json.dumps(doc["Recommendations"]).encode(), "kc", "c1", False)
    assert whole == bare
    assert whole[("c1", "kubecost", "")] == pytest.approx(6.45453)
    assert whole[("c1", "kubecost", "deployment:kubecost-cost-analyzer")] == 6.20453
    multi = recommendations(json.dumps(doc).encode(), "kc", "c1", True)
    assert ("cluster-one", "retired", "deployment:old-api") in multi
    with pytest.raises(ApiError) as err:
        recommendations(b'{"Recommendations": [1]}', "kc", "c1", False)
    assert err.value.reason == "bad_response"


def test_the_cardinality_guard_counts_the_savings_series_it_leaves_out(
    kubecost: FakeKubecost,
) -> None:
    """Savings come after the namespaces (and breakdown rows): a namespace left out takes its
    savings series with it, and every series left out is counted in dropped_series_total."""
    kubecost.set_fixture("/model/allocation", "kubecost2_namespace.json")
    line = re.compile(r"^cloudtuner_kubecost_(?:cluster|namespace|exported|window)\w*\{", re.M)
    full = refresher(kubecost, Clock(), "--savings", "estimate")
    assert full.refresh_once() is None
    uncapped = len(line.findall(full.exposition().decode()))
    r = refresher(kubecost, Clock(), "--savings", "estimate", "--max-series", str(uncapped - 8))
    assert r.refresh_once() is None
    text = r.exposition().decode()
    dropped = re.search(r"^cloudtuner_kubecost_dropped_series_total\{[^}]*\} (\S+)$", text, re.M)
    assert dropped is not None
    assert float(dropped.group(1)) == uncapped - len(line.findall(text)) > 0
    got, _ = _series(text)
    kept = set(
        re.findall(
            r'^cloudtuner_kubecost_namespace_total_cost\{[^}]*namespace="([^"]+)"', text, re.M
        )
    )
    assert {ns for (ns, *_) in got} <= kept
