"""Bad input is refused with a message that names what to set; it never renders a broken manifest.

Each case: values overlaid on the quick start, and the text fragments helm's error must contain (the value's path
and, for cross-field rules, what to do). Schema messages name the JSON pointer (`/allocationExporter/config/...`);
the validations template names the dotted value path and prints the fix.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from testsupport.render import (
    QUICKSTART_VALUES,
    deep_merge,
    kubecost_mode,
    kubecost_mode_values,
    kubecost_prometheus_config,
    render,
    render_error,
    with_quickstart,
)

pytestmark = pytest.mark.chart

NO_ENGINE = {"kubecost": {"enabled": False}}
KUBECOST_2 = {"kubecost": {"enabled": False}, "cost-analyzer": {"enabled": True}}

# (id, values overlaid on the quick start, fragments expected in helm's message)
BAD_VALUES: list[tuple[str, dict[str, Any], list[str]]] = [
    # identity (schema)
    ("tenant-empty", {"tenantId": ""}, ["tenantId"]),
    # empty clusterName follows global.clusterId (Kubecost 3's), so both empty is the missing name
    ("cluster-empty", {"clusterName": "", "global": {"clusterId": ""}}, ["clusterName", "global.clusterId"]),
    ("tenant-slash", {"tenantId": "acme/prod"}, ["tenantId", "pattern"]),
    ("tenant-space", {"tenantId": "acme corp"}, ["tenantId", "pattern"]),
    ("cluster-quote", {"clusterName": 'prod"1'}, ["clusterName", "pattern"]),
    ("cluster-too-long", {"clusterName": "c" * 64}, ["clusterName"]),
    ("tenant-trailing-dash", {"tenantId": "acme-"}, ["tenantId", "pattern"]),
    ("tenant-typo-key", {"allocationExporter": {"config": {"tenantID": "acme"}}}, ["tenantID", "not allowed"]),
    # enums (schema)
    ("mode", {"prometheus": {"mode": "sidecar"}}, ["mode", "agent", "kubecost", "external"]),
    ("api", {"allocationExporter": {"config": {"api": "cloudability"}}}, ["api", "opencost"]),
    ("metric-mode", {"allocationExporter": {"config": {"metricMode": "percent"}}}, ["metricMode", "rate"]),
    ("share-idle", {"allocationExporter": {"config": {"shareIdle": "even"}}}, ["shareIdle", "weighted"]),
    ("log-format", {"allocationExporter": {"config": {"logFormat": "xml"}}}, ["logFormat", "json"]),
    ("auth-type", {"remoteWrite": {"auth": {"type": "oauth2"}}}, ["/remoteWrite/auth/type", "bearer"]),
    ("agent-kind", {"prometheus": {"agent": {"kind": "DaemonSet"}}}, ["kind", "StatefulSet"]),
    # formats (schema)
    ("rw-url-scheme", {"remoteWrite": {"url": "thanos-receive:19291/api/v1/receive"}}, ["remoteWrite/url"]),
    ("rw-url-empty", {"remoteWrite": {"url": ""}}, ["remoteWrite/url"]),
    ("kubecost-url-scheme", {"allocationExporter": {"config": {"kubecostUrl": "kubecost:9090"}}}, ["kubecostUrl"]),
    ("scrape-interval", {"prometheus": {"scrapeInterval": "one minute"}}, ["scrapeInterval"]),
    ("refresh-interval", {"allocationExporter": {"config": {"refreshInterval": "2 min"}}}, ["refreshInterval"]),
    (
        "queue-unknown-key",
        {"remoteWrite": {"queueConfig": {"retry_on_http_429": True}}},
        ["queueConfig", "retry_on_http_429"],
    ),
    ("queue-shards", {"remoteWrite": {"queueConfig": {"max_shards": 0}}}, ["max_shards"]),
    ("port", {"allocationExporter": {"port": 80}}, ["port"]),
    ("digest", {"allocationExporter": {"image": {"digest": "latest"}}}, ["digest"]),
    ("agent-image-major", {"prometheus": {"agent": {"image": {"tag": "latest"}}}}, ["/prometheus/agent/image/tag"]),
    ("root-user", {"allocationExporter": {"podSecurityContext": {"runAsNonRoot": False}}}, ["runAsNonRoot"]),
    (
        "privilege-escalation",
        {"prometheus": {"agent": {"securityContext": {"allowPrivilegeEscalation": True}}}},
        ["allowPrivilegeEscalation"],
    ),
    ("no-limits", {"allocationExporter": {"resources": {"limits": None}}}, ["resources"]),
    ("agent-no-requests", {"prometheus": {"agent": {"resources": {"requests": None}}}}, ["resources"]),
    ("unknown-preset", {"sizing": {"preset": "xl"}}, ["/sizing/preset"]),
    ("vpa-deprecated-auto", {"verticalPodAutoscaler": {"updateMode": "Auto"}}, ["updateMode"]),
    ("vpa-enabled-string", {"verticalPodAutoscaler": {"enabled": "yes"}}, ["/verticalPodAutoscaler/enabled"]),
    ("allow-list-alternation", {"remoteWrite": {"extraMetricsAllowList": ["up|.*"]}}, ["extraMetricsAllowList"]),
    ("extra-rw-without-url", {"remoteWrite": {"extraRemoteWrite": [{"name": "x"}]}}, ["extraRemoteWrite", "url"]),
    ("unknown-top-level", {"remotewrite": {"url": "https://x"}}, ["remotewrite", "not allowed"]),
    # cross-field (validations template): the message says what to set
    ("no-kubecost-no-url", NO_ENGINE, ["allocationExporter.config.kubecostUrl", "No cost engine is enabled"]),
    (
        "frontend-disabled",
        {**KUBECOST_2, "cost-analyzer": {"enabled": True, "kubecostFrontend": {"enabled": False}}},
        ["allocationExporter.config.kubecostUrl"],
    ),
    (
        "kubecost-3-frontend-disabled",
        {"kubecost": {"frontend": {"enabled": False}}},
        ["kubecost.frontend.enabled", "allocationExporter.config.kubecostUrl"],
    ),
    (
        "kubecost-url-tpl-bad",
        {**NO_ENGINE, "allocationExporter": {"config": {"kubecostUrl": "{{ .Release.Name }}:9090"}}},
        ["allocationExporter.config.kubecostUrl", "http(s) URL"],
    ),
    ("rw-url-tpl-bad", {"remoteWrite": {"url": "{{ .Release.Name }}"}}, ["remoteWrite.url", "Thanos Receive endpoint"]),
    (
        "bearer-without-secret",
        {"remoteWrite": {"auth": {"type": "bearer"}}},
        ["remoteWrite.auth.existingSecret", "kubectl -n my-ns create secret"],
    ),
    (
        "basic-without-username",
        {"remoteWrite": {"auth": {"type": "basic", "existingSecret": "s"}}},
        ["remoteWrite.auth.username"],
    ),
    (
        "basic-both-usernames",
        {"remoteWrite": {"auth": {"type": "basic", "existingSecret": "s", "username": "u", "usernameKey": "user"}}},
        ["username or usernameKey"],
    ),
    ("secret-without-type", {"remoteWrite": {"auth": {"existingSecret": "s"}}}, ["remoteWrite.auth.type"]),
    ("tls-key-without-secret", {"remoteWrite": {"tls": {"caKey": "ca.crt"}}}, ["remoteWrite.tls.existingSecret"]),
    ("tls-secret-without-keys", {"remoteWrite": {"tls": {"existingSecret": "tls"}}}, ["remoteWrite.tls.caKey"]),
    (
        "tls-cert-without-key",
        {"remoteWrite": {"tls": {"existingSecret": "tls", "certKey": "tls.crt"}}},
        ["remoteWrite.tls.keyKey"],
    ),
    (
        "tenant-header-override",
        {"remoteWrite": {"headers": {"thanos-tenant": "other"}}},
        ["remoteWrite.headers.thanos-tenant", "tenantId"],
    ),
    (
        "authorization-header",
        {"remoteWrite": {"headers": {"Authorization": "Bearer x"}}},
        ["remoteWrite.auth", "existingSecret"],
    ),
    (
        "reserved-header",
        {"remoteWrite": {"headers": {"User-Agent": "x"}}},
        ["remoteWrite.headers.User-Agent", "remove it"],
    ),
    (
        "external-label-cluster",
        {"prometheus": {"externalLabels": {"cluster": "x"}}},
        ["prometheus.externalLabels.cluster", "clusterName"],
    ),
    (
        "external-label-name",
        {"prometheus": {"externalLabels": {"bad-name": "x"}}},
        ["prometheus.externalLabels", "bad-name"],
    ),
    (
        "timeout-over-interval",
        {"prometheus": {"scrapeInterval": "30s", "scrapeTimeout": "1m"}},
        ["prometheus.scrapeTimeout", "at most"],
    ),
    (
        "extra-rw-same-name",
        {"remoteWrite": {"extraRemoteWrite": [{"name": "cloudtuner-thanos", "url": "https://x.example"}]}},
        ["extraRemoteWrite", "another name"],
    ),
    (
        "external-netpol-without-peers",
        {"prometheus": {"mode": "external"}, "networkPolicy": {"enabled": True}},
        ["networkPolicy.extraIngressFrom"],
    ),
    (
        "kubecost-mode-without-kubecost",
        {
            "prometheus": {"mode": "kubecost"},
            **NO_ENGINE,
            "allocationExporter": {"config": {"kubecostUrl": "http://k:9090"}},
        },
        ["cost-analyzer.enabled=true"],
    ),
    (
        "kubecost-mode-with-kubecost-3",
        {"prometheus": {"mode": "kubecost"}},
        ["Kubecost 3 has no Prometheus", "kubecost.enabled=false and cost-analyzer.enabled=true"],
    ),
    (
        "kubecost-mode-without-prometheus",
        {
            "prometheus": {"mode": "kubecost"},
            **KUBECOST_2,
            "cost-analyzer": {"enabled": True, "global": {"prometheus": {"enabled": False}}},
        },
        ["cost-analyzer.global.prometheus.enabled=true"],
    ),
    (
        "kubecost-mode-with-amp",
        {
            "prometheus": {"mode": "kubecost"},
            **KUBECOST_2,
            "cost-analyzer": {"enabled": True, "global": {"amp": {"enabled": True}}},
        },
        ["cost-analyzer.global.amp.enabled=false"],
    ),
    (
        "kubecost-mode-unwired",
        {"prometheus": {"mode": "kubecost"}, **KUBECOST_2},
        ["cost-analyzer:", "remoteWrite:", "extraScrapeConfigs: |", "THANOS-TENANT: acme"],
    ),
    # YAML injection through values that reach a manifest (schema grammar; test_injection.py covers every value)
    (
        "priority-class-injection",
        {"allocationExporter": {"priorityClassName": "x\n      hostNetwork: true"}},
        ["/allocationExporter/priorityClassName", "pattern"],
    ),
    (
        "agent-priority-class-injection",
        {"prometheus": {"agent": {"priorityClassName": "x\n  hostPID: true"}}},
        ["/prometheus/agent/priorityClassName", "pattern"],
    ),
    # (helm's validator reports a bad map key at an unrelated location, so only the key is checked)
    ("label-key", {"commonLabels": {"team name": "x"}}, ["invalid propertyName 'team name'"]),
    (
        "label-value-newline",
        {"allocationExporter": {"podLabels": {"team": "a\nb"}}},
        ["/allocationExporter/podLabels/team", "pattern"],
    ),
    (
        "annotation-key",
        {"allocationExporter": {"podAnnotations": {"bad key": "x"}}},
        ["invalid propertyName 'bad key'"],
    ),
    ("image-tag", {"allocationExporter": {"image": {"tag": "1.0\nx: y"}}}, ["/allocationExporter/image/tag"]),
    (
        "storage-class",
        {"prometheus": {"agent": {"persistence": {"storageClassName": "Fast SSD"}}}},
        ["storageClassName"],
    ),
    (
        "basic-username-colon",
        {"remoteWrite": {"auth": {"type": "basic", "existingSecret": "s", "username": "a:b"}}},
        ["/remoteWrite/auth/username"],
    ),
    # remote_write headers: each refusal names its rule
    (
        "reserved-content-type",
        {"remoteWrite": {"headers": {"Content-Type": "text/plain"}}},
        ["remoteWrite.headers.Content-Type", "rule: reserved header"],
    ),
    (
        "reserved-content-length",
        {"remoteWrite": {"headers": {"Content-Length": "1"}}},
        ["remoteWrite.headers.Content-Length", "rule: reserved header"],
    ),
    (
        "reserved-accept-encoding",
        {"remoteWrite": {"headers": {"accept-encoding": "gzip"}}},
        ["remoteWrite.headers.accept-encoding", "rule: reserved header"],
    ),
    (
        "reserved-amz-date",
        {"remoteWrite": {"headers": {"X-Amz-Date": "x"}}},
        ["remoteWrite.headers.X-Amz-Date", "rule: reserved header"],
    ),
    (
        "header-value-crlf",
        {"remoteWrite": {"headers": {"X-Source": "kci\r\nX-Injected: 1"}}},
        ["remoteWrite.headers.X-Source", "rule: header value"],
    ),
    (
        "header-value-lf",
        {"remoteWrite": {"headers": {"X-Source": "kci\nX-Injected: 1"}}},
        ["remoteWrite.headers.X-Source", "rule: header value"],
    ),
    (
        "header-name",
        {"remoteWrite": {"headers": {"X Source": "kci"}}},
        ["remoteWrite.headers", "X Source", "rule: header name"],
    ),
    (
        "tenant-header-reserved",
        {"remoteWrite": {"tenantHeader": "Content-Type"}},
        ["remoteWrite.tenantHeader", "rule: reserved remote_write header"],
    ),
    (
        "renamed-tenant-header-plus-thanos-tenant",
        {"remoteWrite": {"tenantHeader": "X-Scope-OrgID", "headers": {"THANOS-TENANT": "other"}}},
        ["remoteWrite.headers.THANOS-TENANT", "rule: tenant header", "remoteWrite.allowTenantHeaderOverride"],
    ),
    (
        "extra-rw-tenant-header",
        {
            "remoteWrite": {
                "extraRemoteWrite": [
                    {
                        "url": "https://thanos-receive.cloudtuner.ai/api/v1/receive",
                        "name": "x",
                        "headers": {"thanos-tenant": "victim"},
                    }
                ]
            }
        },
        ["remoteWrite.extraRemoteWrite[0].headers.thanos-tenant", "rule: tenant header"],
    ),
    (
        "extra-rw-scope-orgid",
        {
            "remoteWrite": {
                "extraRemoteWrite": [
                    {"url": "https://m.example/api/v1/push", "name": "x", "headers": {"X-Scope-OrgID": "victim"}}
                ]
            }
        },
        ["remoteWrite.extraRemoteWrite[0].headers.X-Scope-OrgID", "rule: tenant header"],
    ),
    (
        "extra-rw-reserved",
        {
            "remoteWrite": {
                "extraRemoteWrite": [
                    {"url": "https://b.example/x", "name": "x", "headers": {"Content-Encoding": "gzip"}}
                ]
            }
        },
        ["remoteWrite.extraRemoteWrite[0].headers.Content-Encoding", "rule: reserved header"],
    ),
    (
        "extra-rw-crlf",
        {
            "remoteWrite": {
                "extraRemoteWrite": [{"url": "https://b.example/x", "name": "x", "headers": {"X-A": "a\rb"}}]
            }
        },
        ["remoteWrite.extraRemoteWrite[0].headers.X-A", "rule: header value"],
    ),
    (
        "extra-rw-authorization",
        {
            "remoteWrite": {
                "extraRemoteWrite": [
                    {"url": "https://b.example/x", "name": "x", "headers": {"Authorization": "Bearer t"}}
                ]
            }
        },
        ["remoteWrite.extraRemoteWrite[0].headers.Authorization", "credentials only from Secrets"],
    ),
    # credentials only from Secrets
    (
        "extra-rw-inline-password",
        {
            "remoteWrite": {
                "extraRemoteWrite": [
                    {"url": "https://b.example/x", "name": "x", "basic_auth": {"username": "u", "password": "hunter2"}}
                ]
            }
        },
        [
            "remoteWrite.extraRemoteWrite[0] sets password inline",
            "credentials only from Secrets",
            "extraSecretMounts",
            "password_file",
        ],
    ),
    (
        "extra-rw-inline-credentials",
        {
            "remoteWrite": {
                "extraRemoteWrite": [{"url": "https://b.example/x", "name": "x", "authorization": {"credentials": "t"}}]
            }
        },
        ["sets credentials inline", "credentials_file"],
    ),
    (
        "extra-rw-inline-oauth2",
        {
            "remoteWrite": {
                "extraRemoteWrite": [
                    {
                        "url": "https://b.example/x",
                        "name": "x",
                        "oauth2": {"client_id": "i", "client_secret": "s", "token_url": "https://t"},
                    }
                ]
            }
        },
        ["sets client_secret inline"],
    ),
    (
        "extra-rw-url-userinfo",
        {"remoteWrite": {"extraRemoteWrite": [{"url": "https://u:p@b.example/x", "name": "x"}]}},
        ["remoteWrite.extraRemoteWrite[0].url has user:password@", "credentials only from Secrets"],
    ),
    (
        "rw-url-userinfo",
        {"remoteWrite": {"url": "https://u:p@thanos.example/api/v1/receive"}},
        ["remoteWrite.url has user:password@", "remoteWrite.auth"],
    ),
    (
        "kubecost-url-userinfo",
        {
            **NO_ENGINE,
            "allocationExporter": {"config": {"kubecostUrl": "http://admin:hunter2@kubecost.kubecost.svc:9090"}},
        },
        ["allocationExporter.config.kubecostUrl has user:password@", "allocationExporter.kubecostAuth"],
    ),
    (
        "kubecost-url-token",
        {
            **NO_ENGINE,
            "allocationExporter": {
                "config": {"kubecostUrl": "http://kubecost.kubecost.svc:9090/model/allocation?token=abc"}
            },
        },
        [
            "allocationExporter.config.kubecostUrl has a credential in its query (token=...)",
            "allocationExporter.kubecostAuth",
        ],
    ),
    # WAL and extra secret mounts
    (
        "wal-retention-in-extra-args",
        {"prometheus": {"agent": {"extraArgs": ["--storage.agent.retention.max-time=48h"]}}},
        ["prometheus.agent.walRetention"],
    ),
    (
        "wal-retention-format",
        {"prometheus": {"agent": {"walRetention": "4 hours"}}},
        ["/prometheus/agent/walRetention"],
    ),
    (
        "extra-secret-over-wal",
        {
            "prometheus": {
                "agent": {"extraSecretMounts": [{"name": "x", "secretName": "s", "mountPath": "/prometheus"}]}
            }
        },
        ["extraSecretMounts[x].mountPath", "WAL"],
    ),
    (
        "extra-secret-twice",
        {
            "prometheus": {
                "agent": {
                    "extraSecretMounts": [
                        {"name": "x", "secretName": "s", "mountPath": "/a"},
                        {"name": "x", "secretName": "t", "mountPath": "/b"},
                    ]
                }
            }
        },
        ["used twice"],
    ),
]


@pytest.mark.parametrize(("values", "fragments"), [pytest.param(v, f, id=i) for i, v, f in BAD_VALUES])
def test_bad_values_are_rejected_with_a_message_naming_what_to_set(
    helm: str, values: dict[str, Any], fragments: list[str]
) -> None:
    message = render_error(with_quickstart(values), helm=helm)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in helm's message:\n{message}"


def test_there_are_at_least_25_bad_values() -> None:
    assert len(BAD_VALUES) >= 25


def test_no_values_at_all_names_both_required_values(helm: str) -> None:
    message = render_error(None, helm=helm)
    assert "tenantId" in message
    assert "clusterName" in message


@pytest.mark.parametrize(
    "values",
    [
        {"tenantId": "a"},
        {"tenantId": "Acme_Corp.prod-1"},
        {"clusterName": "c" * 63, "global": {"clusterId": "c" * 63}},
        {"prometheus": {"scrapeInterval": "1m30s", "scrapeTimeout": "90s"}},
        {"allocationExporter": {"config": {"refreshInterval": "120"}}},
    ],
)
def test_edge_values_that_are_fine_render(helm: str, values: dict[str, Any]) -> None:
    assert render(with_quickstart(values), helm=helm)


# --- kubecost mode: tenant/cluster disagreement is caught, the printed YAML is exact --------------------------------


def test_kubecost_mode_printed_values_make_the_render_pass_and_wire_everything(helm: str) -> None:
    values = kubecost_mode(QUICKSTART_VALUES, helm=helm)
    prom = kubecost_prometheus_config(render(values, helm=helm))
    assert prom["remote_write"][0]["headers"] == {"THANOS-TENANT": "acme"}
    assert prom["global"]["external_labels"]["cluster_id"] == "prod-eu-1"
    assert values["cost-analyzer"]["prometheus"]["configmapReload"]["prometheus"]["enabled"] is True


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"tenantId": "other-tenant"}, 'THANOS-TENANT header is "acme", tenantId is "other-tenant"'),
        ({"clusterName": "other-cluster"}, 'cluster_id is "prod-eu-1", clusterName is "other-cluster"'),
        (
            {"remoteWrite": {"url": "https://elsewhere.example/api/v1/receive"}},
            "differs from this chart's remote_write",
        ),
        ({"allocationExporter": {"port": 9200}}, "does not target"),
    ],
)
def test_kubecost_mode_disagreement_fails_with_the_exact_yaml(helm: str, change: dict[str, Any], expected: str) -> None:
    wired = kubecost_mode(QUICKSTART_VALUES, helm=helm)
    changed = deep_merge(wired, change)
    message = render_error(changed, helm=helm)
    assert expected in message, message
    # The printed YAML, added as-is, fixes it.
    fixed = deep_merge(changed, kubecost_mode_values(message))
    assert render(fixed, helm=helm)


def test_kubecost_mode_needs_all_four_kubecost_jobs(helm: str) -> None:
    wired = kubecost_mode(QUICKSTART_VALUES, helm=helm)
    scrape = wired["cost-analyzer"]["prometheus"]["extraScrapeConfigs"]
    without = re.sub(r"(?ms)^- job_name: kubecost-dcgm-exporter\n.*?(?=^- job_name:)", "", scrape)
    assert "kubecost-dcgm-exporter" not in without
    message = render_error(
        deep_merge(wired, {"cost-analyzer": {"prometheus": {"extraScrapeConfigs": without}}}), helm=helm
    )
    assert 'lacks the job "kubecost-dcgm-exporter"' in message


def test_kubecost_mode_with_auth_mounts_the_secret_into_kubecosts_prometheus(helm: str) -> None:
    base = with_quickstart({"remoteWrite": {"auth": {"type": "bearer", "existingSecret": "thanos-rw"}}})
    wired = kubecost_mode(base, helm=helm)
    mounts = wired["cost-analyzer"]["prometheus"]["server"]["extraSecretMounts"]
    assert mounts == [
        {
            "name": "remote-write-auth",
            "mountPath": "/etc/prometheus/remote-write/auth",
            "secretName": "thanos-rw",
            "readOnly": True,
            "subPath": "",
        }
    ]
    rw = kubecost_prometheus_config(render(wired, helm=helm))["remote_write"][0]
    assert rw["authorization"]["credentials_file"] == "/etc/prometheus/remote-write/auth/token"


def test_kubecost_mode_values_work_under_any_release_name_and_namespace(helm: str) -> None:
    """The printed block has no release name in it: Kubecost's tpl resolves the exporter address itself."""
    wired = kubecost_mode(QUICKSTART_VALUES, release="first", namespace="ns-a", helm=helm)
    assert "first" not in str(wired["cost-analyzer"])
    assert "ns-a" not in str(wired["cost-analyzer"])
    for release, namespace in [("first", "ns-a"), ("kubecost-integration", "ns-b"), ("cost-analyzer", "kubecost")]:
        docs = render(wired, release=release, namespace=namespace, helm=helm)
        from testsupport.render import by_component

        svc = by_component(docs, "Service", "allocation-exporter")["metadata"]["name"]
        jobs = {j["job_name"]: j for j in kubecost_prometheus_config(docs)["scrape_configs"]}
        assert jobs["kubecost-allocation-exporter"]["static_configs"] == [{"targets": [f"{svc}.{namespace}.svc:9103"]}]


# Numbers where the chart documents strings: `--set` gives Helm an int64, a values file a float64 (which Go prints as
# 1.2e+07). Both render as the digits given, in every place the value reaches.
NUMERIC_IDENTITY = {
    "tenantId": 12345678,
    "clusterName": 20261206,
    "dataLag": 120,
    "refreshInterval": 90,
    "stalenessLimit": 900,
}


@pytest.mark.parametrize("given_as", ["set", "values-file"])
def test_numeric_identity_and_durations_render_as_strings(helm: str, given_as: str) -> None:
    from testsupport.render import agent_config, by_component, exporter_env

    identity = {k: v for k, v in NUMERIC_IDENTITY.items() if k in ("tenantId", "clusterName")}
    durations = {k: v for k, v in NUMERIC_IDENTITY.items() if k not in identity}
    if given_as == "set":
        set_args = [f"{k}={v}" for k, v in identity.items()] + [f"global.clusterId={identity['clusterName']}"]
        set_args += [f"allocationExporter.config.{k}={v}" for k, v in durations.items()]
        docs = render(None, helm=helm, set_args=set_args)
    else:
        docs = render(
            {**identity, "global": {"clusterId": identity["clusterName"]}, "allocationExporter": {"config": durations}},
            helm=helm,
        )
    env = exporter_env(docs)
    assert (env["TENANT_ID"], env["CLUSTER_NAME"]) == ("12345678", "20261206"), env
    assert (env["DATA_LAG"], env["REFRESH_INTERVAL"], env["STALENESS_LIMIT"]) == ("120", "90", "900"), env
    config = agent_config(docs)
    assert config["global"]["external_labels"] == {"cluster": "20261206", "tenant_id": "12345678"}
    assert config["remote_write"][0]["headers"]["THANOS-TENANT"] == "12345678"
    test_env = {e["name"]: e["value"] for e in by_component(docs, "Pod", "test")["spec"]["containers"][0]["env"]}
    assert (test_env["TENANT_ID"], test_env["CLUSTER_NAME"]) == ("12345678", "20261206")


def test_numeric_cluster_name_is_kubecosts_cluster_id_as_a_string(helm: str) -> None:
    values = with_quickstart({"tenantId": 12345678, "clusterName": 20261206})
    wired = kubecost_mode(values, helm=helm)
    assert wired["cost-analyzer"]["prometheus"]["server"]["global"]["external_labels"]["cluster_id"] == "20261206"
    assert render(wired, helm=helm)


@pytest.mark.parametrize("missing", ["tenantId", "clusterName"])
def test_a_missing_required_value_names_the_value_to_set(helm: str, missing: str) -> None:
    # clusterName: its fallback, global.clusterId, is emptied too
    message = render_error(with_quickstart({missing: "", "global": {"clusterId": ""}}), helm=helm)
    assert f"--set {missing}=" in message, message
    assert "minLength" not in message, message


def test_no_values_at_all_says_how_to_set_both(helm: str) -> None:
    message = render_error(None, helm=helm)
    for value in ("tenantId", "clusterName"):
        assert f"--set {value}=" in message, message
