"""Static checks of the chart: helm lint --strict, ct lint, kubeconform against offline Kubernetes schemas,
GitOps determinism, restricted Pod Security on every pod, no cluster-scoped objects, no credentials in ConfigMaps,
values.yaml <-> values.schema.json in step, README current (helm-docs), and what the package ships."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from testsupport import kubeconform
from testsupport.render import (
    CHART_DIR,
    ROOT,
    by_component,
    chart_copy,
    helm_template,
    kci_cache,
    objects,
    render,
    with_quickstart,
)

pytestmark = pytest.mark.chart

CI_FILES = sorted((CHART_DIR / "ci").glob("*-values.yaml"))
ALL_ON = with_quickstart(
    {
        "serviceMonitor": {"enabled": True},
        "prometheusRule": {"enabled": True},
        "dashboards": {"enabled": True},
        "networkPolicy": {"enabled": True},
        "podDisruptionBudget": {"enabled": True},
        "allocationExporter": {"kubecostAuth": {"existingSecret": "kc", "tokenKey": "token"}},
        "prometheus": {"agent": {"persistence": {"enabled": True}}},
        "remoteWrite": {
            "auth": {"type": "basic", "existingSecret": "thanos-rw", "username": "kci"},
            "tls": {"existingSecret": "thanos-tls", "caKey": "ca.crt", "certKey": "tls.crt", "keyKey": "tls.key"},
        },
    }
)


def ci_values(path: Path) -> dict[str, Any]:
    loaded = yaml.safe_load(path.read_text())
    assert isinstance(loaded, dict)
    return loaded


def _scenarios() -> Iterator[Any]:
    for path in CI_FILES:
        yield pytest.param(ci_values(path), id=path.name)
    yield pytest.param(ALL_ON, id="everything-on")
    yield pytest.param(
        with_quickstart({**ALL_ON, "prometheus": {"agent": {"kind": "StatefulSet", "persistence": {"enabled": True}}}}),
        id="statefulset-everything-on",
    )


def scenarios() -> list[Any]:
    return list(_scenarios())


def test_there_is_a_ci_scenario_per_mode() -> None:
    modes = {ci_values(p).get("prometheus", {}).get("mode", "agent") for p in CI_FILES}
    assert modes == {"agent", "kubecost", "external"}
    # and one per cost engine: Kubecost 3 (default), Kubecost 2, OpenCost, none
    engines = set()
    for p in CI_FILES:
        values = ci_values(p)
        on = [e for e in ("kubecost", "cost-analyzer", "opencost") if values.get(e, {}).get("enabled", e == "kubecost")]
        engines.add(on[0] if on else "none")
    assert engines == {"kubecost", "cost-analyzer", "opencost", "none"}


def test_kubecost_ci_scenario_is_exactly_what_the_chart_prints(helm: str) -> None:
    from testsupport.render import kubecost_mode

    path = CHART_DIR / "ci" / "02-kubecost-values.yaml"
    values = ci_values(path)
    identity = {"tenantId": values["tenantId"], "clusterName": values["clusterName"]}
    assert kubecost_mode(identity, helm=helm)["cost-analyzer"] == values["cost-analyzer"]


# --------------------------------------------------------------------------------------------- lint


@pytest.mark.parametrize("values_file", [pytest.param(p, id=p.name) for p in CI_FILES])
def test_helm_lint_strict(helm: str, chart: Path, values_file: Path, require_tool: Callable[[str], str]) -> None:
    proc = subprocess.run(
        [require_tool(helm), "lint", "--strict", str(chart), "--values", str(values_file)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 chart(s) failed" in proc.stdout


def test_helm_lint_strict_fails_without_required_values(
    helm: str, chart: Path, require_tool: Callable[[str], str]
) -> None:
    proc = subprocess.run(
        [require_tool(helm), "lint", "--strict", str(chart)], capture_output=True, text=True, check=False
    )
    assert proc.returncode != 0
    assert "tenantId" in proc.stdout + proc.stderr


def test_ct_lint(chart: Path, require_tool: Callable[[str], str]) -> None:
    """ct lint (yamllint, Chart.yaml schema, version, helm lint per ci/ file) with the repository's ct config."""
    schema = kci_cache() / "etc" / "ct" / "chart_schema.yaml"
    if not schema.is_file():
        pytest.fail(f"{schema} missing: run `make tools`", pytrace=False)
    # ct runs yamllint and yamale (Python tools from the venv) by name.
    tool_dirs = {str(Path(require_tool(t)).parent) for t in ("yamllint", "yamale", "helm")}
    env = {**os.environ, "PATH": os.pathsep.join([*sorted(tool_dirs), os.environ.get("PATH", "")])}
    proc = subprocess.run(
        [
            require_tool("ct"),
            "lint",
            "--config",
            str(ROOT / "ct.yaml"),
            "--lint-conf",
            str(ROOT / "lintconf.yaml"),
            "--chart-yaml-schema",
            str(schema),
            "--charts",
            str(chart),
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
        timeout=300,
        env=env,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "All charts linted successfully" in proc.stdout + proc.stderr


# CRDs of prometheus-operator have no schema in the offline Kubernetes set; their shape is asserted in test_render.
CRD_KINDS = "ServiceMonitor,PrometheusRule"


@pytest.mark.parametrize("values", scenarios())
def test_kubeconform_validates_every_object(helm: str, values: dict[str, Any], tmp_path: Path) -> None:
    manifest = tmp_path / "manifest.yaml"
    manifest.write_text(helm_template(values, helm=helm))
    summary = kubeconform.summary(manifest, skip_kinds=CRD_KINDS)
    rendered = [d for d in yaml.safe_load_all(manifest.read_text()) if d and d["kind"] not in CRD_KINDS.split(",")]
    assert summary["valid"] == len(rendered), summary
    assert summary["invalid"] == 0, summary
    assert summary["errors"] == 0, summary


def test_kubeconform_catches_a_broken_manifest(tmp_path: Path) -> None:
    """The validation above can fail: a Deployment with a misspelled field is rejected offline."""
    docs = render(with_quickstart({}))
    deploy = by_component(docs, "Deployment", "allocation-exporter")
    deploy["spec"]["replica"] = 1
    manifest = tmp_path / "bad.yaml"
    manifest.write_text(yaml.safe_dump(deploy))
    proc = kubeconform.run(manifest)
    assert proc.returncode != 0
    assert "replica" in proc.stdout + proc.stderr


# --------------------------------------------------------------------------------------------- GitOps


@pytest.mark.parametrize("values", scenarios())
def test_two_renders_are_identical_and_tidy(helm: str, values: dict[str, Any]) -> None:
    first = helm_template(values, helm=helm)
    assert first == helm_template(values, helm=helm)
    ours = [doc for doc in first.split("\n---\n") if "# Source: kubecost-integration/templates/" in doc]
    assert ours
    for doc in ours:  # (the stub reproduces Kubecost's own output, stray whitespace included)
        assert not re.findall(r"^[ \t]+$", doc, re.MULTILINE), (
            f"whitespace-only line (an include emitted nothing):\n{doc}"
        )


def test_templates_use_no_lookup_random_or_time_functions() -> None:
    banned = re.compile(
        r"\b(lookup|randAlphaNum|randAlpha|randNumeric|randAscii|randBytes|randInt|uuidv4|now|date|dateInZone|unixEpoch|genCA|genPrivateKey|genSelfSignedCert|genSignedCert|htpasswd)\b"
    )
    for path in sorted((CHART_DIR / "templates").rglob("*")):
        if path.is_file():
            text = re.sub(r"\{\{-?\s*/\*.*?\*/\s*-?\}\}", "", path.read_text(), flags=re.DOTALL)
            actions = re.findall(r"\{\{(.*?)\}\}", text, re.DOTALL)
            hits = [a.strip() for a in actions if banned.search(without_string_literals(a))]
            assert not hits, f"{path.relative_to(CHART_DIR)}: {hits}"


def without_string_literals(action: str) -> str:
    """A template action without its "..." literals: a header name such as "x-amz-date" is data, not a call."""
    return re.sub(r'"(?:[^"\\]|\\.)*"', '""', action)


def test_the_function_ban_still_sees_calls_next_to_string_literals() -> None:
    banned = re.compile(r"\b(lookup|now|date)\b")
    for action in (' now | date "2006-01-02" ', ' lookup "v1" "Secret" "ns" "x" ', ' "x-amz-date" | printf "%s" now '):
        assert banned.search(without_string_literals(action)), action
    assert not banned.search(without_string_literals(' list "x-amz-date" "content-type" | toJson '))


# --------------------------------------------------------------------------------------------- security


def pod_specs(docs: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for doc in docs:
        name = f"{doc['kind']}/{doc['metadata']['name']}"
        if doc["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
            yield name, doc["spec"]["template"]["spec"]
        elif doc["kind"] == "Pod":
            yield name, doc["spec"]


@pytest.mark.parametrize("values", scenarios())
def test_every_pod_is_restricted_with_requests_and_limits(helm: str, values: dict[str, Any]) -> None:
    specs = list(pod_specs(render(values, helm=helm)))
    assert len(specs) >= 2
    for name, spec in specs:
        assert spec.get("automountServiceAccountToken") is False, name
        assert not spec.get("hostNetwork"), name
        assert not spec.get("hostPID"), name
        assert not spec.get("hostIPC"), name
        assert all("hostPath" not in v for v in spec.get("volumes", [])), name
        psc = spec["securityContext"]
        assert psc["runAsNonRoot"] is True, name
        assert psc["seccompProfile"]["type"] == "RuntimeDefault", name
        for c in spec["containers"] + spec.get("initContainers", []):
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False, (name, c["name"])
            assert sc["readOnlyRootFilesystem"] is True, (name, c["name"])
            assert sc["capabilities"]["drop"] == ["ALL"], (name, c["name"])
            assert not sc["capabilities"].get("add"), (name, c["name"])
            assert sc.get("privileged") in (None, False), (name, c["name"])
            assert sc.get("runAsNonRoot", psc["runAsNonRoot"]) is True, (name, c["name"])
            res = c["resources"]
            assert res["requests"]["cpu"], (name, c["name"])
            assert res["requests"]["memory"], (name, c["name"])
            assert res["limits"]["cpu"], (name, c["name"])
            assert res["limits"]["memory"], (name, c["name"])
            assert ":" in c["image"] or "@" in c["image"], c["image"]
            assert not c["image"].endswith(":latest"), c["image"]


NAMESPACED_KINDS = {
    "ServiceAccount",
    "ConfigMap",
    "Service",
    "Deployment",
    "StatefulSet",
    "Pod",
    "PersistentVolumeClaim",
    "NetworkPolicy",
    "PodDisruptionBudget",
    "ServiceMonitor",
    "PrometheusRule",
}


@pytest.mark.parametrize("values", scenarios())
def test_no_cluster_scoped_objects(helm: str, values: dict[str, Any]) -> None:
    docs = render(values, helm=helm, namespace="team-a")
    for doc in docs:
        assert doc["kind"] in NAMESPACED_KINDS, doc["kind"]
        assert doc["metadata"]["namespace"] == "team-a", (doc["kind"], doc["metadata"]["name"])


def test_two_releases_in_one_namespace_do_not_collide(helm: str) -> None:
    def names(release: str) -> set[tuple[str, str]]:
        return {(d["kind"], d["metadata"]["name"]) for d in render(ALL_ON, release=release, helm=helm)}

    assert not names("team-a") & names("team-b")


CREDENTIAL_KEYS = re.compile(
    r"^\s*(password|credentials|bearer_token|token|api_key|secret)\s*:", re.MULTILINE | re.IGNORECASE
)


@pytest.mark.parametrize("values", scenarios())
def test_credentials_never_appear_in_config_maps_or_env(helm: str, values: dict[str, Any]) -> None:
    docs = render(values, helm=helm)
    assert not objects(docs, "Secret"), "the chart must not render Secrets (credentials come from existing ones)"
    for cm in objects(docs, "ConfigMap"):
        for key, text in (cm.get("data") or {}).items():
            assert not CREDENTIAL_KEYS.search(str(text)), (cm["metadata"]["name"], key)
    for name, spec in pod_specs(docs):
        for c in spec["containers"]:
            for env in c.get("env", []):
                assert not re.search(r"TOKEN$|PASSWORD|SECRET|API_KEY$", env["name"]), (name, env["name"])


def test_credential_check_can_fail() -> None:
    assert CREDENTIAL_KEYS.search("remote_write:\n  - basic_auth:\n      password: hunter2\n")
    assert not CREDENTIAL_KEYS.search("      password_file: /etc/prometheus/remote-write/auth/password\n")


# --------------------------------------------------------------------------------------------- values, schema, docs


# values.yaml and values.schema.json in step: scripts/check_values_schema.py (test_schema_sync.py, `make lint`).


def test_every_value_has_a_helm_docs_comment() -> None:
    """Every key of values.yaml (outside the Kubecost pass-through) has a `# --` description, on itself or on an
    enclosing key; keys that only group documented children need none."""
    lines = (CHART_DIR / "values.yaml").read_text().splitlines()
    keys: list[tuple[int, int, bool]] = []  # (line, indent, has "# --" comment)
    for i, line in enumerate(lines):
        m = re.match(r"^(\s*)([A-Za-z0-9_-]+):(\s|$)", line)
        if not m:
            continue
        j = i - 1
        while j >= 0 and lines[j].strip().startswith("#") and not lines[j].strip().startswith("# --"):
            j -= 1
        keys.append((i, len(m.group(1)), j >= 0 and lines[j].strip().startswith("# --")))
    undocumented = []
    for n, (i, indent, commented) in enumerate(keys):
        path = lines[i].strip().split(":")[0]
        ancestors = [k for k in keys[:n] if k[1] < indent]
        chain: list[tuple[int, int, bool]] = []
        for k in reversed(ancestors):
            if not chain or k[1] < chain[-1][1]:
                chain.append(k)
        if lines[chain[-1][0]].strip().startswith("cost-analyzer:") if chain else path == "cost-analyzer":
            continue
        is_group = n + 1 < len(keys) and keys[n + 1][1] > indent and lines[i].rstrip().endswith(":")
        if not (commented or is_group or any(k[2] for k in chain)):
            undocumented.append(f"line {i + 1}: {path}")
    assert not undocumented, undocumented


def test_readme_is_generated_and_current(tmp_path: Path, require_tool: Callable[[str], str]) -> None:
    copy = tmp_path / "kubecost-integration"
    shutil.copytree(CHART_DIR, copy, ignore=shutil.ignore_patterns("charts", "__pycache__"))
    (copy / "README.md").unlink()
    proc = subprocess.run(
        [require_tool("helm-docs"), "--chart-search-root", str(copy), "--log-level", "warning"],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    generated = (copy / "README.md").read_text()
    assert generated == (CHART_DIR / "README.md").read_text(), (
        "README.md is stale: run helm-docs --chart-search-root charts/kubecost-integration"
    )
    for key in ("tenantId", "prometheus.mode", "remoteWrite.url", "cost-analyzer.enabled"):
        assert f"| {key} |" in generated


def test_package_ships_templates_but_not_tests_stub_or_ci(tmp_path: Path, require_tool: Callable[[str], str]) -> None:
    copy = chart_copy(tmp_path / "src")
    shutil.copytree(CHART_DIR / "tests", copy / "tests", ignore=shutil.ignore_patterns("__pycache__"))
    proc = subprocess.run(
        [require_tool("helm"), "package", str(copy), "-d", str(tmp_path)], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
    [tgz] = tmp_path.glob("kubecost-integration-*.tgz")
    with tarfile.open(tgz) as archive:
        names = archive.getnames()
    assert "kubecost-integration/templates/tests/test-exporter.yaml" in names
    assert "kubecost-integration/values.schema.json" in names
    assert not [n for n in names if n.startswith(("kubecost-integration/tests/", "kubecost-integration/ci/"))]


#: Each engine: its chart's real repository and major version; no alias (Service names derive from the chart name).
ENGINE_DEPENDENCIES = {
    "kubecost": ("https://kubecost.github.io/kubecost", "3"),
    "cost-analyzer": ("https://kubecost.github.io/cost-analyzer/", "2"),
    "opencost": ("https://opencost.github.io/opencost-helm-chart", "2"),
}


def test_engine_dependencies_point_at_the_real_repositories_and_stubs_match_them() -> None:
    chart = yaml.safe_load((CHART_DIR / "Chart.yaml").read_text())
    deps = {d["name"]: d for d in chart["dependencies"]}
    assert set(deps) == set(ENGINE_DEPENDENCIES)
    for name, (repository, major) in ENGINE_DEPENDENCIES.items():
        dep = deps[name]
        assert "alias" not in dep
        assert dep["repository"] == repository
        assert dep["condition"] == f"{name}.enabled"
        assert re.match(rf"^[~^]?{major}\.", dep["version"]), dep
        stub = yaml.safe_load((CHART_DIR / "tests" / "stub" / name / "Chart.yaml").read_text())
        assert stub["name"] == name, stub
        assert stub["version"].startswith(f"{major}."), stub
    values = yaml.safe_load((CHART_DIR / "values.yaml").read_text())
    assert [n for n in ENGINE_DEPENDENCIES if values[n]["enabled"]] == ["kubecost"]
    ignored = set((ROOT / ".gitignore").read_text().splitlines())
    # Neither the dependency nor its lock is committed (CONTRIBUTING.md): a committed Chart.lock makes
    # `helm dependency build` fail without `helm repo add`.
    assert {"charts/*/charts/", "charts/*/Chart.lock"} <= ignored


def test_notes_print_copy_paste_verification(require_tool: Callable[[str], str], chart: Path) -> None:
    """NOTES are not part of `helm template`; Helm 4's client-only dry-run renders them offline (Helm 3's install
    --dry-run=client still contacts the API server, so that binary is exercised by the control-plane e2e)."""
    helm = "helm4"
    from testsupport.render import kubecost_mode

    for mode, expect in [
        ("agent", "prometheus_remote_storage_(samples_total"),
        ("external", "writeRelabelConfigs"),
        ("kubecost", "kubecost-allocation-exporter"),
    ]:
        values = with_quickstart({"prometheus": {"mode": mode}})
        if mode == "kubecost":
            values = kubecost_mode(values, helm=helm)
        # NOTES are not part of `helm template` output: render them with a client-side dry-run install.
        proc = subprocess.run(
            [
                require_tool(helm),
                "install",
                "my-kubecost",
                str(chart),
                "-n",
                "my-ns",
                "--dry-run=client",
                "--values",
                "/dev/stdin",
            ],
            input=yaml.safe_dump(values),
            capture_output=True,
            text=True,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr
        notes = proc.stdout.split("NOTES:", 1)[1]
        assert "kubectl -n my-ns port-forward svc/my-kubecost-kubecost-integration-exporter 9103:9103" in notes
        # No `--logs`: the test pod is deleted when it ends and Helm prints its output itself (Helm 3.22/4 exit 1
        # with `--logs`: "unable to get pod logs").
        assert (
            "or run the built-in check:  helm test my-kubecost -n my-ns "
            "--filter name=my-kubecost-kubecost-integration-test\n" in notes
        ), notes
        assert "--logs" not in notes.replace("no --logs needed", ""), notes
        assert expect in notes, notes


#: What Argo CD passes to `helm template` instead of asking a cluster: its Kubernetes version and API versions.
ARGO_ARGS = [
    "--kube-version",
    "1.33.0",
    "--api-versions",
    "monitoring.coreos.com/v1",
    "--api-versions",
    "networking.k8s.io/v1",
    "--api-versions",
    "policy/v1",
]


def argocd_application() -> tuple[dict[str, Any], str, str]:
    app = yaml.safe_load((ROOT / "docs" / "argocd-application.yaml").read_text())
    assert app["kind"] == "Application"
    assert app["apiVersion"] == "argoproj.io/v1alpha1"
    source = app["spec"]["source"]
    assert (ROOT / source["path"] / "Chart.yaml").is_file()
    assert source["helm"]["releaseName"]
    return source["helm"]["valuesObject"], source["helm"]["releaseName"], app["spec"]["destination"]["namespace"]


def test_argocd_example_points_at_this_chart_and_renders(helm: str) -> None:
    values, release, namespace = argocd_application()
    # What Argo CD does: `helm template` with the Application's values and the cluster's versions, twice, identically.
    first = helm_template(values, release=release, namespace=namespace, helm=helm, extra_args=ARGO_ARGS)
    assert first == helm_template(values, release=release, namespace=namespace, helm=helm, extra_args=ARGO_ARGS)
    assert "kind: Deployment" in first


def test_artifacthub_images_match_the_default_images() -> None:
    chart = yaml.safe_load((CHART_DIR / "Chart.yaml").read_text())
    values = yaml.safe_load((CHART_DIR / "values.yaml").read_text())
    images = {i["name"]: i["image"] for i in yaml.safe_load(chart["annotations"]["artifacthub.io/images"])}
    exporter = values["allocationExporter"]["image"]
    agent = values["prometheus"]["agent"]["image"]
    assert images["kubecost-allocation-exporter"] == f"{exporter['repository']}:{chart['appVersion']}"
    assert images["prometheus"] == f"{agent['repository']}:{agent['tag']}"
    assert agent["tag"].startswith("v3."), "default agent image is Prometheus 3.x (--agent)"


@pytest.mark.realdep
def test_kubecost_mode_keeps_the_jobs_of_the_dependency_when_built(tmp_path: Path) -> None:
    """After `helm dependency build` (network; the kind workflow runs `-m realdep`), charts/ holds the real engines:
    the versions must be the ones Chart.yaml's ranges admit, and kubecost mode must keep every job of the real
    Kubecost 2 as it renders (the same check runs on the upstream archives in test_engines_real.py)."""
    from testsupport.engines import (
        assert_kubecost_mode_keeps_kubecosts_jobs,
        dependency_status,
    )

    assert list((CHART_DIR / "charts").glob("*.tgz")), (
        "charts/ is empty: run `helm dependency update charts/kubecost-integration`"
    )
    assert set(dependency_status(CHART_DIR).values()) == {"ok"}, dependency_status(CHART_DIR)
    values = with_quickstart({"kubecost": {"enabled": False}, "cost-analyzer": {"enabled": True}})
    assert_kubecost_mode_keeps_kubecosts_jobs(CHART_DIR, values, "helm")


def test_external_mode_notes_snippets_match_the_agent_remote_write(
    require_tool: Callable[[str], str], chart: Path
) -> None:
    """The copy-paste remote_write for `external` mode says the same as the agent's: tenant header, keep regex,
    queue settings, auth from the Secret."""
    from testsupport.render import agent_config

    values = with_quickstart(
        {
            "remoteWrite": {
                "auth": {"type": "bearer", "existingSecret": "rw"},
                "extraMetricsAllowList": ["up"],
                "queueConfig": {"max_shards": 4},
            },
        }
    )
    agent_rw = agent_config(render(values))["remote_write"][0]
    proc = subprocess.run(
        [
            require_tool("helm4"),
            "install",
            "r",
            str(chart),
            "-n",
            "my-ns",
            "--dry-run=client",
            "--values",
            "/dev/stdin",
        ],
        input=yaml.safe_dump(with_quickstart({**values, "prometheus": {"mode": "external"}})),
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    notes = proc.stdout.split("NOTES:", 1)[1]
    operator_text = notes.split("(spec.remoteWrite;", 1)[1].split("\n\n", 1)[1].split("\n\n", 1)[0]
    operator = yaml.safe_load(operator_text)["remoteWrite"][0]
    assert operator["url"] == agent_rw["url"]
    assert operator["headers"] == agent_rw["headers"] == {"THANOS-TENANT": "acme"}
    # cloudtuner_kubecost_* only from the exporter's job: the agent's, or in external mode the ServiceMonitor's (the
    # exporter Service's name), so that no other target of your Prometheus can send series with that prefix
    assert (
        agent_rw["write_relabel_configs"][0]["regex"] == "cloudtuner_kubecost_.*;(kubecost-allocation-exporter)|(up);.*"
    )
    external_keep = "cloudtuner_kubecost_.*;(kubecost-allocation-exporter|r-kubecost-integration-exporter)|(up);.*"
    assert operator["writeRelabelConfigs"][0] == {
        "sourceLabels": ["__name__", "job"],
        "regex": external_keep,
        "action": "keep",
    }
    assert operator["authorization"]["credentials"] == {"name": "rw", "key": "token"}
    assert operator["queueConfig"]["maxShards"] == agent_rw["queue_config"]["max_shards"] == 4
    assert operator["queueConfig"]["maxSamplesPerSend"] == agent_rw["queue_config"]["max_samples_per_send"]
    plain_text = notes.split("remote_write:\n", 1)[1].split("\n\n", 1)[0]
    plain = yaml.safe_load(plain_text)[0]
    assert plain["write_relabel_configs"] == [
        {"source_labels": ["__name__", "job"], "regex": external_keep, "action": "keep"}
    ]
    assert {k: v for k, v in plain.items() if k != "write_relabel_configs"} == {
        k: v for k, v in agent_rw.items() if k != "write_relabel_configs"
    }
    assert "mount the Secrets rw" in notes
