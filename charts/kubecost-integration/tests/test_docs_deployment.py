"""docs/deployment.md: every YAML block marked `<!-- rendered-by-tests -->` renders (Helm 3 and 4) and produces what
the guide says it does."""

from __future__ import annotations

import json
import re
import statistics
from pathlib import Path
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


# Figures other pages quote have one source each: values.yaml for the defaults, the benchmark's results
# (docs/bench-results.json, written with docs/benchmarks.md by `make bench-update-docs`) for measurements.
BENCH_RESULTS = ROOT / "docs" / "bench-results.json"
VALUES = ROOT / "charts" / "kubecost-integration" / "values.yaml"


def flat(path: Path) -> str:
    """The text with YAML comment markers dropped and whitespace collapsed, so a figure may wrap."""
    text = re.sub(r"^\s*# ?", "", path.read_text(), flags=re.M)
    return " ".join(text.split())


def bench_median(figure: str) -> float:
    figures = json.loads(BENCH_RESULTS.read_text())["figures"]
    assert figure in figures, f"{figure!r} not in {BENCH_RESULTS.name}: run `make bench-update-docs`"
    return float(statistics.median(f["value"] for f in figures[figure]))


def one_significant_digit(x: float) -> float:
    return float(f"{x:.1g}")


def test_default_resources_in_the_guide_are_those_of_values_yaml() -> None:
    """The default resources are the default sizing preset's (files/sizing.yaml; values.yaml leaves them empty)."""
    preset = yaml.safe_load(VALUES.read_text())["sizing"]["preset"]
    resources = yaml.safe_load((VALUES.parent / "files" / "sizing.yaml").read_text())[preset]["exporter"]["resources"]
    req, lim = resources["requests"], resources["limits"]
    text = flat(GUIDE)
    assert f"default requests ({req['cpu']} / {req['memory']})" in text
    assert f"limits ({lim['cpu']} / {lim['memory']})" in text


@pytest.mark.parametrize(
    "doc",
    ["docs/deployment.md", "docs/benchmarks.md", "UPGRADING.md", "charts/kubecost-integration/values.yaml"],
)
def test_cpu_per_refresh_is_the_benchmarks(doc: str) -> None:
    want = one_significant_digit(bench_median("CPU time of one refresh (process time), 10,000 namespaces"))
    quoted = re.findall(r"(\d+(?:\.\d+)?) CPU-s (?:each )?at 10,000 namespaces", flat(ROOT / doc))
    assert quoted, f"{doc} quotes no CPU-s figure at 10,000 namespaces"
    assert {float(q) for q in quoted} == {want}, f"{doc}: {quoted} CPU-s, the benchmark says ~{want}"


def test_cpu_per_refresh_at_1000_namespaces_in_values_yaml_is_the_benchmarks() -> None:
    want = one_significant_digit(bench_median("CPU time of one refresh (process time), 1,000 namespaces"))
    quoted = re.findall(r"(\d+(?:\.\d+)?) CPU-s at 1,000\b", flat(VALUES))
    assert quoted, "values.yaml quotes no CPU-s figure at 1,000 namespaces"
    assert {float(q) for q in quoted} == {want}, f"values.yaml: {quoted} CPU-s, the benchmark says ~{want}"


@pytest.mark.parametrize(
    ("doc", "pattern"),
    [
        ("docs/deployment.md", r"~(\d+) MB answer at 10,000 namespaces"),
        ("docs/configuration.md", r"10,000-namespace answer \(~(\d+) MB"),
    ],
)
def test_answer_size_is_the_benchmarks(doc: str, pattern: str) -> None:
    want = round(bench_median("answer size, 10,000 namespaces (one request)"))
    quoted = re.findall(pattern, flat(ROOT / doc))
    assert quoted, f"{doc} quotes no answer size"
    assert {int(q) for q in quoted} == {want}
