#!/usr/bin/env python3
"""Prepare a release commit: `make release VERSION=X.Y.Z` (README, "Cutting a release").

    scripts/release.py X.Y.Z [--app-version A.B.C] [--date YYYY-MM-DD] [--root DIR]

Sets the chart's `version` to X.Y.Z and its `appVersion`, the exporter's `__version__`, the exporter image in the
`artifacthub.io/images` annotation and the `version` label in the exporter's golden expositions to A.B.C (default
X.Y.Z); turns CHANGELOG.md's `[Unreleased]` changes into `[X.Y.Z] - <date>` (an empty `[Unreleased]` stays on top)
and UPGRADING.md's "(unreleased)" headings into the version; regenerates the chart README with helm-docs when it is
installed; then runs the release check for tag vX.Y.Z. Edits are textual, so comments and layout stay.
"""

from __future__ import annotations

import argparse
import datetime as dt
import re
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from release_check import CHART, EXPORTER_INIT, SEMVER, check

GOLDEN = Path("exporter/tests/golden")


def replace(path: Path, pattern: str, repl: str, count: int = 1) -> None:
    text = path.read_text()
    new, n = re.subn(pattern, repl, text, count=count, flags=re.M)
    if n == 0:
        raise SystemExit(f"release: {path}: nothing matches {pattern!r}")
    path.write_text(new)


def versioned_heading(line: str, version: str) -> str:
    """An UPGRADING.md heading with "(unreleased)" named by the version instead."""
    out = re.sub(r"Next (chart|exporter) version \(unreleased\)", rf"\1 {version}", line)
    out = out.replace("## chart ", "## Chart ").replace("## exporter ", "## Exporter ")
    return re.sub(r"\s*\(unreleased\)", "" if version in out else f" ({version})", out)


def release(root: Path, version: str, app_version: str, date: str) -> None:
    chart_yaml = root / CHART / "Chart.yaml"
    old_app = re.search(r'^appVersion: "?([^"\n]+)"?$', chart_yaml.read_text(), re.M)
    if not old_app:
        raise SystemExit(f"release: {chart_yaml}: no appVersion")
    replace(chart_yaml, r"^version: .*$", f"version: {version}")
    replace(chart_yaml, r"^appVersion: .*$", f'appVersion: "{app_version}"')
    replace(chart_yaml, r"(image: \S+/kubecost-allocation-exporter:)\S+$", rf"\g<1>{app_version}")
    replace(root / EXPORTER_INIT, r'^__version__ = ".*"$', f'__version__ = "{app_version}"')
    label = f'version="{old_app[1]}"'
    for golden in sorted((root / GOLDEN).glob("*.prom")):
        text = golden.read_text()
        if label in text:
            golden.write_text(text.replace(label, f'version="{app_version}"'))

    changelog = root / "CHANGELOG.md"
    text = changelog.read_text()
    if not re.search(r"^## \[Unreleased\]\s*\n(?!\s*## )\s*\S", text, re.M):
        raise SystemExit("release: CHANGELOG.md has no unreleased changes to release")
    changelog.write_text(
        re.sub(
            r"^## \[Unreleased\][ \t]*$",
            f"## [Unreleased]\n\n## [{version}] - {date}",
            text,
            count=1,
            flags=re.M,
        )
    )
    upgrading = root / "UPGRADING.md"
    lines = []
    for line in upgrading.read_text().splitlines(keepends=True):
        lines.append(versioned_heading(line, version) if line.startswith("#") else line)
    upgrading.write_text("".join(lines))

    helm_docs = shutil.which("helm-docs")
    if helm_docs:
        subprocess.run([helm_docs, "--chart-search-root", str(root / CHART)], check=True, capture_output=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("version")
    parser.add_argument("--app-version", help="the exporter's version (default: the chart's)")
    parser.add_argument("--date", default=dt.datetime.now(dt.UTC).date().isoformat())
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent)
    args = parser.parse_args(argv)
    app_version = args.app_version or args.version
    for v in (args.version, app_version):
        if not SEMVER.match(v):
            parser.error(f"{v!r} is not a version X.Y.Z")
    release(args.root, args.version, app_version, args.date)
    problems = check(args.root, f"v{args.version}")
    for p in problems:
        print(f"release: {p}", file=sys.stderr)
    if problems:
        return 1
    print(
        f"release: {args.version} (exporter {app_version}) prepared; next: git commit -am 'Release "
        f"{args.version}' && git tag v{args.version} && git push origin HEAD v{args.version}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
