"""Asset costs through HTTP: the Assets API read beside the Allocation API for the same window,
exported as cluster_assets_cost; an engine without one, or a failing one, never fails the
refresh and exporter_info says which it is."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest
from exporter_testlib import FakeKubecost, Reply, fixture_json
from pipeline import assets, snapshot
from prometheus_client.parser import text_string_to_metric_families
from test_runtime import HOUR, Clock, refresher

from kubecost_allocation_exporter.config import load
from kubecost_allocation_exporter.metrics import render_costs

pytestmark = pytest.mark.unit
ASSETS = "cloudtuner_kubecost_cluster_assets_cost"


def _values(text: str) -> tuple[dict[str, float], float, dict[str, str], float]:
    """(assets by type, cluster_total_cost, exporter_info labels, scrape errors summed)."""
    assets: dict[str, float] = {}
    total, info, errors = float("nan"), {}, 0.0
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == ASSETS:
                assets[s.labels["type"]] = s.value
            elif s.name == "cloudtuner_kubecost_cluster_total_cost":
                total = s.value
            elif s.name == "cloudtuner_kubecost_exporter_info":
                info = s.labels
            elif s.name == "cloudtuner_kubecost_scrape_errors_total":
                errors += s.value
    return assets, total, info, errors


def _serve(kubecost: FakeKubecost, prefix: str = "/model") -> None:
    kubecost.set_fixture(prefix + "/allocation", "kubecost2_namespace.json")
    kubecost.set_fixture(prefix + "/assets", "kubecost2_assets.json")


@pytest.mark.parametrize(("api", "prefix"), [("kubecost", "/model"), ("opencost", "")])
def test_assets_are_read_for_the_same_window_and_add_up_to_the_allocations(
    kubecost: FakeKubecost, api: str, prefix: str
) -> None:
    _serve(kubecost, prefix)
    r = refresher(kubecost, Clock(), "--api", api)
    assert r.refresh_once() is None
    [seen] = [s for s in kubecost.seen if s.path == prefix + "/assets"]
    assert seen.params == {"window": HOUR, "aggregate": "type", "accumulate": "true"}
    assets, total, info, errors = _values(r.exposition().decode())
    assert info["assets"] == "present"
    assert assets == {
        "Disk": 0.03836,
        "LoadBalancer": 0.025,
        "Network": 0.00254,
        "Node": 0.2502,
        "total": 0.3161,
    }
    assert assets["total"] == total  # allocations incl. idle == assets: coverage 1
    assert errors == 0


def test_total_mode_and_a_drifting_engine(kubecost: FakeKubecost) -> None:
    """Node assets 10 % dearer than the allocations say: the series shows it; the allocation
    numbers are unchanged."""
    doc = fixture_json("kubecost2_assets.json")
    doc["data"][0]["Node"]["totalCost"] = 0.27522  # 0.2502 * 1.1
    kubecost.set_fixture("/model/allocation", "kubecost2_namespace.json")
    kubecost.set("/model/assets", Reply(body=json.dumps(doc).encode()))
    r = refresher(kubecost, Clock(), "--metric-mode", "total")
    assert r.refresh_once() is None
    assets, total, _, _ = _values(r.exposition().decode())
    assert total == 0.3161
    assert assets["total"] == 0.34112
    assert total / assets["total"] == pytest.approx(0.92666, abs=1e-5)


def test_an_engine_without_assets_api_leaves_the_series_out_and_says_so(
    kubecost: FakeKubecost,
) -> None:
    kubecost.set_fixture("/model/allocation", "kubecost2_namespace.json")  # /model/assets: 404
    r = refresher(kubecost, Clock())
    assert r.refresh_once() is None
    text = r.exposition().decode()
    assets, total, info, errors = _values(text)
    assert (assets, info["assets"], errors) == ({}, "absent", 0)
    assert total == 0.3161


@pytest.mark.parametrize(
    ("reply", "why"),
    [
        (Reply(500, b'{"code":500,"message":"asset ETL not built"}'), "asset ETL not built"),
        (Reply(200, b'{"code":200,"data":[{"Node":{"type":"Node"'), "not JSON"),
        (Reply(delay=1.5, body=b'{"code":200,"data":[]}'), "read timeout"),
    ],
)
def test_a_failing_assets_api_never_fails_the_refresh(
    kubecost: FakeKubecost, reply: Reply, why: str, caplog: pytest.LogCaptureFixture
) -> None:
    kubecost.set_fixture("/model/allocation", "kubecost2_namespace.json")
    kubecost.set("/model/assets", reply)
    r = refresher(kubecost, Clock(), "--request-timeout", "0.5s")
    assert r.refresh_once() is None
    assets, total, info, errors = _values(r.exposition().decode())
    assert (assets, info["assets"], errors, total) == ({}, "failed", 0, 0.3161)
    [line] = [m.getMessage() for m in caplog.records if "assets not read" in m.getMessage()]
    assert why in line


def test_an_assets_answer_for_another_time_is_not_published(
    kubecost: FakeKubecost, caplog: pytest.LogCaptureFixture
) -> None:
    text = json.dumps(fixture_json("kubecost2_assets.json")).replace("2026-11-26T", "2026-11-25T")
    kubecost.set_fixture("/model/allocation", "kubecost2_namespace.json")
    kubecost.set("/model/assets", Reply(body=text.encode()))
    r = refresher(kubecost, Clock())
    assert r.refresh_once() is None
    assets, _, info, _ = _values(r.exposition().decode())
    assert (assets, info["assets"]) == ({}, "failed")
    assert any("for another time" in m.getMessage() for m in caplog.records)


def test_assets_off_sends_no_query(kubecost: FakeKubecost) -> None:
    _serve(kubecost)
    r = refresher(kubecost, Clock(), "--assets", "false")
    assert r.refresh_once() is None
    assert {s.path for s in kubecost.seen} == {"/model/allocation"}
    assets, _, info, _ = _values(r.exposition().decode())
    assert (assets, info["assets"]) == ({}, "disabled")


def test_multi_cluster_assets_by_key_and_an_unknown_cost_leaves_the_total_out() -> None:
    w = {"start": "2026-11-26T16:00:00Z", "end": "2026-11-26T17:00:00Z"}
    data = [
        {
            "cluster-one/Node": {"type": "Node", "window": w, "totalCost": 2.0},
            "cluster-one/Disk": {"type": "Disk", "window": w, "totalCost": "0.5"},
            "cluster-two/Node": {"type": "Node", "window": w, "totalCost": None},
            "cluster-two/Disk": {"window": w, "totalCost": 0.25},  # no type
        }
    ]
    cfg = load(["--cluster-name", "c", "--tenant-id", "t", "--multi-cluster", "--window", HOUR], {})
    got = {(a.cluster, a.type): a.cost for a in assets(data, cfg=cfg)}
    unknown = [got.pop(("cluster-two", "Node")), got.pop(("cluster-two", "total"))]
    assert all(math.isnan(v) for v in unknown)  # a null cost: the type and the total unknown
    assert got == {
        ("cluster-one", "Disk"): 0.5,
        ("cluster-one", "Node"): 2.0,
        ("cluster-one", "total"): 2.5,
        ("cluster-two", "__unknown__"): 0.25,
    }
    text = render_costs(replace(snapshot([[]], cluster="c"), assets=assets(data, cfg=cfg)), cfg)
    assert b'type="total"} 2.5\n' in text
    assert b'cluster="cluster-two",tenant_id="t",type="total"' not in text


def test_rate_mode_divides_by_the_hours_the_assets_answer_covers() -> None:
    w = {"start": "2026-11-25T17:00:00Z", "end": "2026-11-26T17:00:00Z"}
    data = [{"Node": {"type": "Node", "window": w, "totalCost": 48.0}}]
    day = "2026-11-25T17:00:00Z,2026-11-26T17:00:00Z"
    rate = load(["--cluster-name", "c", "--tenant-id", "t", "--window", day], {})
    total = load(
        ["--cluster-name", "c", "--tenant-id", "t", "--window", day, "--metric-mode", "total"], {}
    )
    assert [a.cost for a in assets(data, cfg=rate, window=day)] == [2.0, 2.0]
    assert [a.cost for a in assets(data, cfg=total, window=day)] == [48.0, 48.0]


def test_opencost_answers_one_bare_set_of_every_asset(kubecost: FakeKubecost) -> None:
    """OpenCost's /assets writes the AssetSet as `data` itself (a map of every asset; `aggregate`
    ignored by older versions, only `type` accepted by newer ones): assets summed by type."""
    w = {"start": "2026-11-26T16:00:00Z", "end": "2026-11-26T17:00:00Z"}

    def asset(kind: str, cost: float) -> dict[str, object]:
        props = {"cluster": "c1"}
        return {"type": kind, "properties": props, "window": w, "minutes": 60, "totalCost": cost}

    doc = {
        "code": 200,
        "data": {
            "c1/node-a": asset("Node", 0.125),
            "c1/node-b": asset("Node", 0.125),
            "c1/pvc-1": asset("Disk", 0.0661),
        },
    }
    kubecost.set_fixture("/allocation", "kubecost2_namespace.json")
    kubecost.set("/assets", Reply(body=json.dumps(doc).encode()))
    r = refresher(kubecost, Clock(), "--api", "opencost", "--multi-cluster")
    assert r.refresh_once() is None
    [seen] = [s for s in kubecost.seen if s.path == "/assets"]
    assert seen.params["aggregate"] == "type"
    assets, _, info, _ = _values(r.exposition().decode())
    assert (info["assets"], assets) == ("present", {"Disk": 0.0661, "Node": 0.25, "total": 0.3161})
