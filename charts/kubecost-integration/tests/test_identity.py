"""tenantId and clusterName: top-level values; chart 0.2's `allocationExporter.config.*` paths still work.

Real `helm template` (Helm 3 and 4) for the renders; Helm 4's client-only dry-run for NOTES (see test_static).
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from testsupport.render import agent_config, exporter_env, render, render_error

pytestmark = pytest.mark.chart

#: Kubecost 3, the default engine, needs its cluster id in any case (test_engines.py).
GLOBAL = {"global": {"clusterId": "prod-eu-1"}}
TOP = {"tenantId": "acme", "clusterName": "prod-eu-1", **GLOBAL}
OLD = {"allocationExporter": {"config": {"tenantId": "acme", "clusterName": "prod-eu-1"}}, **GLOBAL}


def _identity(docs: list[dict[str, Any]]) -> tuple[str, str, dict[str, str], str]:
    env = exporter_env(docs)
    config = agent_config(docs)
    return (
        env["TENANT_ID"],
        env["CLUSTER_NAME"],
        config["global"]["external_labels"],
        config["remote_write"][0]["headers"]["THANOS-TENANT"],
    )


def test_deprecated_paths_render_exactly_like_the_top_level_values(helm: str) -> None:
    top = render(TOP, helm=helm)
    assert _identity(top) == ("acme", "prod-eu-1", {"cluster": "prod-eu-1", "tenant_id": "acme"}, "acme")
    assert render(OLD, helm=helm) == top
    # the same value in both places (the middle of a migration) is accepted and changes nothing
    assert render({**TOP, **OLD}, helm=helm) == top


@pytest.mark.parametrize("key", ["tenantId", "clusterName"])
def test_both_paths_with_different_values_are_refused_with_the_fix(helm: str, key: str) -> None:
    values = {**TOP, "allocationExporter": {"config": {key: "other"}}}
    message = render_error(values, helm=helm)
    assert (
        f'{key} is set twice with different values: {key}="{TOP[key]}" and allocationExporter.config.{key}="other"'
        in message
    )
    assert f"  {key}: {TOP[key]}\nand remove allocationExporter.config.{key}" in message, message


def test_one_value_from_each_path_is_accepted(helm: str) -> None:
    docs = render(
        {"tenantId": "acme", "allocationExporter": {"config": {"clusterName": "prod-eu-1"}}, **GLOBAL}, helm=helm
    )
    assert _identity(docs)[:2] == ("acme", "prod-eu-1")


def _notes(helm4: str, chart: Path, values: dict[str, Any]) -> str:
    proc = subprocess.run(
        [helm4, "install", "r", str(chart), "-n", "my-ns", "--dry-run=client", "--values", "/dev/stdin"],
        input=yaml.safe_dump(values),
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split("NOTES:", 1)[1]


def test_notes_name_the_deprecated_paths_in_use(require_tool: Callable[[str], str], chart: Path) -> None:
    helm4 = require_tool("helm4")
    assert "DEPRECATED" not in _notes(helm4, chart, TOP)
    notes = _notes(helm4, chart, OLD)
    assert (
        "DEPRECATED: allocationExporter.config.tenantId, allocationExporter.config.clusterName will be removed" in notes
    )
    notes = _notes(
        helm4, chart, {"tenantId": "acme", "allocationExporter": {"config": {"clusterName": "prod-eu-1"}}, **GLOBAL}
    )
    assert "DEPRECATED: allocationExporter.config.clusterName will be removed" in notes, notes


def test_kubecost_3_users_give_the_cluster_name_once(helm: str) -> None:
    """`global.clusterId` alone (the default engine reads it there) names the cluster for this chart too, exactly as
    `clusterName` would; given both, they must agree; with neither, the refusal names both ways."""
    once = render({"tenantId": "acme", **GLOBAL}, helm=helm)
    assert once == render(TOP, helm=helm)
    assert _identity(once)[1:3] == ("prod-eu-1", {"cluster": "prod-eu-1", "tenant_id": "acme"})
    differ = render_error({**TOP, "clusterName": "other"}, helm=helm)
    assert 'Kubecost 3 would name this cluster "prod-eu-1", clusterName is "other"' in differ
    neither = render_error({"tenantId": "acme"}, helm=helm)
    assert "--set clusterName=prod-eu-1, or with Kubecost 3 --set global.clusterId=prod-eu-1" in neither
    # another engine reads clusterName: without a Kubecost 3, the global alone still names the cluster
    other = {"tenantId": "acme", "kubecost": {"enabled": False}, "opencost": {"enabled": True}, **GLOBAL}
    assert _identity(render(other, helm=helm))[1] == "prod-eu-1"
