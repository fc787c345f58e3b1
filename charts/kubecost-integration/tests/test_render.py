"""Rendering matrix: release names x namespaces x modes, under Helm 3 and Helm 4.

Asserts what the platform depends on: the Kubecost URL points at the Service Kubecost really creates, the exporter
Service is what the agent scrapes, tenant and cluster agree everywhere (exporter env, external_labels, tenant header),
only cloudtuner_kubecost_* leaves the cluster, and the agent config loads in a real Prometheus 2.42 (promtool).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from testsupport.render import (
    QUICKSTART_VALUES,
    agent_config,
    agent_config_text,
    by_component,
    exporter_env,
    find,
    kubecost_mode,
    kubecost_prometheus_config,
    objects,
    render,
    render_error,
    with_quickstart,
)

pytestmark = pytest.mark.chart

# (release name, the name Kubecost 2.x gives its Service for it)
RELEASES = [
    ("my-kubecost", "my-kubecost-cost-analyzer"),
    ("kci", "kci-cost-analyzer"),
    ("cost-analyzer", "cost-analyzer"),
    ("team-cost-analyzer-prod", "team-cost-analyzer-prod"),
    # 53 characters (Helm's limit), not containing the chart name: <release>-cost-analyzer cut to 63
    ("r" * 52 + "1", ("r" * 52 + "1-cost-analyzer")[:63]),
    # 53 characters containing the chart name: the release name itself
    ("x" * 39 + "cost-analyzer" + "z", "x" * 39 + "cost-analyzer" + "z"),
    # ends with "-kubecost-integration" territory: our own fullname is cut to 63 and must lose its trailing dash
    ("k" * 53, ("k" * 53 + "-cost-analyzer")[:63]),
]
NAMESPACES = ["my-ns", "kubecost", "n" * 63]
MODES = ["agent", "kubecost", "external"]

DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
TENANT, CLUSTER = "acme-corp", "prod.eu-1"


#: The Kubecost 2.x engine: its naming rule is the one with edge cases (the release name containing the chart name,
#: truncation), and kubecost mode needs it. Kubecost 3 and OpenCost: test_engines.py and test_engines_real.py.
KUBECOST_2 = {"kubecost": {"enabled": False}, "cost-analyzer": {"enabled": True}}


def values_for(mode: str, release: str, namespace: str, helm: str) -> dict[str, Any]:
    base = with_quickstart({"tenantId": TENANT, "clusterName": CLUSTER, **KUBECOST_2})
    if mode == "kubecost":
        # The chart's own failure message supplies the subchart wiring (tested for exactness in test_kubecost_mode).
        return kubecost_mode(base, release, namespace, helm)
    return with_quickstart({**base, "prometheus": {"mode": mode}})


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("namespace", NAMESPACES)
@pytest.mark.parametrize(("release", "kubecost_service"), RELEASES)
def test_matrix(
    helm: str, release: str, kubecost_service: str, namespace: str, mode: str, require_tool: Any, tmp_path: Path
) -> None:
    docs = render(values_for(mode, release, namespace, helm), release=release, namespace=namespace, helm=helm)

    # Every object is namespaced into the release namespace with a valid, unique name.
    seen = set()
    for doc in docs:
        meta = doc["metadata"]
        assert meta.get("namespace") == namespace, (doc["kind"], meta["name"])
        assert DNS1123_LABEL.match(meta["name"]), meta["name"]
        assert len(meta["name"]) <= 63, meta["name"]
        for key, value in (meta.get("labels") or {}).items():
            assert len(str(value)) <= 63, (meta["name"], key, value)
        assert (doc["kind"], meta["name"]) not in seen
        seen.add((doc["kind"], meta["name"]))

    # The Kubecost URL names the Service that Kubecost (the stub follows its naming rule) really renders.
    env = exporter_env(docs)
    url = urlsplit(env["KUBECOST_URL"])
    assert url.scheme == "http"
    assert url.port == 9090
    assert url.hostname == f"{kubecost_service}.{namespace}.svc"
    kubecost_svc = find(docs, "Service", kubecost_service)
    assert {"name": "tcp-frontend", "port": 9090} in [
        {"name": p["name"], "port": p["port"]} for p in kubecost_svc["spec"]["ports"]
    ]

    # One source of truth for tenant and cluster.
    assert env["TENANT_ID"] == TENANT
    assert env["CLUSTER_NAME"] == CLUSTER

    # The exporter Service carries the port the scrapers target, and selects the exporter pods.
    exporter_svc = by_component(docs, "Service", "allocation-exporter")
    deploy = by_component(docs, "Deployment", "allocation-exporter")
    assert exporter_svc["spec"]["ports"] == [
        {"name": "http-metrics", "port": 9103, "targetPort": "http-metrics", "protocol": "TCP"}
    ]
    pod_labels = deploy["spec"]["template"]["metadata"]["labels"]
    assert exporter_svc["spec"]["selector"].items() <= pod_labels.items()
    exporter_target = f"{exporter_svc['metadata']['name']}.{namespace}.svc:9103"

    if mode == "agent":
        cfg = agent_config(docs)
        assert cfg["global"]["external_labels"] == {"cluster": CLUSTER, "tenant_id": TENANT}
        [job] = cfg["scrape_configs"]
        assert job["job_name"] == "kubecost-allocation-exporter"
        assert job["honor_labels"] is True
        assert job["static_configs"] == [{"targets": [exporter_target]}]
        [rw] = cfg["remote_write"]
        assert_platform_remote_write(rw)
        assert_loads_in_prometheus_242(agent_config_text(docs), tmp_path / "prometheus.yml", require_tool("promtool"))
        assert not objects(docs, "ServiceMonitor")
    elif mode == "kubecost":
        prom = kubecost_prometheus_config(docs)
        jobs = {j["job_name"]: j for j in prom["scrape_configs"]}
        assert {"kubecost", "kubecost-networking", "kubecost-aggregator", "kubecost-dcgm-exporter"} <= set(jobs)
        assert jobs["kubecost"]["dns_sd_configs"][0]["names"] == [kubecost_service]
        assert jobs["kubecost-allocation-exporter"]["static_configs"] == [{"targets": [exporter_target]}]
        assert prom["global"]["external_labels"]["cluster_id"] == CLUSTER
        [rw] = prom["remote_write"]
        assert_platform_remote_write(rw)
        assert not [
            d for d in docs if (d["metadata"].get("labels") or {}).get("app.kubernetes.io/component") == "agent"
        ]
    else:
        sm = by_component(docs, "ServiceMonitor", "allocation-exporter")
        assert sm["spec"]["selector"]["matchLabels"].items() <= exporter_svc["metadata"]["labels"].items()
        assert sm["spec"]["namespaceSelector"] == {"matchNames": [namespace]}
        assert sm["spec"]["endpoints"][0]["port"] == "http-metrics"
        assert sm["spec"]["endpoints"][0]["honorLabels"] is True
        assert not [
            d for d in docs if (d["metadata"].get("labels") or {}).get("app.kubernetes.io/component") == "agent"
        ]


def assert_platform_remote_write(rw: dict[str, Any]) -> None:
    assert rw["url"] == "https://thanos-receive.cloudtuner.ai/api/v1/receive"
    assert rw["headers"] == {"THANOS-TENANT": TENANT}
    assert rw["write_relabel_configs"] == [
        {
            "source_labels": ["__name__", "job"],
            "regex": "cloudtuner_kubecost_.*;(kubecost-allocation-exporter)",
            "action": "keep",
        }
    ]
    assert rw["tls_config"]["insecure_skip_verify"] is False


_promtool_checked: set[str] = set()


def assert_loads_in_prometheus_242(text: str, path: Path, promtool: str) -> None:
    """Debian's Prometheus 2.42 (what the e2e bench runs with --enable-feature=agent) accepts the config."""
    if text in _promtool_checked:
        return
    path.write_text(text)
    proc = subprocess.run(
        [promtool, "check", "config", "--agent", str(path)], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    _promtool_checked.add(text)


def test_quickstart_needs_only_tenant_and_cluster(helm: str) -> None:
    """The README quick start, flag for flag (Kubecost 3's cluster id is the cluster name again: values.yaml
    `global`)."""
    docs = render(
        None,
        release="my-kubecost",
        namespace="my-ns",
        helm=helm,
        set_args=["tenantId=acme", "clusterName=prod-eu-1", "global.clusterId=prod-eu-1"],
    )
    cfg = agent_config(docs)
    assert cfg["remote_write"][0]["headers"]["THANOS-TENANT"] == "acme"
    assert cfg["global"]["external_labels"] == {"cluster": "prod-eu-1", "tenant_id": "acme"}
    assert exporter_env(docs)["KUBECOST_URL"] == "http://my-kubecost-frontend.my-ns.svc:9090"


def test_fullname_override_of_kubecost_is_honoured(helm: str) -> None:
    docs = render(
        with_quickstart({**KUBECOST_2, "cost-analyzer": {"enabled": True, "fullnameOverride": "kc"}}), helm=helm
    )
    assert exporter_env(docs)["KUBECOST_URL"] == "http://kc.my-ns.svc:9090"
    find(docs, "Service", "kc")


def test_name_override_of_kubecost_is_honoured(helm: str) -> None:
    docs = render(
        with_quickstart({**KUBECOST_2, "cost-analyzer": {"enabled": True, "nameOverride": "kubecost"}}),
        release="kubecost",
        helm=helm,
    )
    # Kubecost: the release name contains nameOverride -> the release name.
    assert exporter_env(docs)["KUBECOST_URL"] == "http://kubecost.my-ns.svc:9090"


def test_kubecost_ha_frontend_has_its_own_service(helm: str) -> None:
    docs = render(
        with_quickstart(
            {**KUBECOST_2, "cost-analyzer": {"enabled": True, "kubecostFrontend": {"deployMethod": "haMode"}}}
        ),
        helm=helm,
    )
    assert exporter_env(docs)["KUBECOST_URL"] == "http://my-kubecost-frontend.my-ns.svc:9090"
    find(docs, "Service", "my-kubecost-frontend")


@pytest.mark.parametrize(
    "url",
    [
        "http://kubecost-cost-analyzer.kubecost.svc:9090",  # Kubecost 2.x elsewhere
        "http://kubecost-frontend.kubecost.svc:9090",  # Kubecost 3.x
        "http://opencost.opencost.svc:9003",  # OpenCost
    ],
)
def test_external_kubecost_url_is_used_verbatim_and_no_kubecost_is_installed(helm: str, url: str) -> None:
    docs = render(
        with_quickstart({"kubecost": {"enabled": False}, "allocationExporter": {"config": {"kubecostUrl": url}}}),
        helm=helm,
    )
    assert exporter_env(docs)["KUBECOST_URL"] == url
    assert not [
        d for d in docs if d["metadata"]["name"].endswith(("cost-analyzer", "frontend", "aggregator", "opencost"))
    ]


def test_kubecost_url_goes_through_tpl(helm: str) -> None:
    docs = render(
        with_quickstart(
            {
                "kubecost": {"enabled": False},
                "allocationExporter": {
                    "config": {"kubecostUrl": "http://{{ .Release.Name }}-x.{{ .Release.Namespace }}.svc:9090/"}
                },
            }
        ),
        release="r1",
        namespace="n1",
        helm=helm,
    )
    assert exporter_env(docs)["KUBECOST_URL"] == "http://r1-x.n1.svc:9090"


def test_exporter_env_carries_every_config_value(helm: str) -> None:
    cfg = {
        "api": "opencost",
        "metricMode": "total",
        "window": "today",
        "dataLag": "5m",
        "shareIdle": "none",
        "refreshInterval": "300s",
        "stalenessLimit": "1h",
        "logLevel": "debug",
        "logFormat": "json",
    }
    env = exporter_env(render(with_quickstart({"allocationExporter": {"config": cfg}}), helm=helm))
    assert env["KUBECOST_API"] == "opencost"
    assert env["METRIC_MODE"] == "total"
    assert env["WINDOW"] == "today"
    assert env["DATA_LAG"] == "5m"
    assert env["SHARE_IDLE"] == "none"
    assert env["REFRESH_INTERVAL"] == "300s"
    assert env["STALENESS_LIMIT"] == "1h"
    assert env["LOG_LEVEL"] == "debug"
    assert env["LOG_FORMAT"] == "json"
    assert env["LISTEN_ADDRESS"] == "0.0.0.0:9103"


@pytest.mark.parametrize(("value", "env_value"), [(None, "none"), ("estimate", "estimate"), ("api", "api")])
def test_savings_value_reaches_the_exporter_env(helm: str, value: str | None, env_value: str) -> None:
    """Off by default (CPU at 10,000 namespaces; `api` costs a query); the exporter reads SAVINGS (--savings)."""
    cfg = {} if value is None else {"savings": value}
    env = exporter_env(render(with_quickstart({"allocationExporter": {"config": cfg}}), helm=helm))
    assert env["SAVINGS"] == env_value


def test_an_unknown_savings_value_is_refused_by_the_schema(helm: str) -> None:
    err = render_error(with_quickstart({"allocationExporter": {"config": {"savings": "yes"}}}), helm=helm)
    assert "savings" in err, err


def test_optional_exporter_env_is_omitted_when_empty(helm: str) -> None:
    env = exporter_env(render(QUICKSTART_VALUES, helm=helm))
    for name in ("WINDOW", "DATA_LAG", "STALENESS_LIMIT", "AUTH_TOKEN_FILE", "API_KEY_FILE"):
        assert name not in env


def test_kubecost_api_credentials_are_files_from_the_secret(helm: str) -> None:
    docs = render(
        with_quickstart({"allocationExporter": {"kubecostAuth": {"existingSecret": "kc-auth", "tokenKey": "token"}}}),
        helm=helm,
    )
    env = exporter_env(docs)
    assert env["AUTH_TOKEN_FILE"] == "/etc/kubecost-allocation-exporter/auth/token"
    pod = by_component(docs, "Deployment", "allocation-exporter")["spec"]["template"]["spec"]
    assert {"name": "kubecost-auth", "secret": {"secretName": "kc-auth", "defaultMode": 0o440}} in pod["volumes"]


def test_allow_list_extends_the_keep_regex(helm: str) -> None:
    cfg = agent_config(
        render(
            with_quickstart({"remoteWrite": {"extraMetricsAllowList": ["up", "prometheus_remote_storage_.*"]}}),
            helm=helm,
        )
    )
    keep = cfg["remote_write"][0]["write_relabel_configs"]
    assert keep == [
        {
            "source_labels": ["__name__", "job"],
            "regex": "cloudtuner_kubecost_.*;(kubecost-allocation-exporter)|(up|prometheus_remote_storage_.*);.*",
            "action": "keep",
        }
    ]
    regex = re.compile(f"^(?:{keep[0]['regex']})$")  # Prometheus anchors relabel regexes; ";" joins the labels
    assert regex.match("cloudtuner_kubecost_cluster_total_cost;kubecost-allocation-exporter")
    assert regex.match("up;node-exporter")
    assert regex.match("prometheus_remote_storage_samples_total;agent")
    assert not regex.match("kubecost_cluster_management_cost;kubecost-allocation-exporter")
    assert not regex.match("container_cpu_usage_seconds_total;kubelet")


@pytest.mark.parametrize("mode", ["agent", "kubecost"])
def test_cost_series_leave_the_cluster_only_from_the_exporters_job(helm: str, mode: str) -> None:
    """Any other target of the same Prometheus (Kubecost's own jobs, prometheus.agent.extraScrapeConfigs) could expose
    series named cloudtuner_kubecost_*: only the exporter's job may send them. (External mode: test_static's
    test_external_mode_notes_snippets_match_the_agent_remote_write.)"""
    values = with_quickstart({"prometheus": {"mode": mode}})
    if mode == "kubecost":
        values = kubecost_mode(values, helm=helm)
    docs = render(values, helm=helm)
    config = agent_config(docs) if mode == "agent" else kubecost_prometheus_config(docs)
    [keep] = config["remote_write"][0]["write_relabel_configs"]
    assert keep["source_labels"] == ["__name__", "job"]
    assert keep["action"] == "keep"
    regex = re.compile(f"^(?:{keep['regex']})$")
    assert regex.match("cloudtuner_kubecost_cluster_total_cost;kubecost-allocation-exporter")
    for job in ("kubecost", "kubecost-networking", "evil", "my-kubecost-kubecost-integration-exporter", ""):
        assert not regex.match(f"cloudtuner_kubecost_cluster_total_cost;{job}"), job


def test_remote_write_url_goes_through_tpl(helm: str) -> None:
    cfg = agent_config(
        render(
            with_quickstart({"remoteWrite": {"url": "https://thanos.{{ .Release.Namespace }}.example/api/v1/receive"}}),
            namespace="ns1",
            helm=helm,
        )
    )
    assert cfg["remote_write"][0]["url"] == "https://thanos.ns1.example/api/v1/receive"


def test_bearer_auth_is_a_mounted_file_never_config(helm: str) -> None:
    docs = render(
        with_quickstart({"remoteWrite": {"auth": {"type": "bearer", "existingSecret": "thanos-rw"}}}), helm=helm
    )
    rw = agent_config(docs)["remote_write"][0]
    assert rw["authorization"] == {"type": "Bearer", "credentials_file": "/etc/prometheus/remote-write/auth/token"}
    pod = by_component(docs, "Deployment", "agent")["spec"]["template"]["spec"]
    assert {
        "name": "remote-write-auth",
        "secret": {"secretName": "thanos-rw", "defaultMode": 0o440, "items": [{"key": "token", "path": "token"}]},
    } in pod["volumes"]
    mounts = pod["containers"][0]["volumeMounts"]
    assert {"name": "remote-write-auth", "mountPath": "/etc/prometheus/remote-write/auth", "readOnly": True} in mounts


def test_basic_auth_reads_the_password_from_a_file(helm: str) -> None:
    rw = agent_config(
        render(
            with_quickstart({"remoteWrite": {"auth": {"type": "basic", "existingSecret": "s", "username": "u"}}}),
            helm=helm,
        )
    )["remote_write"][0]
    assert rw["basic_auth"] == {"username": "u", "password_file": "/etc/prometheus/remote-write/auth/password"}
    rw = agent_config(
        render(
            with_quickstart({"remoteWrite": {"auth": {"type": "basic", "existingSecret": "s", "usernameKey": "user"}}}),
            helm=helm,
        )
    )["remote_write"][0]
    assert rw["basic_auth"] == {
        "username_file": "/etc/prometheus/remote-write/auth/user",
        "password_file": "/etc/prometheus/remote-write/auth/password",
    }


def test_tls_ca_and_client_certificate_are_files(helm: str) -> None:
    docs = render(
        with_quickstart(
            {
                "remoteWrite": {
                    "tls": {
                        "existingSecret": "rw-tls",
                        "caKey": "ca.crt",
                        "certKey": "tls.crt",
                        "keyKey": "tls.key",
                        "serverName": "thanos",
                    }
                }
            }
        ),
        helm=helm,
    )
    tls = agent_config(docs)["remote_write"][0]["tls_config"]
    assert tls == {
        "insecure_skip_verify": False,
        "server_name": "thanos",
        "ca_file": "/etc/prometheus/remote-write/tls/ca.crt",
        "cert_file": "/etc/prometheus/remote-write/tls/tls.crt",
        "key_file": "/etc/prometheus/remote-write/tls/tls.key",
    }
    pod = by_component(docs, "Deployment", "agent")["spec"]["template"]["spec"]
    vol = next(v for v in pod["volumes"] if v["name"] == "remote-write-tls")
    assert vol["secret"]["secretName"] == "rw-tls"
    assert [i["key"] for i in vol["secret"]["items"]] == ["ca.crt", "tls.crt", "tls.key"]


def test_queue_config_and_extra_remote_write(helm: str) -> None:
    cfg = agent_config(
        render(
            with_quickstart(
                {
                    "remoteWrite": {
                        "queueConfig": {"max_shards": 3, "capacity": 100},
                        "extraRemoteWrite": [{"name": "mirror", "url": "https://mirror.example/api/v1/receive"}],
                    }
                }
            ),
            helm=helm,
        )
    )
    first, second = cfg["remote_write"]
    assert first["queue_config"]["max_shards"] == 3
    assert first["queue_config"]["capacity"] == 100
    assert first["queue_config"]["max_samples_per_send"] == 500  # defaults kept (maps merge)
    assert second == {"name": "mirror", "url": "https://mirror.example/api/v1/receive"}


def test_only_urls_of_extra_remote_write_go_through_tpl(helm: str) -> None:
    """A template in any other string of an entry is data: before, the whole block went through tpl, so a value could
    rewrite the agent's config."""
    entry = {
        "name": "{{ .Release.Name }}-mirror",
        "url": "https://{{ .Release.Namespace }}.mirror.example/api/v1/receive",
        "headers": {"X-Note": '{{ printf "evaluated" }}'},
    }
    cfg = agent_config(
        render(with_quickstart({"remoteWrite": {"extraRemoteWrite": [entry]}}), namespace="ns1", helm=helm)
    )
    assert cfg["remote_write"][1] == {
        "name": "{{ .Release.Name }}-mirror",
        "url": "https://ns1.mirror.example/api/v1/receive",
        "headers": {"X-Note": '{{ printf "evaluated" }}'},
    }


def test_a_tenant_header_in_extra_remote_write_needs_the_escape_hatch(helm: str) -> None:
    backup = {
        "name": "own-thanos",
        "url": "https://thanos.backup.example/api/v1/receive",
        "headers": {"THANOS-TENANT": "backup"},
    }
    values = with_quickstart({"remoteWrite": {"extraRemoteWrite": [backup]}})
    assert "rule: tenant header" in render_error(values, helm=helm)
    allowed = with_quickstart({"remoteWrite": {"extraRemoteWrite": [backup], "allowTenantHeaderOverride": True}})
    platform, extra = agent_config(render(allowed, helm=helm))["remote_write"]
    assert extra["headers"] == {"THANOS-TENANT": "backup"}
    assert platform["headers"] == {"THANOS-TENANT": "acme"}  # the platform queue keeps the chart's tenant
    # never the platform queue's own tenant header, hatch or not
    own = with_quickstart({"remoteWrite": {"headers": {"THANOS-TENANT": "other"}, "allowTenantHeaderOverride": True}})
    assert "would override the tenant header" in render_error(own, helm=helm)


def test_ordinary_extra_headers_pass_the_header_rules(helm: str) -> None:
    headers = {"X-Source": "kci cluster\t1", "X-Request-Id": "a-b.c_d~e!"}
    cfg = agent_config(render(with_quickstart({"remoteWrite": {"headers": headers}}), helm=helm))
    assert cfg["remote_write"][0]["headers"] == {**headers, "THANOS-TENANT": "acme"}


def test_the_wal_is_bounded_by_retention_and_extra_secrets_are_read_only(helm: str) -> None:
    values = with_quickstart(
        {
            "prometheus": {
                "agent": {
                    "walRetention": "12h",
                    "extraSecretMounts": [
                        {
                            "name": "backup-rw",
                            "secretName": "backup-remote-write",
                            "mountPath": "/etc/prometheus/secrets/backup-rw",
                        }
                    ],
                }
            },
            "remoteWrite": {
                "extraRemoteWrite": [
                    {
                        "name": "backup",
                        "url": "https://backup.example/api/v1/receive",
                        "basic_auth": {
                            "username": "kci",
                            "password_file": "/etc/prometheus/secrets/backup-rw/password",
                        },
                    }
                ]
            },
        }
    )
    pod = by_component(render(values, helm=helm), "Deployment", "agent")["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert "--storage.agent.retention.max-time=12h" in container["args"]
    assert {
        "name": "extra-secret-backup-rw",
        "mountPath": "/etc/prometheus/secrets/backup-rw",
        "readOnly": True,
    } in container["volumeMounts"]
    assert {
        "name": "extra-secret-backup-rw",
        "secret": {"secretName": "backup-remote-write", "defaultMode": 0o440},
    } in pod["volumes"]
    default = by_component(render(QUICKSTART_VALUES, helm=helm), "Deployment", "agent")["spec"]["template"]["spec"]
    assert "--storage.agent.retention.max-time=4h" in default["containers"][0]["args"]


def test_the_agent_overwrites_any_scraped_tenant_id_with_the_charts(helm: str) -> None:
    """The scraped data cannot choose its tenant: the exporter job's metric_relabel_configs set
    tenant_id to tenantId, whatever the target exposes (honor_labels
    would otherwise keep it)."""
    job = agent_config(render(with_quickstart(), helm=helm))["scrape_configs"][0]
    assert job["honor_labels"] is True
    assert job["metric_relabel_configs"] == [{"action": "replace", "target_label": "tenant_id", "replacement": "acme"}]


def test_extra_headers_and_custom_tenant_header(helm: str) -> None:
    rw = agent_config(
        render(
            with_quickstart({"remoteWrite": {"tenantHeader": "X-Scope-OrgID", "headers": {"X-Source": "kci"}}}),
            helm=helm,
        )
    )["remote_write"][0]
    assert rw["headers"] == {"X-Scope-OrgID": "acme", "X-Source": "kci"}


def test_extra_external_labels_and_scrape_configs(helm: str) -> None:
    cfg = agent_config(
        render(
            with_quickstart(
                {
                    "prometheus": {
                        "externalLabels": {"region": "eu"},
                        "agent": {
                            "extraScrapeConfigs": [
                                {"job_name": "self", "static_configs": [{"targets": ["localhost:9090"]}]}
                            ]
                        },
                    }
                }
            ),
            helm=helm,
        )
    )
    assert cfg["global"]["external_labels"] == {"cluster": "prod-eu-1", "tenant_id": "acme", "region": "eu"}
    assert [j["job_name"] for j in cfg["scrape_configs"]] == ["kubecost-allocation-exporter", "self"]


@pytest.mark.parametrize(("tag", "flag"), [("v3.9.1", "--agent"), ("v2.53.4", "--enable-feature=agent")])
def test_agent_flag_follows_prometheus_major(helm: str, tag: str, flag: str) -> None:
    docs = render(with_quickstart({"prometheus": {"agent": {"image": {"tag": tag}}}}), helm=helm)
    container = by_component(docs, "Deployment", "agent")["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == f"quay.io/prometheus/prometheus:{tag}"
    assert container["args"][0] == flag
    assert "--config.file=/etc/prometheus/prometheus.yml" in container["args"]


def test_config_change_rolls_the_agent(helm: str) -> None:
    def checksum(values: dict[str, Any]) -> str:
        docs = render(with_quickstart(values), helm=helm)
        return str(
            by_component(docs, "Deployment", "agent")["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
        )

    base = checksum({})
    assert re.fullmatch(r"[0-9a-f]{64}", base)
    assert checksum({}) == base
    assert checksum({"remoteWrite": {"url": "https://other.example/api/v1/receive"}}) != base
    assert checksum({"tenantId": "other"}) != base
    assert checksum({"allocationExporter": {"config": {"logLevel": "debug"}}}) == base  # exporter-only change


def test_agent_wal_persistence_deployment_and_statefulset(helm: str) -> None:
    docs = render(
        with_quickstart(
            {"prometheus": {"agent": {"persistence": {"enabled": True, "size": "5Gi", "storageClassName": "fast"}}}}
        ),
        helm=helm,
    )
    pvc = by_component(docs, "PersistentVolumeClaim", "agent")
    assert pvc["spec"]["resources"]["requests"]["storage"] == "5Gi"
    assert pvc["spec"]["storageClassName"] == "fast"
    deploy = by_component(docs, "Deployment", "agent")
    assert deploy["spec"]["strategy"] == {"type": "Recreate"}
    wal = next(v for v in deploy["spec"]["template"]["spec"]["volumes"] if v["name"] == "wal")
    assert wal == {"name": "wal", "persistentVolumeClaim": {"claimName": pvc["metadata"]["name"]}}

    docs = render(
        with_quickstart({"prometheus": {"agent": {"kind": "StatefulSet", "persistence": {"enabled": True}}}}), helm=helm
    )
    assert not objects(docs, "PersistentVolumeClaim")
    sts = by_component(docs, "StatefulSet", "agent")
    assert sts["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "wal"
    assert sts["spec"]["serviceName"] == by_component(docs, "Service", "agent")["metadata"]["name"]
    assert "wal" not in [v["name"] for v in sts["spec"]["template"]["spec"]["volumes"]]

    docs = render(QUICKSTART_VALUES, helm=helm)
    wal = next(
        v
        for v in by_component(docs, "Deployment", "agent")["spec"]["template"]["spec"]["volumes"]
        if v["name"] == "wal"
    )
    assert wal == {"name": "wal", "emptyDir": {"sizeLimit": "1Gi"}}


def test_exporter_image_defaults_to_app_version_and_digest_wins(helm: str) -> None:
    chart_yaml = yaml.safe_load((Path(__file__).parent.parent / "Chart.yaml").read_text())
    docs = render(QUICKSTART_VALUES, helm=helm)
    image = by_component(docs, "Deployment", "allocation-exporter")["spec"]["template"]["spec"]["containers"][0][
        "image"
    ]
    assert image == f"ghcr.io/cloudtuner/kubecost-allocation-exporter:{chart_yaml['appVersion']}"
    digest = "sha256:" + "a" * 64
    docs = render(with_quickstart({"allocationExporter": {"image": {"digest": digest}}}), helm=helm)
    image = by_component(docs, "Deployment", "allocation-exporter")["spec"]["template"]["spec"]["containers"][0][
        "image"
    ]
    assert image == f"ghcr.io/cloudtuner/kubecost-allocation-exporter@{digest}"


def test_helm_test_pod_checks_scrape_success_with_this_release_labels(helm: str) -> None:
    docs = render(QUICKSTART_VALUES, helm=helm)
    pod = by_component(docs, "Pod", "test")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    container = pod["spec"]["containers"][0]
    deploy = by_component(docs, "Deployment", "allocation-exporter")
    assert container["image"] == deploy["spec"]["template"]["spec"]["containers"][0]["image"]  # no extra image
    env = {e["name"]: e["value"] for e in container["env"]}
    svc = by_component(docs, "Service", "allocation-exporter")["metadata"]["name"]
    assert env["METRICS_URL"] == f"http://{svc}.my-ns.svc:9103/metrics"
    assert env["CLUSTER_NAME"] == "prod-eu-1"
    assert env["TENANT_ID"] == "acme"


def test_helm_test_pod_prints_its_output_and_is_deleted_passed_or_failed(helm: str) -> None:
    """`helm test` (no `--logs`) shows the pod's output; the pod never outlives the run, so `helm uninstall` (which
    deletes no hook resources) leaves nothing. `--logs` is not used: Helm reads the logs after that deletion."""
    annotations = by_component(render(QUICKSTART_VALUES, helm=helm), "Pod", "test")["metadata"]["annotations"]
    policies = set(annotations["helm.sh/hook-delete-policy"].split(","))
    assert policies == {"before-hook-creation", "hook-succeeded", "hook-failed"}, policies
    assert set(annotations["helm.sh/hook-output-log-policy"].split(",")) == {"hook-succeeded", "hook-failed"}


def test_helm_test_script_accepts_only_this_releases_success(tmp_path: Path) -> None:
    """Run the hook's Python against a real local HTTP server serving exposition text."""
    import http.server
    import os
    import sys
    import threading

    docs = render(QUICKSTART_VALUES)
    container = by_component(docs, "Pod", "test")["spec"]["containers"][0]
    script = container["args"][0]

    def run_against(body: str) -> subprocess.CompletedProcess[str]:
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                data = body.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            env = {
                **os.environ,
                "METRICS_URL": f"http://127.0.0.1:{server.server_port}/metrics",
                "CLUSTER_NAME": "prod-eu-1",
                "TENANT_ID": "acme",
                "TIMEOUT_SECONDS": "0",
            }
            return subprocess.run(
                [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60, check=False
            )
        finally:
            server.shutdown()

    ok = run_against('# TYPE x gauge\ncloudtuner_kubecost_scrape_success{cluster="prod-eu-1",tenant_id="acme"} 1.0\n')
    assert ok.returncode == 0, ok.stdout + ok.stderr
    failing = run_against('cloudtuner_kubecost_scrape_success{cluster="prod-eu-1",tenant_id="acme"} 0.0\n')
    assert failing.returncode == 1
    assert "FAIL" in failing.stdout
    other = run_against('cloudtuner_kubecost_scrape_success{cluster="other",tenant_id="acme"} 1.0\n')
    assert other.returncode == 1


def test_optional_objects_are_off_by_default_and_render_when_enabled(helm: str) -> None:
    docs = render(QUICKSTART_VALUES, helm=helm)
    for kind in ("ServiceMonitor", "PrometheusRule", "NetworkPolicy", "PodDisruptionBudget", "PersistentVolumeClaim"):
        assert not objects(docs, kind), kind
    assert {d["kind"] for d in docs} == {"ServiceAccount", "ConfigMap", "Service", "Deployment", "Pod"}
    docs = render(
        with_quickstart(
            {
                "serviceMonitor": {"enabled": True, "labels": {"release": "kps"}},
                "prometheusRule": {"enabled": True},
                "dashboards": {"enabled": True},
                "networkPolicy": {"enabled": True},
                "podDisruptionBudget": {"enabled": True},
            }
        ),
        helm=helm,
    )
    assert by_component(docs, "ServiceMonitor", "allocation-exporter")["metadata"]["labels"]["release"] == "kps"
    assert objects(docs, "PrometheusRule")
    dash = by_component(docs, "ConfigMap", "dashboards")
    assert dash["metadata"]["labels"]["grafana_dashboard"] == "1"
    # exporter, agent and the helm test pod (egress is restricted by default once policies are on)
    assert len(objects(docs, "NetworkPolicy")) == 3
    assert len(objects(docs, "PodDisruptionBudget")) == 2
    for pdb in objects(docs, "PodDisruptionBudget"):
        assert pdb["spec"]["maxUnavailable"] == 1


def test_network_policy_admits_the_agent_and_the_test_pod(helm: str) -> None:
    docs = render(with_quickstart({"networkPolicy": {"enabled": True}}), helm=helm)
    policy = by_component(docs, "NetworkPolicy", "allocation-exporter")
    peers = policy["spec"]["ingress"][0]["from"]
    agent_labels = by_component(docs, "Deployment", "agent")["spec"]["template"]["metadata"]["labels"]
    test_labels = by_component(docs, "Pod", "test")["metadata"]["labels"]
    assert any(p["podSelector"]["matchLabels"].items() <= agent_labels.items() for p in peers)
    assert any(p["podSelector"]["matchLabels"].items() <= test_labels.items() for p in peers)
    exporter_labels = by_component(docs, "Deployment", "allocation-exporter")["spec"]["template"]["metadata"]["labels"]
    assert not any(p["podSelector"]["matchLabels"].items() <= exporter_labels.items() for p in peers)
    agent_policy = by_component(docs, "NetworkPolicy", "agent")
    assert agent_policy["spec"]["ingress"] == []
    assert agent_policy["spec"]["policyTypes"] == ["Ingress", "Egress"]


def test_kubecost_subchart_is_render_safe_for_gitops(helm: str, chart: Path) -> None:
    """Kubecost's lookup-based sanity checks break `helm template`/Argo CD unless its cicd mode is on: the chart's
    `cost-analyzer.global.platforms.cicd` must reach the subchart's own `.Values.global`."""
    probe = chart / "charts" / "cost-analyzer" / "templates" / "probe.yaml"
    probe.write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: probe\n"
        "data:\n  cicd: {{ .Values.global.platforms.cicd | toJson | quote }}\n"
    )
    docs = render(with_quickstart(KUBECOST_2), helm=helm, chart=chart)
    assert yaml.safe_load(find(docs, "ConfigMap", "probe")["data"]["cicd"]) == {
        "enabled": True,
        "skipSanityChecks": True,
    }


def test_kubecost_3_gets_its_gitops_settings(helm: str) -> None:
    """Kubecost 3 likewise (the real chart's cicd branch is checked in test_engines_real.py)."""
    docs = render(QUICKSTART_VALUES, helm=helm)
    assert find(docs, "ConfigMap", "my-kubecost-stub-cluster-id")["data"] == {
        "clusterId": "prod-eu-1",
        "cicd": "true/true",
    }


def test_network_policy_admits_kubecosts_prometheus_in_kubecost_mode(helm: str) -> None:
    values = kubecost_mode(with_quickstart({"networkPolicy": {"enabled": True}}), helm=helm)
    docs = render(values, helm=helm)
    peers = by_component(docs, "NetworkPolicy", "allocation-exporter")["spec"]["ingress"][0]["from"]
    # Kubecost 2.x labels its Prometheus server pods app=prometheus, component=<server.name>, release=<release>.
    assert {
        "podSelector": {"matchLabels": {"app": "prometheus", "component": "server", "release": "my-kubecost"}}
    } in peers
