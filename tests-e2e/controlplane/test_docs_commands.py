"""The shell commands of README.md, UPGRADING.md, docs/deployment.md and docs/troubleshooting.md, run as written.

Every fenced shell block in those docs carries a marker just above it (an HTML comment, invisible on GitHub):

* `<!-- doc-test: <id> -->`: the block is extracted and run VERBATIM by one of the tests below (`RUN_BY_TESTS`), with
  `bash -e -u -o pipefail -c <block>` (any failing command fails the test), against the real local control plane
  (kwok bench: kube-apiserver, etcd, kube-controller-manager, kube-scheduler); the README's two CLI installs
  (`cli-venv`, `cli-pipx`) need no cluster: they run in a copy of `queries/` and `exporter/` with HOME in a temp dir
  and reach PyPI for the exporter's dependencies (pip's cache is the user's, so a warm run reuses its wheels);
* `<!-- doc-test: skip reason="..." -->`: not run, for the reason given (a plugin or a service the bench lacks, or
  a command another test covers).

`test_every_shell_block_in_the_docs_is_run_or_excluded_with_a_reason` fails on an unmarked shell block, a marked id
no test runs, or a marker above something that is not a runnable block, so a new docs command cannot slip in untested.

Environment-level adaptations, and nothing else (the block text is never edited):

* the blocks run in a temporary "checkout": `charts/kubecost-integration` is a copy of the chart as a fresh clone has
  it (no `charts/` dependency directory, no Chart.lock), next to the files the guide tells the user to provide:
  `production-values.yaml` (the guide's own `rendered-by-tests` YAML block, saved verbatim), `./token` and a
  self-signed `./ca.crt` made with openssl;
* SUBSTITUTION: the engines' chart repositories (Kubecost 3, Kubecost 2, OpenCost) cannot be reached here, so in
  the copy's Chart.yaml (and nowhere else) their URLs are replaced by a local HTTP chart repository on 127.0.0.1
  that serves the test-only stub engine charts (`charts/kubecost-integration/tests/stub`), packaged and indexed
  with the real `helm package` / `helm repo index`; `helm dependency update` downloads them over HTTP;
* a clean environment: PATH with `$KCI_CACHE/bin` first (`helm` is Helm 3.x; the Helm 4 run of the quick start puts
  a directory whose `helm` links to `helm4` before it), KUBECONFIG pointing at the kwok cluster, HOME and
  HELM_{CACHE,CONFIG,DATA}_HOME in private temp dirs, no proxy variables;
* the cluster is prepared the way the guide says a production cluster is: prometheus-operator's PrometheusRule CRD
  (`prometheusrule-crd.yaml`, a minimal copy) and, since kwok has no storage provisioner, a hostPath
  PersistentVolume for the agent's WAL claim; for the multi-cluster section two more kwok clusters whose contexts
  are renamed `prod-us-1` / `prod-ap-1` in the KUBECONFIG (the session cluster is the current context, `prod-eu-1`).

The guide's tests build on each other in document order through module fixtures (secrets, then the install), so
any one of them also runs alone. The outcome is asserted through the API server: Secrets and their keys, release
status and revision, what the pods mount, the exporter's settings, the PVC across the upgrade.
"""

from __future__ import annotations

import base64
import functools
import http.server
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from testsupport.cluster import KwokCluster, cache_bin, create_kwok_cluster, eventually, wait_until
from testsupport.render import ROOT, STUB_DIRS, chart_copy, helm_binary, kci_cache

pytestmark = pytest.mark.controlplane

log = logging.getLogger(__name__)

DOCS = ("README.md", "UPGRADING.md", "docs/deployment.md", "docs/troubleshooting.md")
#: Fence languages that hold shell commands (and unlabelled fences with `$ ` prompts).
SHELL_LANGS = {"bash", "sh", "shell", "console", "zsh", "terminal"}
#: A block that runs verbatim must be a plain script: no prompts, no output lines.
RUNNABLE_LANGS = {"bash", "sh"}
#: Every `doc-test: <id>` block and the test that runs it.
RUN_BY_TESTS = {
    ("README.md", "quick-start"): "test_readme_quick_start",
    ("README.md", "cli-venv"): "test_readme_cli_install_venv",
    ("README.md", "cli-pipx"): "test_readme_cli_install_pipx",
    ("docs/deployment.md", "deploy-secrets"): "test_deployment_guide_secrets",
    ("docs/deployment.md", "deploy-install"): "test_deployment_guide_install",
    ("docs/troubleshooting.md", "first-look"): "test_troubleshooting_first_look",
    ("docs/deployment.md", "multi-cluster"): "test_deployment_guide_multi_cluster",
    ("UPGRADING.md", "upgrade-deps"): "test_upgrading_general_procedure",
    ("UPGRADING.md", "upgrade"): "test_upgrading_general_procedure",
}
KUBECOST_REPO = "https://kubecost.github.io/cost-analyzer/"
#: Every engine repository of Chart.yaml: all served by the one local repository of stubs.
ENGINE_REPOS = (KUBECOST_REPO, "https://kubecost.github.io/kubecost", "https://opencost.github.io/opencost-helm-chart")
CRD = Path(__file__).resolve().parent / "prometheusrule-crd.yaml"
STAGES_DIR = Path(__file__).resolve().parent / "stages"
NS, RELEASE = "kubecost-integration", "kci"
EXPORTER = f"{RELEASE}-kubecost-integration-exporter"

_FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>`{3,}|~{3,})\s*(?P<lang>[\w+-]*)\s*$")
_MARKER = re.compile(r"^\s*<!--\s*doc-test:\s*(?P<body>.*?)\s*-->\s*$")
_SKIP = re.compile(r'^skip\s+reason="(?P<reason>[^"]+)"$')
_ID = re.compile(r"^[a-z0-9][a-z0-9-]*$")


# ---------------------------------------------------------------------------------------------------------------
# Extraction


@dataclass(frozen=True)
class DocBlock:
    doc: str
    line: int  # 1-based line of the opening fence
    lang: str
    text: str
    marker: str | None  # the marker's body, e.g. "deploy-secrets" or 'skip reason="..."'

    @property
    def is_shell(self) -> bool:
        if self.lang:
            return self.lang in SHELL_LANGS
        return any(line.startswith("$ ") for line in self.text.splitlines())

    @property
    def skip_reason(self) -> str | None:
        match = _SKIP.match(self.marker or "")
        return match.group("reason") if match else None

    @property
    def block_id(self) -> str | None:
        return self.marker if self.marker and _ID.match(self.marker) else None

    def where(self) -> str:
        return f"{self.doc}:{self.line}"


def parse_doc(doc: str, root: Path = ROOT) -> tuple[list[DocBlock], list[str]]:
    """The fenced blocks of `doc` with the marker just above each, and markers that sit above no fence."""
    lines = (root / doc).read_text().splitlines()
    blocks: list[DocBlock] = []
    orphans: list[str] = []
    pending: tuple[int, str] | None = None  # (line, body) of a marker waiting for its fence
    i = 0
    while i < len(lines):
        line = lines[i]
        fence = _FENCE.match(line)
        marker = _MARKER.match(line)
        if marker:
            if pending:
                orphans.append(f"{doc}:{pending[0]}: marker `{pending[1]}` is followed by another marker")
            pending = (i + 1, marker.group("body"))
        elif fence:
            char, length = fence.group("fence")[0], len(fence.group("fence"))
            body: list[str] = []
            j = i + 1
            while j < len(lines) and not re.match(rf"^\s*{re.escape(char)}{{{length},}}\s*$", lines[j]):
                body.append(lines[j])
                j += 1
            indent = len(fence.group("indent"))
            text = "\n".join(b[indent:] if b[:indent].strip() == "" else b for b in body) + "\n"
            blocks.append(DocBlock(doc, i + 1, fence.group("lang").lower(), text, pending[1] if pending else None))
            pending = None
            i = j
        elif line.strip() and pending:
            orphans.append(f"{doc}:{pending[0]}: marker `{pending[1]}` is not directly above a fenced block")
            pending = None
        i += 1
    if pending:
        orphans.append(f"{doc}:{pending[0]}: marker `{pending[1]}` at the end of the file")
    return blocks, orphans


@functools.cache
def doc_block(doc: str, block_id: str) -> str:
    """The text of the block marked `doc-test: <block_id>` in `doc`; exactly one must exist."""
    found = [b for b in parse_doc(doc)[0] if b.block_id == block_id]
    assert len(found) == 1, f"{doc}: {len(found)} blocks marked `doc-test: {block_id}` (expected one)"
    assert found[0].lang in RUNNABLE_LANGS, f"{found[0].where()}: a runnable block must be ```bash, not {found[0].lang}"
    return found[0].text


def test_every_shell_block_in_the_docs_is_run_or_excluded_with_a_reason() -> None:
    problems: list[str] = []
    ran: set[tuple[str, str]] = set()
    counts = {"run": 0, "skip": 0, "other": 0}
    for doc in DOCS:
        blocks, orphans = parse_doc(doc)
        problems += orphans
        seen: set[str] = set()
        for block in blocks:
            if not block.is_shell:
                counts["other"] += 1
                if block.marker is not None:
                    problems.append(
                        f"{block.where()}: `doc-test` marker above a ```{block.lang or '(no language)'} block"
                    )
                continue
            if block.marker is None:
                problems.append(
                    f"{block.where()}: shell block without a marker: add `<!-- doc-test: <id> -->` and run it in "
                    f'{Path(__file__).name}, or `<!-- doc-test: skip reason="..." -->`'
                )
            elif block.skip_reason is not None:
                counts["skip"] += 1
            elif block.block_id is not None:
                counts["run"] += 1
                if block.block_id in seen:
                    problems.append(f"{block.where()}: duplicate id `{block.block_id}` in {doc}")
                seen.add(block.block_id)
                if block.lang not in RUNNABLE_LANGS:
                    problems.append(f"{block.where()}: runnable block `{block.block_id}` must be ```bash (no prompts)")
                if (doc, block.block_id) not in RUN_BY_TESTS:
                    problems.append(f"{block.where()}: `doc-test: {block.block_id}` is run by no test (RUN_BY_TESTS)")
                ran.add((doc, block.block_id))
            else:
                problems.append(f'{block.where()}: unreadable marker `{block.marker}` (an id, or skip reason="...")')
    problems += [
        f"{doc}: RUN_BY_TESTS expects `doc-test: {bid}`, which is gone" for doc, bid in RUN_BY_TESTS.keys() - ran
    ]
    print(f"\ndoc shell blocks: {counts['run']} run, {counts['skip']} excluded with a reason; {counts['other']} other")
    assert not problems, "\n".join(problems)
    assert counts["run"] == len(RUN_BY_TESTS)


def test_the_inventory_catches_an_unmarked_block(tmp_path: Path) -> None:
    """The parser itself: an unmarked ```bash, a console block with prompts and a marker above prose are all found."""
    doc = tmp_path / "x.md"
    doc.write_text(
        "```bash\nhelm install x .\n```\n\n```\n$ kubectl get pods\n```\n\n```yaml\na: 1\n```\n\n"
        '<!-- doc-test: lost -->\nprose\n\n<!-- doc-test: skip reason="r" -->\n```console\n$ make demo\n```\n'
    )
    blocks, orphans = parse_doc("x.md", tmp_path)
    assert [(b.is_shell, b.marker) for b in blocks] == [
        (True, None),
        (True, None),
        (False, None),
        (True, 'skip reason="r"'),
    ]
    assert blocks[3].skip_reason == "r"
    assert orphans == ["x.md:13: marker `lost` is not directly above a fenced block"]


# ---------------------------------------------------------------------------------------------------------------
# The environment the blocks run in


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        log.debug("chart repo: " + format, *args)


@pytest.fixture(scope="module")
def chart_repo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A local HTTP Helm repository serving the stub engine charts (packaged and indexed with real helm)."""
    root = tmp_path_factory.mktemp("chart-repo")
    helm = helm_binary("helm")
    for stub in STUB_DIRS:
        subprocess.run([helm, "package", str(stub), "-d", str(root)], check=True, capture_output=True, timeout=60)
    subprocess.run([helm, "repo", "index", str(root)], check=True, capture_output=True, timeout=60)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, name="chart-repo", daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


@dataclass
class Checkout:
    """A fresh clone's worth of files plus what the guide asks the user to provide; the blocks run in `root`."""

    root: Path
    home: Path
    helm4_bin: Path
    token: str
    timings: dict[str, float] = field(default_factory=dict)

    def env(self, kubeconfig: Path, helm: str = "helm") -> dict[str, str]:
        path = [str(kci_cache() / "bin"), "/usr/local/bin", "/usr/bin", "/bin"]
        if helm == "helm4":
            path.insert(0, str(self.helm4_bin))
        return {
            "PATH": os.pathsep.join(path),
            "HOME": str(self.home),
            "KUBECONFIG": str(kubeconfig),
            "HELM_CACHE_HOME": str(self.home / f".{helm}" / "cache"),
            "HELM_CONFIG_HOME": str(self.home / f".{helm}" / "config"),
            "HELM_DATA_HOME": str(self.home / f".{helm}" / "data"),
            "LANG": "C.UTF-8",
            "TMPDIR": str(self.home),
        }

    def run(self, doc: str, block_id: str, kubeconfig: Path, helm: str = "helm") -> subprocess.CompletedProcess[str]:
        """Run the marked block verbatim in bash (`-e -u -o pipefail`); fail with its output if it fails."""
        proc, took = run_block(doc, block_id, self.root, self.env(kubeconfig, helm), helm)
        self.timings[f"{doc}#{block_id}[{helm}]"] = took
        return proc


def run_block(
    doc: str, block_id: str, cwd: Path, env: dict[str, str], label: str, timeout: float = 400
) -> tuple[subprocess.CompletedProcess[str], float]:
    """Run the marked block verbatim in bash (`-e -u -o pipefail`) in `cwd` with exactly `env`; fail with its output
    if it fails. Returns the process and how long it took (seconds)."""
    text = doc_block(doc, block_id)
    started = time.monotonic()
    proc = subprocess.run(
        ["bash", "--noprofile", "--norc", "-e", "-u", "-o", "pipefail", "-c", text],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    took = time.monotonic() - started
    print(f"\n{doc} `{block_id}` ({label}) exited {proc.returncode} in {took:.1f}s\n{proc.stdout}{proc.stderr}")
    assert proc.returncode == 0, (
        f"{doc} block `{block_id}` exited {proc.returncode} ({label}):\n{text}\n"
        f"--- stdout\n{proc.stdout[-4000:]}\n--- stderr\n{proc.stderr[-4000:]}"
    )
    return proc, took


def production_values_block() -> str:
    blocks = re.findall(
        r"<!-- rendered-by-tests -->\n```yaml\n(.*?)```", (ROOT / "docs/deployment.md").read_text(), re.DOTALL
    )
    assert len(blocks) == 1, "docs/deployment.md must have exactly one rendered-by-tests values block"
    return str(blocks[0])


@pytest.fixture(scope="module")
def checkout(tmp_path_factory: pytest.TempPathFactory, chart_repo: str) -> Iterator[Checkout]:
    root = tmp_path_factory.mktemp("checkout")
    chart = chart_copy(root / "charts")
    shutil.rmtree(chart / "charts")  # as in a fresh clone: the dependency is fetched by the docs' commands
    chart_yaml = chart / "Chart.yaml"
    text = chart_yaml.read_text()
    for repo in ENGINE_REPOS:
        assert text.count(f"repository: {repo}") == 1, f"Chart.yaml no longer names {repo} once"
        text = text.replace(f"repository: {repo}", f"repository: {chart_repo}")
    chart_yaml.write_text(text)
    # a developer's working copy may hold a Chart.lock from an earlier `helm dependency update`; it
    # is git-ignored, so a fresh clone has none
    (chart / "Chart.lock").unlink(missing_ok=True)

    (root / "production-values.yaml").write_text(production_values_block())
    token = f"doc-test-token-{os.getpid()}"
    (root / "token").write_text(token)
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
         "-subj", "/CN=doc-test private CA", "-keyout", str(root.parent / "ca.key"), "-out", str(root / "ca.crt")],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    home = tmp_path_factory.mktemp("home")
    helm4_bin = tmp_path_factory.mktemp("helm4-first")
    (helm4_bin / "helm").symlink_to(helm_binary("helm4"))
    result = Checkout(root=root, home=home, helm4_bin=helm4_bin, token=token)
    yield result
    print("\ndoc block timings: " + ", ".join(f"{k} {v:.1f}s" for k, v in result.timings.items()))


def prepare_production_cluster(kubectl: Callable[..., subprocess.CompletedProcess[str]], pv_name: str) -> None:
    """What a production cluster already has: prometheus-operator's PrometheusRule CRD and storage for a PVC."""
    kubectl("apply", "-f", str(CRD))
    kubectl("wait", "--for=condition=Established", "crd/prometheusrules.monitoring.coreos.com", "--timeout=60s")
    pv = {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": pv_name},
        "spec": {
            "capacity": {"storage": "2Gi"},
            "accessModes": ["ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Retain",
            "hostPath": {"path": f"/var/lib/{pv_name}"},
        },
    }
    kubectl("apply", "-f", "-", input=json.dumps(pv))


# ---------------------------------------------------------------------------------------------------------------
# Assertions through the API server


def helm_status(checkout: Checkout, kubeconfig: Path, release: str, namespace: str) -> dict[str, Any]:
    proc = subprocess.run(
        ["helm", "status", release, "-n", namespace, "-o", "json"],
        env=checkout.env(kubeconfig),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    out: dict[str, Any] = json.loads(proc.stdout)
    return out


def component(cluster: KwokCluster, kind: str, name: str, namespace: str = NS) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = cluster.get_json(kind, "-n", namespace, "-l", f"app.kubernetes.io/component={name}")
    return items


def container_env(workload: dict[str, Any]) -> dict[str, str | None]:
    return {e["name"]: e.get("value") for e in workload["spec"]["template"]["spec"]["containers"][0].get("env", [])}


def wait_pods_ready(cluster: KwokCluster, namespace: str, selector: str, expected: int) -> list[dict[str, Any]]:
    """Wait for exactly `expected` Running/Ready pods matching `selector` (none terminating); return them."""

    def ready(pods: list[dict[str, Any]]) -> bool:
        return len(pods) == expected and all(
            p["status"].get("phase") == "Running"
            and any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions", []))
            and not p["metadata"].get("deletionTimestamp")
            for p in pods
        )

    pods: list[dict[str, Any]] = eventually(
        lambda: cluster.get_json("pods", "-n", namespace, "-l", selector), ready, 120
    )
    summary = [(p["metadata"]["name"], p["status"].get("phase"), p["metadata"].get("deletionTimestamp")) for p in pods]
    assert ready(pods), f"pods {selector} in {namespace} not {expected} Running/Ready: {summary}"
    return pods


def secret_file_source(pod: dict[str, Any], path: str) -> tuple[str, str]:
    """(Secret name, key) that the file `path` of the pod's first container comes from, through a Secret volume."""
    spec = pod["spec"]
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    directory, filename = str(PurePosixPath(path).parent), PurePosixPath(path).name
    for mount in spec["containers"][0].get("volumeMounts", []):
        if mount["mountPath"].rstrip("/") != directory:
            continue
        secret = volumes[mount["name"]].get("secret")
        assert secret, f"{path}: {directory} is mounted from {volumes[mount['name']]}, not a Secret"
        items = {i["path"]: i["key"] for i in secret.get("items", [])}
        return secret["secretName"], items.get(filename, filename) if items else filename
    raise AssertionError(f"no volume of {pod['metadata']['name']} is mounted at {directory} (for {path})")


def selects(selector: dict[str, Any], pod: dict[str, Any]) -> bool:
    """Does a label selector (matchLabels and the `In`/`Exists` expressions the chart could use) select `pod`?"""
    labels = pod["metadata"].get("labels") or {}
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expr in selector.get("matchExpressions") or []:
        assert expr["operator"] in {"In", "Exists"}, f"selects() does not handle {expr}"
        if expr["key"] not in labels or (expr["operator"] == "In" and labels[expr["key"]] not in expr["values"]):
            return False
    return True


def pvc_claims(pod: dict[str, Any]) -> list[str]:
    return [v["persistentVolumeClaim"]["claimName"] for v in pod["spec"]["volumes"] if "persistentVolumeClaim" in v]


def secret_data(cluster: KwokCluster, name: str, namespace: str = NS) -> dict[str, str]:
    secret = cluster.get_json("secret", name, "-n", namespace)
    return {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}


def agent_prometheus_config(cluster: KwokCluster, namespace: str = NS) -> dict[str, Any]:
    (configmap,) = component(cluster, "configmaps", "agent", namespace)
    config: dict[str, Any] = yaml.safe_load(configmap["data"]["prometheus.yml"])
    return config


# ---------------------------------------------------------------------------------------------------------------
# README quick start


@pytest.mark.parametrize("helm", ["helm", "helm4"])
def test_readme_quick_start(kwok_cluster: KwokCluster, checkout: Checkout, helm: str) -> None:
    """Both Helm majors run the quick start in one checkout, so the second `helm dependency update` meets the
    Chart.lock the first one wrote (what a user who ran it before sees)."""
    namespace, release = "my-ns", "my-kubecost"
    try:
        checkout.run("README.md", "quick-start", kwok_cluster.kubeconfig, helm)

        status = helm_status(checkout, kwok_cluster.kubeconfig, release, namespace)
        assert (status["info"]["status"], status["version"]) == ("deployed", 1)
        # every engine's chart is fetched (Helm needs them all present), the stubs' versions here
        for archive in ("kubecost-3.2.1.tgz", "cost-analyzer-2.8.7.tgz", "opencost-2.5.17.tgz"):
            assert (checkout.root / "charts/kubecost-integration/charts" / archive).is_file(), archive
        (exporter,) = component(kwok_cluster, "deployments", "allocation-exporter", namespace)
        env = container_env(exporter)
        assert (env["TENANT_ID"], env["CLUSTER_NAME"]) == ("acme", "prod-eu-1")
        # "its Kubecost URL derived from Kubecost's own naming": the URL names the Service Kubecost's chart made.
        match = re.fullmatch(r"http://([a-z0-9-]+)\.([a-z0-9-]+)(?:\.svc)?:(\d+)", env["KUBECOST_URL"] or "")
        assert match, env["KUBECOST_URL"]
        service = kwok_cluster.get_json("service", match.group(1), "-n", match.group(2))
        assert int(match.group(3)) in {p["port"] for p in service["spec"]["ports"]}
        assert component(kwok_cluster, "deployments", "agent", namespace), "no agent Deployment (agent mode)"
        selector = f"app.kubernetes.io/instance={release}"
        replicas = sum(
            d["spec"]["replicas"] for d in kwok_cluster.get_json("deployments", "-n", namespace, "-l", selector)
        )
        assert replicas >= 2, f"expected at least the exporter and the agent, got {replicas} replicas"
        wait_pods_ready(kwok_cluster, namespace, selector, replicas)
    finally:
        # The next Helm major runs the same command: remove the release and the namespace it created.
        subprocess.run(
            ["helm", "uninstall", release, "-n", namespace, "--wait", "--timeout", "120s"],
            env=checkout.env(kwok_cluster.kubeconfig, helm), capture_output=True, timeout=180, check=False,
        )  # fmt: skip
        kwok_cluster.kubectl("delete", "namespace", namespace, "--ignore-not-found", "--timeout=120s", timeout=180)


# ---------------------------------------------------------------------------------------------------------------
# README: the CLI on your machine, installed from the checkout (needs PyPI, for the exporter's dependencies)

#: The README prints `verify --help` to show the install worked; its usage line is what the user sees first.
VERIFY_USAGE = "usage: kubecost-allocation-exporter verify [-h]"


def python_source_checkout(root: Path) -> Path:
    """`queries/` and `exporter/` as a fresh clone has them, in `root`. pip builds a local project in place (setuptools
    writes `build/` and `*.egg-info` beside the sources), so the blocks never run in the developer's checkout."""
    junk = shutil.ignore_patterns("build", "*.egg-info", "__pycache__", ".*_cache", ".hypothesis")
    for project in ("queries", "exporter"):
        shutil.copytree(ROOT / project, root / project, ignore=junk)
    return root


def cli_env(home: Path, *first: Path) -> dict[str, str]:
    """A clean environment with HOME in a temp dir (so `~/.venvs`, `~/.local` land there). `python3` is the
    interpreter the tests run on (the README's Python >= 3.11), found before the system's. pip's cache is the
    user's (wheels are reused, nothing else); the machine's own pip settings (`PIP_*`: index, CA bundle) and
    proxy variables pass through, since these blocks alone reach PyPI."""
    base_bin = sysconfig.get_config_var("BINDIR")
    path = [*(str(p) for p in first), str(base_bin), "/usr/local/bin", "/usr/bin", "/bin"]
    cache = os.environ.get("PIP_CACHE_DIR") or str(
        Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "pip"
    )
    passed = {
        k: v
        for k, v in os.environ.items()
        if k.startswith("PIP_") or k.lower() in {"http_proxy", "https_proxy", "no_proxy"}
    }
    return passed | {
        "PATH": os.pathsep.join(path),
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "TMPDIR": str(home),
        "PIP_CACHE_DIR": cache,
    }


def test_readme_cli_install_venv(tmp_path: Path) -> None:
    """The README's venv + pip block, verbatim: a venv under ~/.venvs/kci (HOME is a temp dir) with the query library
    and the exporter from the checkout; `verify --help` prints the verify usage."""
    checkout = python_source_checkout(tmp_path / "checkout")
    home = tmp_path / "home"
    home.mkdir()
    proc, took = run_block("README.md", "cli-venv", checkout, cli_env(home), "pip")
    cli = home / ".venvs/kci/bin/kubecost-allocation-exporter"
    assert cli.is_file(), f"the block ran, but {cli} is not there"
    assert VERIFY_USAGE in proc.stdout, proc.stdout[-2000:]
    assert "--thanos-url" in proc.stdout, proc.stdout[-2000:]
    installed = subprocess.run(
        [str(home / ".venvs/kci/bin/python"), "-m", "pip", "list", "--format=json"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    names = {p["name"] for p in json.loads(installed.stdout)}
    assert {"kubecost-allocation-exporter", "cloudtuner-kubecost-queries"} <= names, names
    print(f"README cli-venv: {took:.1f}s")


def test_readme_cli_install_pipx(tmp_path: Path) -> None:
    """The README's pipx block, verbatim, with the pipx of requirements-dev.txt (the venv's) on PATH: the command lands
    in ~/.local/bin of the temp HOME and prints the verify usage."""
    pipx = Path(sys.executable).parent / "pipx"
    assert pipx.is_file(), f"{pipx} missing: pipx is a dev dependency (requirements-dev.txt), run `make venv`"
    tools = tmp_path / "tools"
    tools.mkdir()
    (tools / "pipx").symlink_to(pipx)  # pipx alone, not the venv's python3
    checkout = python_source_checkout(tmp_path / "checkout")
    home = tmp_path / "home"
    home.mkdir()
    proc, took = run_block("README.md", "cli-pipx", checkout, cli_env(home, tools), "pipx")
    assert (home / ".local/bin/kubecost-allocation-exporter").exists()
    assert VERIFY_USAGE in proc.stdout, proc.stdout[-2000:]
    assert "--thanos-url" in proc.stdout, proc.stdout[-2000:]
    print(f"README cli-pipx: {took:.1f}s")
    # The other pages quote the command this block ran, not a variant of it (`--preinstall ./queries` fails).
    tested = doc_block("README.md", "cli-pipx").splitlines()[0].split("#")[0].strip()
    for doc in DOCS:
        flat = " ".join((ROOT / doc).read_text().split())
        quoted = set(re.findall(r"`(pipx install [^`]*)`", flat))
        assert quoted <= {tested}, f"{doc} quotes {quoted - {tested}}; the README's tested command is `{tested}`"


# ---------------------------------------------------------------------------------------------------------------
# docs/deployment.md, docs/troubleshooting.md, UPGRADING.md: one production release, in document order


@pytest.fixture(scope="module")
def production_cluster(kwok_cluster: KwokCluster) -> Iterator[KwokCluster]:
    """The session cluster prepared as a production cluster; afterwards the guide's namespace (release, Secrets),
    the PV and the CRD are removed again, so other tests see a cluster without them."""
    prepare_production_cluster(kwok_cluster.kubectl, "docs-prod-eu-1-wal")
    yield kwok_cluster
    kwok_cluster.kubectl("delete", "namespace", NS, "--ignore-not-found", "--timeout=120s", timeout=180)
    kwok_cluster.kubectl("delete", "pv", "docs-prod-eu-1-wal", "--ignore-not-found", "--timeout=60s", timeout=90)
    kwok_cluster.kubectl("delete", "-f", str(CRD), "--ignore-not-found", "--timeout=60s", timeout=90)


@pytest.fixture(scope="module")
def guide_secrets(production_cluster: KwokCluster, checkout: Checkout) -> KwokCluster:
    checkout.run("docs/deployment.md", "deploy-secrets", production_cluster.kubeconfig)
    return production_cluster


@pytest.fixture(scope="module")
def guide_install(guide_secrets: KwokCluster, checkout: Checkout) -> KwokCluster:
    checkout.run("docs/deployment.md", "deploy-install", guide_secrets.kubeconfig)
    return guide_secrets


def test_deployment_guide_secrets(guide_secrets: KwokCluster, checkout: Checkout) -> None:
    production_cluster = guide_secrets
    assert secret_data(production_cluster, "thanos-remote-write") == {"token": checkout.token}
    assert secret_data(production_cluster, "thanos-ca") == {"ca.crt": (checkout.root / "ca.crt").read_text()}


def test_deployment_guide_install(guide_install: KwokCluster, checkout: Checkout) -> None:
    cluster = guide_install

    status = helm_status(checkout, cluster.kubeconfig, RELEASE, NS)
    assert (status["info"]["status"], status["version"]) == ("deployed", 1)
    (exporter,) = component(cluster, "deployments", "allocation-exporter")
    assert exporter["metadata"]["name"] == EXPORTER
    env = container_env(exporter)
    assert (env["TENANT_ID"], env["CLUSTER_NAME"]) == ("acme", "prod-eu-1")
    assert env["KUBECOST_URL"] == "http://kubecost-cost-analyzer.kubecost.svc:9090"
    # kubecost.enabled=false: no engine of this chart is installed.
    installed = {o["metadata"]["name"] for o in cluster.get_json("all", "-n", NS)}
    assert not [n for n in installed if n.endswith(("cost-analyzer", "frontend", "aggregator", "opencost"))], installed
    assert len(cluster.get_json("prometheusrules", "-n", NS)) == 1
    (dashboards,) = component(cluster, "configmaps", "dashboards")
    assert dashboards["metadata"]["annotations"]["grafana_folder"] == "Cost"

    # The agent's credentials are files from the Secrets the guide created, mounted into the running pod.
    (agent_pod,) = wait_pods_ready(cluster, NS, "app.kubernetes.io/component=agent", 1)
    (exporter_pod,) = wait_pods_ready(cluster, NS, "app.kubernetes.io/component=allocation-exporter", 1)
    # networkPolicy.enabled and podDisruptionBudget.enabled: both pods are covered by one of each.
    for kind in ("networkpolicies", "poddisruptionbudgets"):
        for pod in (agent_pod, exporter_pod):
            selecting = [
                o
                for o in cluster.get_json(kind, "-n", NS)
                if selects(o["spec"]["podSelector" if kind == "networkpolicies" else "selector"], pod)
            ]
            assert selecting, f"no {kind} selects pod {pod['metadata']['name']}"
    (remote_write,) = agent_prometheus_config(cluster)["remote_write"]
    assert remote_write["headers"]["THANOS-TENANT"] == "acme"
    token_file = remote_write["authorization"]["credentials_file"]
    ca_file = remote_write["tls_config"]["ca_file"]
    assert secret_file_source(agent_pod, token_file) == ("thanos-remote-write", "token")
    assert secret_file_source(agent_pod, ca_file) == ("thanos-ca", "ca.crt")
    # persistence.enabled: the WAL is on a bound claim.
    (pvc,) = cluster.get_json("persistentvolumeclaims", "-n", NS)
    wait_until(
        lambda: cluster.get_json("pvc", pvc["metadata"]["name"], "-n", NS)["status"].get("phase") == "Bound",
        60,
        f"PVC {pvc['metadata']['name']} to bind",
    )
    assert pvc_claims(agent_pod) == [pvc["metadata"]["name"]]


def test_troubleshooting_first_look(guide_install: KwokCluster, checkout: Checkout) -> None:
    wait_pods_ready(guide_install, NS, f"app.kubernetes.io/instance={RELEASE}", 2)
    proc = checkout.run("docs/troubleshooting.md", "first-look", guide_install.kubeconfig)

    assert f"deployment.apps/{EXPORTER}" in proc.stdout
    assert re.search(rf"^pod/{EXPORTER}-\S+\s+1/1\s+Running", proc.stdout, re.MULTILINE), proc.stdout
    assert re.search(r"^TENANT_ID=acme$", proc.stdout, re.MULTILINE)
    assert re.search(r"^CLUSTER_NAME=prod-eu-1$", proc.stdout, re.MULTILINE)


@pytest.fixture(scope="module")
def more_clusters(
    tmp_path_factory: pytest.TempPathFactory, production_cluster: KwokCluster
) -> Iterator[tuple[Path, dict[str, KwokCluster]]]:
    """Two more kwok clusters; a KUBECONFIG with the session cluster current and contexts `prod-us-1`, `prod-ap-1`."""
    clusters: dict[str, KwokCluster] = {}
    try:
        for name in ("prod-us-1", "prod-ap-1"):
            cluster = create_kwok_cluster(tmp_path_factory.mktemp(f"kwok-{name}"), STAGES_DIR)
            clusters[name] = cluster
            prepare_production_cluster(cluster.kubectl, f"docs-{name}-wal")
        kubeconfig = tmp_path_factory.mktemp("kubeconfig") / "config"
        files = [production_cluster.kubeconfig] + [c.kubeconfig for c in clusters.values()]
        env = {"KUBECONFIG": os.pathsep.join(map(str, files)), "PATH": os.environ.get("PATH", "")}
        kubectl = str(cache_bin("kubectl"))
        flat = subprocess.run([kubectl, "config", "view", "--flatten"], env=env, capture_output=True, text=True,
                              timeout=60, check=True).stdout  # fmt: skip
        kubeconfig.write_text(flat)
        for name, cluster in clusters.items():
            context = subprocess.run([kubectl, "config", "current-context", "--kubeconfig", str(cluster.kubeconfig)],
                                     capture_output=True, text=True, timeout=30, check=True).stdout.strip()  # fmt: skip
            subprocess.run([kubectl, "config", "rename-context", context, name, "--kubeconfig", str(kubeconfig)],
                           capture_output=True, timeout=30, check=True)  # fmt: skip
        yield kubeconfig, clusters
    finally:
        for cluster in clusters.values():
            cluster.delete()


def test_deployment_guide_multi_cluster(
    guide_install: KwokCluster,
    more_clusters: tuple[Path, dict[str, KwokCluster]],
    checkout: Checkout,
) -> None:
    kubeconfig, clusters = more_clusters
    production_cluster = guide_install
    checkout.run("docs/deployment.md", "multi-cluster", kubeconfig)

    labels = {}
    for name, cluster in {"prod-eu-1": production_cluster, **clusters}.items():
        status = helm_status(checkout, cluster.kubeconfig, RELEASE, NS)
        assert status["info"]["status"] == "deployed", name
        assert secret_data(cluster, "thanos-remote-write") == {"token": checkout.token}, name
        (exporter,) = component(cluster, "deployments", "allocation-exporter")
        env = container_env(exporter)
        assert (env["TENANT_ID"], env["CLUSTER_NAME"]) == ("acme", name)
        external = agent_prometheus_config(cluster)["global"]["external_labels"]
        assert (external["tenant_id"], external["cluster"]) == ("acme", name)
        labels[name] = external["cluster"]
        wait_pods_ready(cluster, NS, f"app.kubernetes.io/instance={RELEASE}", 2)
    assert len(set(labels.values())) == 3, f"a clusterName is reused: {labels}"
    # The loop never touched the session cluster's release (current context, installed by section 1).
    assert helm_status(checkout, production_cluster.kubeconfig, RELEASE, NS)["version"] == 1


def test_upgrading_general_procedure(guide_install: KwokCluster, checkout: Checkout) -> None:
    """UPGRADING.md on the release the guide installed, with the next chart version in the checkout (what
    `git pull` brings): the exporter rolls to the new image, the agent keeps its WAL claim, the Secrets stay."""
    cluster = guide_install
    chart_yaml = checkout.root / "charts/kubecost-integration/Chart.yaml"
    text = chart_yaml.read_text()
    assert "\nversion: 0.2.0\n" in text, "update the version bump below"
    assert '\nappVersion: "0.1.0"\n' in text, "update the version bump below"
    chart_yaml.write_text(text.replace("\nversion: 0.2.0\n", "\nversion: 0.2.1\n").replace(
        '\nappVersion: "0.1.0"\n', '\nappVersion: "0.1.1"\n'))  # fmt: skip
    (pvc_before,) = cluster.get_json("persistentvolumeclaims", "-n", NS)
    (exporter_before,) = component(cluster, "deployments", "allocation-exporter")
    secrets_before = {s: secret_data(cluster, s) for s in ("thanos-remote-write", "thanos-ca")}

    checkout.run("UPGRADING.md", "upgrade-deps", cluster.kubeconfig)
    checkout.run("UPGRADING.md", "upgrade", cluster.kubeconfig)

    history = json.loads(
        subprocess.run(
            ["helm", "history", RELEASE, "-n", NS, "-o", "json"],
            env=checkout.env(cluster.kubeconfig), capture_output=True, text=True, timeout=60, check=True,
        ).stdout
    )  # fmt: skip
    assert [(h["revision"], h["status"], h["chart"]) for h in history] == [
        (1, "superseded", "kubecost-integration-0.2.0"),
        (2, "deployed", "kubecost-integration-0.2.1"),
    ]
    (exporter,) = component(cluster, "deployments", "allocation-exporter")
    image = exporter["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image.endswith(":0.1.1"), image
    assert exporter["metadata"]["generation"] > exporter_before["metadata"]["generation"]
    (pod,) = wait_pods_ready(cluster, NS, "app.kubernetes.io/component=allocation-exporter", 1)
    assert pod["spec"]["containers"][0]["image"] == image
    assert container_env(exporter)["TENANT_ID"] == "acme"
    (pvc_after,) = cluster.get_json("persistentvolumeclaims", "-n", NS)
    assert pvc_after["metadata"]["uid"] == pvc_before["metadata"]["uid"], "the upgrade replaced the WAL claim"
    assert pvc_after["status"]["phase"] == "Bound"
    (agent_pod,) = wait_pods_ready(cluster, NS, "app.kubernetes.io/component=agent", 1)
    assert pvc_claims(agent_pod) == [pvc_after["metadata"]["name"]]
    assert {s: secret_data(cluster, s) for s in secrets_before} == secrets_before
