#!/usr/bin/env python3
"""One version story: fail when the places that state a version disagree.

    scripts/release_check.py [--root DIR] [--tag vX.Y.Z]

Always checked (`make release-check`, part of `make test`):
- the exporter's `__version__` is the chart's `appVersion`, and the chart's default image tag (empty in values.yaml:
  the `appVersion`) and the `artifacthub.io/images` annotation name that same tag;
- the Prometheus image in `artifacthub.io/images` is the one values.yaml deploys;
- CHANGELOG.md opens with `## [Unreleased]` (optional) followed by `## [X.Y.Z] - YYYY-MM-DD` entries, newest first;
  with unreleased changes the chart's `version` is already above the newest entry (the version they will ship as),
  without them it is the newest entry;
- UPGRADING.md speaks of unreleased sections only while CHANGELOG.md has unreleased changes.
With `--tag` (the release workflow, on a version tag): the tag is `v` + the chart's `version`, CHANGELOG.md's first
entry is that version with a date and nothing is unreleased, UPGRADING.md has no unreleased section.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import yaml

SEMVER = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)$")
HEADING = re.compile(r"^## \[(?P<name>[^\]]+)\](?: - (?P<date>\d{4}-\d{2}-\d{2}))?\s*$")
CHART = Path("charts/kubecost-integration")
EXPORTER_INIT = Path("exporter/src/kubecost_allocation_exporter/__init__.py")


def semver(text: str, where: str) -> tuple[int, int, int]:
    m = SEMVER.match(text)
    if not m:
        raise SystemExit(f"release-check: {where}: {text!r} is not a version X.Y.Z")
    return int(m[1]), int(m[2]), int(m[3])


def changelog_entries(text: str) -> list[tuple[str, str | None, str]]:
    """(name, date, body) of each `## [...]` section, in file order."""
    entries: list[tuple[str, str | None, list[str]]] = []
    for line in text.splitlines():
        m = HEADING.match(line)
        if m:
            entries.append((m["name"], m["date"], []))
        elif line.startswith("## "):
            raise SystemExit(f"release-check: CHANGELOG.md: heading {line!r} is not `## [X.Y.Z] - YYYY-MM-DD`")
        elif entries:
            entries[-1][2].append(line)
    return [(n, d, "\n".join(b).strip()) for n, d, b in entries]


def image_tags(annotation: str) -> dict[str, str]:
    return {i["name"]: i["image"] for i in yaml.safe_load(annotation) or []}


def check(root: Path, tag: str | None) -> list[str]:
    problems: list[str] = []
    chart = yaml.safe_load((root / CHART / "Chart.yaml").read_text())
    values = yaml.safe_load((root / CHART / "values.yaml").read_text())
    m = re.search(r'^__version__ = "([^"]+)"$', (root / EXPORTER_INIT).read_text(), re.M)
    exporter_version = m[1] if m else "<none>"
    version, app_version = str(chart["version"]), str(chart["appVersion"])
    chart_v = semver(version, "Chart.yaml version")
    semver(app_version, "Chart.yaml appVersion")
    if exporter_version != app_version:
        problems.append(f"exporter __version__ {exporter_version} != Chart.yaml appVersion {app_version}")

    image = values["allocationExporter"]["image"]
    default_tag = str(image.get("tag") or app_version)
    if default_tag != app_version:
        problems.append(f"values.yaml allocationExporter.image.tag {default_tag} != appVersion {app_version}")
    images = image_tags(chart.get("annotations", {}).get("artifacthub.io/images", ""))
    want = f"{image['repository']}:{app_version}"
    if images.get("kubecost-allocation-exporter") != want:
        problems.append(
            f"artifacthub.io/images names {images.get('kubecost-allocation-exporter')}, the chart deploys {want}"
        )
    prom = values["prometheus"]["agent"]["image"]
    want_prom = f"{prom['repository']}:{prom['tag']}"
    if images.get("prometheus") != want_prom:
        problems.append(f"artifacthub.io/images names {images.get('prometheus')}, the chart deploys {want_prom}")

    entries = changelog_entries((root / "CHANGELOG.md").read_text())
    unreleased = [e for e in entries if e[0] == "Unreleased"]
    released = [e for e in entries if e[0] != "Unreleased"]
    if unreleased and entries[0][0] != "Unreleased":
        problems.append("CHANGELOG.md: [Unreleased] must be the first section")
    pending = bool(unreleased and unreleased[0][2])
    if not released:
        problems.append("CHANGELOG.md has no released version")
    else:
        newest = released[0][0]
        newest_v = semver(newest, "CHANGELOG.md newest entry")
        order = [semver(n, "CHANGELOG.md entry") for n, _, _ in released]
        if order != sorted(order, reverse=True) or len(set(order)) != len(order):
            problems.append("CHANGELOG.md: released entries are not newest first, or one repeats")
        if pending and chart_v <= newest_v:
            problems.append(
                f"CHANGELOG.md has unreleased changes but Chart.yaml version {version} is not above {newest}: "
                "bump the chart version with the change"
            )
        if not pending and chart_v != newest_v:
            problems.append(f"Chart.yaml version {version} != CHANGELOG.md newest entry {newest}")
    upgrading = (root / "UPGRADING.md").read_text()
    unreleased_sections = [
        line for line in upgrading.splitlines() if line.startswith("#") and "unreleased" in line.lower()
    ]
    if unreleased_sections and not pending:
        problems.append(f"UPGRADING.md has unreleased sections but CHANGELOG.md has none: {unreleased_sections[0]!r}")

    if tag is not None:
        if tag != f"v{version}":
            problems.append(f"tag {tag} != v + Chart.yaml version {version}")
        if pending:
            problems.append("CHANGELOG.md still has unreleased changes (scripts/release.py moves them)")
        if released and (released[0][0] != version or not released[0][1]):
            problems.append(f"CHANGELOG.md's first entry is not [{version}] with a date")
        if unreleased_sections:
            problems.append(f"UPGRADING.md still has an unreleased section: {unreleased_sections[0]!r}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent)
    parser.add_argument("--tag", help="the version tag being released (vX.Y.Z)")
    args = parser.parse_args(argv)
    problems = check(args.root, args.tag)
    for p in problems:
        print(f"release-check: {p}", file=sys.stderr)
    if not problems:
        print("release-check: versions agree" + (f" for {args.tag}" if args.tag else ""))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
