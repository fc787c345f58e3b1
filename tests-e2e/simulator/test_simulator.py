"""The Kubecost API simulator (a test double) keeps the invariants the exporter and the pipeline test rely on.

Runs the real HTTP server on a free port in a thread and talks to it over HTTP, like the exporter does.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import pytest

from simulator import DEFAULT_NAMESPACES, SimulatorServer, serve
from simulator.model import parse_window

pytestmark = pytest.mark.e2e

HOUR = "2026-11-26T10:00:00Z,2026-11-26T11:00:00Z"
BASE = {"window": HOUR, "accumulate": "true", "idle": "true", "includeIdle": "true"}
REL = 1e-3  # rounding to 5 decimals on ~$0.27 totals stays far below 0.1 %


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorServer]:
    server = serve(port=0)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture(autouse=True)
def _reset(sim: SimulatorServer) -> None:
    _post(sim, "/__sim__/reset", {})


def _get(sim: SimulatorServer, path: str, **params: str) -> tuple[int, str, bytes]:
    url = f"{sim.url}{path}?{urlencode(params)}"
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers.get("Content-Type", ""), err.read()


def _post(sim: SimulatorServer, path: str, body: dict[str, Any]) -> dict[str, Any]:
    req = urllib.request.Request(f"{sim.url}{path}", json.dumps(body).encode(), method="POST")
    with urllib.request.urlopen(req, timeout=10) as r:
        return dict(json.loads(r.read()))


def _sets(sim: SimulatorServer, path: str = "/model/allocation", **params: str) -> list[dict[str, Any]]:
    status, _, body = _get(sim, path, **{**BASE, **params})
    assert status == 200, body
    doc = json.loads(body)
    assert doc["code"] == 200
    assert doc["status"] == "success"
    return list(doc["data"])


def _total(rows: dict[str, Any], field: str = "totalCost") -> float:
    return float(sum(r[field] for r in rows.values()))


def test_default_cluster_has_the_eight_namespaces_and_idle_at_about_027_per_hour(sim: SimulatorServer) -> None:
    (rows,) = _sets(sim, aggregate="namespace")
    assert set(rows) == {*DEFAULT_NAMESPACES, "__idle__"}
    assert _total(rows) == pytest.approx(0.27, abs=0.01)


@pytest.mark.parametrize(
    "path", ["/model/allocation", "/model/allocation/compute", "/allocation", "/allocation/compute"]
)
@pytest.mark.parametrize("share", ["false", "true"])
def test_cluster_total_equals_namespaces_plus_idle_on_every_endpoint(
    sim: SimulatorServer, path: str, share: str
) -> None:
    (by_ns,) = _sets(sim, path, aggregate="namespace", shareIdle=share)
    (by_cluster,) = _sets(sim, path, aggregate="cluster", shareIdle=share)
    assert _total(by_cluster) == pytest.approx(_total(by_ns), rel=REL)
    assert ("__idle__" in by_ns) == (share == "false")


@pytest.mark.parametrize("agg", ["controller", "pod", "label:team", "namespace,label:app", "node", "container"])
def test_every_aggregation_adds_up_to_the_same_total(sim: SimulatorServer, agg: str) -> None:
    (by_cluster,) = _sets(sim, aggregate="cluster")
    (rows,) = _sets(sim, aggregate=agg)
    assert _total(rows) == pytest.approx(_total(by_cluster), rel=REL)
    assert "__idle__" in rows


def test_total_cost_includes_adjustments_and_idle_has_none(sim: SimulatorServer) -> None:
    (rows,) = _sets(sim, aggregate="namespace")
    for name, r in rows.items():
        parts = sum(
            r[f] + r[f + "Adjustment"]
            for f in ("cpuCost", "gpuCost", "ramCost", "pvCost", "networkCost", "loadBalancerCost")
        )
        assert parts + r["sharedCost"] + r["externalCost"] == pytest.approx(r["totalCost"], abs=5e-5), name
    assert rows["kubecost"]["cpuCostAdjustment"] < 0 < rows["kubecost"]["pvCostAdjustment"]
    assert all(rows["__idle__"][f + "Adjustment"] == 0 for f in ("cpuCost", "ramCost", "pvCost"))
    (compute,) = _sets(sim, "/allocation", aggregate="namespace")
    assert all(r["cpuCostAdjustment"] == 0 for r in compute.values())


def test_shared_idle_moves_into_cpu_and_ram_cost(sim: SimulatorServer) -> None:
    (plain,) = _sets(sim, aggregate="namespace", shareIdle="false")
    (shared,) = _sets(sim, aggregate="namespace", shareIdle="weighted")
    idle = plain["__idle__"]
    assert sum(r["cpuCostIdle"] for r in shared.values()) == pytest.approx(idle["cpuCost"], abs=1e-4)
    assert sum(r["ramCostIdle"] for r in shared.values()) == pytest.approx(idle["ramCost"], abs=1e-4)
    assert shared["argocd"]["cpuCost"] > plain["argocd"]["cpuCost"]


def test_opencost_reads_includeidle_and_takes_sharedidle_weighted_as_false(sim: SimulatorServer) -> None:
    (no_idle,) = _sets(sim, "/allocation", aggregate="namespace", includeIdle="false")
    assert "__idle__" not in no_idle
    (weighted,) = _sets(sim, "/allocation", aggregate="namespace", shareIdle="weighted")
    assert "__idle__" in weighted  # not a Go bool: silently the default (false)
    (kc_weighted,) = _sets(sim, aggregate="namespace", shareIdle="weighted")
    assert "__idle__" not in kc_weighted


def test_keys_follow_the_aggregation(sim: SimulatorServer) -> None:
    (ctrl,) = _sets(sim, aggregate="namespace,controller")
    assert "argocd/statefulset:argocd-application-controller" in ctrl
    assert "default/__unallocated__" in ctrl  # the bare pod
    (team,) = _sets(sim, aggregate="label:team")
    assert {"platform", "finops", "__unallocated__", "__idle__"} == set(team)
    assert team["platform"]["properties"] == {"cluster": "cluster-one"}
    (ns,) = _sets(sim, aggregate="namespace")
    assert ns["argocd"]["properties"]["namespace"] == "argocd"
    assert "labels" not in ns["argocd"]["properties"]


def test_numbers_are_rounded_to_five_decimals_and_nested_pvs_are_not(sim: SimulatorServer) -> None:
    _status, _, body = _get(sim, "/model/allocation", **BASE, aggregate="namespace")
    rows = json.loads(body)["data"][0]
    for r in rows.values():
        for k, v in r.items():
            if isinstance(v, float) and k not in ("ramBytes", "pvBytes") and "Byte" not in k and "bytes" not in k:
                assert round(v, 5) == v, (r["name"], k, v)
    assert rows["argocd"]["pvs"] is None
    assert rows["argocd"]["lbAllocations"] is None
    assert rows["ingress-nginx"]["lbAllocations"]
    pv_costs = [p["cost"] for p in rows["kubecost"]["pvs"].values()]
    assert any(round(c, 5) != c for c in pv_costs)
    assert b'"minutes":60,' in body  # integral numbers print as Go prints them


def test_nan_usage_is_null_in_json_and_propagates_to_the_aggregate(sim: SimulatorServer) -> None:
    _post(sim, "/__sim__/config", {"nan_namespaces": ["default"]})
    (ns,) = _sets(sim, aggregate="namespace")
    assert ns["default"]["ramEfficiency"] is None
    assert ns["default"]["totalEfficiency"] is None
    assert ns["argocd"]["ramEfficiency"] is not None
    (cl,) = _sets(sim, aggregate="cluster")
    assert cl["cluster-one"]["ramEfficiency"] is None


def test_zero_request_efficiency_rule(sim: SimulatorServer) -> None:
    (rows,) = _sets(sim, aggregate="namespace,controller")
    assert rows["kube-system/daemonset:kube-proxy"]["ramEfficiency"] == 1  # usage without request
    assert rows["default/__unallocated__"]["cpuEfficiency"] == 0  # no usage
    assert rows["kubecost/deployment:kubecost-cost-analyzer"]["ramEfficiency"] > 1


def test_scale_multiplies_every_cost(sim: SimulatorServer) -> None:
    (one,) = _sets(sim, aggregate="cluster")
    _post(sim, "/__sim__/config", {"scale": 2.0})
    (two,) = _sets(sim, aggregate="cluster")
    assert _total(two) == pytest.approx(2 * _total(one), rel=REL)


def test_windows_round_forward_and_split_into_sets() -> None:
    now = datetime(2026, 11, 26, 12, 30, tzinfo=UTC)
    assert parse_window("24h", now).end == datetime(2026, 11, 26, 13, tzinfo=UTC)
    assert parse_window("1d", now).start == datetime(2026, 11, 26, tzinfo=UTC)
    w = parse_window("3d offset 1d", now)
    assert (w.start, w.end) == (datetime(2026, 11, 23, tzinfo=UTC), datetime(2026, 11, 26, tzinfo=UTC))
    assert parse_window("1764151200,1764154800", now).hours == 1
    assert parse_window("lastweek", now).start.weekday() == 6  # Sunday


def test_accumulate_false_gives_hourly_sets_and_future_sets_are_empty(sim: SimulatorServer) -> None:
    sets = _sets(sim, window="today", accumulate="false", aggregate="cluster")
    assert len(sets) == 24
    now_hour = datetime.now(UTC).hour
    assert sets[0] and not sets[-1] if now_hour < 23 else sets[0]
    day = _sets(sim, window="3d offset 1d", accumulate="day", aggregate="cluster")
    assert len(day) == 3
    assert all(abs(_total(s) - _total(day[0])) < 1e-4 for s in day)
    (full,) = _sets(sim, window="3d offset 1d", aggregate="cluster")
    assert _total(full) == pytest.approx(3 * _total(day[0]), rel=REL)


def test_bad_requests_are_refused_like_the_real_apis(sim: SimulatorServer) -> None:
    status, ctype, body = _get(sim, "/allocation", window="not-a-window")
    assert status == 400
    assert ctype.startswith("text/plain")
    assert body.startswith(b"Invalid window")
    status, _, body = _get(sim, "/model/allocation", window="1h", aggregate="nonsense")
    assert status == 400
    assert json.loads(body)["code"] == 400
    status, _, body = _get(sim, "/allocation", window="1h", aggregate="nonsense,namespace", accumulate="true")
    assert status == 200
    assert "kubecost" in json.loads(body)["data"][0]


@pytest.mark.parametrize(
    ("fault", "want_status", "check"),
    [
        ({"mode": "http500"}, 500, lambda b: json.loads(b)["code"] == 500),
        ({"mode": "code500"}, 200, lambda b: json.loads(b)["code"] == 500 and json.loads(b)["data"] is None),
        ({"mode": "nonjson"}, 200, lambda b: b.startswith(b"<html>")),
        ({"mode": "nonjson", "status": 504}, 504, lambda b: b"nginx" in b),
        ({"mode": "empty"}, 200, lambda b: json.loads(b)["data"] == []),
        ({"mode": "empty", "shape": "[null]"}, 200, lambda b: json.loads(b)["data"] == [None]),
        ({"mode": "empty", "shape": "[{}]"}, 200, lambda b: json.loads(b)["data"] == [{}]),
    ],
)
def test_faults_switch_at_run_time(sim: SimulatorServer, fault: dict[str, Any], want_status: int, check: Any) -> None:
    _post(sim, "/__sim__/fault", fault)
    status, _, body = _get(sim, "/model/allocation", **BASE, aggregate="namespace")
    assert status == want_status
    assert check(body)
    _post(sim, "/__sim__/fault", {"mode": "none"})
    assert _get(sim, "/model/allocation", **BASE, aggregate="namespace")[0] == 200


def test_delay_fault_and_counted_faults(sim: SimulatorServer) -> None:
    _post(sim, "/__sim__/fault", {"mode": "delay", "seconds": 0.5, "count": 1})
    t0 = time.monotonic()
    assert _get(sim, "/model/allocation", **BASE, aggregate="cluster")[0] == 200
    assert time.monotonic() - t0 >= 0.5
    t0 = time.monotonic()
    assert _get(sim, "/model/allocation", **BASE, aggregate="cluster")[0] == 200
    assert time.monotonic() - t0 < 0.5


def test_request_log_records_what_clients_asked(sim: SimulatorServer) -> None:
    _get(sim, "/model/allocation", **BASE, aggregate="namespace")
    _get(sim, "/nope")
    _status, _, body = _get(sim, "/__sim__/requests", limit="5")
    log = json.loads(body)
    assert log[-1]["path"] == "/model/allocation"
    assert log[-1]["params"]["aggregate"] == "namespace"
    assert log[-1]["status"] == 200


def test_request_log_has_every_answered_request_at_once(sim: SimulatorServer) -> None:
    """The log entry is written after the answer is sent; a client reading the log right after its
    answer must still find it (a race seen under load before the log waited for in-flight ones)."""
    for i in range(50):
        _get(sim, "/model/allocation", **BASE, aggregate="namespace", step=f"{i + 1}h")
        _, _, body = _get(sim, "/__sim__/requests", limit="1")
        (entry,) = json.loads(body)
        assert entry["params"]["step"] == f"{i + 1}h"


def test_windows_before_the_cluster_existed_are_empty(sim: SimulatorServer) -> None:
    (rows,) = _sets(sim, window="2020-01-01T00:00:00Z,2020-01-02T00:00:00Z")
    assert rows == {}
    assert timedelta(hours=1) == parse_window(HOUR, datetime.now(UTC)).end - parse_window(HOUR, datetime.now(UTC)).start


DAY = "2026-11-25T00:00:00Z,2026-11-26T00:00:00Z"


def test_older_engines_give_every_allocation_its_own_window(sim: SimulatorServer) -> None:
    """`own_windows` + `idle_hours`: each row's `window` is its own running time, and idle is known for the
    last hours only (older Kubecost/OpenCost); Go's sorted keys put `__idle__` first."""
    (plain,) = _sets(sim, window=DAY, aggregate="namespace")
    _post(sim, "/__sim__/config", {"quirks": {"own_windows": True, "idle_hours": 3}})
    (rows,) = _sets(sim, window=DAY, aggregate="namespace")
    assert next(iter(rows)) == "__idle__"
    assert rows["__idle__"]["window"] == {"start": "2026-11-25T21:00:00Z", "end": "2026-11-26T00:00:00Z"}
    assert rows["__idle__"]["minutes"] == 180
    assert rows["default"]["window"] == plain["default"]["window"]  # the whole day: it ran all of it
    # idle for 3 of the 24 hours: an eighth of the day's idle
    assert rows["__idle__"]["totalCost"] == pytest.approx(plain["__idle__"]["totalCost"] / 8, rel=1e-3)
    assert rows["default"]["totalCost"] == plain["default"]["totalCost"]


def test_a_stale_cache_answers_for_another_time(sim: SimulatorServer) -> None:
    _post(sim, "/__sim__/config", {"quirks": {"shift_hours": 24}})
    (rows,) = _sets(sim, window=DAY, aggregate="namespace")
    assert rows["default"]["window"] == {"start": "2026-11-24T00:00:00Z", "end": "2026-11-25T00:00:00Z"}


def test_an_engine_that_ignores_accumulate_answers_in_steps_with_empty_sets(sim: SimulatorServer) -> None:
    _post(sim, "/__sim__/config", {"quirks": {"step_hours": 1, "empty_steps": [0, 5]}})
    sets = _sets(sim, window="2026-11-25T10:00:00Z,2026-11-25T16:00:00Z", aggregate="namespace")
    assert len(sets) == 6
    assert [bool(s) for s in sets] == [False, True, True, True, True, False]
    assert sets[1]["default"]["window"] == {"start": "2026-11-25T11:00:00Z", "end": "2026-11-25T12:00:00Z"}
    _post(sim, "/__sim__/reset", {})
    assert len(_sets(sim, window="2026-11-25T10:00:00Z,2026-11-25T16:00:00Z", aggregate="namespace")) == 1


def test_bad_quirks_are_refused(sim: SimulatorServer) -> None:
    req = urllib.request.Request(
        f"{sim.url}/__sim__/config", json.dumps({"quirks": {"idle_hours": "many"}}).encode(), method="POST"
    )
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=10)
    assert err.value.code == 400


@pytest.mark.parametrize(("path", "alloc_path"), [("/model/assets", "/model/allocation"), ("/assets", "/allocation")])
def test_assets_add_up_to_the_allocations_including_idle(sim: SimulatorServer, path: str, alloc_path: str) -> None:
    (assets,) = _sets(sim, path, window=HOUR, aggregate="type", accumulate="true")
    (by_ns,) = _sets(sim, alloc_path, aggregate="namespace", shareIdle="false")
    assert {"Node", "Disk", "LoadBalancer", "Network"} <= set(assets)
    assert all(a["type"] == k and a["window"] == {"start": "2026-11-26T10:00:00Z", "end": "2026-11-26T11:00:00Z"}
               for k, a in assets.items())  # fmt: skip
    assert _total(assets) == pytest.approx(_total(by_ns), rel=REL)
    pv = sum(r["pvCost"] + r["pvCostAdjustment"] for r in by_ns.values())
    assert assets["Disk"]["totalCost"] == pytest.approx(pv, rel=REL)
    (by_cluster,) = _sets(sim, path, window=HOUR, aggregate="cluster,type")
    assert set(by_cluster) == {f"cluster-one/{k}" for k in assets}


def test_assets_switches_drift_absent_and_error(sim: SimulatorServer) -> None:
    (base,) = _sets(sim, "/model/assets", window=HOUR, aggregate="type")
    _post(sim, "/__sim__/config", {"assets_drift": 1.1})
    (drifted,) = _sets(sim, "/model/assets", window=HOUR, aggregate="type")
    assert drifted["Node"]["totalCost"] == pytest.approx(1.1 * base["Node"]["totalCost"], rel=REL)
    assert drifted["Disk"] == base["Disk"]
    _post(sim, "/__sim__/config", {"assets": "absent"})
    assert _get(sim, "/model/assets", window=HOUR)[0] == 404
    _post(sim, "/__sim__/config", {"assets": "error"})
    status, _, body = _get(sim, "/model/assets", window=HOUR)
    assert (status, json.loads(body)["code"]) == (500, 500)
    with pytest.raises(urllib.error.HTTPError):
        _post(sim, "/__sim__/config", {"assets": "maybe"})
    _post(sim, "/__sim__/reset", {})
    assert _get(sim, "/model/assets", window=HOUR)[0] == 200


def test_request_sizing_answers_kubecosts_shape_and_refuses_unknown_parameters(sim: SimulatorServer) -> None:
    """One recommendation per controller's container spec, in the `Recommendations` list Kubecost's own tooling
    reads; savings are (request - peak / 0.7) x price x 730 h for every pod, so an over-requested controller saves
    and the bare debug pod (no controller) has none. Kubecost 2.x refuses parameters it does not know."""
    status, _, body = _get(sim, "/model/savings/requestSizingV2", window="3d")
    assert status == 200
    recs = json.loads(body)["Recommendations"]
    by_name = {r["controllerName"]: r for r in recs}
    assert "debug-shell" not in by_name
    server = by_name["argocd-server"]  # requests 0.10 CPU / 0.25 GiB, uses 0.02 / 0.12 GiB, 1 replica
    cpu = (0.10 - 0.02 * 1.6 / 0.7) * 0.04 * 730
    ram = (0.25 - 0.12 * 1.3 / 0.7) * 0.0048 * 730
    assert server["monthlySavings"]["cpu"] == pytest.approx(cpu, abs=1e-5)
    assert server["monthlySavings"]["memory"] == pytest.approx(ram, abs=1e-5)
    assert server["monthlySavings"]["total"] == pytest.approx(cpu + ram, abs=1e-5)
    assert (server["namespace"], server["controllerKind"]) == ("argocd", "deployment")
    assert server["clusterID"] == "cluster-one"
    assert server["recommendedRequest"] == {"cpu": "46m", "memory": "228Mi"}
    assert server["latestKnownRequest"] == {"cpu": "100m", "memory": "256Mi"}
    assert _get(sim, "/model/savings/requestSizingV2")[0] == 400  # window is required
    status, _, body = _get(sim, "/model/savings/requestSizingV2", window="3d", aggregate="namespace")
    assert status == 400
    assert b"invalid HTTP parameters present" in body
    _post(sim, "/__sim__/config", {"savings": "absent"})
    assert _get(sim, "/model/savings/requestSizingV2", window="3d")[0] == 404
    _post(sim, "/__sim__/config", {"savings": "error"})
    assert _get(sim, "/model/savings/requestSizingV2", window="3d")[0] == 500
    _post(sim, "/__sim__/reset", {})
    assert _get(sim, "/model/savings/requestSizingV2", window="3d")[0] == 200
