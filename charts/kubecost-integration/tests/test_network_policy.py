"""NetworkPolicies (networkPolicy.*), rendered by the real `helm template` under Helm 3 and Helm 4.

The exact ingress and egress rules of every policy in each mode (agent, kubecost, external); how peers and ports
of the Kubecost API and the remote-write endpoints are derived from their URLs; the escape hatches; that every pod
the chart renders is selected by exactly one policy; that egress can be switched back off (the 0.1.0 shape); and
that bad values are refused with a message naming what to set. Whether the API server accepts these objects is
proven on the control-plane bench (tests-e2e/controlplane/test_network_policy.py); enforcement needs a CNI
(docs/reliability.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from testsupport import kubeconform
from testsupport.render import (
    deep_merge,
    kubecost_mode,
    objects,
    render,
    render_error,
    with_quickstart,
)

pytestmark = pytest.mark.chart

RELEASE, NAMESPACE = "my-kubecost", "my-ns"
ON = {"networkPolicy": {"enabled": True}}


def sel(component: str) -> dict[str, Any]:
    return {
        "matchLabels": {
            "app.kubernetes.io/name": "kubecost-integration",
            "app.kubernetes.io/instance": RELEASE,
            "app.kubernetes.io/component": component,
        }
    }


DNS: dict[str, Any] = {
    "ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}],
    "to": [
        {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
            "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
        }
    ],
}
TO_EXPORTER = {"to": [{"podSelector": sel("allocation-exporter")}], "ports": [{"port": 9103, "protocol": "TCP"}]}
#: The default engine, Kubecost 3: the pods its frontend Service selects.
BUNDLED_KUBECOST = {
    "to": [
        {
            "podSelector": {
                "matchLabels": {
                    "app": "cost-analyzer",
                    "app.kubernetes.io/name": "frontend",
                    "app.kubernetes.io/instance": RELEASE,
                }
            }
        }
    ],
    "ports": [{"port": 9090, "protocol": "TCP"}],
}
#: Kubecost 2.x: its cost-analyzer pod (and, in haMode, frontend pods) carry app=cost-analyzer and the release.
KUBECOST_2 = {"kubecost": {"enabled": False}, "cost-analyzer": {"enabled": True}}
BUNDLED_KUBECOST_2 = {
    "to": [{"podSelector": {"matchLabels": {"app": "cost-analyzer", "app.kubernetes.io/instance": RELEASE}}}],
    "ports": [{"port": 9090, "protocol": "TCP"}],
}
ANY_ADDRESS_443 = {
    "to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}, {"ipBlock": {"cidr": "::/0"}}],
    "ports": [{"port": 443, "protocol": "TCP"}],
}
TEST_POD_POLICY = {
    "podSelector": sel("test"),
    "policyTypes": ["Ingress", "Egress"],
    "ingress": [],
    "egress": [TO_EXPORTER, DNS],
}


def policies(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """component -> spec of every NetworkPolicy; fails on two policies for one component."""
    out: dict[str, dict[str, Any]] = {}
    for doc in objects(docs, "NetworkPolicy"):
        comp = doc["metadata"]["labels"]["app.kubernetes.io/component"]
        assert comp not in out, f"two NetworkPolicies for {comp}"
        assert doc["metadata"]["namespace"] == NAMESPACE
        out[comp] = doc["spec"]
    return out


def exporter_ingress(*peers: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"ports": [{"port": "http-metrics", "protocol": "TCP"}], "from": list(peers)}]


# ------------------------------------------------------------------------------------------ exact rules per mode


def test_agent_mode_exact_rules(helm: str) -> None:
    pols = policies(render(with_quickstart(ON), helm=helm))
    assert set(pols) == {"allocation-exporter", "agent", "test"}
    assert pols["allocation-exporter"] == {
        "podSelector": sel("allocation-exporter"),
        "policyTypes": ["Ingress", "Egress"],
        "ingress": exporter_ingress({"podSelector": sel("agent")}, {"podSelector": sel("test")}),
        "egress": [BUNDLED_KUBECOST, DNS],
    }
    assert pols["agent"] == {
        "podSelector": sel("agent"),
        "policyTypes": ["Ingress", "Egress"],
        "ingress": [],
        "egress": [TO_EXPORTER, ANY_ADDRESS_443, DNS],
    }
    assert pols["test"] == TEST_POD_POLICY


def test_kubecost_mode_exact_rules(helm: str) -> None:
    values = kubecost_mode(with_quickstart(ON), helm=helm)
    pols = policies(render(values, helm=helm))
    # No agent in kubecost mode: Kubecost's own Prometheus scrapes and remote-writes (its pods are Kubecost's).
    assert set(pols) == {"allocation-exporter", "test"}
    kubecost_prometheus = {
        "podSelector": {"matchLabels": {"app": "prometheus", "component": "server", "release": RELEASE}}
    }
    assert pols["allocation-exporter"] == {
        "podSelector": sel("allocation-exporter"),
        "policyTypes": ["Ingress", "Egress"],
        "ingress": exporter_ingress(kubecost_prometheus, {"podSelector": sel("test")}),
        "egress": [BUNDLED_KUBECOST_2, DNS],
    }
    assert pols["test"] == TEST_POD_POLICY


def test_external_mode_exact_rules(helm: str) -> None:
    monitoring = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    values = with_quickstart(
        {
            "prometheus": {"mode": "external"},
            "kubecost": {"enabled": False},
            "allocationExporter": {"config": {"kubecostUrl": "http://opencost.opencost.svc:9003"}},
            "networkPolicy": {"enabled": True, "extraIngressFrom": [monitoring]},
        }
    )
    pols = policies(render(values, helm=helm))
    assert set(pols) == {"allocation-exporter", "test"}
    assert pols["allocation-exporter"] == {
        "podSelector": sel("allocation-exporter"),
        "policyTypes": ["Ingress", "Egress"],
        "ingress": exporter_ingress({"podSelector": sel("test")}, monitoring),
        "egress": [
            {
                "to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "opencost"}}}],
                "ports": [{"port": 9003, "protocol": "TCP"}],
            },
            DNS,
        ],
    }
    assert pols["test"] == TEST_POD_POLICY


def test_egress_disabled_renders_the_ingress_only_policies_of_0_1_0(helm: str) -> None:
    pols = policies(
        render(with_quickstart({"networkPolicy": {"enabled": True, "egress": {"enabled": False}}}), helm=helm)
    )
    assert set(pols) == {"allocation-exporter", "agent"}
    assert pols["allocation-exporter"] == {
        "podSelector": sel("allocation-exporter"),
        "policyTypes": ["Ingress"],
        "ingress": exporter_ingress({"podSelector": sel("agent")}, {"podSelector": sel("test")}),
    }
    assert pols["agent"] == {"podSelector": sel("agent"), "policyTypes": ["Ingress"], "ingress": []}


def test_nothing_is_rendered_when_disabled_even_with_egress_settings(helm: str) -> None:
    docs = render(
        with_quickstart({"networkPolicy": {"egress": {"thanos": {"to": [{"ipBlock": {"cidr": "192.0.2.0/24"}}]}}}}),
        helm=helm,
    )
    assert not objects(docs, "NetworkPolicy")


def test_no_test_pod_policy_without_the_test_pod(helm: str) -> None:
    pols = policies(render(with_quickstart({**ON, "helmTest": {"enabled": False}}), helm=helm))
    assert set(pols) == {"allocation-exporter", "agent"}


# ------------------------------------------------------------------------------------------ selectors


def pod_templates(docs: list[dict[str, Any]]) -> dict[str, dict[str, str]]:
    """name -> pod labels of every pod the chart (not the Kubecost stub) renders."""
    out = {}
    for doc in docs:
        labels = doc["metadata"].get("labels") or {}
        if labels.get("app.kubernetes.io/part-of") != "kubecost-integration":
            continue
        if doc["kind"] in ("Deployment", "StatefulSet"):
            out[f"{doc['kind']}/{doc['metadata']['name']}"] = doc["spec"]["template"]["metadata"]["labels"]
        elif doc["kind"] == "Pod":
            out[f"Pod/{doc['metadata']['name']}"] = labels
    return out


MODES = {
    "agent": lambda helm: with_quickstart({**ON, "prometheus": {"agent": {"podLabels": {"team": "finops"}}}}),
    "agent-statefulset": lambda helm: with_quickstart({**ON, "prometheus": {"agent": {"kind": "StatefulSet"}}}),
    "kubecost": lambda helm: kubecost_mode(with_quickstart(ON), helm=helm),
    "external": lambda helm: with_quickstart(
        {
            **ON,
            "prometheus": {"mode": "external"},
            "networkPolicy": {
                "enabled": True,
                "extraIngressFrom": [{"podSelector": {"matchLabels": {"app": "prometheus"}}}],
            },
        }
    ),
}


@pytest.mark.parametrize("mode", list(MODES))
def test_every_pod_of_the_chart_is_selected_by_exactly_one_policy(helm: str, mode: str) -> None:
    docs = render(MODES[mode](helm), helm=helm)
    pods = pod_templates(docs)
    assert len(pods) >= 2
    for name, labels in pods.items():
        selecting = [
            p["metadata"]["name"]
            for p in objects(docs, "NetworkPolicy")
            if p["spec"]["podSelector"]["matchLabels"].items() <= labels.items()
        ]
        assert len(selecting) == 1, (name, selecting)
        assert selecting[0].rsplit("-", 1)[-1] in name, (name, selecting)


# ------------------------------------------------------------------------------------------ derivation


def exporter_egress(values: dict[str, Any], helm: str) -> list[dict[str, Any]]:
    egress: list[dict[str, Any]] = policies(render(with_quickstart(deep_merge(ON, values)), helm=helm))[
        "allocation-exporter"
    ]["egress"]
    return egress


def agent_egress(values: dict[str, Any], helm: str) -> list[dict[str, Any]]:
    egress: list[dict[str, Any]] = policies(render(with_quickstart(deep_merge(ON, values)), helm=helm))["agent"][
        "egress"
    ]
    return egress


def ns(name: str) -> dict[str, Any]:
    return {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": name}}}


def tcp(port: int | str) -> list[dict[str, Any]]:
    return [{"port": port, "protocol": "TCP"}]


KUBECOST_URLS = [
    ("http://kubecost-cost-analyzer.kubecost.svc:9090", [ns("kubecost")], 9090),
    ("http://opencost.opencost.svc.cluster.local:9003/", [ns("opencost")], 9003),
    ("https://kubecost-frontend.kubecost.svc", [ns("kubecost")], 443),
    ("http://Kubecost-Frontend.Kubecost.svc.cluster.local", [ns("kubecost")], 80),
    ("http://kubecost-frontend:9090", [{"podSelector": {}}], 9090),
    ("http://10.96.0.7:9090", [{"ipBlock": {"cidr": "10.96.0.7/32"}}], 9090),
    ("http://[fd00:10:96::7]:9090", [{"ipBlock": {"cidr": "fd00:10:96::7/128"}}], 9090),
]


@pytest.mark.parametrize(("url", "to", "port"), KUBECOST_URLS)
def test_kubecost_peers_and_port_are_derived_from_the_url(helm: str, url: str, to: list[Any], port: int) -> None:
    egress = exporter_egress(
        {"kubecost": {"enabled": False}, "allocationExporter": {"config": {"kubecostUrl": url}}}, helm
    )
    assert egress == [{"to": to, "ports": tcp(port)}, DNS]


def test_bundled_kubecost_port_is_its_target_port(helm: str) -> None:
    egress = exporter_egress(
        {**KUBECOST_2, "cost-analyzer": {"enabled": True, "service": {"port": 80, "targetPort": 9091}}}, helm
    )
    assert egress[0] == {"to": BUNDLED_KUBECOST_2["to"], "ports": tcp(9091)}
    egress = exporter_egress({"kubecost": {"frontend": {"service": {"port": 80, "targetPort": 9092}}}}, helm)
    assert egress[0] == {"to": BUNDLED_KUBECOST["to"], "ports": tcp(9092)}


def test_opencost_peer_is_the_pods_of_its_service(helm: str) -> None:
    egress = exporter_egress({"kubecost": {"enabled": False}, "opencost": {"enabled": True}}, helm)
    selector = {"app.kubernetes.io/name": "opencost", "app.kubernetes.io/instance": RELEASE}
    assert egress[0] == {"to": [{"podSelector": {"matchLabels": selector}}], "ports": tcp(9003)}
    # namespaceOverride: the same pods in the other namespace
    egress = exporter_egress(
        {"kubecost": {"enabled": False}, "opencost": {"enabled": True, "namespaceOverride": "oc"}}, helm
    )
    assert egress[0]["to"] == [
        {"podSelector": {"matchLabels": selector}, "namespaceSelector": ns("oc")["namespaceSelector"]}
    ]


def test_bundled_kubecost_in_ha_mode_keeps_the_peer_of_its_frontend_pods(helm: str) -> None:
    egress = exporter_egress(
        {**KUBECOST_2, "cost-analyzer": {"enabled": True, "kubecostFrontend": {"deployMethod": "haMode"}}}, helm
    )
    assert egress[0] == BUNDLED_KUBECOST_2


def test_explicit_kubecost_peers_and_ports_win(helm: str) -> None:
    peers = [{"ipBlock": {"cidr": "192.0.2.0/24", "except": ["192.0.2.128/25"]}}]
    egress = exporter_egress(
        {
            "kubecost": {"enabled": False},
            "allocationExporter": {"config": {"kubecostUrl": "https://kubecost.example.com"}},
            "networkPolicy": {"egress": {"kubecost": {"to": peers, "ports": [{"port": 8443, "protocol": "TCP"}]}}},
        },
        helm,
    )
    assert egress == [{"to": peers, "ports": tcp(8443)}, DNS]
    # ports alone: peers still derived
    egress = exporter_egress({"networkPolicy": {"egress": {"kubecost": {"ports": [{"port": "tcp-frontend"}]}}}}, helm)
    assert egress[0] == {"to": BUNDLED_KUBECOST["to"], "ports": [{"port": "tcp-frontend"}]}


RW_URLS = [
    ("https://thanos-receive.cloudtuner.ai/api/v1/receive", ANY_ADDRESS_443["to"], 443),
    ("http://thanos.example:19291/api/v1/receive", ANY_ADDRESS_443["to"], 19291),
    ("http://thanos-receive.thanos.svc.cluster.local:19291/api/v1/receive", [ns("thanos")], 19291),
    ("https://203.0.113.9/api/v1/receive", [{"ipBlock": {"cidr": "203.0.113.9/32"}}], 443),
    ("http://{{ .Release.Name }}-receive.{{ .Release.Namespace }}.svc:19291/api/v1/receive", [ns(NAMESPACE)], 19291),
]


@pytest.mark.parametrize(("url", "to", "port"), RW_URLS)
def test_thanos_peers_and_port_are_derived_from_remote_write_url(helm: str, url: str, to: list[Any], port: int) -> None:
    egress = agent_egress({"remoteWrite": {"url": url}}, helm)
    assert egress == [TO_EXPORTER, {"to": to, "ports": tcp(port)}, DNS]


def test_cluster_cidrs_are_excepted_from_the_any_address_rule(helm: str) -> None:
    egress = agent_egress(
        {"networkPolicy": {"egress": {"clusterCIDRs": ["10.244.0.0/16", "fd00:10:244::/56", "10.96.0.0/12"]}}}, helm
    )
    assert egress[1] == {
        "to": [
            {"ipBlock": {"cidr": "0.0.0.0/0", "except": ["10.244.0.0/16", "10.96.0.0/12"]}},
            {"ipBlock": {"cidr": "::/0", "except": ["fd00:10:244::/56"]}},
        ],
        "ports": tcp(443),
    }


def test_explicit_thanos_peers_and_ports_win(helm: str) -> None:
    peers = [
        {"ipBlock": {"cidr": "198.51.100.0/24"}},
        {**ns("egress-gateway"), "podSelector": {"matchLabels": {"app": "gw"}}},
    ]
    ports = [{"port": 443, "protocol": "TCP"}, {"port": 8443, "protocol": "TCP"}]
    egress = agent_egress({"networkPolicy": {"egress": {"thanos": {"to": peers, "ports": ports}}}}, helm)
    assert egress == [TO_EXPORTER, {"to": peers, "ports": ports}, DNS]


def test_every_extra_remote_write_endpoint_gets_its_own_rule(helm: str) -> None:
    extra = [
        {"name": "mimir", "url": "https://mimir.example.net:8443/api/v1/push"},
        {"name": "via-proxy", "url": "https://vm.example.net/api/v1/write", "proxy_url": "http://squid.proxy.svc:3128"},
    ]
    egress = agent_egress({"remoteWrite": {"extraRemoteWrite": extra}}, helm)
    assert egress == [
        TO_EXPORTER,
        ANY_ADDRESS_443,
        {"to": ANY_ADDRESS_443["to"], "ports": tcp(8443)},
        {"to": [ns("proxy")], "ports": tcp(3128)},
        DNS,
    ]


def test_dns_peers_and_ports_are_configurable(helm: str) -> None:
    node_local = {"to": [{"ipBlock": {"cidr": "169.254.20.10/32"}}], "ports": [{"port": 53, "protocol": "UDP"}]}
    pols = policies(
        render(with_quickstart(deep_merge(ON, {"networkPolicy": {"egress": {"dns": node_local}}})), helm=helm)
    )
    for comp in ("allocation-exporter", "agent", "test"):
        assert pols[comp]["egress"][-1] == {"ports": node_local["ports"], "to": node_local["to"]}, comp
    # Empty peers: any destination, but only on the DNS ports.
    pols = policies(
        render(with_quickstart(deep_merge(ON, {"networkPolicy": {"egress": {"dns": {"to": []}}}})), helm=helm)
    )
    for comp in ("allocation-exporter", "agent", "test"):
        assert pols[comp]["egress"][-1] == {"ports": DNS["ports"]}, comp


def test_extra_rules_are_appended(helm: str) -> None:
    scraper = {
        "from": [{**ns("monitoring"), "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}}}],
        "ports": [{"port": "http", "protocol": "TCP"}],
    }
    proxy = {"to": [{"ipBlock": {"cidr": "10.0.0.10/32"}}], "ports": tcp(3128)}
    node_exporter = {"to": [ns("monitoring")], "ports": tcp(9100)}
    exp_extra = {"from": [ns("debug")], "ports": [{"port": "http-metrics", "protocol": "TCP"}]}
    pols = policies(
        render(
            with_quickstart(
                deep_merge(
                    ON,
                    {
                        "networkPolicy": {
                            "exporter": {"extraIngress": [exp_extra], "extraEgress": [proxy]},
                            "agent": {"extraIngress": [scraper], "extraEgress": [node_exporter]},
                        }
                    },
                )
            ),
            helm=helm,
        )
    )
    assert pols["allocation-exporter"]["ingress"] == [
        *exporter_ingress({"podSelector": sel("agent")}, {"podSelector": sel("test")}),
        exp_extra,
    ]
    assert pols["allocation-exporter"]["egress"] == [BUNDLED_KUBECOST, DNS, proxy]
    assert pols["agent"]["ingress"] == [scraper]
    assert pols["agent"]["egress"] == [TO_EXPORTER, ANY_ADDRESS_443, DNS, node_exporter]
    assert pols["test"] == TEST_POD_POLICY


def test_the_agent_scrape_rule_follows_the_exporter_port(helm: str) -> None:
    egress = agent_egress({"allocationExporter": {"port": 9200}}, helm)
    assert egress[0] == {"to": TO_EXPORTER["to"], "ports": tcp(9200)}


# ------------------------------------------------------------------------------------------ bad values

BAD: list[tuple[str, dict[str, Any], list[str]]] = [
    (
        "kubecost-host-outside-the-cluster",
        {
            "kubecost": {"enabled": False},
            "allocationExporter": {"config": {"kubecostUrl": "https://kubecost.example.com"}},
        },
        ["networkPolicy.egress.kubecost.to", '"kubecost.example.com"', "ipBlock", "networkPolicy.egress.enabled=false"],
    ),
    (
        "kubecost-two-label-host",
        {
            "kubecost": {"enabled": False},
            "allocationExporter": {"config": {"kubecostUrl": "http://kubecost-cost-analyzer.kubecost:9090"}},
        },
        [
            "networkPolicy.egress.kubecost.to",
            '"kubecost-cost-analyzer.kubecost"',
            "http://<service>.<namespace>.svc:<port>",
        ],
    ),
    (
        "dns-no-ports",
        {"networkPolicy": {"egress": {"dns": {"ports": []}}}},
        ["/networkPolicy/egress/dns/ports", "minItems"],
    ),
    (
        "peer-typo",
        {"networkPolicy": {"egress": {"thanos": {"to": [{"namespaceSelecter": {}}]}}}},
        ["/networkPolicy/egress/thanos/to/0", "namespaceSelecter"],
    ),
    (
        "peer-empty",
        {"networkPolicy": {"extraIngressFrom": [{}]}},
        ["/networkPolicy/extraIngressFrom/0", "minProperties"],
    ),
    (
        "peer-ipblock-and-selector",
        {"networkPolicy": {"egress": {"kubecost": {"to": [{"ipBlock": {"cidr": "10.0.0.0/8"}, "podSelector": {}}]}}}},
        ["/networkPolicy/egress/kubecost/to/0/podSelector"],
    ),
    (
        "cidr-without-prefix",
        {"networkPolicy": {"egress": {"clusterCIDRs": ["10.244.0.0"]}}},
        ["/networkPolicy/egress/clusterCIDRs/0", "pattern"],
    ),
    (
        "ipblock-bad-cidr",
        {"networkPolicy": {"egress": {"thanos": {"to": [{"ipBlock": {"cidr": "thanos.example"}}]}}}},
        ["/networkPolicy/egress/thanos/to/0/ipBlock/cidr"],
    ),
    (
        "port-missing",
        {"networkPolicy": {"egress": {"thanos": {"ports": [{"protocol": "TCP"}]}}}},
        ["/networkPolicy/egress/thanos/ports/0", "port"],
    ),
    (
        "port-protocol",
        {"networkPolicy": {"egress": {"kubecost": {"ports": [{"port": 9090, "protocol": "ICMP"}]}}}},
        ["/networkPolicy/egress/kubecost/ports/0/protocol", "TCP"],
    ),
    (
        "port-range",
        {"networkPolicy": {"egress": {"dns": {"ports": [{"port": 70000}]}}}},
        ["/networkPolicy/egress/dns/ports/0/port"],
    ),
    (
        "egress-rule-with-from",
        {"networkPolicy": {"agent": {"extraEgress": [{"from": [{"podSelector": {}}]}]}}},
        ["/networkPolicy/agent/extraEgress/0", "from"],
    ),
    (
        "ingress-rule-with-to",
        {"networkPolicy": {"exporter": {"extraIngress": [{"to": [{"podSelector": {}}]}]}}},
        ["/networkPolicy/exporter/extraIngress/0", "to"],
    ),
    ("unknown-key", {"networkPolicy": {"egress": {"thanosPeers": []}}}, ["/networkPolicy/egress", "thanosPeers"]),
    ("external-without-scraper", {"prometheus": {"mode": "external"}}, ["networkPolicy.extraIngressFrom"]),
]


@pytest.mark.parametrize(("values", "fragments"), [pytest.param(v, f, id=i) for i, v, f in BAD])
def test_bad_network_policy_values_are_refused_naming_what_to_set(
    helm: str, values: dict[str, Any], fragments: list[str]
) -> None:
    message = render_error(with_quickstart(deep_merge(ON, values)), helm=helm)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in helm's message:\n{message}"


def test_an_outside_kubecost_is_fine_once_its_peers_are_set_or_egress_is_off(helm: str) -> None:
    outside = {
        "kubecost": {"enabled": False},
        "allocationExporter": {"config": {"kubecostUrl": "https://kubecost.example.com"}},
    }
    assert exporter_egress(
        deep_merge(
            outside, {"networkPolicy": {"egress": {"kubecost": {"to": [{"ipBlock": {"cidr": "192.0.2.10/32"}}]}}}}
        ),
        helm,
    )[0] == {"to": [{"ipBlock": {"cidr": "192.0.2.10/32"}}], "ports": tcp(443)}
    pols = policies(
        render(
            with_quickstart(deep_merge(ON, deep_merge(outside, {"networkPolicy": {"egress": {"enabled": False}}}))),
            helm=helm,
        )
    )
    assert "egress" not in pols["allocation-exporter"]


# ------------------------------------------------------------------------------------------ offline schema check


#: Every option at once: IPv4/IPv6 ipBlocks with except, named and numbered ports, extra rules, proxies.
EVERYTHING = with_quickstart(
    {
        "networkPolicy": {
            "enabled": True,
            "extraIngressFrom": [ns("monitoring")],
            "egress": {
                "dns": {"to": [{"ipBlock": {"cidr": "169.254.20.10/32"}}, DNS["to"][0]]},
                "kubecost": {"ports": [{"port": "tcp-frontend", "protocol": "TCP"}]},
                "clusterCIDRs": ["10.244.0.0/16", "fd00:10:244::/56"],
            },
            "exporter": {
                "extraIngress": [{"from": [ns("debug")]}],
                "extraEgress": [{"to": [{"ipBlock": {"cidr": "10.0.0.10/32"}}], "ports": tcp(3128)}],
            },
            "agent": {
                "extraIngress": [{"from": [ns("monitoring")], "ports": [{"port": "http", "protocol": "TCP"}]}],
                "extraEgress": [
                    {"to": [ns("monitoring")], "ports": [{"port": 9100, "endPort": 9110, "protocol": "TCP"}]}
                ],
            },
        },
        "remoteWrite": {
            "extraRemoteWrite": [
                {
                    "name": "proxy",
                    "url": "https://vm.example.net/api/v1/write",
                    "proxy_url": "http://squid.proxy.svc:3128",
                }
            ]
        },
    }
)


def test_every_option_renders_valid_network_policies(helm: str, tmp_path: Path) -> None:
    docs = objects(render(EVERYTHING, helm=helm), "NetworkPolicy")
    assert len(docs) == 3
    manifest = tmp_path / "netpol.yaml"
    manifest.write_text(yaml.safe_dump_all(docs))
    assert kubeconform.summary(manifest)["valid"] == 3
