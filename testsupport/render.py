"""Render the `kubecost-integration` chart with the real `helm template`, offline.

Used by the chart tests, the pipeline e2e (which runs the rendered agent config in a real Prometheus) and the
control-plane e2e (which installs a chart copy). The public surface is stable:

    chart_copy(tmp_path) -> Path
    render(values=None, release="my-kubecost", namespace="my-ns", helm="helm", set_args=(), extra_args=()) -> list[dict]
    render_error(...same arguments...) -> str        # helm's stderr; raises if the render unexpectedly succeeds

`chart_copy` never touches the network: instead of `helm dependency build` it places the test-only stubs
`charts/kubecost-integration/tests/stub/{kubecost,cost-analyzer,opencost}` (which follow each engine chart's naming
rule) as `charts/<name>` inside the copy. The stub is never shipped (`tests/` is in `.helmignore`).
"""

from __future__ import annotations

import atexit
import copy
import functools
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
CHART_DIR = ROOT / "charts" / "kubecost-integration"
STUB_ROOT = CHART_DIR / "tests" / "stub"
#: One test-only stub per cost engine dependency of Chart.yaml (kubecost, cost-analyzer, opencost).
STUB_DIRS = sorted(p for p in STUB_ROOT.iterdir() if (p / "Chart.yaml").is_file())
STUB_DIR = STUB_ROOT / "cost-analyzer"

#: The only values the quick start needs (README "Quick start").
QUICKSTART_VALUES: dict[str, Any] = {
    "tenantId": "acme",
    "clusterName": "prod-eu-1",
    # the default engine, Kubecost 3, reads its cluster id from the globals only (values.yaml, `global`)
    "global": {"clusterId": "prod-eu-1"},
}

#: Name of the key holding the agent's Prometheus config in its ConfigMap.
AGENT_CONFIG_KEY = "prometheus.yml"

_IGNORED_IN_COPY = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache")


class HelmError(RuntimeError):
    """`helm` exited non-zero. `stderr` carries helm's own message (what a user would see)."""

    def __init__(self, cmd: Sequence[str], returncode: int, stdout: str, stderr: str) -> None:
        self.cmd = list(cmd)
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        super().__init__(f"{' '.join(self.cmd)} exited {returncode}:\n{stderr.strip()}")


class UnexpectedSuccess(AssertionError):
    """`render_error` was asked for an error but helm rendered the chart."""


def kci_cache() -> Path:
    return Path(os.environ.get("KCI_CACHE") or Path.home() / ".cache" / "kubecost-integration")


def helm_binary(helm: str = "helm") -> str:
    """Resolve `helm`/`helm4` (or a path): the pinned copy in `$KCI_CACHE/bin` first, then `PATH`."""
    if os.sep in helm:
        return helm
    pinned = kci_cache() / "bin" / helm
    if pinned.is_file() and os.access(pinned, os.X_OK):
        return str(pinned)
    found = shutil.which(helm)
    if found:
        return found
    raise FileNotFoundError(f"{helm!r} not found in {pinned.parent} or PATH; run `make tools`")


def chart_copy(tmp_path: Path | str) -> Path:
    """Copy the chart into `tmp_path` with the stub engine charts (tests/stub/*) as its dependencies.

    Any real dependency archive in the working copy (`charts/*.tgz` from `helm dependency build`) is left out,
    so the copy renders the same everywhere and without network. Returns the chart directory in the copy.
    """
    dest = Path(tmp_path) / CHART_DIR.name
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(CHART_DIR, dest, ignore=_ignore_top_level(CHART_DIR))
    for stub in STUB_DIRS:
        shutil.copytree(stub, dest / "charts" / stub.name, ignore=_IGNORED_IN_COPY)
    return dest


def _ignore_top_level(top: Path) -> Any:
    def ignore(directory: str, names: list[str]) -> set[str]:
        skipped = set(_IGNORED_IN_COPY(directory, names))
        if Path(directory) == top:
            # The dependency directory is rebuilt from the stub; tests never travel with the chart.
            skipped |= {n for n in names if n in ("charts", "tests")}
        return skipped

    return ignore


@functools.cache
def _chart_copy_once() -> Path:
    tmp = Path(tempfile.mkdtemp(prefix="kci-chart-"))
    atexit.register(shutil.rmtree, tmp, True)
    return chart_copy(tmp)


def _default_chart() -> Path:
    """One chart copy per process, made on first use and removed at exit (made again if something removed it)."""
    if not _chart_copy_once().exists():
        _chart_copy_once.cache_clear()
    return _chart_copy_once()


def _helm_template_cmd(
    values: Mapping[str, Any] | None,
    release: str,
    *,
    namespace: str,
    helm: str,
    set_args: Iterable[str],
    extra_args: Iterable[str],
    chart: Path | str | None,
    values_file: Path,
) -> list[str]:
    cmd = [helm_binary(helm), "template", release, str(chart or _default_chart()), "--namespace", namespace]
    if values is not None:
        values_file.write_text(yaml.safe_dump(dict(values), sort_keys=False))
        cmd += ["--values", str(values_file)]
    for s in set_args:
        cmd += ["--set", s]
    cmd += list(extra_args)
    return cmd


def helm_template(
    values: Mapping[str, Any] | None = None,
    *,
    release: str = "my-kubecost",
    namespace: str = "my-ns",
    helm: str = "helm",
    set_args: Iterable[str] = (),
    extra_args: Iterable[str] = (),
    chart: Path | str | None = None,
) -> str:
    """Run `helm template` and return the manifest text; raise `HelmError` (with helm's stderr) on failure."""
    with tempfile.TemporaryDirectory(prefix="kci-values-") as tmp:
        cmd = _helm_template_cmd(
            values,
            release,
            namespace=namespace,
            helm=helm,
            set_args=set_args,
            extra_args=extra_args,
            chart=chart,
            values_file=Path(tmp) / "values.yaml",
        )
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    if proc.returncode != 0:
        raise HelmError(cmd, proc.returncode, proc.stdout, proc.stderr)
    return proc.stdout


def render(
    values: Mapping[str, Any] | None = None,
    *,
    release: str = "my-kubecost",
    namespace: str = "my-ns",
    helm: str = "helm",
    set_args: Iterable[str] = (),
    extra_args: Iterable[str] = (),
    chart: Path | str | None = None,
) -> list[dict[str, Any]]:
    """`helm template` the chart (default: a process-wide copy with the stub dependency) and parse every object.

    `values` is written to a file and passed with `--values`; `set_args` are `--set` strings; `extra_args` are
    appended verbatim (e.g. `["--show-only", "templates/agent/configmap.yaml"]`). Empty documents are dropped.
    """
    text = helm_template(
        values, release=release, namespace=namespace, helm=helm, set_args=set_args, extra_args=extra_args, chart=chart
    )
    return [doc for doc in yaml.safe_load_all(text) if doc]


def render_error(
    values: Mapping[str, Any] | None = None,
    *,
    release: str = "my-kubecost",
    namespace: str = "my-ns",
    helm: str = "helm",
    set_args: Iterable[str] = (),
    extra_args: Iterable[str] = (),
    chart: Path | str | None = None,
) -> str:
    """Render expecting failure; return helm's stderr. Raises `UnexpectedSuccess` if the chart rendered."""
    try:
        helm_template(
            values,
            release=release,
            namespace=namespace,
            helm=helm,
            set_args=set_args,
            extra_args=extra_args,
            chart=chart,
        )
    except HelmError as err:
        return err.stderr
    raise UnexpectedSuccess(f"helm template succeeded for values={values!r} set={list(set_args)!r}")


# ---------------------------------------------------------------------------------------------------------
# Small helpers over rendered objects, shared by the test layers.


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Helm-like merge: maps merge recursively, everything else (lists included) is replaced."""
    out = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def with_quickstart(values: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """`QUICKSTART_VALUES` overlaid with `values`."""
    return deep_merge(QUICKSTART_VALUES, values or {})


def objects(docs: Iterable[Mapping[str, Any]], kind: str | None = None) -> list[dict[str, Any]]:
    return [dict(d) for d in docs if kind is None or d.get("kind") == kind]


def find(docs: Iterable[Mapping[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    """The single object of `kind` (and `name`, if given); fails loudly when there is not exactly one."""
    hits = [d for d in objects(docs, kind) if name is None or d["metadata"]["name"] == name]
    if len(hits) != 1:
        names = [d["metadata"]["name"] for d in objects(docs, kind)]
        raise LookupError(f"expected one {kind} named {name!r}, found {len(hits)} among {names}")
    return hits[0]


def by_component(docs: Iterable[Mapping[str, Any]], kind: str, component: str) -> dict[str, Any]:
    """The single object of `kind` labelled `app.kubernetes.io/component: <component>`."""
    hits = [
        d
        for d in objects(docs, kind)
        if (d["metadata"].get("labels") or {}).get("app.kubernetes.io/component") == component
    ]
    if len(hits) != 1:
        raise LookupError(f"expected one {kind} with component {component!r}, found {len(hits)}")
    return hits[0]


def agent_config_text(docs: Iterable[Mapping[str, Any]]) -> str:
    """The agent-mode Prometheus config (`prometheus.yml`) exactly as rendered into its ConfigMap."""
    cm = by_component(docs, "ConfigMap", "agent")
    return str(cm["data"][AGENT_CONFIG_KEY])


def agent_config(docs: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """`agent_config_text` parsed."""
    parsed = yaml.safe_load(agent_config_text(docs))
    assert isinstance(parsed, dict)
    return parsed


def exporter_env(docs: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """Plain `value` env vars of the exporter container (valueFrom entries are skipped)."""
    deploy = by_component(docs, "Deployment", "allocation-exporter")
    container = deploy["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}


KUBECOST_VALUES_MARKER = "re-run after changing them):\n\n"


def kubecost_mode_values(stderr: str) -> dict[str, Any]:
    """The exact `cost-analyzer:` values block that the chart prints when `prometheus.mode=kubecost` is not wired."""
    if KUBECOST_VALUES_MARKER not in stderr:
        raise ValueError(f"no kubecost-mode values block in helm's message:\n{stderr}")
    block = stderr.split(KUBECOST_VALUES_MARKER, 1)[1]
    block = block.split("\nUse --debug", 1)[0].split("\nError:", 1)[0]
    parsed = yaml.safe_load(block)
    assert isinstance(parsed, dict), block
    assert "cost-analyzer" in parsed, block
    return parsed


def kubecost_mode(
    values: Mapping[str, Any] | None = None,
    release: str = "my-kubecost",
    namespace: str = "my-ns",
    helm: str = "helm",
) -> dict[str, Any]:
    """`values` with `prometheus.mode=kubecost` plus the subchart wiring the chart asks for (its own message)."""
    base = deep_merge(
        values or {},
        {"prometheus": {"mode": "kubecost"}, "kubecost": {"enabled": False}, "cost-analyzer": {"enabled": True}},
    )
    try:
        helm_template(base, release=release, namespace=namespace, helm=helm)
    except HelmError as err:
        return deep_merge(base, kubecost_mode_values(err.stderr))
    return base


def kubecost_prometheus_config(docs: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Kubecost's bundled Prometheus config (the stub reproduces how Kubecost 2.x assembles it)."""
    cms = [
        d
        for d in objects(docs, "ConfigMap")
        if (d["metadata"].get("labels") or {}).get("app") == "prometheus"
        and (d["metadata"].get("labels") or {}).get("component") == "server"
    ]
    if len(cms) != 1:
        raise LookupError(f"expected one Kubecost Prometheus server ConfigMap, found {len(cms)}")
    parsed = yaml.safe_load(cms[0]["data"]["prometheus.yml"])
    assert isinstance(parsed, dict)
    return parsed
