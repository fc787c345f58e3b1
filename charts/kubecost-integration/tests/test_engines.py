"""Engine choice in values, with the stub engine charts (offline, every run; the real charts: test_engines_real.py).

One engine at a time; none means an existing API given as kubecostUrl; an engine with a kubecostUrl elsewhere, two
engines, or Kubecost 3 under another cluster name than ours are refused with the values to set.
"""

from __future__ import annotations

from typing import Any

import pytest

from testsupport.render import exporter_env, render, render_error, with_quickstart

pytestmark = pytest.mark.chart

OFF = {"kubecost": {"enabled": False}}
SELECT: dict[str, dict[str, Any]] = {
    "kubecost": {},
    "cost-analyzer": {**OFF, "cost-analyzer": {"enabled": True}},
    "opencost": {**OFF, "opencost": {"enabled": True}},
}


def test_kubecost_3_is_the_default_engine(helm: str) -> None:
    env = exporter_env(render(with_quickstart(), helm=helm, release="kci", namespace="costs"))
    assert (env["KUBECOST_URL"], env["KUBECOST_API"]) == ("http://kci-frontend.costs.svc:9090", "auto")


@pytest.mark.parametrize(
    ("engine", "release", "url", "api"),
    [
        ("kubecost", "kubecost", "http://kubecost-frontend.costs.svc:9090", "auto"),
        ("cost-analyzer", "kci", "http://kci-cost-analyzer.costs.svc:9090", "auto"),
        ("cost-analyzer", "my-cost-analyzer", "http://my-cost-analyzer.costs.svc:9090", "auto"),
        ("opencost", "kci", "http://kci-opencost.costs.svc:9003", "opencost"),
        ("opencost", "opencost", "http://opencost.costs.svc:9003", "opencost"),
    ],
)
def test_each_engine_derives_its_url_and_api(helm: str, engine: str, release: str, url: str, api: str) -> None:
    env = exporter_env(render(with_quickstart(SELECT[engine]), helm=helm, release=release, namespace="costs"))
    assert (env["KUBECOST_URL"], env["KUBECOST_API"]) == (url, api)


def test_an_explicit_api_wins_over_the_engines_default(helm: str) -> None:
    values = with_quickstart({**SELECT["opencost"], "allocationExporter": {"config": {"api": "kubecost"}}})
    assert exporter_env(render(values, helm=helm))["KUBECOST_API"] == "kubecost"


@pytest.mark.parametrize(("second", "keep_first"), [("cost-analyzer", "kubecost"), ("opencost", "kubecost")])
def test_two_engines_are_refused_with_the_values_to_set(helm: str, second: str, keep_first: str) -> None:
    message = render_error(with_quickstart({second: {"enabled": True}}), helm=helm)
    assert f"{keep_first}, {second} are enabled together" in message, message
    assert f"  {keep_first}:\n    enabled: true\n  {second}:\n    enabled: false" in message, message


def test_an_engine_with_a_url_elsewhere_is_refused_with_both_ways_out(helm: str) -> None:
    values = with_quickstart(
        {"allocationExporter": {"config": {"kubecostUrl": "http://kubecost-frontend.other.svc:9090"}}}
    )
    message = render_error(values, helm=helm, release="kci", namespace="costs")
    assert "kubecost.enabled=true installs an engine whose API is http://kci-frontend.costs.svc:9090" in message
    assert "remove allocationExporter.config.kubecostUrl" in message
    assert "the existing API at http://kubecost-frontend.other.svc:9090: set kubecost.enabled=false." in message


def test_an_engine_with_its_own_url_repeated_is_accepted(helm: str) -> None:
    values = with_quickstart({"allocationExporter": {"config": {"kubecostUrl": "http://kci-frontend.costs.svc:9090/"}}})
    env = exporter_env(render(values, helm=helm, release="kci", namespace="costs"))
    assert env["KUBECOST_URL"] == "http://kci-frontend.costs.svc:9090"


def test_no_engine_needs_a_url(helm: str) -> None:
    message = render_error(with_quickstart(OFF), helm=helm)
    assert "No cost engine is enabled" in message
    assert "kubecostUrl: http://kubecost-frontend.kubecost.svc:9090" in message
    values = with_quickstart(
        {**OFF, "allocationExporter": {"config": {"kubecostUrl": "http://opencost.opencost.svc:9003"}}}
    )
    assert exporter_env(render(values, helm=helm))["KUBECOST_URL"] == "http://opencost.opencost.svc:9003"


def test_kubecost_3_under_another_cluster_name_is_refused(helm: str) -> None:
    message = render_error(with_quickstart({"global": {"clusterId": "other"}}), helm=helm)
    assert 'Kubecost 3 would name this cluster "other", clusterName is "prod-eu-1"' in message
    assert "  global:\n    clusterId: prod-eu-1" in message
    # Kubecost's own default, when global.clusterId is not ours, is refused the same way
    message = render_error(
        with_quickstart({"global": {"clusterId": None}, "kubecost": {"global": {"clusterId": "x"}}}), helm=helm
    )
    assert 'would name this cluster "x"' in message, message


def test_kubecost_3_without_a_cluster_id_is_refused_by_the_schema_first(helm: str) -> None:
    values = with_quickstart()
    values["global"] = {"clusterId": ""}
    message = render_error(values, helm=helm)
    assert "--set global.clusterId=prod-eu-1; clusterName follows it" in message


def test_other_engines_do_not_need_a_cluster_id(helm: str) -> None:
    for engine in ("cost-analyzer", "opencost"):
        values = with_quickstart(SELECT[engine])
        values["global"] = {"clusterId": ""}
        assert render(values, helm=helm)
