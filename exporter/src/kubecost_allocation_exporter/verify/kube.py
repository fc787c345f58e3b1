"""The kube-context form of `verify`: the chart's Services found with kubectl, reached through
`kubectl port-forward`s whose own errors explain a check that failed through them."""

from __future__ import annotations

import argparse
import json
import math
import re
import shutil
import subprocess
import threading
from collections import deque
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager, suppress
from typing import Any
from urllib.parse import urlsplit

from kubecost_allocation_exporter.verify.checks import Check, Links


class VerifyError(RuntimeError):
    """A link could not be set up (kubectl, port-forward)."""


def _kubectl(args: argparse.Namespace) -> list[str]:
    context = ["--context", args.kube_context] if args.kube_context else []
    return [shutil.which(args.kubectl) or args.kubectl, *context]


def _kubectl_json(args: argparse.Namespace, *cmd: str) -> Any:
    full = [*_kubectl(args), *cmd, "-o", "json"]
    try:
        out = subprocess.run(
            full, capture_output=True, text=True, timeout=args.timeout, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise VerifyError(f"{' '.join(full)}: {exc}") from exc
    if out.returncode != 0:
        raise VerifyError(f"{' '.join(full)}: {out.stderr.strip() or out.stdout.strip()}")
    return json.loads(out.stdout)


def _release_objects(args: argparse.Namespace, kind: str, component: str) -> tuple[str, Any]:
    """(label selector, `kubectl get <kind> -l <selector> -o json`) of the release's component."""
    selector_ = f"app.kubernetes.io/component={component},"
    selector_ += "app.kubernetes.io/part-of=kubecost-integration"
    if args.release:
        selector_ += f",app.kubernetes.io/instance={args.release}"
    return selector_, _kubectl_json(args, "-n", args.kube_namespace, "get", kind, "-l", selector_)


def _service(args: argparse.Namespace, component: str) -> tuple[str, int]:
    selector_, doc = _release_objects(args, "service", component)
    items = doc.get("items") or []
    if len(items) != 1:
        names = [i["metadata"]["name"] for i in items]
        raise VerifyError(
            f"expected one Service with {selector_} in namespace {args.kube_namespace}, "
            f"found {names or 'none'}" + (" (pass --release)" if len(items) > 1 else "")
        )
    return items[0]["metadata"]["name"], int(items[0]["spec"]["ports"][0]["port"])


def _kubecost_service(args: argparse.Namespace) -> tuple[str, str, int, str] | None:
    """(namespace, service, port, path) of the exporter Deployment's KUBECOST_URL (a Service)."""
    _, doc = _release_objects(args, "deployment", "allocation-exporter")
    for item in doc.get("items") or []:
        for c in item["spec"]["template"]["spec"]["containers"]:
            for env in c.get("env") or []:
                if env.get("name") == "KUBECOST_URL" and env.get("value"):
                    parts = urlsplit(env["value"])
                    host = (parts.hostname or "").split(".")
                    namespace = host[1] if len(host) > 1 else args.kube_namespace
                    return namespace, host[0], parts.port or 80, parts.path
    return None


_FORWARDING = re.compile(r"Forwarding from 127\.0\.0\.1:(\d+)")
_ROUTINE = ("Forwarding from", "Handling connection for")
_KLOG = re.compile(r"^[EWIF]\d{4} [\d:.]+\s+\d+ [^\]]+\] ")
_KLOG_ERR = re.compile(r'\berr="((?:[^"\\]|\\.)*)"')


class PortForward:
    """One running `kubectl port-forward`. Its output is read on a thread for its whole life: the
    pipe never fills (kubectl prints a line per connection), a kubectl that prints nothing (e.g.
    while it waits for a pod) cannot hold verify past `--timeout`, and kubectl's own errors
    (`lost connection to pod`, the kubelet's reason) are kept to explain a failed check."""

    def __init__(self, cmd: list[str], target: str) -> None:
        self.cmd = cmd
        self.target = target
        self.url: str | None = None
        self._lines: deque[str] = deque(maxlen=200)
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            line = raw.rstrip()
            with self._lock:
                self._lines.append(line)
            m = _FORWARDING.search(line)
            if m and self.url is None:
                self.url = f"http://127.0.0.1:{m.group(1)}"
                self._ready.set()
        self._ready.set()  # EOF: kubectl exited

    def output(self) -> list[str]:
        with self._lock:
            return list(self._lines)

    def wait_ready(self, timeout: float) -> str:
        """The local URL once kubectl prints `Forwarding from 127.0.0.1:<port>`."""
        self._ready.wait(timeout)
        if self.url:
            return self.url
        said = "; ".join(_KLOG.sub("", ln) for ln in self.output() if ln.strip())
        rc = self.proc.poll()
        state = f"not forwarding after {timeout:g}s" if rc is None else f"exited {rc}"
        raise VerifyError(f"{' '.join(self.cmd)}: {state}: {said or 'no output'}")

    def problem(self, settle: float = 0.0) -> str | None:
        """kubectl's error lines (klog prefix removed) and its exit, if any; `settle` seconds are
        given to a kubectl that is about to exit after a failed connection."""
        if settle > 0 and self.proc.poll() is None:
            with suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=settle)
            if self.proc.poll() is not None:
                self._reader.join(timeout=settle)
        errors: list[str] = []
        for ln in self.output():
            if not ln.strip() or ln.startswith(_ROUTINE):
                continue
            m = _KLOG_ERR.search(ln)
            text = m.group(1).replace('\\"', '"') if m else _KLOG.sub("", ln)
            if text not in errors:
                errors.append(text)
        rc = self.proc.poll()
        parts = errors[-3:]
        if rc is not None:
            parts.append(f"kubectl exited {rc}")
        return "; ".join(parts) or None

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)
        self._reader.join(timeout=5)


@contextmanager
def port_forward(
    args: argparse.Namespace, namespace: str, service: str, port: int
) -> Iterator[PortForward]:
    """`kubectl port-forward svc/<service> :<port>`; yields the running forward (`.url` is
    http://127.0.0.1:<local port>). kubectl's wait for a running pod is capped at `--timeout`."""
    cmd = [*_kubectl(args), "-n", namespace, "port-forward", f"svc/{service}", f":{port}"]
    cmd += ["--address", "127.0.0.1", f"--pod-running-timeout={max(1, math.ceil(args.timeout))}s"]
    try:
        forward = PortForward(cmd, f"{namespace}/svc/{service}:{port}")
    except OSError as exc:
        raise VerifyError(f"{' '.join(cmd)}: {exc}") from exc
    try:
        forward.wait_ready(args.timeout + 5)
        yield forward
    finally:
        forward.stop()


def annotate_forward_failures(checks: list[Check], forwards: Sequence[PortForward]) -> None:
    """A failed check whose URL went through a port-forward that reported an error gets kubectl's
    words appended (a bare `connection refused` hides e.g. `no forward found for port` or `lost
    connection to pod`)."""
    for check in checks:
        url = str(check.details.get("url") or "")
        if check.status != "fail" or not url:
            continue
        for fwd in forwards:
            if fwd.url and (url == fwd.url or url.startswith(fwd.url + "/")):
                problem = fwd.problem(settle=1.0)
                check.details["port_forward"] = {"target": fwd.target, "kubectl": problem}
                if problem:
                    check.summary += f" [kubectl port-forward {fwd.target}: {problem}]"


def kube_links(args: argparse.Namespace, stack: ExitStack) -> Links:
    ns = args.kube_namespace
    exporter, agent, kubecost = args.exporter_url, args.prometheus_url, args.kubecost_url
    forwards: list[PortForward] = []

    def forward(namespace: str, service: str, port: int) -> str:
        fwd = stack.enter_context(port_forward(args, namespace, service, port))
        forwards.append(fwd)
        assert fwd.url is not None
        return fwd.url

    if not exporter:
        exporter = forward(ns, *_service(args, "allocation-exporter"))
    if not agent:
        try:
            name, port = _service(args, "agent")
        except VerifyError:
            agent = None  # kubecost/external mode: no agent in this release; pass --prometheus-url
        else:
            agent = forward(ns, name, port)
    if not kubecost and (found := _kubecost_service(args)):
        kc_ns, kc_svc, kc_port, kc_path = found
        kubecost = forward(kc_ns, kc_svc, kc_port) + kc_path
    return Links(exporter, agent, args.thanos_url, kubecost, forwards)
