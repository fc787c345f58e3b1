"""Every panel query of the chart's Grafana dashboards returns data on the e2e bench.

Panels on `${datasource}` are evaluated against Thanos Query (where the platform reads `cloudtuner_kubecost_*`);
panels on `${sender_datasource}` (the agent's remote_write self-metrics) against the monitoring Prometheus that
scrapes the agent. Template variables are substituted the way Grafana does (`All` = `.*`); each variable's own
`label_values(...)` query must offer the bench's tenant and cluster.
"""

from __future__ import annotations

import json
import re
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from testsupport.procs import http_json
from testsupport.render import CHART_DIR

pytestmark = pytest.mark.e2e

DASHBOARDS = sorted((CHART_DIR / "files" / "dashboards").glob("*.json"))
RANGE_S = 3600


def panels(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for p in board["panels"]:
        yield p
        yield from p.get("panels", [])


def substitute(expr: str, variables: dict[str, str]) -> str:
    out = expr.replace("$__range_s", str(RANGE_S)).replace("$__range", f"{RANGE_S}s")
    out = out.replace("$__rate_interval", "1m").replace("$__interval", "15s")
    for name in sorted(variables, key=len, reverse=True):
        out = out.replace("${" + name + "}", variables[name]).replace("$" + name, variables[name])
    assert "$" not in out.replace('"$1"', ""), f"unsubstituted variable in {out}"
    return out


def instant(url: str, promql: str) -> list[dict[str, Any]]:
    doc = http_json(f"{url}/api/v1/query?{urllib.parse.urlencode({'query': promql})}")
    assert doc["status"] == "success", doc
    return list(doc["data"]["result"])


def label_values(url: str, definition: str, variables: dict[str, str]) -> list[str]:
    m = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", definition)
    assert m, definition
    match, label = substitute(m.group(1), variables), m.group(2)
    q = urllib.parse.urlencode({"match[]": match})
    return list(http_json(f"{url}/api/v1/label/{label}/values?{q}")["data"])


def test_the_chart_ships_three_dashboards() -> None:
    names = [p.name for p in DASHBOARDS]
    assert names == [
        "kubecost-cluster-overview.json",
        "kubecost-namespace-breakdown.json",
        "kubecost-pipeline-health.json",
    ]
    uids = {json.loads(p.read_text())["uid"] for p in DASHBOARDS}
    assert len(uids) == 3


@pytest.mark.parametrize("cluster_value", ["single", "all"])
@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: Path(p).stem)
def test_every_panel_query_returns_data(ops_bench: Any, path: Path, cluster_value: str) -> None:
    board = json.loads(path.read_text())
    tenant = ops_bench.tenant.spec
    urls = {"${datasource}": ops_bench.thanos.query_url, "${sender_datasource}": ops_bench.monitor_url}
    variables = {
        "tenant_id": tenant.tenant_id,
        "cluster": tenant.cluster_name if cluster_value == "single" else ".*",
        "namespace": ".*",
        "remote_name": "cloudtuner-thanos",
    }
    # The variables' own queries offer the bench's values.
    for var in board["templating"]["list"]:
        if var["type"] != "query":
            continue
        got = label_values(urls[var["datasource"]["uid"]], var["definition"], variables)
        want = {"tenant_id": tenant.tenant_id, "cluster": tenant.cluster_name, "remote_name": "cloudtuner-thanos"}
        if var["name"] in want:
            assert want[var["name"]] in got, (var["name"], got)
        else:
            assert {"kube-system", "default"} <= set(got), (var["name"], got)
    checked = 0
    empty = []
    for panel in panels(board):
        if panel["type"] == "row":
            continue
        for target in panel["targets"]:
            ds = (target.get("datasource") or panel["datasource"])["uid"]
            promql = substitute(target["expr"], variables)
            result = instant(urls[ds], promql)
            if not result:
                empty.append(f"{panel['title']!r} {target['refId']} on {ds}: {promql}")
            checked += 1
    assert not empty, "panel queries without data:\n" + "\n".join(empty)
    assert checked >= 8


def test_a_panel_query_for_another_tenant_is_empty(ops_bench: Any) -> None:
    """The data check above can fail: the same panels for a tenant that sent nothing return nothing."""
    board = json.loads((CHART_DIR / "files" / "dashboards" / "kubecost-cluster-overview.json").read_text())
    variables = {"tenant_id": "nobody", "cluster": ".*", "namespace": ".*", "remote_name": "cloudtuner-thanos"}
    for panel in panels(board):
        for target in panel.get("targets", []):
            assert instant(ops_bench.thanos.query_url, substitute(target["expr"], variables)) == [], target["expr"]


def test_forecast_and_budget_series_reach_thanos(ops_bench: Any) -> None:
    """What the budget panels read: the Thanos Ruler's series for the bench's budgets, with sane values."""
    spec = ops_bench.tenant.spec
    url = ops_bench.thanos.query_url
    sel = f'tenant_id="{spec.tenant_id}",cluster="{spec.cluster_name}"'
    budgets = {
        r["metric"].get("namespace", "(cluster)"): float(r["value"][1])
        for r in instant(url, f'{{__name__=~"cloudtuner_kubecost:(namespace|cluster)_budget:monthly_usd",{sel}}}')
    }
    assert budgets == {"default": 5.0, "kube-system": 500.0, "(cluster)": 200.0}

    def one(promql: str) -> float:
        (r,) = instant(url, promql)
        return float(r["value"][1])

    ns = f'{sel},namespace="kube-system"'
    rate = one(f"max(max_over_time(cloudtuner_kubecost_namespace_total_cost{{{ns}}}[1d]))")
    mtd = one(f"cloudtuner_kubecost:namespace_cost:month_to_date_usd{{{ns}}}")
    forecast = one(f"cloudtuner_kubecost:namespace_cost:month_end_forecast_usd{{{ns}}}")
    # The bench has minutes of history: the month to date holds at most the current and the previous hour.
    assert 0 < mtd <= 2 * rate, (mtd, rate)
    # The projection adds the recent rate for the hours left of the month (at most 31 days).
    assert mtd < forecast <= mtd + 744 * rate, (mtd, forecast, rate)
