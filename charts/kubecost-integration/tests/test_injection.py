"""No value can add anything to a manifest: every string value is rendered quoted (or as a typed YAML value) or is
refused at render.

The values under test are generated, not listed: every string of values.schema.json (a string property, each string
of an array, the keys and the values of a string map, through $ref and allOf; enums excluded, they cannot hold a
payload) and every string leaf of values.yaml (which also reaches strings inside free-form objects such as probes).
Each gets payloads: all of the following at once, then (if that is refused) a newline with a YAML key after it,
quotes and a template without whitespace after a valid start, and a bare template. A render must
be refused by the schema or a validation (a YAML parse error means the value broke a manifest: the test fails), or
every occurrence of the marker in what it produced (keys and strings of every object, and of the YAML documents in
ConfigMaps) must be inside the payload, unchanged. Values documented as going through `tpl` ("tpl allowed" in the
schema) skip the template payloads.

Before this test, `priorityClassName: "x\\n      hostNetwork: true"` rendered a pod with `hostNetwork: true`.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pytest
import yaml

from testsupport.render import CHART_DIR, HelmError, helm_template, with_quickstart

pytestmark = pytest.mark.chart

MARK = "kciinjected"
SCHEMA: dict[str, Any] = json.loads((CHART_DIR / "values.schema.json").read_text())
VALUES: dict[str, Any] = yaml.safe_load((CHART_DIR / "values.yaml").read_text())
# the engines' values and Helm's globals, not rendered by us
PASS_THROUGH = {"kubecost", "cost-analyzer", "opencost", "global"}

# Everything on, so that each value reaches a manifest (agent mode; the other modes render a subset of these).
BASE = with_quickstart(
    {
        "serviceMonitor": {"enabled": True},
        "prometheusRule": {"enabled": True},
        "dashboards": {"enabled": True},
        "networkPolicy": {"enabled": True},
        "podDisruptionBudget": {"enabled": True},
        "allocationExporter": {"kubecostAuth": {"existingSecret": "kc", "tokenKey": "token", "apiKeyKey": "key"}},
        "prometheus": {"agent": {"persistence": {"enabled": True}}},
        "remoteWrite": {
            "auth": {"type": "basic", "existingSecret": "thanos-rw", "username": "kci"},
            "tls": {
                "existingSecret": "thanos-tls",
                "caKey": "ca.crt",
                "certKey": "tls.crt",
                "keyKey": "tls.key",
                "serverName": "thanos.example",
            },
        },
    }
)
# Values the base does not render, with what makes them render.
ACTIVATORS: dict[str, dict[str, Any]] = {
    "remoteWrite.auth.tokenKey": {"remoteWrite": {"auth": {"type": "bearer", "username": ""}}},
    "remoteWrite.auth.usernameKey": {"remoteWrite": {"auth": {"username": ""}}},
    # an explicit URL is for an existing API (with an engine it may only repeat the derived one)
    "allocationExporter.config.kubecostUrl": {"kubecost": {"enabled": False}},
    # Kubecost 3 must carry the same cluster name in global.clusterId: the payload goes to an engine without one
    "clusterName": {"kubecost": {"enabled": False}, "cost-analyzer": {"enabled": True}},
    "allocationExporter.config.clusterName": {"kubecost": {"enabled": False}, "cost-analyzer": {"enabled": True}},
    # the clusters a budget applies to appear only in the rules of a cluster budget
    "prometheusRule.budgetClusters": {"prometheusRule": {"budgets": [{"cluster": True, "monthlyUSD": 100}]}},
}
#: Fields a new list item needs beside the payload to be valid (a label budget names its label and its value).
ITEM_SIBLINGS: dict[str, dict[str, Any]] = {
    "prometheusRule.budgets[].label": {"value": "checkout"},
    "prometheusRule.budgets[].value": {"label": "team"},
}


# --------------------------------------------------------------------------------------------- schema walk


def resolve(schema: dict[str, Any]) -> dict[str, Any]:
    """$ref and allOf merged into one schema (enough for this schema's use of them)."""
    out: dict[str, Any] = {}
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        out.update(resolve(SCHEMA["definitions"][name]))
    for part in schema.get("allOf", []):
        out.update(resolve(part))
    out.update({k: v for k, v in schema.items() if k not in ("$ref", "allOf")})
    return out


def is_string(schema: dict[str, Any]) -> bool:
    types = schema.get("type")
    return (
        (types == "string" or (isinstance(types, list) and "string" in types))
        and "enum" not in schema
        and "const" not in schema
    )


@dataclass(frozen=True)
class Target:
    path: tuple[Any, ...]  # keys, list indexes, or "[]" for a new one-item list
    key: bool = False  # the payload is a map key instead of a value
    tpl: bool = False  # documented to go through tpl

    @property
    def name(self) -> str:
        text = ".".join("[]" if p == "[]" else f"[{p}]" if isinstance(p, int) else str(p) for p in self.path).replace(
            ".[", "["
        )
        return text + ("{key}" if self.key else "")


def schema_targets(schema: dict[str, Any], path: tuple[Any, ...] = ()) -> Iterator[Target]:
    s = resolve(schema)
    tpl = "tpl allowed" in str(s.get("description", ""))
    if is_string(s):
        yield Target(path, tpl=tpl)
    for key, sub in (s.get("properties") or {}).items():
        if not path and key in PASS_THROUGH:
            continue
        yield from schema_targets(sub, (*path, key))
    extra = s.get("additionalProperties")
    if isinstance(extra, dict) and is_string(resolve(extra)):
        yield Target(path, key=True)
        yield Target((*path, MAP_KEY))
    if isinstance(s.get("items"), dict):
        yield from schema_targets(s["items"], (*path, "[]"))


def values_targets(node: Any, path: tuple[Any, ...] = ()) -> Iterator[Target]:
    if isinstance(node, dict):
        for key, sub in node.items():
            if not path and key in PASS_THROUGH:
                continue
            yield from values_targets(sub, (*path, key))
    elif isinstance(node, list):
        for i, sub in enumerate(node):
            yield from values_targets(sub, (*path, i))
    elif isinstance(node, str):
        yield Target(path)


def schema_at(path: tuple[Any, ...]) -> dict[str, Any]:
    s = resolve(SCHEMA)
    for part in path:
        if isinstance(part, int) or part == "[]":
            s = resolve(s.get("items") or {})
        elif part in (s.get("properties") or {}):
            s = resolve(s["properties"][part])
        elif isinstance(s.get("additionalProperties"), dict):
            s = resolve(s["additionalProperties"])
        else:
            return {}
    return s


def targets() -> list[Target]:
    found: dict[tuple[tuple[Any, ...], bool], Target] = {}
    for t in [*schema_targets(SCHEMA), *values_targets(VALUES)]:
        if not t.key and ("enum" in schema_at(t.path) or "const" in schema_at(t.path)):
            continue  # typed: no string outside the list is accepted
        tpl = t.tpl or "tpl allowed" in str(schema_at(t.path).get("description", ""))
        found.setdefault((t.path, t.key), Target(t.path, t.key, tpl))
    return list(found.values())


def test_the_generated_list_covers_the_values_of_the_issue() -> None:
    names = {t.name for t in targets()}
    for expected in (
        "allocationExporter.priorityClassName",
        "prometheus.agent.priorityClassName",
        "allocationExporter.serviceAccount.name",
        "allocationExporter.podAnnotations{key}",
        "allocationExporter.podAnnotations.kci_key",
        "remoteWrite.headers{key}",
        "remoteWrite.headers.kci_key",
        "remoteWrite.auth.username",
        "allocationExporter.livenessProbe.httpGet.path",
        "imagePullSecrets[].name",
        "networkPolicy.egress.dns.to[0].podSelector.matchLabels.k8s-app",
    ):
        assert expected in names, expected
    assert len(names) > 100


# --------------------------------------------------------------------------------------------- building values


CANDIDATES = [
    *("kci", "kci-1", "/etc/kci", "--kci", "KubecostKci", "1Gi", "1m", "v3.0.0", "KCI_1", "10.0.0.0/8"),
    *("http://kubecost.kubecost.svc:9090/x", "sha256:" + "a" * 64),
]
MAP_KEY = "kci_key"  # a valid label, annotation, header and Prometheus label name


def example(schema: dict[str, Any]) -> Any:
    """A benign value that the schema accepts (required fields only)."""
    s = resolve(schema)
    if "enum" in s:
        return s["enum"][0]
    types = s.get("type")
    kind = types[0] if isinstance(types, list) else types
    if kind == "object" or "properties" in s:
        return {k: example(s["properties"][k]) for k in s.get("required", [])}
    if kind == "array":
        return []
    if kind in ("integer", "number"):
        return max(1, int(s.get("minimum", 1)))
    if kind == "boolean":
        return False
    pattern = s.get("pattern")
    for candidate in CANDIDATES:
        if pattern is None or re.search(pattern, candidate):
            return candidate
    return "kci"


def default_at(path: tuple[Any, ...]) -> Any:
    """The value of values.yaml at `path`, or None."""
    node: Any = VALUES
    for part in path:
        if (isinstance(node, dict) and part in node) or (
            isinstance(node, list) and isinstance(part, int) and part < len(node)
        ):
            node = node[part]
        else:
            return None
    return node


def with_payload(target: Target, payload: str) -> dict[str, Any]:
    """BASE (plus the target's activator) with `payload` at the target: a new item for "[]", appended after the
    defaults for a list index of values.yaml, a map key with a benign value for `key` targets. Containers on the way
    come from values.yaml, else from the schema (with their required fields)."""
    from testsupport.render import deep_merge

    values = copy.deepcopy(BASE)
    if schema_at(target.path).get("deprecated"):
        # an old path of a top-level value (allocationExporter.config.tenantId): alone, as an old install has it
        values.pop(target.path[-1], None)
    for dotted, activator in ACTIVATORS.items():
        if target.name.startswith(dotted):
            values = deep_merge(values, activator)
    node: Any = values
    path = target.path
    for depth, step in enumerate(path):
        part = step
        here = path[: depth + 1]
        last = depth == len(path) - 1 and not target.key
        if part == "[]":
            item = example(schema_at(here))
            if isinstance(item, dict):
                item.update(ITEM_SIBLINGS.get(target.name, {}))
            node[:] = [item]
            part = 0
        elif isinstance(part, int):
            if len(node) <= part:
                node[:] = copy.deepcopy(default_at(path[:depth]))
            if last:
                node.append(payload)
                return values
        if last:
            node[part] = payload
            return values
        if isinstance(part, str) and not isinstance(node.get(part), dict | list):
            default = default_at(here)
            if isinstance(default, dict | list):
                node[part] = copy.deepcopy(default)
            else:
                built = example(schema_at(here))
                nxt = path[depth + 1] if depth + 1 < len(path) else None  # None: a map for a key target
                node[part] = (
                    built if isinstance(built, dict | list) else ([] if nxt == "[]" or isinstance(nxt, int) else {})
                )
        node = node[part]
    # a map key: the payload names an entry whose value is benign
    node[payload] = example(resolve(schema_at(path).get("additionalProperties") or {"type": "string"}))
    return values


# --------------------------------------------------------------------------------------------- checking renders


def strings_of(node: Any) -> Iterator[str]:
    """Every key and string of a parsed document, and of the YAML documents held in ConfigMaps."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield str(key)
            if isinstance(value, str) and str(key).endswith((".yml", ".yaml")):
                yield from strings_of(yaml.safe_load(value))
            else:
                yield from strings_of(value)
    elif isinstance(node, list):
        for item in node:
            yield from strings_of(item)
    elif isinstance(node, str):
        yield node


def payloads(target: Target) -> list[str]:
    """Everything at once first; when that is refused, each kind on its own after a valid start."""
    start = str(example(schema_at(target.path))) if not target.key else "kci"
    out = [
        f'kci"\'\n  {MARK}: true\n{{{{ print "{MARK}" }}}}',  # everything at once
        # a newline and a key: at column 0, and at a pod spec's indentation (where the old priorityClassName
        # injected); any other unquoted placement breaks the YAML, which fails the test too
        *(f"{start}\n{' ' * indent}{MARK}: true" for indent in (0, 6)),
        start + '"\'{{"' + MARK + '"}}',  # quotes and a template, no whitespace
        '{{ print "' + MARK + '" }}',  # a bare template
    ]
    return [p for p in out if not (target.tpl and "{{" in p)]


# What helm says when a value broke the YAML of a manifest (as opposed to a refusal by the schema or a validation).
BROKEN_YAML = ("YAML parse error", "error converting YAML to JSON", "yaml: line")


def promql_string(text: str) -> str:
    """The inside of a PromQL double-quoted string holding `text` (Go's escapes: backslash, quote, newline)."""
    return json.dumps(text, ensure_ascii=False)[1:-1]


def literal_forms(payload: str) -> tuple[str, ...]:
    """The payload as it may appear when it is only data: as is, inside a PromQL string (a budget's label value),
    and as a regex-quoted PromQL string (Go's regexp.QuoteMeta; a budget's clusters in `cluster=~"..."`)."""
    quoted_meta = re.sub(r"([\\.+*?()|\[\]{}^$])", r"\\\1", payload)
    return payload, promql_string(payload), promql_string(quoted_meta)


def render_literally(target: Target, payload: str, helm: str) -> bool:
    """False if the values are refused; True if the render shows the payload only literally; fails the test if the
    payload broke a manifest or added to it."""
    try:
        text = helm_template(with_payload(target, payload), helm=helm)
    except HelmError as err:
        refusal: str | None = err.stderr
    else:
        refusal = None
    if refusal is not None:
        broken = [m for m in BROKEN_YAML if m in refusal]
        assert not broken, f"{target.name} = {payload!r} broke a manifest: {refusal.strip()[:300]}"
        return False  # refused: the schema's grammar or a validation
    docs = [d for d in yaml.safe_load_all(text) if d]
    seen = False
    for s in (s for d in docs for s in strings_of(d)):
        rest = s
        for form in literal_forms(payload):
            seen = seen or form in rest
            rest = rest.replace(form, "")
        assert MARK not in rest, f"{target.name} = {payload!r} injected or evaluated: {s!r}"
    assert seen, f"{target.name} = {payload!r} rendered but appears nowhere: add it to ACTIVATORS"
    return True


#: Pairwise, not every value under both Helm majors: each value is rendered by one major, alternating, so both
#: see half of the values. What decides the outcome is the chart's quoting (`quote`/`toYaml`, the same template
#: functions in both); every template renders under both majors in test_render.py and test_validation.py.
HELM_OF_TARGET = ("helm", "helm4")


@pytest.mark.parametrize(
    ("helm", "target"),
    [pytest.param(HELM_OF_TARGET[i % 2], t, id=f"{HELM_OF_TARGET[i % 2]}-{t.name}") for i, t in enumerate(targets())],
)
def test_a_value_renders_literally_or_not_at_all(helm: str, target: Target, require_tool: Callable[[str], str]) -> None:
    require_tool(helm)
    first, *single = payloads(target)
    if render_literally(target, first, helm):
        return  # newline, quotes and template all kept literally in one go
    # Refused: make sure it is the payload that is refused, not values this test built wrong.
    benign = MAP_KEY if target.key else str(example(schema_at(target.path)))
    try:
        helm_template(with_payload(target, benign), helm=helm)
    except HelmError as err:
        pytest.fail(f"{target.name} = {benign!r} (a valid value) is refused too: {err.stderr.strip()[:300]}")
    with ThreadPoolExecutor(2) as pool:  # independent renders; helm is the slow part
        list(pool.map(lambda payload: render_literally(target, payload, helm), single))


def test_the_check_catches_the_old_injection() -> None:
    """The check above fails on what the chart rendered before (priorityClassName unquoted)."""
    payload = f"x\n      {MARK}: true"
    manifest = f"spec:\n  template:\n    spec:\n      priorityClassName: {payload}\n      containers: []\n"
    docs = [yaml.safe_load(manifest)]
    strings = list(strings_of(docs[0]))
    assert any(MARK in s.replace(payload, "") for s in strings)
