"""`kubecost-allocation-exporter verify`: check every link of a live install, report, exit 0
only when all pass.

Links, in order (docs/troubleshooting.md maps each failure to its fix):

  exporter      GET <exporter>/metrics: reachable, `scrape_success 1`, cost series present.
  target        The Prometheus that scrapes the exporter (the chart's agent) has the target `up`
                (GET <prometheus>/api/v1/targets, served in agent mode too, which has no query API).
  remote-write  The sender's own /metrics, read twice `--sample-seconds` apart: the queue
                `--remote-name` has sent (its highest-sent timestamp exists), no samples failed or
                were retried in between, and appended-minus-sent lag is at most `--max-lag`.
  thanos        Thanos Query returns `cloudtuner_kubecost_*` series for this cluster AND tenant,
                the newest at most `--max-age` old.
  sums          In the exporter's snapshot: namespace_total_cost summed + cluster_idle_cost ==
                cluster_total_cost.
  kubecost      The exporter's cluster total equals Kubecost's own `aggregate=cluster` answer for
                the same window within `--tolerance` (default 0.5 %).

URLs come from flags (or env vars, see --help), or from a kube context: `--kube-namespace NS`
(optional `--kube-context`, `--release`) finds the chart's exporter and agent Services and the
exporter's KUBECOST_URL and opens `kubectl port-forward`s to them (each must start within
`--timeout`; kubectl's errors are added to the check that failed through it). Thanos Query is
outside the cluster: always a URL.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import requests
from prometheus_client.parser import text_string_to_metric_families

from kubecost_allocation_exporter.kubecost import (
    ApiError,
    candidate_endpoints,
    normalize_data,
    parse_response,
    query_params,
)
from kubecost_allocation_exporter.queries import QueryError, ThanosClient, selector

PROG = "kubecost-allocation-exporter verify"
P = "cloudtuner_kubecost_"
CHECKS = ("exporter", "target", "remote-write", "thanos", "sums", "kubecost")
Sample = tuple[str, dict[str, str], float]


@dataclass
class Check:
    name: str
    status: str  # pass | fail | skip
    summary: str
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class Links:
    exporter: str | None
    prometheus: str | None
    thanos: str | None
    kubecost: str | None
    #: The `kubectl port-forward`s behind the URLs above (kube-context form only).
    forwards: list[PortForward] = field(default_factory=list)


class VerifyError(RuntimeError):
    """A link could not be set up (kubectl, port-forward)."""


# ----------------------------------------------------------------------------------------- helpers


def _get(url: str, timeout: float) -> requests.Response:
    return requests.get(url, timeout=timeout)


def parse_exposition(text: str) -> list[Sample]:
    return [
        (s.name, dict(s.labels), float(s.value))
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
    ]


def _select(samples: list[Sample], metric: str, /, **labels: str) -> list[Sample]:
    return [
        s for s in samples if s[0] == metric and all(s[1].get(k) == v for k, v in labels.items())
    ]


def _duration(text: str) -> float:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h)?", text.strip())
    if not m:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration (e.g. 30, 30s, 2m, 1h)")
    return float(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, None: 1}[m.group(2)]


def _err(exc: BaseException) -> str:
    if isinstance(exc, requests.ConnectionError):
        return "connection refused or unreachable"
    if isinstance(exc, requests.Timeout):
        return "timed out"
    return f"{type(exc).__name__}: {exc}"


@dataclass
class Context:
    args: argparse.Namespace
    links: Links
    cluster: str | None = None
    tenant: str | None = None
    exporter_samples: list[Sample] | None = None


# ----------------------------------------------------------------------------------------- checks


def check_exporter(ctx: Context) -> Check:
    url = ctx.links.exporter
    if not url:
        return Check("exporter", "skip", "no exporter URL (--exporter-url or --kube-namespace)")
    try:
        resp = _get(url.rstrip("/") + "/metrics", ctx.args.timeout)
        resp.raise_for_status()
        samples = parse_exposition(resp.text)
    except (requests.RequestException, ValueError) as exc:
        return Check("exporter", "fail", f"{url}/metrics: {_err(exc)}", {"url": url})
    ctx.exporter_samples = samples
    info = _select(samples, P + "exporter_info")
    if not info:
        return Check(
            "exporter", "fail", f"{url}/metrics has no {P}exporter_info: not the exporter?"
        )
    ctx.cluster = ctx.cluster or info[0][1].get("cluster")
    ctx.tenant = ctx.tenant or info[0][1].get("tenant_id")
    ids = {"cluster": ctx.cluster or "", "tenant_id": ctx.tenant or ""}
    success = _select(samples, P + "scrape_success", **ids)
    details: dict[str, Any] = {"url": url, **ids, "info": info[0][1]}
    if not success:
        return Check(
            "exporter",
            "fail",
            f"no {P}scrape_success for cluster={ctx.cluster} tenant_id={ctx.tenant} "
            "(the exporter has "
            f"{sorted((s[1].get('cluster', ''), s[1].get('tenant_id', '')) for s in info)})",
            details,
        )
    errors = {
        s[1].get("reason", ""): s[2]
        for s in _select(samples, P + "scrape_errors_total", **ids)
        if s[2] > 0
    }
    details["errors_total"] = errors
    last = _select(samples, P + "last_success_timestamp_seconds", **ids)
    if last:
        details["last_success_age_seconds"] = round(time.time() - last[0][2], 1)
    if success[0][2] != 1:
        why = ", ".join(f"{k}={v:g}" for k, v in sorted(errors.items())) or "none counted"
        return Check(
            "exporter",
            "fail",
            f"scrape_success 0: the exporter's last query of the Kubecost API failed "
            f"(errors by reason: {why}; see the exporter log)",
            details,
        )
    total = _select(samples, P + "cluster_total_cost", tenant_id=ids["tenant_id"])
    if not total:
        return Check(
            "exporter", "fail", "scrape_success 1 but no cluster_total_cost series", details
        )
    namespaces = len(_select(samples, P + "namespace_total_cost", tenant_id=ids["tenant_id"]))
    details["namespaces"] = namespaces
    age = details.get("last_success_age_seconds")
    return Check(
        "exporter",
        "pass",
        f"scrape_success 1, {namespaces} namespaces"
        + (f", last success {age:.0f}s ago" if age is not None else ""),
        details,
    )


def check_target(ctx: Context) -> Check:
    url = ctx.links.prometheus
    if not url:
        return Check("target", "skip", "no Prometheus/agent URL (--prometheus-url)")
    try:
        resp = _get(url.rstrip("/") + "/api/v1/targets?state=active", ctx.args.timeout)
        if resp.status_code in (403, 404, 405):
            return check_target_self_metrics(ctx, url, f"targets API answered {resp.status_code}")
        resp.raise_for_status()
        targets = resp.json()["data"]["activeTargets"]
    except (requests.RequestException, ValueError, KeyError, TypeError) as exc:
        return Check("target", "fail", f"{url}/api/v1/targets: {_err(exc)}", {"url": url})
    job = ctx.args.job
    ours = [t for t in targets if t.get("labels", {}).get("job") == job]
    details: dict[str, Any] = {
        "url": url,
        "job": job,
        "targets": [
            {
                "scrapeUrl": t.get("scrapeUrl"),
                "health": t.get("health"),
                "lastError": t.get("lastError"),
            }
            for t in ours
        ],
    }
    if not ours:
        jobs = sorted({t.get("labels", {}).get("job", "") for t in targets})
        return Check("target", "fail", f"no active target of job {job!r} (jobs: {jobs})", details)
    up = [t for t in ours if t.get("health") == "up"]
    if not up:
        errors = "; ".join(
            f"{t.get('scrapeUrl')}: {t.get('lastError') or t.get('health')}" for t in ours
        )
        return Check("target", "fail", f"target of job {job!r} is not up: {errors}", details)
    return Check("target", "pass", f"{len(up)}/{len(ours)} target(s) of job {job!r} up", details)


def check_target_self_metrics(ctx: Context, url: str, why: str) -> Check:
    """Fallback when the targets API is not reachable (e.g. a proxy exposing only /metrics): the
    sender's self-metrics, read twice `--sample-seconds` apart. Service discovery of the job must
    have found a target, and the dialer named after the job must not have failed to connect in
    between (it cannot see a scrape that connects but fails: weaker than the targets API)."""
    job = ctx.args.job
    try:
        first, second = _self_metrics_twice(ctx, url)
    except (requests.RequestException, ValueError) as exc:
        return Check("target", "fail", f"{url}/metrics: {_err(exc)} ({why})", {"url": url})

    def failed(samples: list[Sample]) -> float:
        return sum(
            s[2]
            for s in _select(samples, "net_conntrack_dialer_conn_failed_total", dialer_name=job)
        )

    pool = _select(second, "prometheus_sd_discovered_targets", config=job, name="scrape")
    delta = failed(second) - failed(first)
    details = {
        "url": url,
        "job": job,
        "source": "self-metrics",
        "why": why,
        "connect_failures": delta,
    }
    if not pool or pool[0][2] < 1:
        return Check(
            "target", "fail", f"no target discovered for job {job!r} (self-metrics; {why})", details
        )
    if delta > 0:
        return Check(
            "target",
            "fail",
            f"{delta:g} failed connections to the {job!r} target in {ctx.args.sample_seconds:g}s "
            f"(self-metrics; {why})",
            details,
        )
    return Check(
        "target",
        "pass",
        f"{pool[0][2]:g} target(s) of job {job!r}, no failed connections in "
        f"{ctx.args.sample_seconds:g}s (self-metrics; {why})",
        details,
    )


def _self_metrics(url: str, timeout: float) -> list[Sample]:
    resp = _get(url.rstrip("/") + "/metrics", timeout)
    resp.raise_for_status()
    return parse_exposition(resp.text)


def _self_metrics_twice(ctx: Context, url: str) -> tuple[list[Sample], list[Sample]]:
    """The sender's self-metrics read `--sample-seconds` apart (counters need two readings)."""
    first = _self_metrics(url, ctx.args.timeout)
    time.sleep(ctx.args.sample_seconds)
    return first, _self_metrics(url, ctx.args.timeout)


def check_remote_write(ctx: Context) -> Check:
    url = ctx.links.prometheus
    if not url:
        return Check("remote-write", "skip", "no Prometheus/agent URL (--prometheus-url)")
    name = ctx.args.remote_name
    try:
        first, second = _self_metrics_twice(ctx, url)
    except (requests.RequestException, ValueError) as exc:
        return Check("remote-write", "fail", f"{url}/metrics: {_err(exc)}", {"url": url})

    def counter(samples: list[Sample], metric: str) -> float:
        return sum(
            s[2] for s in _select(samples, f"prometheus_remote_storage_{metric}", remote_name=name)
        )

    queues = sorted(
        {
            s[1].get("remote_name", "")
            for s in second
            if s[0] == "prometheus_remote_storage_samples_total"
        }
    )
    details: dict[str, Any] = {"url": url, "remote_name": name, "queues": queues}
    if name not in queues:
        return Check(
            "remote-write",
            "fail",
            f"no remote_write queue named {name!r} (queues: {queues})",
            details,
        )
    failed = counter(second, "samples_failed_total") - counter(first, "samples_failed_total")
    retried = counter(second, "samples_retried_total") - counter(first, "samples_retried_total")
    sent = counter(second, "samples_total") - counter(first, "samples_total")
    details.update(
        failed=failed, retried=retried, attempted=sent, window_seconds=ctx.args.sample_seconds
    )
    highest = _select(second, "prometheus_remote_storage_highest_timestamp_in_seconds")
    sent_ts = _select(
        second, "prometheus_remote_storage_queue_highest_sent_timestamp_seconds", remote_name=name
    )
    if not sent_ts:
        return Check(
            "remote-write",
            "fail",
            f"queue {name!r} has not delivered a single batch since the sender started "
            f"(retried {retried:g} samples in {ctx.args.sample_seconds:g}s): "
            "check URL, TLS, credentials",
            details,
        )
    lag = (highest[0][2] if highest else sent_ts[0][2]) - max(s[2] for s in sent_ts)
    details["lag_seconds"] = round(lag, 1)
    problems = []
    if failed > 0:
        problems.append(f"{failed:g} samples failed (non-recoverable, e.g. HTTP 4xx)")
    if retried > 0:
        problems.append(f"{retried:g} samples retried (endpoint unreachable or 5xx)")
    if lag > ctx.args.max_lag:
        problems.append(f"lag {lag:.0f}s > {ctx.args.max_lag:g}s")
    if problems:
        return Check("remote-write", "fail", f"queue {name!r}: " + "; ".join(problems), details)
    return Check(
        "remote-write",
        "pass",
        f"queue {name!r}: no failures or retries in {ctx.args.sample_seconds:g}s, lag {lag:.0f}s",
        details,
    )


def check_thanos(ctx: Context) -> Check:
    url = ctx.links.thanos
    if not url:
        return Check("thanos", "skip", "no Thanos Query URL (--thanos-url)")
    if not ctx.cluster or not ctx.tenant:
        return Check(
            "thanos", "skip", "cluster/tenant unknown (pass --cluster-name and --tenant-id)"
        )
    client = ThanosClient(url, headers=dict(ctx.args.thanos_header), timeout=ctx.args.timeout)
    sel = selector(ctx.cluster, ctx.tenant).replace("{", f'{{__name__=~"{P}.+",', 1)
    details: dict[str, Any] = {"url": url, "cluster": ctx.cluster, "tenant_id": ctx.tenant}
    try:
        names = client.instant(f"count by (__name__) ({sel})")
        if not names:
            others = client.instant(
                f'count by (tenant_id) ({{__name__=~"{P}.+",cluster="{ctx.cluster}"}})'
            )
            where = sorted(m.get("tenant_id", "") for m, _ in others)
            hint = (
                f"; the cluster's series are there under tenant_id {where}: the tenant header or "
                "tenantId differs"
                if where
                else "; none under any tenant either"
            )
            return Check(
                "thanos",
                "fail",
                f"no {P}* series for cluster={ctx.cluster} tenant_id={ctx.tenant}{hint}",
                details,
            )
        age = client.instant(
            f"time() - max(timestamp({P}scrape_success{selector(ctx.cluster, ctx.tenant)}))"
        )
    except QueryError as exc:
        return Check("thanos", "fail", str(exc), details)
    details["series_names"] = len(names)
    details["newest_sample_age_seconds"] = round(age[0][1], 1) if age else None
    if not age or age[0][1] > ctx.args.max_age:
        return Check(
            "thanos",
            "fail",
            f"{len(names)} series names, but the newest scrape_success sample is "
            + (f"{age[0][1]:.0f}s old" if age else "missing")
            + f" (> {ctx.args.max_age:g}s): data stopped arriving",
            details,
        )
    return Check(
        "thanos",
        "pass",
        f"{len(names)} {P}* series names for this cluster and tenant, "
        f"newest sample {age[0][1]:.0f}s old",
        details,
    )


def check_sums(ctx: Context) -> Check:
    samples = ctx.exporter_samples
    if samples is None or not ctx.tenant:
        return Check("sums", "skip", "needs the exporter's metrics")
    results: dict[str, Any] = {}
    bad = []
    for total_s in _select(samples, P + "cluster_total_cost", tenant_id=ctx.tenant):
        cluster = total_s[1].get("cluster", "")
        ids = {"cluster": cluster, "tenant_id": ctx.tenant}
        ns = sum(s[2] for s in _select(samples, P + "namespace_total_cost", **ids))
        idle = sum(s[2] for s in _select(samples, P + "cluster_idle_cost", **ids))
        total = total_s[2]
        diff = ns + idle - total
        results[cluster] = {"namespaces": ns, "idle": idle, "total": total, "difference": diff}
        if abs(diff) > max(1e-6, 1e-6 * abs(total)):
            bad.append(f"{cluster}: {ns:.6f} + idle {idle:.6f} != total {total:.6f}")
    if not results:
        return Check("sums", "fail", "no cluster_total_cost in the exporter's metrics", results)
    if bad:
        return Check(
            "sums",
            "fail",
            "namespace sums + idle differ from the cluster total: " + "; ".join(bad),
            results,
        )
    return Check(
        "sums", "pass", f"namespaces + idle == cluster total ({len(results)} cluster(s))", results
    )


def check_kubecost(ctx: Context) -> Check:
    url = ctx.links.kubecost
    samples = ctx.exporter_samples
    if not url:
        return Check("kubecost", "skip", "no Kubecost URL (--kubecost-url or --kube-namespace)")
    if samples is None or not ctx.tenant:
        return Check("kubecost", "skip", "needs the exporter's metrics")
    ids = {"cluster": ctx.cluster or "", "tenant_id": ctx.tenant}
    info = _select(samples, P + "exporter_info", **ids)
    start = _select(samples, P + "window_start_timestamp_seconds", **ids)
    end = _select(samples, P + "window_end_timestamp_seconds", **ids)
    totals = _select(samples, P + "cluster_total_cost", tenant_id=ctx.tenant)
    if not (info and start and end and totals):
        return Check(
            "kubecost", "fail", "the exporter exports no window or cluster total to compare"
        )
    labels = info[0][1]
    t0, t1 = start[0][2], end[0][2]

    def rfc3339(t: float) -> str:
        return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    window = f"{rfc3339(t0)},{rfc3339(t1)}"
    api = labels.get("api", "auto")
    endpoints = candidate_endpoints(
        url.rstrip("/"), api if api in ("kubecost", "opencost") else "auto"
    )
    params = query_params(window, "cluster", labels.get("share_idle", "weighted"), False)
    details: dict[str, Any] = {"url": url, "window": window, "api": api}
    last_error = ""
    for ep in endpoints:
        try:
            resp = requests.get(ep.url, params=params, timeout=ctx.args.timeout)
            data = parse_response(
                resp.status_code, resp.content, resp.headers.get("Content-Type", ""), ep.url
            )
            sets, _ = normalize_data(data)
        except (requests.RequestException, ApiError) as exc:
            last_error = (
                f"{ep.url}: {_err(exc) if isinstance(exc, requests.RequestException) else exc}"
            )
            continue
        api_total = sum(
            float(a.get("totalCost") or 0.0)
            for s in sets
            for a in s.values()
            if isinstance(a.get("totalCost"), int | float) and math.isfinite(float(a["totalCost"]))
        )
        hours = (t1 - t0) / 3600
        want = (
            api_total / hours
            if labels.get("metric_mode", "rate") == "rate" and hours > 0
            else api_total
        )
        got = sum(s[2] for s in totals)
        rel = abs(got - want) / abs(want) if want else (0.0 if got == 0 else math.inf)
        details.update(kubecost=want, exporter=got, relative_difference=rel, endpoint=ep.url)
        if rel > ctx.args.tolerance:
            return Check(
                "kubecost",
                "fail",
                f"exporter cluster total {got:.6f} vs Kubecost aggregate=cluster {want:.6f} "
                f"for {window}: "
                f"{rel:.2%} apart (> {ctx.args.tolerance:.2%})",
                details,
            )
        return Check(
            "kubecost",
            "pass",
            f"exporter {got:.5f} vs Kubecost aggregate=cluster {want:.5f} ({rel:.3%} apart)",
            details,
        )
    return Check("kubecost", "fail", f"Kubecost API: {last_error}", details)


RUNNERS: dict[str, Callable[[Context], Check]] = {
    "exporter": check_exporter,
    "target": check_target,
    "remote-write": check_remote_write,
    "thanos": check_thanos,
    "sums": check_sums,
    "kubecost": check_kubecost,
}


# ------------------------------------------------------------------------------- kube context


def _kubectl(args: argparse.Namespace) -> list[str]:
    binary = shutil.which(args.kubectl) or args.kubectl
    base = [binary]
    if args.kube_context:
        base += ["--context", args.kube_context]
    return base


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


def _service(args: argparse.Namespace, component: str) -> tuple[str, int]:
    selector_ = (
        f"app.kubernetes.io/component={component},app.kubernetes.io/part-of=kubecost-integration"
    )
    if args.release:
        selector_ += f",app.kubernetes.io/instance={args.release}"
    doc = _kubectl_json(args, "-n", args.kube_namespace, "get", "service", "-l", selector_)
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
    selector_ = (
        "app.kubernetes.io/component=allocation-exporter,"
        "app.kubernetes.io/part-of=kubecost-integration"
    )
    if args.release:
        selector_ += f",app.kubernetes.io/instance={args.release}"
    doc = _kubectl_json(args, "-n", args.kube_namespace, "get", "deployment", "-l", selector_)
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
        state = (
            f"exited {self.proc.poll()}"
            if self.proc.poll() is not None
            else f"not forwarding after {timeout:g}s"
        )
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
    cmd = [
        *_kubectl(args),
        "-n",
        namespace,
        "port-forward",
        f"svc/{service}",
        f":{port}",
        "--address",
        "127.0.0.1",
        f"--pod-running-timeout={max(1, math.ceil(args.timeout))}s",
    ]
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
    if not kubecost:
        found = _kubecost_service(args)
        if found:
            kc_ns, kc_svc, kc_port, kc_path = found
            kubecost = forward(kc_ns, kc_svc, kc_port) + kc_path
    return Links(exporter, agent, args.thanos_url, kubecost, forwards)


# ----------------------------------------------------------------------------------------- main


def _header(text: str) -> tuple[str, str]:
    if "=" not in text and ":" not in text:
        raise argparse.ArgumentTypeError(f"{text!r}: expected NAME=VALUE")
    sep = "=" if "=" in text else ":"
    k, v = text.split(sep, 1)
    return k.strip(), v.strip()


def parser() -> argparse.ArgumentParser:
    env = os.environ.get
    ap = argparse.ArgumentParser(
        prog=PROG,
        description="Check each link of a kubecost-integration install and report; "
        "exit 0 only when all pass.",
    )
    ap.add_argument(
        "--exporter-url",
        default=env("VERIFY_EXPORTER_URL"),
        help="exporter base URL (VERIFY_EXPORTER_URL)",
    )
    ap.add_argument(
        "--prometheus-url",
        default=env("VERIFY_PROMETHEUS_URL"),
        help="the Prometheus (agent) that scrapes the exporter and remote-writes "
        "(VERIFY_PROMETHEUS_URL)",
    )
    ap.add_argument(
        "--thanos-url",
        default=env("VERIFY_THANOS_URL"),
        help="Thanos Query base URL (VERIFY_THANOS_URL)",
    )
    ap.add_argument(
        "--kubecost-url",
        default=env("VERIFY_KUBECOST_URL"),
        help="Kubecost/OpenCost base URL (VERIFY_KUBECOST_URL)",
    )
    ap.add_argument(
        "--cluster-name",
        default=env("CLUSTER_NAME"),
        help="default: from the exporter's info metric",
    )
    ap.add_argument(
        "--tenant-id", default=env("TENANT_ID"), help="default: from the exporter's info metric"
    )
    ap.add_argument(
        "--kube-context", default=None, help="kubectl context (default: the current one)"
    )
    ap.add_argument(
        "--kube-namespace", default=None, help="namespace of the release: use kubectl port-forward"
    )
    ap.add_argument(
        "--release", default=None, help="Helm release name (when the namespace has several)"
    )
    ap.add_argument(
        "--kubectl", default="kubectl", help="kubectl binary (default: kubectl from PATH)"
    )
    ap.add_argument(
        "--job", default="kubecost-allocation-exporter", help="scrape job of the exporter"
    )
    ap.add_argument(
        "--remote-name",
        default="cloudtuner-thanos",
        help="remote_write queue name (remoteWrite.name)",
    )
    ap.add_argument(
        "--thanos-header",
        type=_header,
        action="append",
        default=[],
        help="NAME=VALUE for Thanos queries",
    )
    ap.add_argument(
        "--max-lag", type=_duration, default=120.0, help="max remote_write lag (default 120s)"
    )
    ap.add_argument(
        "--max-age",
        type=_duration,
        default=600.0,
        help="max age of the newest sample in Thanos (600s)",
    )
    ap.add_argument(
        "--sample-seconds",
        type=_duration,
        default=5.0,
        help="remote_write counters read twice, this apart",
    )
    ap.add_argument(
        "--tolerance",
        type=float,
        default=0.005,
        help="exporter vs Kubecost, relative (default 0.005)",
    )
    ap.add_argument("--timeout", type=_duration, default=10.0, help="per request (default 10s)")
    ap.add_argument(
        "--skip", action="append", choices=CHECKS, default=[], help="leave out a check (repeatable)"
    )
    ap.add_argument("--output", choices=("text", "json"), default="text")
    return ap


def render_text(checks: list[Check], ctx: Context, ok: bool) -> str:
    lines = [f"{PROG}: cluster={ctx.cluster or '?'} tenant_id={ctx.tenant or '?'}"]
    for c in checks:
        lines.append(f"  {c.status.upper():<5} {c.name:<13} {c.summary}")
    bad = [c.name for c in checks if c.status != "pass"]
    lines.append("RESULT: all checks passed" if ok else f"RESULT: FAILED ({', '.join(bad)})")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> tuple[list[Check], Context]:
    with ExitStack() as stack:
        if args.kube_namespace:
            links = kube_links(args, stack)
        else:
            links = Links(
                args.exporter_url, args.prometheus_url, args.thanos_url, args.kubecost_url
            )
        ctx = Context(args, links, args.cluster_name, args.tenant_id)
        checks = [RUNNERS[name](ctx) for name in CHECKS if name not in args.skip]
        annotate_forward_failures(checks, links.forwards)
    return checks, ctx


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        checks, ctx = run(args)
    except VerifyError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    ok = all(c.status == "pass" for c in checks)
    if args.output == "json":
        doc = {
            "ok": ok,
            "cluster": ctx.cluster,
            "tenant_id": ctx.tenant,
            "skipped_by_flag": args.skip,
            "checks": [asdict(c) for c in checks],
        }
        print(json.dumps(doc, indent=2, default=str))
    else:
        print(render_text(checks, ctx, ok))
    return 0 if ok else 1
