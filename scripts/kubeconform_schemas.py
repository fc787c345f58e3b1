"""Write offline Kubernetes JSON schemas for kubeconform (called by scripts/tools.sh).

Source: the schemas shipped in the PyPI package ``kubernetes-validate`` (pinned in
requirements-dev.txt). Its "local" schemas point at a shared ``/api/_definitions.json``;
kubeconform wants one self-contained file per kind, so each kind's schema gets the definitions it
needs (transitively) inlined under ``$defs`` and its ``$ref``s rewritten to ``#/$defs/...``.

Layout written (the one kubeconform's default template uses, so ``-schema-location`` reads it):

    <dest>/v<k8s>-standalone/<kind>-<group>-<version>.json          (nullable, additional props ok)
    <dest>/v<k8s>-standalone-strict/<kind>-<group>-<version>.json   (additionalProperties: false)

Usage: python scripts/kubeconform_schemas.py --dest DIR --kubernetes 1.36.0
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from importlib import resources
from pathlib import Path
from typing import Any

DEFS_REF = "/api/_definitions.json#/$defs/"


def _refs(node: Any, found: set[str]) -> None:
    """Collect every definition name referenced (either ref style) below ``node``."""
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str):
            for prefix in (DEFS_REF, "#/$defs/"):
                if ref.startswith(prefix):
                    found.add(ref[len(prefix) :])
        for value in node.values():
            _refs(value, found)
    elif isinstance(node, list):
        for value in node:
            _refs(value, found)


def _rewrite(node: Any) -> Any:
    if isinstance(node, dict):
        out = {k: _rewrite(v) for k, v in node.items()}
        ref = out.get("$ref")
        if isinstance(ref, str) and ref.startswith(DEFS_REF):
            out["$ref"] = "#/$defs/" + ref[len(DEFS_REF) :]
        return out
    if isinstance(node, list):
        return [_rewrite(v) for v in node]
    return node


def standalone(schema: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """``schema`` with the transitive closure of its referenced ``defs`` inlined."""
    needed: set[str] = set()
    todo: set[str] = set()
    _refs(schema, todo)
    while todo:
        name = todo.pop()
        if name in needed:
            continue
        needed.add(name)
        more: set[str] = set()
        _refs(defs[name], more)
        todo |= more - needed
    out: dict[str, Any] = _rewrite({k: v for k, v in schema.items() if k != "$id"})
    if needed:
        out["$defs"] = {name: _rewrite(defs[name]) for name in sorted(needed)}
    return out


def convert(src: Path, dest: Path) -> int:
    defs = json.loads((src / "_definitions.json").read_text())["$defs"]
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    count = 0
    for path in sorted(src.glob("*.json")):
        if path.name in ("_definitions.json", "all.json"):
            continue
        schema = json.loads(path.read_text())
        if "x-kubernetes-group-version-kind" not in schema:
            continue  # a sub-object, never a manifest's top-level kind
        (tmp / path.name).write_text(json.dumps(standalone(schema, defs), separators=(",", ":")))
        count += 1
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)
    return count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dest", type=Path, required=True)
    parser.add_argument("--kubernetes", required=True, help="e.g. 1.36.0")
    args = parser.parse_args(argv)
    base = Path(str(resources.files("kubernetes_validate"))) / "kubernetes-json-schema"
    version = "v" + args.kubernetes.lstrip("v")
    for suffix in ("", "-strict"):
        src = base / f"{version}-local{suffix}"
        if not src.is_dir():
            shipped = sorted(p.name for p in base.iterdir() if p.name.endswith("-local"))
            print(
                f"kubernetes-validate has no schemas for {version}; it ships {shipped}",
                file=sys.stderr,
            )
            return 1
        n = convert(src, args.dest / f"{version}-standalone{suffix}")
        print(f"{args.dest / f'{version}-standalone{suffix}'}: {n} kinds")
    return 0


if __name__ == "__main__":
    sys.exit(main())
