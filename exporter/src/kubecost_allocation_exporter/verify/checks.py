"""The checks of `kubecost-allocation-exporter verify`, one function per link; each returns a
`Check` (pass, fail or skip) with a one-line summary and the details behind it."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import requests
from prometheus_client.parser import text_string_to_metric_families

from kubecost_allocation_exporter import costs
from kubecost_allocation_exporter.decode import ApiError, decode
from kubecost_allocation_exporter.kubecost import candidate_endpoints, query_params
from kubecost_allocation_exporter.windows import coverage, rfc3339, row_windows

if TYPE_CHECKING:
    import argparse

    from kubecost_allocation_exporter.verify.kube import PortForward

PROG = "kubecost-allocation-exporter verify"
P = "cloudtuner_kubecost_"
CHECKS = ("exporter", "target", "remote-write", "thanos", "sums", "accuracy", "kubecost")
Sample = tuple[str, dict[str, str], float]


@dataclass
class Check:
    name: str = field(default="", init=False)  # set by the runner: the check's key in CHECKS
    status: str  # pass | warn (a doubt about the numbers, not a failure) | fail | skip
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


def _scrape(url: str, timeout: float) -> list[Sample]:
    """GET <url>/metrics, parsed."""
    resp = requests.get(url.rstrip("/") + "/metrics", timeout=timeout)
    resp.raise_for_status()
    families = text_string_to_metric_families(resp.text)
    return [(s.name, dict(s.labels), float(s.value)) for fam in families for s in fam.samples]


def _select(samples: list[Sample], metric: str, /, **labels: str) -> list[Sample]:
    return [
        s for s in samples if s[0] == metric and all(s[1].get(k) == v for k, v in labels.items())
    ]


def _increase(first: list[Sample], second: list[Sample], metric: str, /, **labels: str) -> float:
    """How much the counter `metric` (summed over the series with `labels`) grew in between."""
    before, after = (sum(s[2] for s in _select(r, metric, **labels)) for r in (first, second))
    return after - before


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


def check_exporter(ctx: Context) -> Check:
    url = ctx.links.exporter
    if not url:
        return Check("skip", "no exporter URL (--exporter-url or --kube-namespace)")
    try:
        samples = _scrape(url, ctx.args.timeout)
    except (requests.RequestException, ValueError) as exc:
        return Check("fail", f"{url}/metrics: {_err(exc)}", {"url": url})
    ctx.exporter_samples = samples
    if not (info := _select(samples, P + "exporter_info")):
        return Check("fail", f"{url}/metrics has no {P}exporter_info: not the exporter?")
    ctx.cluster = ctx.cluster or info[0][1].get("cluster")
    ctx.tenant = ctx.tenant or info[0][1].get("tenant_id")
    ids = {"cluster": ctx.cluster or "", "tenant_id": ctx.tenant or ""}
    success = _select(samples, P + "scrape_success", **ids)
    details: dict[str, Any] = {"url": url, **ids, "info": info[0][1]}
    if not success:
        return Check(
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
    if last := _select(samples, P + "last_success_timestamp_seconds", **ids):
        details["last_success_age_seconds"] = round(time.time() - last[0][2], 1)
    if success[0][2] != 1:
        why = ", ".join(f"{k}={v:g}" for k, v in sorted(errors.items())) or "none counted"
        return Check(
            "fail",
            f"scrape_success 0: the exporter's last query of the Kubecost API failed "
            f"(errors by reason: {why}; see the exporter log)",
            details,
        )
    if not _select(samples, P + "cluster_total_cost", tenant_id=ids["tenant_id"]):
        return Check("fail", "scrape_success 1 but no cluster_total_cost series", details)
    namespaces = len(_select(samples, P + "namespace_total_cost", tenant_id=ids["tenant_id"]))
    details["namespaces"] = namespaces
    age = details.get("last_success_age_seconds")
    return Check(
        "pass",
        f"scrape_success 1, {namespaces} namespaces"
        + (f", last success {age:.0f}s ago" if age is not None else ""),
        details,
    )


def check_target(ctx: Context) -> Check:
    url = ctx.links.prometheus
    if not url:
        return Check("skip", "no Prometheus/agent URL (--prometheus-url)")
    api = url.rstrip("/") + "/api/v1/targets?state=active"
    try:
        resp = requests.get(api, timeout=ctx.args.timeout)
        if resp.status_code in (403, 404, 405):
            return check_target_self_metrics(ctx, url, f"targets API answered {resp.status_code}")
        resp.raise_for_status()
        targets = resp.json()["data"]["activeTargets"]
    except (requests.RequestException, ValueError, KeyError, TypeError) as exc:
        return Check("fail", f"{url}/api/v1/targets: {_err(exc)}", {"url": url})
    job = ctx.args.job
    ours = [t for t in targets if t.get("labels", {}).get("job") == job]
    details: dict[str, Any] = {
        "url": url,
        "job": job,
        "targets": [{k: t.get(k) for k in ("scrapeUrl", "health", "lastError")} for t in ours],
    }
    if not ours:
        jobs = sorted({t.get("labels", {}).get("job", "") for t in targets})
        return Check("fail", f"no active target of job {job!r} (jobs: {jobs})", details)
    up = [t for t in ours if t.get("health") == "up"]
    if not up:
        errors = "; ".join(
            f"{t.get('scrapeUrl')}: {t.get('lastError') or t.get('health')}" for t in ours
        )
        return Check("fail", f"target of job {job!r} is not up: {errors}", details)
    return Check("pass", f"{len(up)}/{len(ours)} target(s) of job {job!r} up", details)


def check_target_self_metrics(ctx: Context, url: str, why: str) -> Check:
    """Fallback when the targets API is not reachable (e.g. a proxy exposing only /metrics): the
    sender's self-metrics, read twice `--sample-seconds` apart. Service discovery of the job must
    have found a target, and the dialer named after the job must not have failed to connect in
    between (it cannot see a scrape that connects but fails: weaker than the targets API)."""
    job = ctx.args.job
    try:
        first, second = _self_metrics_twice(ctx, url)
    except (requests.RequestException, ValueError) as exc:
        return Check("fail", f"{url}/metrics: {_err(exc)} ({why})", {"url": url})
    pool = _select(second, "prometheus_sd_discovered_targets", config=job, name="scrape")
    delta = _increase(first, second, "net_conntrack_dialer_conn_failed_total", dialer_name=job)
    details = {
        "url": url,
        "job": job,
        "source": "self-metrics",
        "why": why,
        "connect_failures": delta,
    }
    if not pool or pool[0][2] < 1:
        return Check("fail", f"no target discovered for job {job!r} (self-metrics; {why})", details)
    if delta > 0:
        return Check(
            "fail",
            f"{delta:g} failed connections to the {job!r} target in {ctx.args.sample_seconds:g}s "
            f"(self-metrics; {why})",
            details,
        )
    return Check(
        "pass",
        f"{pool[0][2]:g} target(s) of job {job!r}, no failed connections in "
        f"{ctx.args.sample_seconds:g}s (self-metrics; {why})",
        details,
    )


def _self_metrics_twice(ctx: Context, url: str) -> tuple[list[Sample], list[Sample]]:
    """The sender's self-metrics read `--sample-seconds` apart (counters need two readings)."""
    first = _scrape(url, ctx.args.timeout)
    time.sleep(ctx.args.sample_seconds)
    return first, _scrape(url, ctx.args.timeout)


def check_remote_write(ctx: Context) -> Check:
    url = ctx.links.prometheus
    if not url:
        return Check("skip", "no Prometheus/agent URL (--prometheus-url)")
    name = ctx.args.remote_name
    try:
        first, second = _self_metrics_twice(ctx, url)
    except (requests.RequestException, ValueError) as exc:
        return Check("fail", f"{url}/metrics: {_err(exc)}", {"url": url})
    written = _select(second, "prometheus_remote_storage_samples_total")
    queues = sorted({s[1].get("remote_name", "") for s in written})
    details: dict[str, Any] = {"url": url, "remote_name": name, "queues": queues}
    if name not in queues:
        return Check("fail", f"no remote_write queue named {name!r} (queues: {queues})", details)
    failed, retried, sent = (
        _increase(first, second, f"prometheus_remote_storage_{m}", remote_name=name)
        for m in ("samples_failed_total", "samples_retried_total", "samples_total")
    )
    details.update(
        failed=failed, retried=retried, attempted=sent, window_seconds=ctx.args.sample_seconds
    )
    highest = _select(second, "prometheus_remote_storage_highest_timestamp_in_seconds")
    sent_ts = _select(
        second, "prometheus_remote_storage_queue_highest_sent_timestamp_seconds", remote_name=name
    )
    if not sent_ts:
        return Check(
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
        return Check("fail", f"queue {name!r}: " + "; ".join(problems), details)
    return Check(
        "pass",
        f"queue {name!r}: no failures or retries in {ctx.args.sample_seconds:g}s, lag {lag:.0f}s",
        details,
    )


def check_sums(ctx: Context) -> Check:
    samples = ctx.exporter_samples
    if samples is None or not ctx.tenant:
        return Check("skip", "needs the exporter's metrics")
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
        return Check("fail", "no cluster_total_cost in the exporter's metrics", results)
    if bad:
        return Check(
            "fail",
            "namespace sums + idle differ from the cluster total: " + "; ".join(bad),
            results,
        )
    return Check("pass", f"namespaces + idle == cluster total ({len(results)} cluster(s))", results)


def check_kubecost(ctx: Context) -> Check:
    url = ctx.links.kubecost
    samples = ctx.exporter_samples
    if not url:
        return Check("skip", "no Kubecost URL (--kubecost-url or --kube-namespace)")
    if samples is None or not ctx.tenant:
        return Check("skip", "needs the exporter's metrics")
    ids = {"cluster": ctx.cluster or "", "tenant_id": ctx.tenant}
    info = _select(samples, P + "exporter_info", **ids)
    start = _select(samples, P + "window_start_timestamp_seconds", **ids)
    end = _select(samples, P + "window_end_timestamp_seconds", **ids)
    totals = _select(samples, P + "cluster_total_cost", tenant_id=ctx.tenant)
    if not (info and start and end and totals):
        return Check("fail", "the exporter exports no window or cluster total to compare")
    labels = info[0][1]
    t0, t1 = start[0][2], end[0][2]
    window = f"{rfc3339(t0)},{rfc3339(t1)}"
    api = labels.get("api", "auto")
    flavour = api if api in ("kubecost", "opencost") else "auto"
    params = query_params(window, "cluster", labels.get("share_idle", "weighted"), False)
    details: dict[str, Any] = {"url": url, "window": window, "api": api}
    last_error = ""
    for ep in candidate_endpoints(url.rstrip("/"), flavour):
        try:
            resp = requests.get(ep.url, params=params, timeout=ctx.args.timeout)
            ctype = resp.headers.get("Content-Type", "")
            pages = list(decode(resp.status_code, resp.content, ctype, ep.url, 10_000_000))
        except (requests.RequestException, ApiError) as exc:
            last_error = (
                f"{ep.url}: {_err(exc) if isinstance(exc, requests.RequestException) else exc}"
            )
            continue
        rows = [r for page in pages for s in page.sets for r in s.values()]
        api_total = sum(v for v in costs.column([r.total_cost for r in rows]) if v - v == 0.0)
        # the exporter's rule: divided by the hours the answer covers
        hours = coverage(row_windows(rows), (t0, t1), time.time()).hours
        rate = labels.get("metric_mode", "rate") == "rate"
        want = api_total / hours if rate and hours else api_total
        got = sum(s[2] for s in totals)
        rel = abs(got - want) / abs(want) if want else (0.0 if got == 0 else math.inf)
        details.update(kubecost=want, exporter=got, relative_difference=rel, endpoint=ep.url)
        if rel > ctx.args.tolerance:
            return Check(
                "fail",
                f"exporter cluster total {got:.6f} vs Kubecost aggregate=cluster {want:.6f} "
                f"for {window}: {rel:.2%} apart (> {ctx.args.tolerance:.2%})",
                details,
            )
        return Check(
            "pass",
            f"exporter {got:.5f} vs Kubecost aggregate=cluster {want:.5f} ({rel:.3%} apart)",
            details,
        )
    return Check("fail", f"Kubecost API: {last_error}", details)


RUNNERS: dict[str, Callable[[Context], Check]] = {
    "exporter": check_exporter,
    "target": check_target,
    "remote-write": check_remote_write,
    "sums": check_sums,
    "kubecost": check_kubecost,
}
