"""Every cost engine against its REAL chart (the upstream archives, testsupport/engines.py), Helm 3 and Helm 4.

For each engine: the exporter URL the chart derives names a Service (name, namespace, port) that the real chart
renders; the real chart's required values are satisfied by ours; `helm lint --strict`; kubeconform on the whole
render; two renders are byte-identical; the version ranges of Chart.yaml admit the archives. Plus the problems a
real install showed with Kubecost 2.4.2, checked per engine on the real render: cluster-scoped and fixed-name
objects (one engine per cluster, said in NOTES), PersistentVolumeClaims without a StorageClass (NOTES name the
values), the engines' own test hooks (NOTES filter `helm test` to ours), the CRD left after uninstall (NOTES).

The matrix is pairwise, not cartesian: the derived name is a function of (engine, release, overrides) and the
namespace only appears in the host, so each engine is rendered with a release name with and without the chart's
own name under both Helm majors (4 renders), and the three namespaces are spread over those 4 renders so that each
engine meets each namespace; the full product (36 renders) would only repeat these string operations.

Skipped, with the variable to set, when the archives are absent (`KCI_UPSTREAM_CHARTS`; default
`shared/upstream-charts` beside the repository's parent); they are not part of the repository.
"""

from __future__ import annotations

import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from testsupport.engines import (
    ARCHIVES,
    assert_kubecost_mode_keeps_kubecosts_jobs,
    dependency_status,
    kubeconform,
    missing_archives,
    real_engines_chart,
)
from testsupport.opencost import upstream_charts_dir
from testsupport.render import (
    ROOT,
    HelmError,
    deep_merge,
    exporter_env,
    helm_binary,
    helm_template,
    with_quickstart,
)

pytestmark = [
    pytest.mark.chart,
    pytest.mark.skipif(
        bool(missing_archives()),
        reason=f"upstream chart archives missing: {missing_archives()} "
        "(set KCI_UPSTREAM_CHARTS to the directory holding them)",
    ),
]

OFF = {"kubecost": {"enabled": False}}
#: Engine -> values selecting it (over the quick start), and release names without / with the chart's own name.
ENGINES: dict[str, tuple[dict[str, Any], tuple[str, str]]] = {
    "kubecost": ({}, ("kci", "kubecost")),
    "cost-analyzer": ({**OFF, "cost-analyzer": {"enabled": True}}, ("kci", "my-cost-analyzer")),
    "opencost": ({**OFF, "opencost": {"enabled": True}}, ("kci", "my-opencost")),
}
NAMESPACES = ("default", "kubecost", "team-a-costs")
HELMS = ("helm", "helm4")


def cases() -> Iterator[Any]:
    for engine in ENGINES:
        for r in range(2):
            for h, helm in enumerate(HELMS):
                namespace = NAMESPACES[(2 * r + h) % len(NAMESPACES)]
                release = ENGINES[engine][1][r]
                yield pytest.param(engine, release, namespace, helm, id=f"{engine}-{release}-{namespace}-{helm}")


@pytest.fixture(scope="module")
def chart(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return real_engines_chart(tmp_path_factory.mktemp("real-engines"))


def values_for(engine: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    return deep_merge(with_quickstart(ENGINES[engine][0]), extra or {})


def docs_of(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d]


def service_hit(docs: list[dict[str, Any]], url: str, release_namespace: str) -> dict[str, Any]:
    """The Service the URL names (`http://<service>.<namespace>.svc:<port>`) with that port; fails otherwise."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    service, namespace, svc = host.split(".")
    assert svc == "svc", url
    found = [
        d
        for d in docs
        if d["kind"] == "Service"
        and d["metadata"]["name"] == service
        and d["metadata"].get("namespace", release_namespace) == namespace
    ]
    names = sorted(d["metadata"]["name"] for d in docs if d["kind"] == "Service")
    assert len(found) == 1, f"{url}: no Service {service} in {namespace} in the real render (Services: {names})"
    ports = [p["port"] for p in found[0]["spec"]["ports"]]
    assert parts.port in ports, f"{url}: Service {service} has ports {ports}"
    return found[0]


@pytest.mark.parametrize(("engine", "release", "namespace", "helm"), list(cases()))
def test_derived_url_hits_a_service_of_the_real_chart(
    chart: Path, engine: str, release: str, namespace: str, helm: str, tmp_path: Path
) -> None:
    values = values_for(engine)
    first = helm_template(values, release=release, namespace=namespace, helm=helm, chart=chart)
    # what Argo CD and `helm upgrade` rely on: the same input renders the same bytes
    assert helm_template(values, release=release, namespace=namespace, helm=helm, chart=chart) == first
    docs = docs_of(first)
    env = exporter_env(docs)
    service = service_hit(docs, env["KUBECOST_URL"], namespace)
    assert env["KUBECOST_API"] == ("opencost" if engine == "opencost" else "auto")
    # the engine's objects are really there (not a disabled dependency's stub)
    assert any(
        (d["metadata"].get("labels") or {}).get("helm.sh/chart", "").startswith(ARCHIVES[engine].removesuffix(".tgz"))
        for d in docs
    ), f"no object of {ARCHIVES[engine]} rendered"
    assert service["spec"]["selector"], service
    manifest = tmp_path / "render.yaml"
    manifest.write_text(first)
    summary = kubeconform(manifest)
    assert summary["invalid"] == summary["errors"] == 0, summary
    assert summary["valid"] == len(docs), summary


@pytest.mark.parametrize("engine", list(ENGINES))
@pytest.mark.parametrize("helm", HELMS)
def test_helm_lint_strict_with_the_real_chart(chart: Path, engine: str, helm: str, tmp_path: Path) -> None:
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump(values_for(engine)))
    proc = subprocess.run(
        [helm_binary(helm), "lint", "--strict", str(chart), "--values", str(values)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 chart(s) failed" in proc.stdout


@pytest.mark.parametrize("helm", HELMS)
def test_the_version_ranges_admit_the_tested_archives(chart: Path, helm: str) -> None:
    assert dependency_status(chart, helm) == dict.fromkeys(ARCHIVES, "ok")


# (fullnameOverride, nameOverride) cases: Kubecost 3's frontend ignores both; Kubecost 2 and OpenCost honour both.
OVERRIDES = [
    pytest.param(engine, {key: value}, id=f"{engine}-{key}")
    for engine in ENGINES
    for key, value in (("fullnameOverride", "costs"), ("nameOverride", "engine"))
]


@pytest.mark.parametrize(("engine", "override"), OVERRIDES)
def test_name_overrides_of_the_engine_are_followed(chart: Path, engine: str, override: dict[str, str]) -> None:
    docs = docs_of(
        helm_template(values_for(engine, {engine: override}), release="kci", namespace="kubecost", chart=chart)
    )
    url = exporter_env(docs)["KUBECOST_URL"]
    service_hit(docs, url, "kubecost")
    if engine == "kubecost":
        assert url == "http://kci-frontend.kubecost.svc:9090"
    else:
        assert "costs" in url or "engine" in url, url


def test_opencost_namespace_override_is_followed(chart: Path) -> None:
    docs = docs_of(
        helm_template(
            values_for("opencost", {"opencost": {"namespaceOverride": "opencost"}}),
            release="kci",
            namespace="kubecost",
            chart=chart,
        )
    )
    assert exporter_env(docs)["KUBECOST_URL"] == "http://kci-opencost.opencost.svc:9003"
    service_hit(docs, exporter_env(docs)["KUBECOST_URL"], "kubecost")


def test_kubecost_3_runs_under_our_cluster_name_and_gitops_settings(chart: Path) -> None:
    """The values our chart sets in Kubecost 3 reach its workloads: CLUSTER_ID is clusterName (global.clusterId),
    and the cicd settings keep `lookup` out of the render (Argo CD renders without cluster access)."""
    docs = docs_of(helm_template(values_for("kubecost"), release="kci", namespace="kubecost", chart=chart))
    cluster_ids = {
        e.get("value")
        for d in docs
        if d["kind"] in ("Deployment", "StatefulSet")
        for c in d["spec"]["template"]["spec"]["containers"]
        for e in c.get("env", [])
        if e["name"] == "CLUSTER_ID"
    }
    assert cluster_ids == {"prod-eu-1"}, cluster_ids


@pytest.mark.parametrize("helm", HELMS)
def test_the_argocd_example_renders_the_real_kubecost_3_like_argo_cd(chart: Path, helm: str) -> None:
    """docs/argocd-application.yaml's values with the real Kubecost 3, rendered as Argo CD does (no cluster:
    `--kube-version`/`--api-versions`), twice identically, and without Kubecost's lookup-dependent parts."""
    app = yaml.safe_load((ROOT / "docs" / "argocd-application.yaml").read_text())
    source, namespace = app["spec"]["source"]["helm"], app["spec"]["destination"]["namespace"]
    args = ["--kube-version", "1.33.0", "--api-versions", "monitoring.coreos.com/v1", "--api-versions", "apps/v1"]
    first = helm_template(
        source["valuesObject"],
        release=source["releaseName"],
        namespace=namespace,
        helm=helm,
        extra_args=args,
        chart=chart,
    )
    assert first == helm_template(
        source["valuesObject"],
        release=source["releaseName"],
        namespace=namespace,
        helm=helm,
        extra_args=args,
        chart=chart,
    )
    docs = docs_of(first)
    service_hit(docs, exporter_env(docs)["KUBECOST_URL"], namespace)
    # Kubecost's cicd branch (our default): the aggregator's claim templates get no annotations, instead of ones
    # `lookup` copies from a running StatefulSet (which Argo CD cannot see, so two syncs would differ)
    assert aggregator_claim_annotations(docs) == [{}, {}]
    cicd_off = deep_merge(source["valuesObject"], {"kubecost": {"global": {"platforms": {"cicd": {"enabled": False}}}}})
    docs = docs_of(
        helm_template(
            cicd_off, release=source["releaseName"], namespace=namespace, helm=helm, extra_args=args, chart=chart
        )
    )
    assert aggregator_claim_annotations(docs) == [{"helm.sh/resource-policy": "keep"}] * 2


def aggregator_claim_annotations(docs: list[dict[str, Any]]) -> list[dict[str, str]]:
    aggregator = next(d for d in docs if d["kind"] == "StatefulSet" and d["metadata"]["name"].endswith("-aggregator"))
    return [t["metadata"].get("annotations") or {} for t in aggregator["spec"]["volumeClaimTemplates"]]


def test_kubecost_3_refuses_without_a_cluster_id_before_kubecost_does(chart: Path) -> None:
    values = with_quickstart()
    values["global"] = {"clusterId": ""}
    with pytest.raises(HelmError) as err:
        helm_template(values, release="kci", namespace="kubecost", chart=chart)
    assert "--set global.clusterId=" in err.value.stderr


# ---------------------------------------------------------------------------------------------------------------
# What a real install of each engine runs into, read from the real render (fixed or explained by our NOTES)


def notes(chart: Path, engine: str, release: str = "kci", namespace: str = "kubecost") -> str:
    values = yaml.safe_dump(values_for(engine))
    proc = subprocess.run(
        [
            helm_binary("helm4"),
            "install",
            release,
            str(chart),
            "-n",
            namespace,
            "--dry-run=client",
            "--values",
            "/dev/stdin",
        ],
        input=values,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split("NOTES:", 1)[1]


CLUSTER_SCOPED = {
    "ClusterRole",
    "ClusterRoleBinding",
    "CustomResourceDefinition",
    "PriorityClass",
    "ValidatingWebhookConfiguration",
    "MutatingWebhookConfiguration",
}


@pytest.mark.parametrize("engine", list(ENGINES))
def test_one_engine_per_cluster_is_said_where_the_real_chart_needs_it(chart: Path, engine: str) -> None:
    """(b) cluster-scoped objects named by release collide across namespaces; (c) fixed-name objects collide in one
    namespace: our chart cannot rename another chart's objects, so NOTES say one engine per cluster and give the
    values of every further release."""
    docs = docs_of(helm_template(values_for(engine), release="kci", namespace="kubecost", chart=chart))
    ours = {
        d["metadata"]["name"]
        for d in docs
        if (d["metadata"].get("labels") or {}).get("app.kubernetes.io/part-of") == "kubecost-integration"
    }
    cluster_scoped = [d["metadata"]["name"] for d in docs if d["kind"] in CLUSTER_SCOPED]
    fixed = [
        d["metadata"]["name"] for d in docs if "kci" not in d["metadata"]["name"] and d["metadata"]["name"] not in ours
    ]
    assert cluster_scoped, (cluster_scoped, fixed)
    assert fixed, (cluster_scoped, fixed)
    text = notes(chart, engine)
    assert "run one engine per cluster" in text
    assert f"{engine}.enabled=false and allocationExporter.config.kubecostUrl=" in text


@pytest.mark.parametrize("engine", list(ENGINES))
def test_storage_needs_are_named(chart: Path, engine: str) -> None:
    """(a) PersistentVolumeClaims without a StorageClass stay Pending where the cluster has no default one."""
    docs = docs_of(helm_template(values_for(engine), release="kci", namespace="kubecost", chart=chart))
    claims = [d for d in docs if d["kind"] == "PersistentVolumeClaim"]
    claims += [t for d in docs if d["kind"] == "StatefulSet" for t in d["spec"].get("volumeClaimTemplates", [])]
    text = notes(chart, engine)
    if engine == "opencost":
        assert not claims
        assert "OpenCost queries the Prometheus set in opencost.opencost.prometheus" in text
        return
    assert claims
    assert all(not c["spec"].get("storageClassName") for c in claims)
    assert "need a default StorageClass, or set" in text
    # the values NOTES name do give the claims a class in the real chart
    settings: dict[str, dict[str, Any]] = {
        "kubecost": {"global": {"defaultStorageClass": "fast"}},
        "cost-analyzer": {
            "cost-analyzer": {
                "persistentVolume": {"storageClass": "fast"},
                "prometheus": {"server": {"persistentVolume": {"storageClass": "fast"}}},
            }
        },
    }
    setting = settings[engine]
    docs = docs_of(helm_template(values_for(engine, setting), release="kci", namespace="kubecost", chart=chart))
    claims = [d for d in docs if d["kind"] == "PersistentVolumeClaim"]
    claims += [t for d in docs if d["kind"] == "StatefulSet" for t in d["spec"].get("volumeClaimTemplates", [])]
    assert claims
    assert {c["spec"].get("storageClassName") for c in claims} == {"fast"}


@pytest.mark.parametrize("engine", list(ENGINES))
def test_helm_test_runs_only_our_check(chart: Path, engine: str) -> None:
    """(d) Kubecost's charts ship a `basic-health` test hook this chart does not control: NOTES' `helm test` keeps
    to our test pod with --filter."""
    docs = docs_of(helm_template(values_for(engine), release="kci", namespace="kubecost", chart=chart))
    hooks = [
        d["metadata"]["name"] for d in docs if (d["metadata"].get("annotations") or {}).get("helm.sh/hook") == "test"
    ]
    assert "kci-kubecost-integration-test" in hooks
    assert "helm test kci -n kubecost --filter name=kci-kubecost-integration-test" in notes(chart, engine)
    if engine != "opencost":
        assert "basic-health" in hooks


@pytest.mark.parametrize("engine", ["kubecost", "cost-analyzer"])
def test_the_crd_left_after_uninstall_is_named(chart: Path, engine: str) -> None:
    """(e) Both Kubecost charts ship turndownschedules.kubecost.com in crds/, which Helm never deletes: NOTES give
    the command."""
    with tarfile.open(upstream_charts_dir() / ARCHIVES[engine]) as archive:
        crds = [
            yaml.safe_load(archive.extractfile(m).read())  # type: ignore[union-attr]
            for m in archive.getmembers()
            if "/crds/" in m.name and m.isfile()
        ]
    assert [c["metadata"]["name"] for c in crds] == ["turndownschedules.kubecost.com"]
    assert "kubectl delete crd turndownschedules.kubecost.com" in notes(chart, engine)


@pytest.mark.parametrize("helm", HELMS)
def test_kubecost_mode_keeps_the_real_kubecost_2_jobs_and_adds_ours(chart: Path, helm: str) -> None:
    """(f) kubecost mode replaces Kubecost 2's `prometheus.extraScrapeConfigs` string: rendered by the real chart, every
    job Kubecost defines there comes out exactly as without kubecost mode (whole job, not its name), plus ours.
    The archive is the one `helm dependency list` accepts for the range (test_the_version_ranges_admit...)."""
    assert_kubecost_mode_keeps_kubecosts_jobs(chart, values_for("cost-analyzer"), helm)
