"""NetworkPolicies on a real API server (kwok bench): accepted as rendered, and each selects exactly its pods.

Two releases share one namespace enforcing `restricted` Pod Security, both with `networkPolicy.enabled` (ingress and
egress): `np-a` in agent mode installed with Helm 3, `np-b` in kubecost mode installed with Helm 4. Their `helm test`
pods are created from `helm get hooks` so that every kind of pod the chart makes exists at once. Then, on what the
API server stored:

* `kubectl get networkpolicy` lists the five policies (np-a: exporter, agent, test; np-b: exporter, test) and their
  specs equal the rendered ones (modulo the API's own defaulting), i.e. nothing was dropped or rewritten;
* each policy's podSelector, asked of the API server as a label selector, returns exactly the pods of its release
  and component (by owner: the ReplicaSet of the exporter/agent Deployment, or the test pod) and nothing else, and
  every pod in the namespace is selected by exactly one policy;
* policies with every option set (IPv4/IPv6 ipBlocks with `except`, named ports, `endPort`, extra rules, proxied
  extra remote-write) pass server-side validation in all three modes.

kwok runs no CNI, so nothing here proves enforcement (docs/reliability.md says where that is tested).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from pytest_helm_charts.k8s.fixtures import NamespaceFactoryFunc

from testsupport.cluster import Helm, KwokCluster, eventually
from testsupport.render import deep_merge, helm_template, kubecost_mode, with_quickstart

pytestmark = pytest.mark.controlplane

NAMESPACE = "netpol"
DRY_RUN_NAMESPACE = "default"
RESTRICTED = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/enforce-version": "latest",
}
ON = {"networkPolicy": {"enabled": True}}
RELEASES = {"np-a": "agent", "np-b": "kubecost"}
EXPECTED_POLICIES = {
    ("np-a", "allocation-exporter"),
    ("np-a", "agent"),
    ("np-a", "test"),
    ("np-b", "allocation-exporter"),
    ("np-b", "test"),
}


def release_values(release: str) -> dict[str, Any]:
    values = with_quickstart({**ON, "clusterName": release, "global": {"clusterId": release}})
    if RELEASES[release] == "kubecost":
        return kubecost_mode(values, release=release, namespace=NAMESPACE, helm="helm4")
    return values


@pytest.fixture(scope="module")
def installed(
    helm3: Helm,
    helm_cli: Callable[[str], Helm],
    kwok_cluster: KwokCluster,
    chart: Path,
    namespace_factory: NamespaceFactoryFunc,
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, Any]:
    namespace_factory(NAMESPACE, extra_metadata={"labels": RESTRICTED})
    kwok_cluster.wait_namespace_populated(NAMESPACE)
    tmp = tmp_path_factory.mktemp("netpol-values")
    helms = {"np-a": helm3, "np-b": helm_cli("helm4")}
    manifests: dict[str, list[dict[str, Any]]] = {}
    for release, helm in helms.items():
        values_file = tmp / f"{release}.yaml"
        values_file.write_text(yaml.safe_dump(release_values(release)))
        helm.install(release, chart, NAMESPACE, extra_args=["--values", str(values_file)])
        manifests[release] = helm.manifest(release, NAMESPACE)
        # The helm test pod, as `helm test` would create it (Helm deletes it on success, so create it directly).
        hooks = helm.run("get", "hooks", release, "--namespace", NAMESPACE).stdout
        tests = [d for d in yaml.safe_load_all(hooks) if d and d["kind"] == "Pod"]
        assert len(tests) == 1, hooks
        kwok_cluster.kubectl("create", "--namespace", NAMESPACE, "-f", "-", input=json.dumps(tests[0]))
    pods: list[dict[str, Any]] = eventually(
        lambda: kwok_cluster.get_json("pods", "-n", NAMESPACE),
        lambda ps: len(ps) == 5 and all(p["status"].get("phase") in ("Running", "Succeeded") for p in ps),
        90,
    )
    return {
        "manifests": manifests,
        "pods": pods,
        "netpols": kwok_cluster.get_json("networkpolicies", "-n", NAMESPACE),
        "names": kwok_cluster.kubectl("get", "networkpolicy", "-n", NAMESPACE, "-o", "name").stdout.split(),
    }


def key(obj: dict[str, Any]) -> tuple[str, str]:
    labels = obj["metadata"]["labels"]
    return labels["app.kubernetes.io/instance"], labels["app.kubernetes.io/component"]


def normalized(spec: dict[str, Any]) -> dict[str, Any]:
    """A policy spec with the API server's defaulting applied to the rendered form: `protocol: TCP` on ports that
    have none, and empty `ingress`/`egress` lists dropped (the API stores `ingress: []` as no key)."""
    out: dict[str, Any] = json.loads(json.dumps(spec))
    for direction in ("ingress", "egress"):
        for rule in out.get(direction) or []:
            for port in rule.get("ports") or []:
                port.setdefault("protocol", "TCP")
        if out.get(direction) == []:
            del out[direction]
    return out


def test_kubectl_lists_the_policies_of_both_releases(installed: dict[str, Any]) -> None:
    names = installed["names"]
    assert sorted(names) == sorted(
        f"networkpolicy.networking.k8s.io/{release}-kubecost-integration-{suffix}"
        for release, suffix in (
            ("np-a", "exporter"),
            ("np-a", "agent"),
            ("np-a", "test"),
            ("np-b", "exporter"),
            ("np-b", "test"),
        )
    )
    assert {key(p) for p in installed["netpols"]} == EXPECTED_POLICIES


def test_stored_policies_equal_the_rendered_ones(installed: dict[str, Any]) -> None:
    rendered = {
        key(d): d["spec"] for docs in installed["manifests"].values() for d in docs if d["kind"] == "NetworkPolicy"
    }
    assert set(rendered) == EXPECTED_POLICIES
    for pol in installed["netpols"]:
        assert pol["spec"] == normalized(rendered[key(pol)]), key(pol)
        assert pol["spec"]["policyTypes"] == ["Ingress", "Egress"], key(pol)
    # The shape that matters, on the stored objects: the agent may reach the exporter, Thanos and DNS only.
    stored = {key(p): p["spec"] for p in installed["netpols"]}
    agent_egress = stored[("np-a", "agent")]["egress"]
    assert [r["ports"] for r in agent_egress] == [
        [{"port": 9103, "protocol": "TCP"}],
        [{"port": 443, "protocol": "TCP"}],
        [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}],
    ]
    assert "ingress" not in stored[("np-a", "agent")]
    exporter_egress = stored[("np-b", "allocation-exporter")]["egress"]
    assert exporter_egress[0]["to"] == [
        {"podSelector": {"matchLabels": {"app": "cost-analyzer", "app.kubernetes.io/instance": "np-b"}}}
    ]


def owner_identity(pod: dict[str, Any]) -> tuple[str, str]:
    """(release, component) of a pod from its name and owner, independently of the labels the policies select on."""
    name = pod["metadata"]["name"]
    owners = pod["metadata"].get("ownerReferences") or []
    for release in RELEASES:
        prefix = f"{release}-kubecost-integration-"
        if not name.startswith(prefix):
            continue
        if not owners:
            assert name == prefix + "test", name
            return release, "test"
        (owner,) = owners
        assert owner["kind"] == "ReplicaSet", owner
        workload = owner["name"].rsplit("-", 1)[0]
        return release, {prefix + "exporter": "allocation-exporter", prefix + "agent": "agent"}[workload]
    raise AssertionError(f"pod {name} belongs to no release")


def test_each_selector_selects_exactly_its_pods(installed: dict[str, Any], kwok_cluster: KwokCluster) -> None:
    by_identity: dict[tuple[str, str], set[str]] = {}
    for pod in installed["pods"]:
        by_identity.setdefault(owner_identity(pod), set()).add(pod["metadata"]["name"])
    assert set(by_identity) == EXPECTED_POLICIES, by_identity

    selected_once: dict[str, int] = {}
    for pol in installed["netpols"]:
        match = pol["spec"]["podSelector"]["matchLabels"]
        assert "matchExpressions" not in pol["spec"]["podSelector"]
        selector = ",".join(f"{k}={v}" for k, v in sorted(match.items()))
        # The API server evaluates the selector (the same label-selector semantics the CNI applies).
        selected = {p["metadata"]["name"] for p in kwok_cluster.get_json("pods", "-n", NAMESPACE, "-l", selector)}
        assert selected == by_identity[key(pol)], (key(pol), selector, selected)
        for name in selected:
            selected_once[name] = selected_once.get(name, 0) + 1
    all_pods = {p["metadata"]["name"] for p in installed["pods"]}
    assert selected_once == dict.fromkeys(all_pods, 1), selected_once


EVERYTHING = {
    "networkPolicy": {
        "enabled": True,
        "extraIngressFrom": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}],
        "egress": {
            "dns": {"to": [{"ipBlock": {"cidr": "169.254.20.10/32"}}]},
            "kubecost": {"ports": [{"port": "tcp-frontend"}]},
            "clusterCIDRs": ["10.244.0.0/16", "fd00:10:244::/56"],
        },
        "exporter": {"extraEgress": [{"to": [{"ipBlock": {"cidr": "10.0.0.10/32"}}], "ports": [{"port": 3128}]}]},
        "agent": {
            "extraIngress": [
                {"from": [{"podSelector": {"matchLabels": {"app": "prometheus"}}}], "ports": [{"port": "http"}]}
            ],
            "extraEgress": [
                {"to": [{"podSelector": {}}], "ports": [{"port": 9100, "endPort": 9110, "protocol": "TCP"}]}
            ],
        },
    },
    "remoteWrite": {
        "extraRemoteWrite": [
            {"name": "v6", "url": "https://[2001:db8::9]:8443/api/v1/write", "proxy_url": "http://squid.proxy.svc:3128"}
        ]
    },
}


@pytest.mark.parametrize("mode", ["agent", "kubecost", "external"])
def test_policies_with_every_option_pass_server_side_validation(
    kwok_cluster: KwokCluster, chart: Path, mode: str
) -> None:
    values = with_quickstart(deep_merge(EVERYTHING, {"prometheus": {"mode": mode}}))
    if mode == "kubecost":
        values = kubecost_mode(values, release="np-x", namespace=DRY_RUN_NAMESPACE)
    rendered = helm_template(values, release="np-x", namespace=DRY_RUN_NAMESPACE, chart=chart)
    docs = [d for d in yaml.safe_load_all(rendered) if d]
    policies = [d for d in docs if d["kind"] == "NetworkPolicy"]
    assert len(policies) == (3 if mode == "agent" else 2)
    out = kwok_cluster.kubectl(
        "create",
        "--dry-run=server",
        "--validate=strict",
        "-o",
        "json",
        "--namespace",
        DRY_RUN_NAMESPACE,
        "-f",
        "-",
        input="\n---\n".join(json.dumps(p) for p in policies),
    )
    stored: list[dict[str, Any]] = []
    for obj in _json_objects(out.stdout):
        stored += obj["items"] if obj.get("kind") == "List" else [obj]
    assert [normalized(p["spec"]) for p in policies] == [s["spec"] for s in stored]


def _json_objects(text: str) -> list[dict[str, Any]]:
    """kubectl's `-o json` output (one object, a List, or objects one after another), parsed."""
    decoder = json.JSONDecoder()
    out: list[dict[str, Any]] = []
    i = 0
    while i < len(text):
        while i < len(text) and text[i].isspace():
            i += 1
        if i >= len(text):
            break
        obj, end = decoder.raw_decode(text, i)
        out.append(obj)
        i = end
    return out


def test_the_api_server_rejects_a_policy_the_chart_would_never_render(kwok_cluster: KwokCluster) -> None:
    """Control for the dry runs above: this API server does validate NetworkPolicies (an `except` outside its
    `cidr` is refused), so their acceptance means something."""
    bad = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "bad", "namespace": DRY_RUN_NAMESPACE},
        "spec": {
            "podSelector": {},
            "policyTypes": ["Egress"],
            "egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/16", "except": ["192.168.0.0/24"]}}]}],
        },
    }
    result = kwok_cluster.kubectl("create", "--dry-run=server", "-f", "-", input=json.dumps(bad), check=False)
    assert result.returncode != 0, result.stderr
    assert "except" in result.stderr, result.stderr
