"""kubeconform against the offline Kubernetes schemas `make tools` writes to `$KCI_CACHE/schemas` (the minor is
`KUBECONFORM_SCHEMA_K8S` in tools/versions.env), for every test that validates a render."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

from testsupport.render import ROOT, kci_cache

#: kubeconform's schema lookup inside the offline schema directory
LOCATION = "/{{.NormalizedKubernetesVersion}}-standalone{{.StrictSuffix}}/{{.ResourceKind}}{{.KindSuffix}}.json"


def schema_version() -> str:
    found = re.search(r"^KUBECONFORM_SCHEMA_K8S=(\S+)$", (ROOT / "tools" / "versions.env").read_text(), re.MULTILINE)
    assert found, "KUBECONFORM_SCHEMA_K8S missing from tools/versions.env"
    return found.group(1)


def run(manifest: Path, skip_kinds: str = "") -> subprocess.CompletedProcess[str]:
    """`kubeconform -strict -summary -output json` on `manifest`; fails the test naming `make tools` when the
    binary or the schemas are missing."""
    binary = kci_cache() / "bin" / "kubeconform"
    schemas = kci_cache() / "schemas" / f"v{schema_version()}-standalone-strict"
    assert binary.is_file(), f"{binary} missing: run `make tools`"
    assert schemas.is_dir(), f"kubeconform schemas missing in {schemas}: run `make tools`"
    cmd = [str(binary), "-strict", "-summary", "-output", "json", "-kubernetes-version", schema_version()]
    cmd += ["-schema-location", str(kci_cache() / "schemas") + LOCATION]
    if skip_kinds:
        cmd += ["-skip", skip_kinds]
    return subprocess.run([*cmd, str(manifest)], capture_output=True, text=True, check=False, timeout=120)


def summary(manifest: Path, skip_kinds: str = "") -> dict[str, int]:
    """The summary of a run that must pass (valid/invalid/errors/skipped counts)."""
    proc = run(manifest, skip_kinds)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result: dict[str, int] = json.loads(proc.stdout)["summary"]
    return result
