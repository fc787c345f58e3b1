"""A real local control plane for the control-plane e2e tests: kwokctl's `binary` runtime, local binaries only.

kube-apiserver, etcd, kube-controller-manager and kube-scheduler run as host processes started by kwokctl, and the
kwok controller plays the kubelet for one fake node (pods become Running/Ready, Jobs and `helm test` pods complete,
through the Stages in `tests-e2e/controlplane/stages/`). Every binary comes from `$KCI_CACHE/bin` (`make tools`);
kwokctl is never allowed to download anything:

* every binary option kwokctl has is pointed at a local path (a tool we don't build, such as etcdctl or kectl,
  points at a path that does not exist, so using it fails locally instead of downloading);
* a `--dry-run` of the exact create command runs first, and any `# Download http...` line it prints fails the
  fixture with that line;
* the real create runs with `HTTP(S)_PROXY` pointed at a closed loopback port, and its log is scanned for
  kwokctl's `Download` message as well.

`kubectl port-forward` works too: kwokctl starts the kwok controller with its kubelet API server (`--server-address`,
TLS with the cluster's admin cert) on 127.0.0.1 and the port the fake nodes advertise as
`status.daemonEndpoints.kubeletEndpoint.Port`; each node's `Hostname` address is `localhost`, and kube-apiserver is
told to use that address type for kubelet connections. kwok answers a pod's `portforward` subresource from the
`PortForward` custom resource (kwok.x-k8s.io/v1alpha1, enabled through `enableCRDs`) named like the pod, which maps
pod ports to a target address, e.g. a local process on 127.0.0.1 (`KwokCluster.forward_pod_ports`).

kwokctl reads `KWOK_*` variables over its config file, so they are removed from its environment; the work dir
(`KWOK_WORKDIR`) is a per-session temp dir, so clusters of parallel runs never meet, and no kubeconfig outside it
is touched (`--kubeconfig ""`).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from testsupport.render import kci_cache

#: Binaries the local control plane needs, all from `$KCI_CACHE/bin`.
CONTROL_PLANE_BINARIES = (
    "kwokctl",
    "kwok",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "etcd",
    "kubectl",
)
#: kwokctl's Stages ship together: if the config has any Stage, kwokctl adds none of its defaults.
STAGE_FILES = (
    "node-initialize.yaml",
    "node-heartbeat-with-lease.yaml",
    "pod-ready.yaml",
    "pod-complete.yaml",
    "pod-delete.yaml",
    "pod-helm-test-complete.yaml",
)
MIN_ETCD = (3, 6)
#: kwok's custom resources the bench serves: a pod's port-forward is answered from its `PortForward` object.
ENABLED_CRDS = ("PortForward",)
T = TypeVar("T")
# A closed port on loopback: any HTTP(S) request kwokctl (or a component) tries to make through a proxy fails fast.
_DEAD_PROXY = "http://127.0.0.1:9"
_DRY_RUN_DOWNLOAD = re.compile(r"^# Download (https?://\S+)", re.MULTILINE)
_LOG_DOWNLOAD = re.compile(r"\bDownload\b.*?(https?://\S+)")
_PROXY_VARS = {"HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"}
_EVENT_RESOURCES = {"events", "events.events.k8s.io"}
#: Put into every namespace by the control plane itself.
NAMESPACE_BASELINE = {("ServiceAccount", "default"), ("ConfigMap", "kube-root-ca.crt")}


class ToolMissing(RuntimeError):
    """A binary the control plane needs is not in `$KCI_CACHE/bin`."""


class DownloadAttempted(RuntimeError):
    """kwokctl wanted to download something: the bench must run from local binaries only."""


class ClusterError(RuntimeError):
    """kwokctl or kubectl failed; the message carries their output."""


def cache_bin(name: str) -> Path:
    """`$KCI_CACHE/bin/<name>`, or `ToolMissing` naming the tool. PATH is deliberately not searched: a system
    etcd 3.4 or an old kubectl must never stand in for the pinned builds."""
    path = kci_cache() / "bin" / name
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise ToolMissing(f"{name} not found at {path}: run `make tools` (it builds the local control plane)")
    return path


def _run(
    cmd: Sequence[str | os.PathLike[str]],
    *,
    env: Mapping[str, str] | None = None,
    input: str | None = None,
    timeout: float = 180,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [str(c) for c in cmd],
        env=dict(env) if env is not None else None,
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if check and proc.returncode != 0:
        raise ClusterError(
            f"{' '.join(str(c) for c in cmd)} exited {proc.returncode}\n"
            f"--- stdout\n{proc.stdout[-4000:]}\n--- stderr\n{proc.stderr[-4000:]}"
        )
    return proc


def etcd_version(etcd: Path) -> tuple[int, int, int]:
    out = _run([etcd, "--version"], timeout=30).stdout
    match = re.search(r"etcd Version:\s*(\d+)\.(\d+)\.(\d+)", out)
    if not match:
        raise ClusterError(f"cannot read the etcd version from `{etcd} --version`:\n{out}")
    major, minor, patch = (int(g) for g in match.groups())
    return major, minor, patch


def kwokctl_config(stages_dir: Path) -> str:
    """The KwokctlConfiguration (every binary path local) followed by the full Stage set, as one YAML stream."""
    b = kci_cache() / "bin"
    absent = kci_cache() / "bin" / "not-built"  # tools kwokctl knows but the bench never needs
    conf: dict[str, Any] = {
        "kind": "KwokctlConfiguration",
        "apiVersion": "config.kwok.x-k8s.io/v1alpha1",
        "options": {
            "runtime": "binary",
            "kubeBinaryPrefix": str(b),
            "kubeApiserverBinary": str(b / "kube-apiserver"),
            "kubeControllerManagerBinary": str(b / "kube-controller-manager"),
            "kubeSchedulerBinary": str(b / "kube-scheduler"),
            "kubectlBinary": str(b / "kubectl"),
            "kwokBinaryPrefix": str(b),
            "kwokControllerBinary": str(b / "kwok"),
            "etcdBinaryPrefix": str(b),
            "etcdBinary": str(b / "etcd"),
            "etcdBinaryTar": str(absent / "etcd.tar.gz"),
            "etcdctlBinary": str(absent / "etcdctl"),
            "etcdutlBinary": str(absent / "etcdutl"),
            "kectlBinary": str(absent / "kectl"),
            "prometheusBinaryPrefix": str(absent),
            "prometheusBinary": str(absent / "prometheus"),
            "prometheusBinaryTar": str(absent / "prometheus.tar.gz"),
            "jaegerBinaryPrefix": str(absent),
            "jaegerBinary": str(absent / "jaeger"),
            "jaegerBinaryTar": str(absent / "jaeger.tar.gz"),
            "metricsServerBinaryPrefix": str(absent),
            "metricsServerBinary": str(absent / "metrics-server"),
            "kindBinaryPrefix": str(absent),
            "kindBinary": str(absent / "kind"),
            "quietPull": True,
            # kwok's kubelet API server (and every other component) listens on loopback only.
            "bindAddress": "127.0.0.1",
            "enableCRDs": list(ENABLED_CRDS),
        },
        "componentsPatches": [
            # Test data only: etcd without fsync keeps API writes fast on a shared 2-core machine.
            {"name": "etcd", "extraArgs": [{"key": "unsafe-no-fsync", "value": "true"}]},
            # The fake nodes' `Hostname` address is `localhost`, where kwok serves the kubelet API; their
            # InternalIP (192.0.2.1) is a documentation address nothing listens on.
            {
                "name": "kube-apiserver",
                "extraArgs": [{"key": "kubelet-preferred-address-types", "value": "Hostname"}],
            },
        ],
    }
    docs = [yaml.safe_dump(conf, sort_keys=False)]
    for name in STAGE_FILES:
        path = stages_dir / name
        if not path.is_file():
            raise FileNotFoundError(f"kwok stage {path} is missing (all six stages must ship together)")
        docs.append(path.read_text())
    return "---\n".join(d if d.endswith("\n") else d + "\n" for d in docs)


@dataclass
class KwokCluster:
    """A running kwokctl cluster. `kubeconfig` is an admin kubeconfig (client certs) for `127.0.0.1`."""

    name: str
    workdir: Path
    config_path: Path
    env: dict[str, str] = field(repr=False)
    create_seconds: float = 0.0

    @property
    def cluster_dir(self) -> Path:
        return self.workdir / "clusters" / self.name

    @property
    def kubeconfig(self) -> Path:
        return self.cluster_dir / "kubeconfig.yaml"

    def kwokctl(self, *args: str, timeout: float = 180, check: bool = True) -> subprocess.CompletedProcess[str]:
        return _run(
            [cache_bin("kwokctl"), "--name", self.name, *args],
            env=self.env,
            timeout=timeout,
            check=check,
        )

    def kubectl(
        self, *args: str, input: str | None = None, timeout: float = 120, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        return _run(
            [cache_bin("kubectl"), "--kubeconfig", self.kubeconfig, *args],
            env=self.env,
            input=input,
            timeout=timeout,
            check=check,
        )

    def get_json(self, *args: str) -> Any:
        """`kubectl get ... -o json`, parsed; a List's `items` for list results."""
        out = json.loads(self.kubectl("get", *args, "-o", "json").stdout)
        return out.get("items", out) if isinstance(out, dict) and out.get("kind", "").endswith("List") else out

    def api_resources(self, namespaced: bool) -> list[str]:
        """Every listable resource type the API server serves (`kubectl api-resources -o name`)."""
        out = self.kubectl(
            "api-resources",
            "--verbs=list",
            f"--namespaced={'true' if namespaced else 'false'}",
            "-o",
            "name",
        ).stdout
        return sorted({line.strip() for line in out.splitlines() if line.strip()})

    def objects(self, resources: Sequence[str], *args: str) -> list[dict[str, Any]]:
        """All objects of `resources` (one `kubectl get a,b,c ... -o json` call); `args` e.g. `-n ns`, `-l sel`."""
        if not resources:
            return []
        items: list[dict[str, Any]] = self.get_json(",".join(resources), *args)
        return items

    def namespace_contents(self, namespace: str) -> set[tuple[str, str]]:
        """(kind, name) of everything listable in `namespace`, except Events (history, not state)."""
        kinds = [r for r in self.api_resources(namespaced=True) if r not in _EVENT_RESOURCES]
        return {(o["kind"], o["metadata"]["name"]) for o in self.objects(kinds, "-n", namespace)}

    def wait_namespace_populated(self, namespace: str, timeout: float = 60) -> set[tuple[str, str]]:
        """Wait until kube-controller-manager has put its objects into a new namespace (the `default`
        ServiceAccount, the root CA ConfigMap) and return the namespace's contents: the baseline before a release."""
        wait_until(lambda: self.namespace_contents(namespace) >= NAMESPACE_BASELINE, timeout, f"namespace {namespace}")
        return self.namespace_contents(namespace)

    def cluster_scoped_of_release(self, release: str, namespace: str) -> list[str]:
        """Cluster-scoped objects that carry the release: instance label or Helm's ownership annotations."""
        hits = []
        for o in self.objects(self.api_resources(namespaced=False)):
            meta = o["metadata"]
            labels, notes = meta.get("labels") or {}, meta.get("annotations") or {}
            if labels.get("app.kubernetes.io/instance") == release or (
                notes.get("meta.helm.sh/release-name") == release
                and notes.get("meta.helm.sh/release-namespace") == namespace
            ):
                hits.append(f"{o['kind']}/{meta['name']}")
        return hits

    def forward_pod_ports(self, namespace: str, pod: str, targets: Mapping[int, int]) -> None:
        """Create or replace kwok's `PortForward` for `pod`: `kubectl port-forward` to pod port `p` (through
        kube-apiserver and kwok's kubelet API) reaches `127.0.0.1:targets[p]`."""
        doc = {
            "apiVersion": "kwok.x-k8s.io/v1alpha1",
            "kind": "PortForward",
            "metadata": {"name": pod, "namespace": namespace},
            "spec": {
                "forwards": [
                    {"ports": [pod_port], "target": {"address": "127.0.0.1", "port": local}}
                    for pod_port, local in sorted(targets.items())
                ]
            },
        }
        self.kubectl("apply", "-f", "-", input=json.dumps(doc))

    def kubelet_endpoint(self, node: str) -> tuple[str, int]:
        """(address, port) kube-apiserver dials for `node`'s kubelet API: its `Hostname` address and
        `status.daemonEndpoints.kubeletEndpoint.Port`."""
        status = self.get_json("node", node)["status"]
        host = next(a["address"] for a in status.get("addresses", []) if a["type"] == "Hostname")
        return host, int(status["daemonEndpoints"]["kubeletEndpoint"]["Port"])

    def kwok_server_address(self) -> str:
        """The `--server-address` kwokctl gave the kwok controller (its kubelet API)."""
        pid = int((self.cluster_dir / "pids" / "kwok-controller.pid").read_text().strip())
        args = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
        return next(a.split("=", 1)[1] for a in args if a.startswith("--server-address="))

    def component_logs(self, tail: int = 60) -> str:
        """Last lines of each component's log, for failure messages."""
        parts = []
        logs = self.cluster_dir / "logs"
        for log in sorted(logs.glob("*.log")) if logs.is_dir() else []:
            lines = log.read_text(errors="replace").splitlines()[-tail:]
            parts.append(f"--- {log.name}\n" + "\n".join(lines))
        return "\n".join(parts)

    def _component_pids(self) -> list[int]:
        """PIDs of this cluster's components that are still running (kwokctl's pid files, checked against
        /proc so a recycled PID of another process is never touched)."""
        pids = []
        for pid_file in (self.cluster_dir / "pids").glob("*.pid"):
            try:
                pid = int(pid_file.read_text().strip())
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except (OSError, ValueError):
                continue
            if str(self.cluster_dir).encode() in cmdline:
                pids.append(pid)
        return pids

    def delete(self) -> None:
        """`kwokctl delete cluster`; any component it leaves running is stopped by PID. Raises if one survives."""
        pids = self._component_pids()
        # `--kubeconfig ""` is refused by `delete`; the cluster's own kubeconfig keeps every other one untouched.
        proc = self.kwokctl("delete", "cluster", "--kubeconfig", str(self.kubeconfig), timeout=120, check=False)
        survivors = [pid for pid in pids if Path(f"/proc/{pid}").exists()]
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pid in survivors:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
            deadline = time.monotonic() + 20
            while survivors and time.monotonic() < deadline:
                time.sleep(0.2)
                survivors = [pid for pid in survivors if Path(f"/proc/{pid}").exists()]
        if proc.returncode != 0 or survivors:
            raise ClusterError(
                f"kwokctl delete cluster {self.name} exited {proc.returncode} (still running: {survivors}):\n"
                f"{proc.stdout[-2000:]}{proc.stderr[-2000:]}"
            )


def _kwokctl_env(workdir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KWOK_") and k.upper() not in _PROXY_VARS}
    env["KWOK_WORKDIR"] = str(workdir)
    env["HTTP_PROXY"] = env["HTTPS_PROXY"] = env["http_proxy"] = env["https_proxy"] = _DEAD_PROXY
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost,::1"
    # The pinned tools first (kwokctl resolves kubectl through PATH for its helpers).
    env["PATH"] = f"{kci_cache() / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return env


def _fail_on_downloads(text: str, pattern: re.Pattern[str], when: str) -> None:
    urls = sorted(set(pattern.findall(text)))
    if urls:
        raise DownloadAttempted(
            f"kwokctl tried to download during {when} (the bench must use local binaries only; "
            f"run `make tools`, then check the binary options in testsupport/cluster.py):\n  " + "\n  ".join(urls)
        )


def create_kwok_cluster(
    base_dir: Path,
    stages_dir: Path,
    *,
    name: str | None = None,
    nodes: int = 1,
    timeout: float = 240,
) -> KwokCluster:
    """Create a kwokctl binary-runtime cluster under `base_dir` with `nodes` Ready kwok nodes."""
    missing = []
    for tool in CONTROL_PLANE_BINARIES:
        try:
            cache_bin(tool)
        except ToolMissing as err:
            missing.append(str(err))
    if missing:
        raise ToolMissing("\n".join(missing))
    if etcd_version(cache_bin("etcd"))[:2] < MIN_ETCD:
        raise ClusterError(
            f"{cache_bin('etcd')} is older than etcd {'.'.join(map(str, MIN_ETCD))}: run `make tools` "
            "(kube-apiserver >= 1.35 needs RequestWatchProgress, see thanos_tools.md section 3)"
        )

    name = name or f"kci-{uuid.uuid4().hex[:8]}"
    workdir = base_dir / "kwok"
    workdir.mkdir(parents=True, exist_ok=True)
    config_path = base_dir / "kwokctl.yaml"
    config_path.write_text(kwokctl_config(stages_dir))
    cluster = KwokCluster(name=name, workdir=workdir, config_path=config_path, env=_kwokctl_env(workdir))

    create = [
        "--config",
        str(config_path),
        "create",
        "cluster",
        "--runtime",
        "binary",
        "--kubeconfig",
        "",
    ]
    dry = cluster.kwokctl("--dry-run", *create, timeout=60)
    _fail_on_downloads(dry.stdout + dry.stderr, _DRY_RUN_DOWNLOAD, "a dry run of `create cluster`")

    started = time.monotonic()
    wait = f"{int(timeout)}s"
    proc = cluster.kwokctl(*create, "--wait", wait, "--timeout", wait, timeout=timeout + 60, check=False)
    log = proc.stdout + proc.stderr
    try:
        _fail_on_downloads(log, _LOG_DOWNLOAD, "`create cluster`")
        if proc.returncode != 0 or "Failed to wait for cluster to be ready" in log:
            raise ClusterError(
                f"kwokctl create cluster failed ({proc.returncode}):\n{log[-6000:]}\n{cluster.component_logs()}"
            )
        cluster.kwokctl("scale", "node", "--replicas", str(nodes), timeout=120)
        cluster.kubectl("wait", "--for=condition=Ready", "node", "--all", "--timeout=120s", timeout=150)
        # Port-forward (and logs/exec) goes kube-apiserver -> the node's kubelet endpoint: it must be kwok's server.
        kwok_port = int(cluster.kwok_server_address().rsplit(":", 1)[1])
        for node in cluster.get_json("nodes"):
            endpoint = cluster.kubelet_endpoint(node["metadata"]["name"])
            if endpoint != ("localhost", kwok_port):
                raise ClusterError(
                    f"node {node['metadata']['name']} advertises its kubelet at {endpoint}, but kwok serves the "
                    f"kubelet API on {cluster.kwok_server_address()}: port-forward would not reach it"
                )
        # Namespaces get their `default` ServiceAccount from kube-controller-manager; wait until it runs.
        wait_until(
            lambda: cluster.kubectl("get", "serviceaccount", "default", "-n", "default", check=False).returncode == 0,
            60,
            "kube-controller-manager to create serviceaccount default/default",
        )
    except BaseException:
        with contextlib.suppress(ClusterError):  # the original error is the one to report
            cluster.delete()
        raise
    cluster.create_seconds = time.monotonic() - started
    return cluster


def eventually(fetch: Callable[[], T], ok: Callable[[T], bool], timeout: float, interval: float = 1.0) -> T:
    """Poll `fetch()` until `ok(value)` or `timeout`; return the last value either way (the caller asserts on it)."""
    deadline = time.monotonic() + timeout
    while True:
        value = fetch()
        if ok(value) or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


def wait_until(cond: Callable[[], object], timeout: float, what: str, interval: float = 0.5) -> None:
    """Poll `cond()` until it is truthy; `ClusterError` naming `what` on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(interval)
    raise ClusterError(f"timed out after {timeout:.0f}s waiting for {what}")


@dataclass
class Helm:
    """One Helm CLI (`helm` = 3.x, `helm4` = 4.x) bound to a cluster's kubeconfig, with private Helm home dirs."""

    binary: str
    kubeconfig: Path
    home: Path

    @property
    def major(self) -> int:
        out = _run([self.binary, "version", "--template", "{{ .Version }}"], env=self._env(), timeout=30).stdout
        match = re.match(r"v?(\d+)", out.strip())
        if not match:
            raise ClusterError(f"cannot parse `{self.binary} version`: {out!r}")
        return int(match.group(1))

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        for var, sub in (
            ("HELM_CACHE_HOME", "cache"),
            ("HELM_CONFIG_HOME", "config"),
            ("HELM_DATA_HOME", "data"),
        ):
            env[var] = str(self.home / sub)
        env["KUBECONFIG"] = str(self.kubeconfig)
        env["PATH"] = f"{kci_cache() / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        return env

    def run(self, *args: str, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess[str]:
        return _run(
            [self.binary, "--kubeconfig", str(self.kubeconfig), *args],
            env=self._env(),
            timeout=timeout,
            check=check,
        )

    def install(
        self,
        release: str,
        chart: Path,
        namespace: str,
        *,
        set_args: Sequence[str] = (),
        extra_args: Sequence[str] = (),
        timeout: str = "180s",
    ) -> subprocess.CompletedProcess[str]:
        """`helm install --wait`; `extra_args` e.g. `["--create-namespace"]`."""
        sets = [a for s in set_args for a in ("--set", s)]
        return self.run(
            "install",
            release,
            str(chart),
            "--namespace",
            namespace,
            "--wait",
            "--timeout",
            timeout,
            *sets,
            *extra_args,
        )

    def upgrade(
        self,
        release: str,
        chart: Path,
        namespace: str,
        *,
        set_args: Sequence[str] = (),
        timeout: str = "180s",
    ) -> subprocess.CompletedProcess[str]:
        sets = [a for s in set_args for a in ("--set", s)]
        return self.run(
            "upgrade",
            release,
            str(chart),
            "--namespace",
            namespace,
            "--reuse-values",
            "--wait",
            "--timeout",
            timeout,
            *sets,
        )

    def manifest(self, release: str, namespace: str) -> list[dict[str, Any]]:
        """The release's objects as Helm recorded them (`helm get manifest`)."""
        text = self.run("get", "manifest", release, "--namespace", namespace).stdout
        return [d for d in yaml.safe_load_all(text) if d]

    def status(self, release: str, namespace: str) -> dict[str, Any]:
        out: dict[str, Any] = json.loads(self.run("status", release, "--namespace", namespace, "-o", "json").stdout)
        return out
