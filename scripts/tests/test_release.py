"""The version story (scripts/release_check.py) and the release preparation (scripts/release.py) on copies of the
repository: the check passes on the tree as it is, fails naming the disagreement for each place a version is
stated, and a prepared release passes the tag check and packages with real helm."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from testsupport.render import helm_binary

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
from release import release  # noqa: E402
from release_check import CHART, EXPORTER_INIT, check  # noqa: E402

pytestmark = pytest.mark.unit


def tracked_copy(dest: Path) -> Path:
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    names = [n for n in files.decode().split("\0") if n and (ROOT / n).is_file()]
    for name in names:
        if name.startswith(("charts/", "exporter/", "CHANGELOG", "UPGRADING")):
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            (dest / name).write_bytes((ROOT / name).read_bytes())
    return dest


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, (path, old)
    path.write_text(text.replace(old, new, 1))


def test_the_tree_tells_one_version_story() -> None:
    assert check(ROOT, None) == []


def _app(root: Path) -> str:
    return str(yaml.safe_load((root / CHART / "Chart.yaml").read_text())["appVersion"])


MUTATIONS: dict[str, tuple[Callable[[Path], object], str]] = {
    "exporter version": (
        lambda r: edit(r / EXPORTER_INIT, f'"{_app(r)}"', '"9.9.9"'),
        "exporter __version__ 9.9.9 != Chart.yaml appVersion",
    ),
    "image tag in values": (
        lambda r: edit(
            r / CHART / "values.yaml",
            "kubecost-allocation-exporter\n    # -- Exporter image tag. Empty: the "
            'chart\'s `appVersion`.\n    # @section -- Exporter\n    tag: ""',
            "kubecost-allocation-exporter\n    # -- Exporter image tag. Empty: the chart's `appVersion`.\n"
            '    # @section -- Exporter\n    tag: "0.0.9"',
        ),
        "allocationExporter.image.tag 0.0.9 != appVersion",
    ),
    "artifacthub image": (
        lambda r: edit(
            r / CHART / "Chart.yaml",
            f"kubecost-allocation-exporter:{_app(r)}",
            "kubecost-allocation-exporter:0.0.1",
        ),
        "artifacthub.io/images names ghcr.io/cloudtuner/kubecost-allocation-exporter:0.0.1",
    ),
    "chart not bumped with unreleased changes": (
        lambda r: (r / CHART / "Chart.yaml").write_text(
            re.sub(
                r"^version: .*$",
                "version: 0.1.0",
                (r / CHART / "Chart.yaml").read_text(),
                flags=re.M,
            )
        ),
        "is not above 0.1.0: bump the chart version",
    ),
    "upgrading unreleased without changelog": (
        lambda r: (r / "CHANGELOG.md").write_text(
            re.sub(
                r"## \[Unreleased\].*?(?=^## \[)",
                "",
                (r / "CHANGELOG.md").read_text(),
                flags=re.M | re.S,
            )
        ),
        "UPGRADING.md has unreleased sections but CHANGELOG.md has none",
    ),
    "changelog heading": (
        lambda r: edit(r / "CHANGELOG.md", "## [0.1.0]", "## 0.1.0 (first)"),
        "heading '## 0.1.0 (first)' is not",
    ),
}


@pytest.mark.parametrize("name", list(MUTATIONS))
def test_each_disagreement_is_named(tmp_path: Path, name: str) -> None:
    root = tracked_copy(tmp_path)
    mutate, message = MUTATIONS[name]
    try:
        mutate(root)
        problems = check(root, None)
    except SystemExit as exc:  # a malformed heading stops the check at once
        problems = [str(exc)]
    assert any(message in p for p in problems), problems


def test_a_prepared_release_passes_the_tag_check_and_packages(tmp_path: Path) -> None:
    root = tracked_copy(tmp_path / "repo")
    assert any("unreleased" in p for p in check(root, "v0.2.0")), "the tree itself is not a release"
    release(root, "0.2.0", "0.2.0", "2026-12-06")
    assert check(root, "v0.2.0") == []
    assert check(root, "v0.2.1") == ["tag v0.2.1 != v + Chart.yaml version 0.2.0"]
    text = (root / "CHANGELOG.md").read_text()
    assert re.search(r"^## \[Unreleased\]\n\n## \[0\.2\.0\] - 2026-12-06\n\n### ", text, re.M)
    goldens = "".join(p.read_text() for p in (root / "exporter/tests/golden").glob("*.prom"))
    assert set(re.findall(r'version="([^"]+)"', goldens)) == {"0.2.0"}
    assert (
        "unreleased"
        not in "".join(
            line for line in (root / "UPGRADING.md").read_text().splitlines() if line.startswith("#")
        ).lower()
    )
    # The release workflow's packaging step, with the real helm; the test-only stub charts stand in for the
    # dependencies `helm dependency build` fetches there.
    for stub in (root / CHART / "tests" / "stub").iterdir():
        shutil.copytree(stub, root / CHART / "charts" / stub.name)
    out = tmp_path / "dist"
    subprocess.run(
        [helm_binary("helm"), "package", str(root / CHART), "--destination", str(out)],
        check=True,
        capture_output=True,
    )
    with tarfile.open(out / "kubecost-integration-0.2.0.tgz") as tgz:
        member = tgz.extractfile("kubecost-integration/Chart.yaml")
        assert member is not None
        chart = yaml.safe_load(member.read())
        names = tgz.getnames()
    assert (chart["version"], chart["appVersion"]) == ("0.2.0", "0.2.0")
    assert not any(n.startswith("kubecost-integration/tests/") for n in names), "test-only files are shipped"
    assert "kubecost-integration/templates/tests/test-exporter.yaml" in names  # the chart's helm test ships


def test_artifact_hub_metadata_is_well_formed() -> None:
    """What Artifact Hub reads from Chart.yaml (artifacthub.io/* annotations, its documented formats)."""
    chart = yaml.safe_load((ROOT / CHART / "Chart.yaml").read_text())
    notes = chart["annotations"]
    assert notes["artifacthub.io/license"] == "Apache-2.0"
    assert 'license = "Apache-2.0"' in (ROOT / "exporter/pyproject.toml").read_text()
    changes = yaml.safe_load(notes["artifacthub.io/changes"])
    assert changes
    kinds = {"added", "changed", "deprecated", "removed", "fixed", "security"}
    assert all(c["kind"] in kinds and c["description"].strip() for c in changes)
    images = yaml.safe_load(notes["artifacthub.io/images"])
    assert all(set(i) <= {"name", "image", "platforms", "whitelisted"} for i in images)
    links = yaml.safe_load(notes["artifacthub.io/links"])
    assert all(link["url"].startswith("https://") for link in links)
