"""The docs name what `scripts/tools.sh` needs from the machine and every tool it installs: a newcomer reads them
before the first `make tools`, and a build that stops halfway for a missing command costs minutes."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
TOOLS_SH = (ROOT / "scripts" / "tools.sh").read_text()
#: How tools/README.md's build table names a tool whose `scripts/tools.sh` name differs.
TABLE_NAME = {
    "helm": "helm (3.x)",
    "helm_docs": "helm-docs",
    "kube_control_plane": "kube-apiserver",
    "prometheus": "prometheus, promtool (2.42)",
    "prometheus3": "prometheus, promtool (3.x)",
}


def test_what_you_need_names_every_command_the_tool_builds_require() -> None:
    """`command -v X ... ||` in tools.sh fails the build without X, which `make tools` does not install."""
    required = set(re.findall(r"command -v (\S+) >/dev/null \|\|", TOOLS_SH))
    assert required >= {"go", "npm"}
    readme = (ROOT / "README.md").read_text()
    need = re.search(r"\*\*What you need\.\*\*(.+?)\n\n", readme, re.S)
    assert need, "README.md has no **What you need.** paragraph"
    missing = {cmd for cmd in required if not re.search(rf"\b{re.escape(cmd)}\b", need.group(1), re.I)}
    assert missing == set(), f"README's 'What you need' does not name {sorted(missing)}"


def test_tools_readme_says_how_each_tool_is_built() -> None:
    names = re.findall(r'^\s+"([a-z0-9_]+)\|', TOOLS_SH, re.M)
    assert len(names) >= 15
    text = (ROOT / "tools" / "README.md").read_text()
    table = text[text.index("## How each tool is built") : text.index("### Wrapper modules")]
    first_cells = [row.split("|")[1].strip() for row in table.splitlines() if row.startswith("| ")]
    for name in names:
        wanted = TABLE_NAME.get(name, name)
        found = any(
            cell.startswith(wanted) or any(part.startswith(wanted) for part in cell.split(", ")) for cell in first_cells
        )
        assert found, f"tools/README.md: no row for {name}"


@pytest.mark.parametrize("name", ["bogus", "helm-doc", "Helm"])
def test_an_unknown_tool_name_fails_with_the_valid_names(name: str, tmp_path: Path) -> None:
    """A mistyped name used to build nothing and say "all present"; it fails before any build, naming the valid
    names (the cache is a new, empty folder: nothing is installed or looked up)."""
    proc = subprocess.run(
        ["bash", str(ROOT / "scripts" / "tools.sh"), name],
        env={**os.environ, "KCI_CACHE": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode != 0, proc.stdout
    assert f"unknown tool '{name}'; valid names: helm helm4 " in proc.stderr + proc.stdout
    assert "all present" not in proc.stdout
    assert not any(tmp_path.joinpath("bin").glob("*")), "nothing may be installed for an unknown name"
