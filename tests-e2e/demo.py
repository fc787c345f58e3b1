#!/usr/bin/env python3
"""`make demo` / `make demo-up`: the whole pipeline on this machine, no cluster needed.

Renders the chart (agent mode, the README quick-start values), then starts as local processes the Kubecost API
simulator (a test double), the exporter with the rendered env, Prometheus (3.x, from `make tools`) in agent mode
with the rendered `prometheus.yml`, Thanos Receive and Thanos Query; waits until the costs land in Thanos and
prints them, read back from Thanos. `--keep-running` (make demo-up) leaves it all up and prints the URLs (Ctrl-C).

The process wiring is `testsupport.pipeline`, the same code the pipeline e2e test runs.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests-e2e")]

#: The cache `make tools` / `make venv` fill: run the demo with its venv's Python, its tools on PATH, however started
#: (`make demo`, `tests-e2e/demo.py`, or `python tests-e2e/demo.py` with any Python on PATH).
KCI_CACHE = Path(os.environ.get("KCI_CACHE") or Path.home() / ".cache" / "kubecost-integration")
VENV = Path(os.environ.get("KCI_VENV") or KCI_CACHE / "venv")


def _use_cache_venv() -> None:
    """Re-exec under `$KCI_CACHE/venv/bin/python` when started by another Python; put the venv's and the pinned
    tools' bin directories first on PATH (the exporter CLI is in the venv, Prometheus/Thanos in `$KCI_CACHE/bin`)."""
    venv_python = VENV / "bin" / "python"
    os.environ["PATH"] = os.pathsep.join([str(VENV / "bin"), str(KCI_CACHE / "bin"), os.environ.get("PATH", "")])
    if venv_python.exists() and Path(sys.prefix).resolve() != VENV.resolve():
        os.execv(str(venv_python), [str(venv_python), str(Path(__file__).resolve()), *sys.argv[1:]])


if __name__ == "__main__":
    _use_cache_venv()

from testsupport.pipeline import (  # noqa: E402 (after the sys.path set-up above)
    METRIC_PREFIX,
    Tenant,
    TenantSpec,
    Thanos,
    start_tenant,
    start_thanos,
    wait_for_data,
)
from testsupport.procs import PortInUse, Ports, ProcessGroup, StartupError, ToolMissing, port_is_free  # noqa: E402
from testsupport.render import QUICKSTART_VALUES, HelmError  # noqa: E402

#: Fixed loopback ports, so `make demo-up` prints the same URLs every time (`--free-ports` picks any).
THANOS_PORTS = {
    "query_http": 19902,
    "query_grpc": 19901,
    "receive_http": 19909,
    "receive_grpc": 19907,
    "receive_rw": 19291,
    "receive_capnp": 19391,
}
TENANT_PORTS = {"simulator": 19090, "exporter": 19103, "agent": 19091}
HOURS_PER_MONTH = 730


def _say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _series(thanos: Thanos, metric: str, tenant: str) -> dict[str, float]:
    rows = thanos.query(f'{METRIC_PREFIX}{metric}{{tenant_id="{tenant}"}}')
    return {r["metric"].get("namespace", ""): float(r["value"][1]) for r in rows}


def cost_table(thanos: Thanos, tenant: Tenant) -> str:
    """Per-namespace costs and the cluster lines, all read back from Thanos Query."""
    t = tenant.spec.tenant_id
    cols = [
        ("total", "namespace_total_cost"),
        ("cpu", "namespace_cpu_cost"),
        ("ram", "namespace_ram_cost"),
        ("pv", "namespace_pv_cost"),
        ("network", "namespace_network_cost"),
        ("lb", "namespace_lb_cost"),
    ]
    data = {name: _series(thanos, metric, t) for name, metric in cols}
    eff = _series(thanos, "namespace_total_efficiency", t)
    namespaces = sorted(data["total"], key=lambda ns: -data["total"][ns])
    width = max([len("namespace"), *map(len, namespaces)])
    head = (
        f"{'namespace':<{width}}  " + "  ".join(f"{c + ' $/h':>11}" for c, _ in cols) + f"  {'$/month':>9}  {'eff':>6}"
    )
    lines = [head, "-" * len(head)]
    for ns in namespaces:
        cells = "  ".join(f"{data[c].get(ns, 0.0):>11.5f}" for c, _ in cols)
        e = f"{eff[ns]:>6.2f}" if ns in eff else f"{'-':>6}"
        lines.append(f"{ns:<{width}}  {cells}  {data['total'][ns] * HOURS_PER_MONTH:>9.2f}  {e}")
    lines.append("-" * len(head))
    total = _series(thanos, "cluster_total_cost", t).get("", 0.0)
    idle = _series(thanos, "cluster_idle_cost", t).get("")
    ns_sum = sum(data["total"].values())
    idle_text = f"{idle:>11.5f} $/h" if idle is not None else f"{'-':>11}      (no series)"
    lines += [
        f"{'sum of namespaces':<{width + 2}}{ns_sum:>11.5f} $/h",
        f"{'cluster idle':<{width + 2}}{idle_text}",
        f"{'cluster total':<{width + 2}}{total:>11.5f} $/h  (= {total * HOURS_PER_MONTH:.2f} $/month)",
    ]
    return "\n".join(lines)


def health_lines(thanos: Thanos, tenant: Tenant) -> str:
    t = tenant.spec.tenant_id
    out = []
    for metric in ("scrape_success", "scrape_duration_seconds", "last_success_timestamp_seconds"):
        rows = thanos.query(f'{METRIC_PREFIX}{metric}{{tenant_id="{t}"}}')
        value = float(rows[0]["value"][1]) if rows else None
        if value is not None and metric.endswith("timestamp_seconds"):
            shown = time.strftime("%H:%M:%S", time.localtime(value))
        else:
            shown = "(no series)" if value is None else f"{value:g}"
        out.append(f"  {METRIC_PREFIX}{metric} = {shown}")
    errors = {
        r["metric"].get("reason", ""): float(r["value"][1])
        for r in thanos.query(f'{METRIC_PREFIX}scrape_errors_total{{tenant_id="{t}"}}')
    }
    by_reason = ", ".join(f"{k}={v:g}" for k, v in sorted(errors.items()) if v) or "none"
    out.append(f"  {METRIC_PREFIX}scrape_errors_total = {sum(errors.values()):g} (by reason: {by_reason})")
    labels = thanos.query(f'{METRIC_PREFIX}cluster_total_cost{{tenant_id="{t}"}}')[0]["metric"]
    out.append(f"  labels on every series: cluster={labels.get('cluster')!r} tenant_id={labels.get('tenant_id')!r}")
    return "\n".join(out)


def _busy_fixed_ports() -> list[str]:
    """All fixed ports at once, before anything starts, so one line lists every conflict."""
    return [f"{port} ({what})" for what, port in {**THANOS_PORTS, **TENANT_PORTS}.items() if not port_is_free(port)]


def _url_lines(thanos: Thanos, tenant: Tenant, workdir: Path) -> list[str]:
    return [
        f"  Thanos Query UI/API     {thanos.query_url}/graph  (try: {METRIC_PREFIX}namespace_total_cost)",
        # Receive's HTTP port serves no page at `/` (404): its readiness endpoint is what a browser or curl can show
        f"  Thanos Receive          {thanos.receive_http_url}/-/ready  (remote write: "
        f"http://127.0.0.1:{thanos.remote_write_port}/api/v1/receive)",
        f"  Prometheus agent        {tenant.agent_url}/api/v1/targets",
        f"  Exporter metrics        {tenant.exporter_url}/metrics",
        f"  Kubecost API simulator  {tenant.sim_url}/model/allocation?window=1d&aggregate=namespace&accumulate=true",
        f"  Logs                    {workdir / 'logs'}",
    ]


def keep_running_lines(thanos: Thanos, tenant: Tenant, workdir: Path) -> list[str]:
    """What `make demo-up` prints once everything is up: the URLs, the `verify` command on exactly these URLs
    (docs/troubleshooting.md; with free ports the fixed ones of the docs would be wrong) and the simulator's
    controls, each fault with the command that switches it off again."""
    # The CLI by its path: it is in the cache venv, which need not be on the user's PATH
    verify_cli = shutil.which("kubecost-allocation-exporter") or "kubecost-allocation-exporter"
    return [
        "Everything is running (Ctrl-C stops it):",
        *_url_lines(thanos, tenant, workdir),
        f"  Check every link:  {verify_cli} verify \\",
        f"    --exporter-url {tenant.exporter_url} --prometheus-url {tenant.agent_url} \\",
        f"    --thanos-url {thanos.query_url} --kubecost-url {tenant.sim_url}",
        f'  Simulator faults:  curl -XPOST {tenant.sim_url}/__sim__/fault -d \'{{"mode":"http500"}}\'',
        f"  Simulator scale:   curl -XPOST {tenant.sim_url}/__sim__/config -d '{{\"scale\":2}}'",
        f"  Undo both:         curl -XPOST {tenant.sim_url}/__sim__/reset",
    ]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--keep-running", action="store_true", help="leave everything running, print URLs (Ctrl-C stops)")
    ap.add_argument(
        "--free-ports",
        action="store_true",
        help="use any free ports instead of the fixed 19xxx ones (chosen anyway when one of those is taken)",
    )
    ap.add_argument("--timeout", type=float, default=180, help="seconds to wait for data in Thanos (default 180)")
    ap.add_argument("--workdir", type=Path, default=ROOT / ".run" / "demo", help="logs and data (default .run/demo)")
    args = ap.parse_args(argv)

    spec = TenantSpec(
        QUICKSTART_VALUES["tenantId"], QUICKSTART_VALUES["clusterName"], refresh_interval="10s", scrape_interval="5s"
    )
    free_ports = args.free_ports
    # Checked before touching the work dir: a busy port usually means a running `make demo-up`, whose work dir
    # this is. Then every process gets a free port instead (the URLs are printed once everything is up).
    busy = [] if free_ports else _busy_fixed_ports()
    if busy:
        _say(f"demo: ports already in use: {', '.join(busy)} (another `make demo-up`?); using free ports instead")
        free_ports = True
    fixed_t = None if free_ports else THANOS_PORTS
    fixed_p = None if free_ports else TENANT_PORTS
    if free_ports:  # another demo may be running: never share (or wipe) its work dir
        args.workdir.parent.mkdir(parents=True, exist_ok=True)
        args.workdir = Path(tempfile.mkdtemp(prefix="demo-", dir=args.workdir.parent))
    else:
        shutil.rmtree(args.workdir, ignore_errors=True)
    group = ProcessGroup(args.workdir)

    def on_signal(*_: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)  # also when started in the background (SIGINT ignored there)
    try:
        # The README quotes how long the demo runs; say it, so a reader can compare without adding timestamps
        started = time.monotonic()
        _say(f"demo: logs and data in {args.workdir}")
        ports = Ports()
        thanos = start_thanos(group, ports, fixed_t, progress=_say)
        tenant = start_tenant(group, ports, thanos, spec, fixed=fixed_p, progress=_say)
        if free_ports:
            _say("demo: listening on (free ports):\n" + "\n".join(_url_lines(thanos, tenant, args.workdir)))
        took = wait_for_data(thanos, tenant, group, timeout=args.timeout, progress=_say)
        _say(f"data landed in Thanos {took:.1f}s after the agent started")
        print()
        print(
            f"Costs for cluster {spec.cluster_name!r}, tenant {spec.tenant_id!r} — read back from Thanos Query "
            f"({thanos.query_url}); simulated cluster, USD per hour (metric mode "
            f"{tenant.exporter_env.get('METRIC_MODE', 'rate')}, shareIdle {tenant.exporter_env.get('SHARE_IDLE')}):"
        )
        print(cost_table(thanos, tenant))
        print()
        print("Exporter health (from Thanos):")
        print(health_lines(thanos, tenant))
        print()
        if args.keep_running:
            print("\n".join(keep_running_lines(thanos, tenant, args.workdir)))
            sys.stdout.flush()
            while True:
                time.sleep(1)
                group.check_alive()
        _say(
            f"demo finished in {time.monotonic() - started:.0f}s (tools and venv not counted): "
            "stopping everything (make demo-up keeps it running)"
        )
        return 0
    except KeyboardInterrupt:
        _say("stopping")
        return 0
    except (ToolMissing, PortInUse) as err:
        print(f"demo: error: {err}", file=sys.stderr)
        return 1
    except (StartupError, HelmError, RuntimeError, OSError, AssertionError) as err:
        print(f"demo: error: {err}", file=sys.stderr)
        print(f"demo: full logs in {args.workdir / 'logs'}", file=sys.stderr)
        return 1
    finally:
        group.stop_all()


if __name__ == "__main__":
    sys.exit(main())
