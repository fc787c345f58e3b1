"""The cost engines' real charts (the upstream archives) as dependencies of a chart copy, for render-level tests.

`real_engines_chart(tmp)` copies the chart like `render.chart_copy` but with the real archives of every engine in
`charts/` (Helm needs every declared dependency present, enabled or not). The archives are found with
`testsupport.opencost.upstream_charts_dir()` (`KCI_UPSTREAM_CHARTS`, default `shared/upstream-charts` beside the
repository's parent); `missing_archives()` names those that are not there.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from testsupport.kubeconform import summary as kubeconform_summary
from testsupport.opencost import upstream_charts_dir
from testsupport.render import (
    chart_copy,
    helm_binary,
    helm_template,
    kubecost_mode,
)

#: Engine key (Chart.yaml dependency name and values key) -> archive tested against.
ARCHIVES = {
    "kubecost": "kubecost-3.2.1.tgz",
    "cost-analyzer": "cost-analyzer-2.4.2.tgz",
    "opencost": "opencost-2.5.17.tgz",
}


def missing_archives() -> list[Path]:
    return [upstream_charts_dir() / name for name in ARCHIVES.values() if not (upstream_charts_dir() / name).is_file()]


def real_engines_chart(tmp: Path) -> Path:
    """A chart copy whose charts/ holds the real engine archives instead of the stubs."""
    chart = chart_copy(tmp)
    for key, archive in ARCHIVES.items():
        shutil.rmtree(chart / "charts" / key)
        shutil.copy(upstream_charts_dir() / archive, chart / "charts" / archive)
    return chart


def dependency_status(chart: Path, helm: str = "helm") -> dict[str, str]:
    """`helm dependency list`: dependency name -> status (`ok` when charts/ holds a version the range admits)."""
    out = subprocess.run(
        [helm_binary(helm), "dependency", "list", str(chart)], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    rows = [line.split() for line in out.splitlines()[1:] if line.strip()]
    return {row[0]: " ".join(row[3:]) for row in rows}


def kubeconform(manifest: Path, skip_kinds: str = "") -> dict[str, int]:
    """kubeconform -strict against the offline schemas (`make tools`); returns its summary, raises on any error."""
    return kubeconform_summary(manifest, skip_kinds)


def kubecost_2_scrape_jobs(manifest: str, release: str) -> dict[str, dict[str, Any]]:
    """The scrape jobs of Kubecost 2's bundled Prometheus in a render (ConfigMap `<release>-prometheus-server`)."""
    docs = [d for d in yaml.safe_load_all(manifest) if d]
    [cm] = [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == f"{release}-prometheus-server"]
    config = yaml.safe_load(cm["data"]["prometheus.yml"])
    return {job["job_name"]: job for job in config["scrape_configs"]}


def assert_kubecost_mode_keeps_kubecosts_jobs(chart: Path, values: Mapping[str, Any], helm: str) -> None:
    """kubecost mode replaces Kubecost 2's `prometheus.extraScrapeConfigs` string: rendered by the chart's Kubecost,
    every job Kubecost defines there must come out exactly as without kubecost mode (whole jobs), plus ours."""
    release, namespace = "kci", "kubecost"
    plain = kubecost_2_scrape_jobs(
        helm_template(values, release=release, namespace=namespace, helm=helm, chart=chart), release
    )
    wired_values = kubecost_mode(values, release=release, namespace=namespace, helm=helm)
    wired = kubecost_2_scrape_jobs(
        helm_template(wired_values, release=release, namespace=namespace, helm=helm, chart=chart), release
    )
    defaults = {"kubecost", "kubecost-networking", "kubecost-aggregator", "kubecost-dcgm-exporter"}
    assert defaults <= set(plain), sorted(plain)
    assert {name: wired.get(name) for name in defaults} == {name: plain[name] for name in defaults}
    assert wired["kubecost-allocation-exporter"]["static_configs"] == [
        {"targets": [f"{release}-kubecost-integration-exporter.{namespace}.svc:9103"]}
    ]
