"""`ct install` of every `ci/*-values.yaml` scenario on the real cluster: install, `helm test`, uninstall.

Each scenario runs alone (a chart copy whose `ci/` holds just that file), so one failing scenario is reported by
name. On top of each scenario's own values, `--helm-extra-set-args` gives what this machine forces: the local
images, `remoteWrite.url` at the in-cluster Thanos Receive (no pod here may reach the platform's address), and,
for scenarios that would install the bundled Kubecost, the in-cluster OpenCost instead (Kubecost's own images
cannot be built here). A scenario whose subject *is* Kubecost's own pods is skipped here with that reason; the
GitHub kind workflow runs it with the real images.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from testsupport.kind import ROOT, KindCluster, LocalImages, set_args
from testsupport.render import CHART_DIR

from .conftest import RECEIVE_URL, engine_values

pytestmark = pytest.mark.kind

SCENARIOS = sorted(p.name for p in (CHART_DIR / "ci").glob("*-values.yaml"))
#: Scenarios that cannot run without Kubecost's own images, with the reason printed in the skip.
NEEDS_KUBECOST_IMAGES = {
    "02-kubecost-values.yaml": (
        "prometheus.mode=kubecost: Kubecost's bundled Prometheus scrapes the exporter and remote-writes; Kubecost's "
        "images cannot be had here (no registry) - run by .github/workflows/kind.yaml with the real chart"
    ),
}


def _values(name: str) -> dict[str, Any]:
    loaded = yaml.safe_load((CHART_DIR / "ci" / name).read_text()) or {}
    assert isinstance(loaded, dict)
    return loaded


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_ct_install(
    scenario: str,
    thanos: KindCluster,
    opencost_url: str,
    chart_dir: Path,
    images: LocalImages,
    tmp_path: Path,
) -> None:
    if scenario in NEEDS_KUBECOST_IMAGES:
        pytest.skip(NEEDS_KUBECOST_IMAGES[scenario])
    cluster = thanos
    values = _values(scenario)
    extra = [*images.chart_set_args(), f"--set=remoteWrite.url={RECEIVE_URL}"]
    if not values.get("allocationExporter", {}).get("config", {}).get("kubecostUrl"):
        # a scenario with a bundled engine (Kubecost 3 by default): its images cannot be had here
        extra += set_args(engine_values(opencost_url))
    if values.get("prometheus", {}).get("mode") == "external":
        cluster.kubectl("apply", "-f", str(ROOT / "tests-e2e" / "kind" / "servicemonitor-crd.yaml"))

    copy = tmp_path / "charts" / chart_dir.name
    shutil.copytree(chart_dir, copy)
    for other in (copy / "ci").glob("*-values.yaml"):
        if other.name != scenario:
            other.unlink()
    proc = cluster.run(
        [
            "ct",
            "install",
            "--config",
            str(ROOT / "ct.yaml"),
            "--charts",
            str(copy),
            "--helm-extra-set-args",
            " ".join(extra),
        ],
        check=False,
        timeout=900,
    )
    out = proc.stdout + proc.stderr
    print(out[-3000:])
    assert proc.returncode == 0, f"ct install {scenario} failed:\n{out[-6000:]}"
    assert "All charts installed successfully" in out, out[-3000:]
    assert "Phase:          Succeeded" in out, "helm test did not run or did not succeed:\n" + out[-3000:]
