#!/usr/bin/env python3
"""Check a chart's values.schema.json against its values.yaml, so that neither drifts from the other.

The schema carries what values.yaml cannot say (patterns, enums, bounds, closed objects); values.yaml is the
source of the structure and of the type of every default. GenSON infers that structure from values.yaml, and
this check walks the inferred schema and the chart's side by side:

  - every key of values.yaml is declared at its place in the schema (unless its object is left open there)
    and the type GenSON infers from its default is one the schema allows;
  - every property the schema declares inside an object it closes (`additionalProperties: false`) is a key
    of values.yaml, or is marked `"deprecated": true` (an old path still accepted), or is marked
    `"x-kci-optional": true` (a Kubernetes field left unset by default, e.g. `capabilities.add`);
  - values.yaml is valid against the schema (jsonschema, the schema's own draft), overlaid with each
    `ci/*-values.yaml` scenario when the chart has them (its required values are empty by default).

Usage: check_values_schema.py [CHART_DIR]   (default charts/kubecost-integration); exit 1 with one line per
problem.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from genson import SchemaBuilder

#: JSON types a default of each inferred type may have in the schema (an integer default fits "number").
COMPATIBLE = {"integer": {"integer", "number"}, "number": {"number"}}


def _resolve(node: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    """Follow local `$ref`s (`#/definitions/...`) until a schema without one."""
    while "$ref" in node:
        target: Any = root
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
    return node


def _types(node: dict[str, Any]) -> set[str] | None:
    declared = node.get("type")
    if declared is None:
        return None
    return {declared} if isinstance(declared, str) else set(declared)


def _walk(
    inferred: dict[str, Any], declared: dict[str, Any], root: dict[str, Any], path: str, problems: list[str]
) -> None:
    declared = _resolve(declared, root)
    got = inferred.get("type")
    allowed = _types(declared)
    if isinstance(got, str) and allowed is not None and not (COMPATIBLE.get(got, {got}) & allowed):
        problems.append(f"{path or '<root>'}: values.yaml has a {got}, the schema allows {sorted(allowed)}")
    if got != "object":
        return
    values_keys = inferred.get("properties", {})
    schema_props = declared.get("properties", {})
    closed = declared.get("additionalProperties") is False
    for key, sub in values_keys.items():
        where = f"{path}.{key}" if path else key
        if key in schema_props:
            _walk(sub, schema_props[key], root, where, problems)
        elif closed:
            problems.append(f"{where}: in values.yaml but not declared in values.schema.json")
    if closed:
        for key, declared in schema_props.items():
            sub = _resolve(declared, root)
            if key not in values_keys and not sub.get("deprecated") and not sub.get("x-kci-optional"):
                where = f"{path}.{key}" if path else key
                problems.append(
                    f"{where}: declared in values.schema.json but not in values.yaml "
                    '(add it with a `# --` comment, or mark it "deprecated": true / "x-kci-optional": true)'
                )


def check(chart: Path) -> list[str]:
    values = yaml.safe_load((chart / "values.yaml").read_text())
    schema = json.loads((chart / "values.schema.json").read_text())
    builder = SchemaBuilder()
    builder.add_object(values)
    problems: list[str] = []
    _walk(builder.to_schema(), schema, schema, "", problems)
    validator = jsonschema.validators.validator_for(schema)(schema)
    scenarios = sorted((chart / "ci").glob("*-values.yaml"))
    overlays = {f"ci/{p.name}": yaml.safe_load(p.read_text()) or {} for p in scenarios} or {"defaults": {}}
    for name, overlay in overlays.items():
        for error in sorted(validator.iter_errors(_merge(values, overlay)), key=lambda e: list(e.absolute_path)):
            where = ".".join(str(p) for p in error.absolute_path) or "<root>"
            problems.append(f"{where}: values.yaml with {name} is refused by the schema: {error.message}")
    return problems


def _merge(base: Any, overlay: Any) -> Any:
    """Helm's coalescing of a values file over the defaults (maps merged key by key, anything else replaced)."""
    if isinstance(base, dict) and isinstance(overlay, dict):
        return {**base, **{k: _merge(base.get(k), v) for k, v in overlay.items()}}
    return overlay


def main(argv: list[str]) -> int:
    chart = Path(argv[1]) if len(argv) > 1 else Path("charts/kubecost-integration")
    problems = check(chart)
    for p in problems:
        print(f"{chart}: {p}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
