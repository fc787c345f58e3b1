"""The real kind cluster for the `kind` test layer: its state, kubectl/helm against it, the local images.

`scripts/kind.sh up` makes the cluster (offline here: every image is built by `scripts/images.sh` into our own
Docker Engine) and writes `$KCI_CACHE/kind/<cluster>/env` (`KUBECONFIG`, `KIND_CLUSTER`, `THANOS_QUERY_URL`).
Tests read that file through `KindCluster.from_env_file`; they never guess ports or paths.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import requests

from testsupport.render import CHART_DIR, helm_binary, kci_cache

ROOT = CHART_DIR.parent.parent
VERSIONS_FILE = ROOT / "tools" / "versions.env"


def versions() -> dict[str, str]:
    """tools/versions.env as a dict (KEY=VALUE lines, comments skipped)."""
    out: dict[str, str] = {}
    for raw in VERSIONS_FILE.read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            out[key] = value
    return out


def chart_app_version() -> str:
    for line in (CHART_DIR / "Chart.yaml").read_text().splitlines():
        if line.startswith("appVersion:"):
            return line.split(":", 1)[1].strip().strip('"')
    raise AssertionError("Chart.yaml has no appVersion")


def online() -> bool:
    """The mode `scripts/kind.sh` runs in: online on GitHub Actions (public images), offline here."""
    mode = os.environ.get("KCI_KIND_MODE") or ("online" if os.environ.get("GITHUB_ACTIONS") == "true" else "offline")
    return mode == "online"


@dataclass(frozen=True)
class LocalImages:
    """The images the kind layer runs. Offline (here): built by `scripts/images.sh` into our Docker Engine and
    loaded onto the node by `scripts/kind.sh up`, never pulled. Online (GitHub): the public images of the same
    versions, pulled by the kubelet. The exporter image is always built from this checkout and loaded."""

    exporter: str
    prometheus: str
    thanos: str
    opencost: str
    debian: str
    #: Pull policy of every image but the exporter's (which is never pulled: it is this checkout's build).
    pull_policy: str

    @classmethod
    def current(cls) -> LocalImages:
        v = versions()
        exporter = f"localhost/kubecost-allocation-exporter:{chart_app_version()}"
        if online():
            return cls(
                exporter=exporter,
                prometheus=f"quay.io/prometheus/prometheus:{v['PROMETHEUS3_VERSION']}",
                thanos=f"quay.io/thanos/thanos:{v['THANOS_VERSION']}",
                opencost=f"ghcr.io/opencost/opencost:{v['OPENCOST_VERSION'].lstrip('v')}",
                debian="docker.io/library/debian:bookworm-slim",
                pull_policy="IfNotPresent",
            )
        return cls(
            exporter=exporter,
            prometheus=f"localhost/kci/prometheus:{v['PROMETHEUS3_VERSION']}",
            # built from Thanos' release source and tagged with its public name by `scripts/kind.sh up`
            thanos=f"quay.io/thanos/thanos:{v['THANOS_VERSION']}",
            opencost=f"localhost/kci/opencost:{v['OPENCOST_VERSION']}",
            debian="localhost/kci/debian:bookworm",
            pull_policy="Never",
        )

    def all(self) -> list[str]:
        return [self.exporter, self.prometheus, self.thanos, self.opencost, self.debian]

    def chart_set_args(self) -> list[str]:
        """`--set` arguments pointing the chart's images at these (the exporter's is never pulled)."""
        exp_repo, exp_tag = self.exporter.rsplit(":", 1)
        prom_repo, prom_tag = self.prometheus.rsplit(":", 1)
        return [
            f"--set=allocationExporter.image.repository={exp_repo}",
            f"--set=allocationExporter.image.tag={exp_tag}",
            "--set=allocationExporter.image.pullPolicy=Never",
            f"--set=prometheus.agent.image.repository={prom_repo}",
            f"--set=prometheus.agent.image.tag={prom_tag}",
            f"--set=prometheus.agent.image.pullPolicy={self.pull_policy}",
        ]


class CommandFailed(AssertionError):
    def __init__(self, cmd: Sequence[str], proc: subprocess.CompletedProcess[str]) -> None:
        super().__init__(
            f"{shlex.join(cmd)} exited {proc.returncode}\n--- stdout\n{proc.stdout[-4000:]}\n"
            f"--- stderr\n{proc.stderr[-4000:]}"
        )
        self.returncode = proc.returncode
        self.stdout = proc.stdout
        self.stderr = proc.stderr


@dataclass(frozen=True)
class KindCluster:
    name: str
    kubeconfig: Path
    thanos_query_url: str

    @classmethod
    def from_env_file(cls, name: str = "kci") -> KindCluster:
        path = state_dir(name) / "env"
        if not path.is_file():
            raise FileNotFoundError(f"{path} missing: the cluster is not up (`make kind-up`)")
        env: dict[str, str] = {}
        for line in path.read_text().splitlines():
            if "=" in line and not line.lstrip().startswith("#"):
                key, value = line.split("=", 1)
                env[key.strip()] = value.strip().strip("'\"")
        return cls(
            name=env.get("KIND_CLUSTER", name),
            kubeconfig=Path(env["KUBECONFIG"]),
            thanos_query_url=env["THANOS_QUERY_URL"],
        )

    def env(self) -> dict[str, str]:
        out = dict(os.environ)
        out["KUBECONFIG"] = str(self.kubeconfig)
        out["PATH"] = f"{kci_cache() / 'bin'}{os.pathsep}{out.get('PATH', '')}"
        return out

    def run(
        self, cmd: Sequence[str], *, check: bool = True, timeout: float = 300, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            list(cmd), env=self.env(), capture_output=True, text=True, timeout=timeout, input=stdin, check=False
        )
        if check and proc.returncode != 0:
            raise CommandFailed(cmd, proc)
        return proc

    def kubectl(
        self, *args: str, check: bool = True, timeout: float = 300, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        return self.run([str(kci_cache() / "bin" / "kubectl"), *args], check=check, timeout=timeout, stdin=stdin)

    def kubectl_json(self, *args: str) -> Any:
        return json.loads(self.kubectl(*args, "-o", "json").stdout)

    def apply(self, manifest: str, namespace: str | None = None) -> None:
        ns = ["-n", namespace] if namespace else []
        self.kubectl(*ns, "apply", "-f", "-", stdin=manifest)

    def helm(
        self, *args: str, helm: str = "helm", check: bool = True, timeout: float = 900
    ) -> subprocess.CompletedProcess[str]:
        return self.run([helm_binary(helm), *args], check=check, timeout=timeout)

    def load_images(self, *refs: str, timeout: float = 900) -> None:
        """Put local images on the node (`scripts/kind.sh load`, i.e. `kind load docker-image`); kind skips the
        ones already there, so this is cheap to repeat."""
        env = self.env()
        env["KIND_CLUSTER"] = self.name
        cmd = [str(ROOT / "scripts" / "kind.sh"), "load", *refs]
        proc = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False)
        if proc.returncode != 0:
            raise CommandFailed(cmd, proc)

    def service_get(
        self,
        namespace: str,
        service: str,
        port: int | str,
        path: str,
        params: Mapping[str, str] | None = None,
        *,
        timeout: float = 120,
    ) -> str:
        """GET `path` (with `params`) of a Service through the API server's service proxy (`kubectl get --raw`):
        no port-forward process to start and stop, and no dependence on how the host reaches the cluster.
        Raises CommandFailed on an HTTP error; the proxied answer's text is in its message."""
        query = ("?" + urlencode(dict(params))) if params else ""
        raw = f"/api/v1/namespaces/{namespace}/services/{service}:{port}/proxy{path}{query}"
        return self.kubectl("get", "--raw", raw, timeout=timeout).stdout

    def wait_rollout(self, namespace: str, *workloads: str, timeout: str = "300s") -> None:
        for w in workloads:
            self.kubectl("-n", namespace, "rollout", "status", w, f"--timeout={timeout}", timeout=600)

    def delete_namespace(self, namespace: str) -> None:
        self.kubectl("delete", "namespace", namespace, "--ignore-not-found", "--wait=true", "--timeout=180s")

    def thanos_query(self, promql: str, *, tenant: str | None = None, timeout: float = 10) -> list[dict[str, Any]]:
        """Instant query against the in-cluster Thanos Query (through the port kind maps to 127.0.0.1)."""
        headers = {"THANOS-TENANT": tenant} if tenant else {}
        resp = requests.get(
            f"{self.thanos_query_url}/api/v1/query", params={"query": promql}, headers=headers, timeout=timeout
        )
        resp.raise_for_status()
        body = resp.json()
        assert body["status"] == "success", body
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def wait_thanos(
        self, promql: str, *, timeout: float = 300, interval: float = 5, tenant: str | None = None
    ) -> list[dict[str, Any]]:
        """Poll Thanos Query until `promql` returns at least one series; fail with the last answer."""
        deadline = time.monotonic() + timeout
        last: object = None
        while time.monotonic() < deadline:
            try:
                rows = self.thanos_query(promql, tenant=tenant)
                if rows:
                    return rows
                last = rows
            except Exception as exc:
                last = repr(exc)
            time.sleep(interval)
        raise AssertionError(f"{promql!r} returned nothing in Thanos within {timeout:.0f}s; last answer: {last}")


def state_dir(name: str = "kci") -> Path:
    return kci_cache() / "kind" / name


def set_args(values: Mapping[str, Any]) -> list[str]:
    """Flat `--set-string`/`--set` arguments from a dotted-key mapping (strings stay strings)."""
    out: list[str] = []
    for key, value in values.items():
        if isinstance(value, str):
            out.append(f"--set-string={key}={value}")
        else:
            out.append(f"--set={key}={json.dumps(value)}")
    return out
