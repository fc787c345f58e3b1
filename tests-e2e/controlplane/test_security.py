"""Least privilege, proven on the live objects of a real API server (kwok bench).

One release with every credential option set (Kubecost bearer token + API key, remote-write bearer token, remote-write
CA and client certificate) and NetworkPolicies on, installed into a namespace that enforces `restricted` Pod Security.
Secrets are created first with recognisable values; then, on what the API server stored (admission applied):

* no pod has a ServiceAccount token (no projected `kube-api-access-*` volume, no mount under
  /var/run/secrets/kubernetes.io/serviceaccount): nothing in the release talks to the Kubernetes API;
* credentials reach containers only as files from Secret volumes, mounted read-only; no env var takes its value
  from a Secret, and no secret value appears in any ConfigMap, pod spec, `helm get values`/`manifest`/NOTES;
* TLS verification is on (the agent's remote_write has no `insecure_skip_verify: true`; the CA is a file);
* the tenant comes from values only: the THANOS-TENANT header and the `tenant_id` external label equal
  `allocationExporter.config.tenantId`, and values trying to override the header are refused;
* NetworkPolicy shape: the exporter admits only the agent (and the helm test pod) on `http-metrics` and may reach only
  the bundled Kubecost's pods and DNS; the agent admits nothing and may reach only the exporter, Thanos' port and DNS
  (selectors against live pods of two releases: test_network_policy.py).
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from pytest_helm_charts.k8s.fixtures import NamespaceFactoryFunc

from testsupport.cluster import Helm, KwokCluster, wait_until
from testsupport.render import render_error, with_quickstart

pytestmark = pytest.mark.controlplane

NAMESPACE = "secure"
RESTRICTED = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/enforce-version": "latest",
}
SECRET_VALUES = {
    "kubecost-auth": {"token": "kc-token-7f3a9e", "apikey": "kc-apikey-51bd0c"},
    "thanos-rw": {"token": "rw-token-c0ffee"},
    "thanos-tls": {"ca.crt": "CA-PEM-ab12", "tls.crt": "CERT-PEM-cd34", "tls.key": "KEY-PEM-ef56"},
}
SET_ARGS = (
    "allocationExporter.config.tenantId=acme",
    "allocationExporter.config.clusterName=prod-eu-1",
    "global.clusterId=prod-eu-1",
    "allocationExporter.kubecostAuth.existingSecret=kubecost-auth",
    "allocationExporter.kubecostAuth.tokenKey=token",
    "allocationExporter.kubecostAuth.apiKeyKey=apikey",
    "remoteWrite.auth.type=bearer",
    "remoteWrite.auth.existingSecret=thanos-rw",
    "remoteWrite.tls.existingSecret=thanos-tls",
    "remoteWrite.tls.caKey=ca.crt",
    "remoteWrite.tls.certKey=tls.crt",
    "remoteWrite.tls.keyKey=tls.key",
    "networkPolicy.enabled=true",
)
SA_TOKEN_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


@pytest.fixture(scope="module")
def release(
    helm3: Helm, kwok_cluster: KwokCluster, chart: Path, namespace_factory: NamespaceFactoryFunc
) -> dict[str, Any]:
    namespace_factory(NAMESPACE, extra_metadata={"labels": RESTRICTED})
    wait_until(
        lambda: kwok_cluster.kubectl("get", "serviceaccount", "default", "-n", NAMESPACE, check=False).returncode == 0,
        60,
        "the default ServiceAccount",
    )
    for name, data in SECRET_VALUES.items():
        secret = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name, "namespace": NAMESPACE},
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
        }
        kwok_cluster.kubectl("apply", "-f", "-", input=json.dumps(secret))
    helm3.install("sec", chart, NAMESPACE, set_args=SET_ARGS)
    pods: list[dict[str, Any]] = kwok_cluster.get_json("pods", "-n", NAMESPACE)
    return {
        "pods": pods,
        "configmaps": kwok_cluster.get_json("configmaps", "-n", NAMESPACE),
        "netpols": kwok_cluster.get_json("networkpolicies", "-n", NAMESPACE),
        "manifest": helm3.run("get", "manifest", "sec", "--namespace", NAMESPACE).stdout,
        "notes": helm3.run("get", "notes", "sec", "--namespace", NAMESPACE).stdout,
        "values": helm3.run("get", "values", "sec", "--namespace", NAMESPACE, "--all").stdout,
    }


def components(rel: dict[str, Any]) -> dict[str, dict[str, Any]]:
    out = {}
    for pod in rel["pods"]:
        comp = pod["metadata"].get("labels", {}).get("app.kubernetes.io/component")
        out[comp] = pod
    return out


def test_release_runs_in_a_restricted_namespace(release: dict[str, Any]) -> None:
    comps = components(release)
    assert {"allocation-exporter", "agent"} <= set(comps), set(comps)
    assert {p["status"].get("phase") for p in release["pods"]} == {"Running"}


def test_no_pod_gets_a_service_account_token(release: dict[str, Any], kwok_cluster: KwokCluster) -> None:
    # Control: this API server does inject tokens (ServiceAccount admission), so their absence below means something.
    plain = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "token-control", "namespace": NAMESPACE},
        "spec": {
            "securityContext": {"runAsNonRoot": True, "runAsUser": 65532, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [
                {
                    "name": "c",
                    "image": "busybox",
                    "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
                }
            ],
        },
    }
    out = kwok_cluster.kubectl("create", "--dry-run=server", "-o", "json", "-f", "-", input=json.dumps(plain)).stdout
    assert any(v["name"].startswith("kube-api-access") for v in json.loads(out)["spec"]["volumes"]), out
    for pod in release["pods"]:
        name = pod["metadata"]["name"]
        spec = pod["spec"]
        assert spec.get("automountServiceAccountToken") is False, name
        for vol in spec.get("volumes", []):
            assert not vol["name"].startswith("kube-api-access"), f"{name} has a token volume {vol['name']}"
            for src in (vol.get("projected") or {}).get("sources", []):
                assert "serviceAccountToken" not in src, f"{name}: projected SA token in {vol['name']}"
        for c in spec.get("containers", []) + spec.get("initContainers", []):
            for m in c.get("volumeMounts", []):
                assert not m["mountPath"].startswith(SA_TOKEN_DIR), f"{name}/{c['name']} mounts {m['mountPath']}"


def test_credentials_are_secret_files_only(release: dict[str, Any]) -> None:
    comps = components(release)
    secret_vols: dict[str, set[str]] = {}
    for comp, pod in comps.items():
        spec = pod["spec"]
        secret_vols[comp] = set()
        vols = {v["name"]: v for v in spec.get("volumes", [])}
        for c in spec.get("containers", []) + spec.get("initContainers", []):
            for e in c.get("env", []):
                assert "secretKeyRef" not in (e.get("valueFrom") or {}), f"{comp}/{c['name']} env {e['name']}"
            assert not any("secretRef" in f for f in c.get("envFrom", [])), f"{comp}/{c['name']} envFrom a Secret"
            for m in c.get("volumeMounts", []):
                v = vols[m["name"]]
                names = {v["secret"]["secretName"]} if "secret" in v else set()
                names |= {s["secret"]["name"] for s in (v.get("projected") or {}).get("sources", []) if "secret" in s}
                if names:
                    assert m.get("readOnly") is True, f"{comp}: Secret volume {m['name']} is writable"
                    secret_vols[comp] |= names
    assert secret_vols["allocation-exporter"] == {"kubecost-auth"}, secret_vols
    assert secret_vols["agent"] == {"thanos-rw", "thanos-tls"}, secret_vols
    exporter_env = {e["name"]: e.get("value", "") for e in comps["allocation-exporter"]["spec"]["containers"][0]["env"]}
    assert exporter_env["AUTH_TOKEN_FILE"].startswith("/")
    assert exporter_env["API_KEY_FILE"].startswith("/")


def test_no_secret_value_leaks_into_configmaps_specs_values_or_notes(release: dict[str, Any]) -> None:
    places = {
        "configmaps": json.dumps(release["configmaps"]),
        "pods": json.dumps(release["pods"]),
        "manifest": release["manifest"],
        "notes": release["notes"],
        "values": release["values"],
    }
    for data in SECRET_VALUES.values():
        for value in data.values():
            for where, text in places.items():
                assert value not in text, f"secret value {value!r} appears in {where}"
                assert base64.b64encode(value.encode()).decode() not in text, f"base64 of {value!r} in {where}"
    assert release["notes"].strip(), "NOTES are empty: the leak check would be vacuous"


def agent_prometheus_config(release: dict[str, Any]) -> dict[str, Any]:
    (cm,) = [
        c
        for c in release["configmaps"]
        if c["metadata"].get("labels", {}).get("app.kubernetes.io/component") == "agent"
        and "prometheus.yml" in c.get("data", {})
    ]
    config: dict[str, Any] = yaml.safe_load(cm["data"]["prometheus.yml"])
    return config


def test_tls_verification_is_on_and_the_tenant_comes_from_values(release: dict[str, Any]) -> None:
    cfg = agent_prometheus_config(release)
    (rw,) = cfg["remote_write"]
    tls = rw.get("tls_config") or {}
    assert tls.get("insecure_skip_verify", False) is False, tls
    assert tls["ca_file"].startswith("/")
    assert tls["cert_file"].startswith("/")
    assert tls["key_file"].startswith("/")
    assert rw["url"].startswith("https://")
    assert rw["authorization"]["credentials_file"].startswith("/")
    assert rw["headers"] == {"THANOS-TENANT": "acme"}
    assert cfg["global"]["external_labels"]["tenant_id"] == "acme"


@pytest.mark.parametrize(
    "values",
    [
        {"remoteWrite": {"headers": {"THANOS-TENANT": "other"}}},
        {"remoteWrite": {"headers": {"thanos-tenant": "other"}}},
        {"prometheus": {"externalLabels": {"tenant_id": "other"}}},
    ],
)
def test_values_cannot_override_the_tenant(values: dict[str, Any]) -> None:
    """The tenant has one source, `allocationExporter.config.tenantId`: any other route is refused or ignored."""
    try:
        message = render_error(with_quickstart(values))
    except AssertionError:  # rendered: then the tenant must still be the configured one
        from testsupport.render import agent_config, render

        cfg = agent_config(render(with_quickstart(values)))
        assert cfg["global"]["external_labels"]["tenant_id"] == "acme"
        assert cfg["remote_write"][0]["headers"]["THANOS-TENANT"] == "acme"
        return
    assert "tenant" in message.lower(), message


def test_network_policies_admit_only_the_scraper(release: dict[str, Any]) -> None:
    pols = {p["metadata"]["labels"]["app.kubernetes.io/component"]: p["spec"] for p in release["netpols"]}
    assert set(pols) == {"allocation-exporter", "agent", "test"}, set(pols)
    exp = pols["allocation-exporter"]
    assert exp["policyTypes"] == ["Ingress", "Egress"]
    (rule,) = exp["ingress"]
    assert rule["ports"] == [{"port": "http-metrics", "protocol": "TCP"}]
    peers = [p["podSelector"]["matchLabels"]["app.kubernetes.io/component"] for p in rule["from"]]
    assert sorted(peers) == ["agent", "test"], rule["from"]
    for peer in rule["from"]:
        assert set(peer) == {"podSelector"}, "a peer reaching beyond the release namespace"
    dns = {
        "ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}],
        "to": [
            {
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
            }
        ],
    }
    kubecost = {
        "podSelector": {
            "matchLabels": {
                "app": "cost-analyzer",
                "app.kubernetes.io/name": "frontend",
                "app.kubernetes.io/instance": "sec",
            }
        }
    }
    assert exp["egress"] == [{"to": [kubecost], "ports": [{"port": 9090, "protocol": "TCP"}]}, dns]
    # The API server stores `ingress: []` as no `ingress` key: either way, nothing is admitted.
    assert pols["agent"].get("ingress", []) == []
    assert pols["agent"]["policyTypes"] == ["Ingress", "Egress"]
    exporter_sel = {"podSelector": pols["allocation-exporter"]["podSelector"]}
    assert pols["agent"]["egress"] == [
        {"to": [exporter_sel], "ports": [{"port": 9103, "protocol": "TCP"}]},
        {
            "to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}, {"ipBlock": {"cidr": "::/0"}}],
            "ports": [{"port": 443, "protocol": "TCP"}],
        },
        dns,
    ]
    assert pols["test"].get("ingress", []) == []
    assert pols["test"]["egress"][0] == pols["agent"]["egress"][0]
    # The selectors really select the release's pods.
    comps = components(release)
    for comp in ("allocation-exporter", "agent"):
        labels = comps[comp]["metadata"]["labels"]
        sel = pols[comp]["podSelector"]["matchLabels"]
        assert all(labels.get(k) == v for k, v in sel.items()), (comp, sel, labels)
