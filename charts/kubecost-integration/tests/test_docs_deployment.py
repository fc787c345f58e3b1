"""docs/deployment.md: every YAML block marked `<!-- rendered-by-tests -->` renders (Helm 3 and 4) and produces what
the guide says it does."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from testsupport.render import ROOT, by_component, objects, render

pytestmark = pytest.mark.chart

GUIDE = ROOT / "docs" / "deployment.md"


def marked_blocks() -> list[dict[str, Any]]:
    blocks = re.findall(r"<!-- rendered-by-tests -->\n```yaml\n(.*?)```", GUIDE.read_text(), re.S)
    assert blocks, "no rendered-by-tests block in docs/deployment.md"
    return [yaml.safe_load(b) for b in blocks]


def test_production_values_render(helm: str) -> None:
    (values,) = marked_blocks()
    docs = render(values, release="kci", namespace="kubecost-integration", helm=helm)
    env = {
        e["name"]: e.get("value")
        for e in by_component(docs, "Deployment", "allocation-exporter")["spec"]["template"]["spec"]["containers"][0][
            "env"
        ]
    }
    assert env["TENANT_ID"] == "acme"
    assert env["CLUSTER_NAME"] == "prod-eu-1"
    assert env["KUBECOST_URL"] == "http://kubecost-cost-analyzer.kubecost.svc:9090"
    assert objects(docs, "PrometheusRule")
    assert objects(docs, "PersistentVolumeClaim")
    assert len(objects(docs, "NetworkPolicy")) == 3
    assert len(objects(docs, "PodDisruptionBudget")) == 2
    # The guide's egress claims: the exporter reaches Kubecost's namespace on 9090, the agent Thanos on 443.
    exporter_egress = by_component(docs, "NetworkPolicy", "allocation-exporter")["spec"]["egress"]
    assert exporter_egress[0] == {
        "to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kubecost"}}}],
        "ports": [{"port": 9090, "protocol": "TCP"}],
    }
    agent_egress = by_component(docs, "NetworkPolicy", "agent")["spec"]["egress"]
    assert agent_egress[1]["ports"] == [{"port": 443, "protocol": "TCP"}]
    dash = by_component(docs, "ConfigMap", "dashboards")
    assert dash["metadata"]["annotations"] == {"grafana_folder": "Cost"}
    config = by_component(docs, "ConfigMap", "agent")["data"]["prometheus.yml"]
    assert "credentials_file" in config
    assert "ca_file" in config
    assert not any(d["kind"] == "Deployment" and "cost-analyzer" in d["metadata"]["name"] for d in docs)
