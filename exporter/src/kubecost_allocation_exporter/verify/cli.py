"""Arguments, report and exit code of `kubecost-allocation-exporter verify`."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import asdict

from kubecost_allocation_exporter.config import parse_duration
from kubecost_allocation_exporter.verify.accuracy import check_accuracy
from kubecost_allocation_exporter.verify.checks import CHECKS, PROG, RUNNERS, Check, Context, Links
from kubecost_allocation_exporter.verify.kube import (
    VerifyError,
    annotate_forward_failures,
    kube_links,
)
from kubecost_allocation_exporter.verify.thanos import check_thanos


def _duration(text: str) -> float:
    seconds = parse_duration(text)
    if seconds is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration (e.g. 30, 30s, 2m, 1h)")
    return seconds


def _header(text: str) -> tuple[str, str]:
    k, sep, v = text.partition("=" if "=" in text else ":")
    if not sep:
        raise argparse.ArgumentTypeError(f"{text!r}: expected NAME=VALUE")
    return k.strip(), v.strip()


# (flag, default, help); a URL or identity flag also reads the env var named in its help
_STRINGS = (
    ("--exporter-url", "VERIFY_EXPORTER_URL", "exporter base URL (VERIFY_EXPORTER_URL)"),
    (
        "--prometheus-url",
        "VERIFY_PROMETHEUS_URL",
        "the Prometheus (agent) that scrapes the exporter, remote-writes (VERIFY_PROMETHEUS_URL)",
    ),
    ("--thanos-url", "VERIFY_THANOS_URL", "Thanos Query base URL (VERIFY_THANOS_URL)"),
    ("--kubecost-url", "VERIFY_KUBECOST_URL", "Kubecost/OpenCost base URL (VERIFY_KUBECOST_URL)"),
    ("--cluster-name", "CLUSTER_NAME", "default: from the exporter's info metric"),
    ("--tenant-id", "TENANT_ID", "default: from the exporter's info metric"),
)
_OPTIONS = (
    ("--kube-context", None, "kubectl context (default: the current one)"),
    ("--kube-namespace", None, "namespace of the release: use kubectl port-forward"),
    ("--release", None, "Helm release name (when the namespace has several)"),
    ("--kubectl", "kubectl", "kubectl binary (default: kubectl from PATH)"),
    ("--job", "kubecost-allocation-exporter", "scrape job of the exporter (default: %(default)s)"),
    (
        "--remote-name",
        "cloudtuner-thanos",
        "remote_write queue name (remoteWrite.name; default: %(default)s)",
    ),
)
_DURATIONS = (
    ("--max-lag", 120.0, "max remote_write lag (default 120s)"),
    ("--max-age", 600.0, "max age of the newest sample in Thanos (600s)"),
    ("--sample-seconds", 5.0, "remote_write counters read twice, this apart (default 5s)"),
    ("--timeout", 10.0, "per request (default 10s)"),
)  # fmt: skip
_RATIOS = (
    ("--tolerance", 0.005, "exporter vs Kubecost, relative (0.005)"),
    ("--assets-drift", 0.05, "allocations vs assets, relative, before a warning (0.05)"),
)


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog=PROG,
        description="Check each link of a kubecost-integration install and report; "
        "exit 0 only when all pass.",
    )
    for flag, env, help_ in _STRINGS:
        ap.add_argument(flag, default=os.environ.get(env), help=help_)
    for flag, default, help_ in _OPTIONS:
        ap.add_argument(flag, default=default, help=help_)
    for flag, seconds, help_ in _DURATIONS:
        ap.add_argument(flag, type=_duration, default=seconds, help=help_)
    ap.add_argument(
        "--thanos-header", type=_header, action="append", default=[], help="NAME=VALUE for Thanos"
    )
    for flag, ratio, help_ in _RATIOS:
        ap.add_argument(flag, type=float, default=ratio, help=help_)
    ap.add_argument(
        "--skip", action="append", choices=CHECKS, default=[], help="leave out a check (repeatable)"
    )
    ap.add_argument("--output", choices=("text", "json"), default="text")
    return ap


def render_text(checks: list[Check], ctx: Context, ok: bool) -> str:
    lines = [f"{PROG}: cluster={ctx.cluster or '?'} tenant_id={ctx.tenant or '?'}"]
    for c in checks:
        lines.append(f"  {c.status.upper():<5} {c.name:<13} {c.summary}")
    bad = [c.name for c in checks if c.status not in ("pass", "warn")]
    warned = [c.name for c in checks if c.status == "warn"]
    done = f"passed, with warnings ({', '.join(warned)})" if warned else "passed"
    result = f"RESULT: all checks {done}" if ok else f"RESULT: FAILED ({', '.join(bad)})"
    if any(c.status == "skip" for c in checks):
        # A SKIP fails the run on purpose (an unchecked link is not a passed one); without this, a
        # reader whose every check was skipped sees "FAILED" and no way forward.
        result += "; a SKIP fails too: give the check what its line asks for, or --skip it"
    lines.append(result)
    return "\n".join(lines)


def run(args: argparse.Namespace) -> tuple[list[Check], Context]:
    with ExitStack() as stack:
        plain = Links(args.exporter_url, args.prometheus_url, args.thanos_url, args.kubecost_url)
        links = kube_links(args, stack) if args.kube_namespace else plain
        ctx = Context(args, links, args.cluster_name, args.tenant_id)
        runners = {**RUNNERS, "thanos": check_thanos, "accuracy": check_accuracy}
        names = [name for name in CHECKS if name not in args.skip]
        checks = [runners[name](ctx) for name in names]
        for name, check in zip(names, checks, strict=True):
            check.name = name
        annotate_forward_failures(checks, links.forwards)
    return checks, ctx


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        checks, ctx = run(args)
    except VerifyError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    ok = all(c.status in ("pass", "warn") for c in checks)
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
