"""`make bench`: the exporter at 10, 1,000 and 10,000 namespaces and 100,000 pods, each figure
next to a baseline measured in the same run. Writes docs/benchmarks.md.

    python bench/run.py [--quick] [--out docs/benchmarks.md]

Everything runs locally: a Kubecost-shaped stub server (bench/kubecost_stub.py, own process),
the exporter in-process (refresh timing) and as a real subprocess (scrapes, RSS, CPU), and a
prometheus-client on-scrape exporter (bench/baseline_exporter.py) as the /metrics baseline.
"""

from __future__ import annotations

import argparse
import gc
import http.client
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import requests

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
WINDOW = "2026-11-26T16:00:00Z,2026-11-26T17:00:00Z"
SIZES = (10, 1000, 10000)
PODS = 100_000
MIB = 1024 * 1024


def exporter_args(url: str, *extra: str) -> list[str]:
    return [
        "--kubecost-url", url, "--api", "kubecost", "--cluster-name", "bench",
        "--tenant-id", "tenant-bench", "--window", WINDOW, *extra,
    ]  # fmt: skip


@dataclass
class Results:
    rows: list[tuple[str, str, str, str, str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(
        self,
        what: str,
        value: str,
        baseline: str,
        ratio: str,
        target: str,
        met: bool | None,
    ) -> None:
        verdict = "n/a" if met is None else ("**met**" if met else "**NOT met**")
        self.rows.append((what, value, baseline, ratio, target, verdict))
        print(
            f"{what}: {value} | baseline {baseline} | {ratio} | target {target} | {verdict}",
            flush=True,
        )


def ms(s: float) -> str:
    return f"{s * 1000:.1f} ms" if s < 10 else f"{s:.2f} s"


# ---------------------------------------------------------------------------------------------


class Stub:
    def __init__(self, pods: int) -> None:
        self.proc = subprocess.Popen(
            [PY, str(ROOT / "bench" / "kubecost_stub.py"), "--pods", str(pods), "--warm", "10,1000,10000"],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert self.proc.stdout is not None
        self.port = int(self.proc.stdout.readline())

    def url(self, n: int, vary: bool = False, null: bool = False) -> str:
        head = "z" if null else "v" if vary else "n"
        return f"http://127.0.0.1:{self.port}/{head}{n}/model/allocation"

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def bench_refresh(stub: Stub, res: Results, quick: bool) -> None:
    """In-process: one cold refresh (fetch, parse, snapshot, render) vs fetch + orjson.loads of the
    same payload; interleaved so both see the same load; the cyclic GC paused in both (the
    exporter pauses it during a refresh)."""
    from kubecost_allocation_exporter.config import load
    from kubecost_allocation_exporter.kubecost import AllocationClient, query_params
    from kubecost_allocation_exporter.refresher import Refresher

    # the usual answer, and the same answer with one null in one row (every answer takes the
    # same decode and cost path: the null must cost no more than the usual answer)
    cases = [(n, False) for n in SIZES] + [(n, True) for n in SIZES[1:]]
    for n, null in cases:
        url = stub.url(n, vary=True, null=null)  # every answer differs: no snapshot reuse
        cfg = load(exporter_args(url), {})
        client = AllocationClient(cfg)
        session = requests.Session()
        params = query_params(WINDOW, "namespace", cfg.share_idle, False)
        reps = {10: 41, 1000: 21, 10000: 9}[n] // (3 if quick else 1)
        base: list[float] = []
        ref: list[float] = []
        for i in range(reps + 2):
            gc.disable()
            t0 = time.perf_counter()
            doc = orjson.loads(session.get(url, params=params).content)
            t1 = time.perf_counter()
            del doc
            gc.enable()
            r = Refresher(cfg, client)
            t2 = time.perf_counter()
            err = r.refresh_once()
            t3 = time.perf_counter()
            assert err is None, err
            assert r.snapshot is not None
            assert r.snapshot.namespace_count == n
            if i >= 2:  # warm-up
                base.append(t1 - t0)
                ref.append(t3 - t2)
        b, f = statistics.median(base), statistics.median(ref)
        client.close()
        target = n >= 1000
        what = f"refresh, {n:,} namespaces (median of {reps})"
        if null:
            what = f"refresh, {n:,} namespaces, one null in one row (median of {reps})"
        res.add(
            what,
            ms(f),
            f"fetch + orjson.loads {ms(b)}",
            f"{f / b:.2f}x",
            "<= 2.0x" if target else "(none)",
            (f / b <= 2.0) if target else None,
        )


# ---------------------------------------------------------------------------------------------


def wait_http(port: int, path: str, timeout: float = 120.0, proc: Any = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode}")
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            c.request("GET", path)
            r = c.getresponse()
            r.read()
            c.close()
            if r.status == 200:
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"127.0.0.1:{port}{path} not ready after {timeout}s")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Exporter:
    def __init__(self, url: str, *extra: str) -> None:
        self.port = free_port()
        args = exporter_args(
            url,
            "--listen-address",
            f"127.0.0.1:{self.port}",
            "--log-level",
            "warning",
            *extra,
        )
        self.proc = subprocess.Popen([PY, "-m", "kubecost_allocation_exporter", *args])
        wait_http(self.port, "/readyz", proc=self.proc)

    def status(self, key: str) -> int:
        text = Path(f"/proc/{self.proc.pid}/status").read_text()
        m = re.search(rf"^{key}:\s+(\d+) kB", text, re.M)
        assert m, key
        return int(m.group(1)) * 1024

    def close(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(15)


class Baseline:
    def __init__(self, url: str) -> None:
        self.tmp = tempfile.NamedTemporaryFile(delete=False)
        self.proc = subprocess.Popen(
            [PY, str(ROOT / "bench" / "baseline_exporter.py"), url, self.tmp.name]
        )
        deadline = time.monotonic() + 120
        while not Path(self.tmp.name).read_text():
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError("baseline exporter did not start")
            time.sleep(0.05)
        self.port = int(Path(self.tmp.name).read_text())

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        os.unlink(self.tmp.name)


def scrape_load(port: int, seconds: float, scrapers: int) -> list[tuple[float, float, bytes]]:
    """`scrapers` threads GET /metrics back to back (keep-alive) for `seconds`; returns
    (start wall time, duration, first 4 KiB of the body) per scrape."""
    out: list[tuple[float, float, bytes]] = []
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds

    def worker() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        mine = []
        while time.monotonic() < stop_at:
            w0, t0 = time.time(), time.perf_counter()
            conn.request("GET", "/metrics")
            r = conn.getresponse()
            body = r.read()
            t1 = time.perf_counter()
            assert r.status == 200 and body, r.status
            mine.append((w0, t1 - t0, body[:4096]))
        conn.close()
        with lock:
            out.extend(mine)

    threads = [threading.Thread(target=worker) for _ in range(scrapers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


_DUR = re.compile(rb"^cloudtuner_kubecost_scrape_duration_seconds\{[^}]*\} (\S+)$", re.M)
_LAST = re.compile(rb"^cloudtuner_kubecost_last_success_timestamp_seconds\{[^}]*\} (\S+)$", re.M)


def bench_scrapes(stub: Stub, res: Results, quick: bool) -> None:
    seconds = 4.0 if quick else 8.0
    scrapers = 4
    url = stub.url(1000)
    exp = Exporter(url, "--refresh-interval", "10m")
    base = Baseline(url)
    try:
        # interleave two rounds each so both see the same background load
        ours: list[float] = []
        theirs: list[float] = []
        for _ in range(2):
            ours += [d for _, d, _ in scrape_load(exp.port, seconds / 2, scrapers)]
            theirs += [d for _, d, _ in scrape_load(base.port, seconds / 2, scrapers)]
    finally:
        exp.close()
        base.close()
    a, b = statistics.median(ours), statistics.median(theirs)
    res.add(
        f"/metrics median, 1,000 namespaces, {scrapers} concurrent scrapers ({len(ours)} / {len(theirs)} scrapes)",
        ms(a),
        f"prometheus-client render on scrape {ms(b)}",
        f"{a / b:.3f}x",
        "<= 0.15x",
        a / b <= 0.15,
    )

    # While a refresh runs: a refresh every second on answers that always differ; the refresh
    # intervals are read back from the exporter's own health series (start wall time, duration).
    exp = Exporter(stub.url(1000, vary=True), "--refresh-interval", "1s", "--refresh-jitter", "0")
    try:
        scrapes = scrape_load(exp.port, seconds * 2, scrapers)
    finally:
        exp.close()
    refreshes: set[tuple[float, float]] = set()
    for _, _, head in scrapes:
        d, last = _DUR.search(head), _LAST.search(head)
        if d and last:
            refreshes.add((float(last.group(1)), float(d.group(1))))
    spans = sorted((s, s + d) for s, d in refreshes)

    def overlaps(w0: float, dur: float) -> bool:
        return any(w0 < e and w0 + dur > s for s, e in spans)

    during = [dur for w0, dur, _ in scrapes if overlaps(w0, dur)]
    idle = [dur for w0, dur, _ in scrapes if not overlaps(w0, dur)]
    if not during:
        res.add(
            "/metrics median while a refresh runs",
            "no overlap seen",
            "",
            "",
            "<= 1.5x",
            False,
        )
        return
    a, b = statistics.median(during), statistics.median(idle)
    res.add(
        f"/metrics median while a refresh runs, 1,000 namespaces ({len(during)} scrapes during "
        f"{len(spans)} refreshes)",
        ms(a),
        f"same exporter between refreshes {ms(b)}",
        f"{a / b:.2f}x",
        "<= 1.5x",
        a / b <= 1.5,
    )


# ---------------------------------------------------------------------------------------------


def time_v(cmd: list[str]) -> tuple[int, float, str]:
    """Peak RSS (bytes) and CPU seconds (user + sys) of a whole process, from /usr/bin/time -v."""
    p = subprocess.run(["/usr/bin/time", "-v", *cmd], capture_output=True, text=True, check=False)
    err = p.stderr
    if p.returncode != 0:
        raise RuntimeError(f"{cmd} failed: {err[-2000:]}")
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", err).group(1)) * 1024  # type: ignore[union-attr]
    user = float(re.search(r"User time \(seconds\): ([\d.]+)", err).group(1))  # type: ignore[union-attr]
    sys_ = float(re.search(r"System time \(seconds\): ([\d.]+)", err).group(1))  # type: ignore[union-attr]
    return rss, user + sys_, p.stdout


BASELINE_LOAD = (
    "import sys, requests, orjson\n"
    "params = dict(window=sys.argv[2], aggregate=sys.argv[3], accumulate='true')\n"
    "doc = orjson.loads(requests.get(sys.argv[1], params=params).content)\n"
)


def bench_memory(stub: Stub, res: Results) -> None:
    once = [PY, "-m", "kubecost_allocation_exporter", "--once"]
    cases = [
        ("10,000 namespaces", stub.url(10000), "namespace", (), 128),
        ("10,000 namespaces, one null in one row", stub.url(10000, null=True), "namespace", (), 128),
        (
            "100,000 pods, pod-level output (--breakdowns pod --breakdown-top-n 10000)",
            stub.url(1000),
            "namespace,pod",
            ("--breakdowns", "pod", "--breakdown-top-n", "10000"),
            256,
        ),
    ]
    for what, url, agg, extra, limit in cases:
        b_rss, b_cpu, _ = time_v([PY, "-c", BASELINE_LOAD, url, WINDOW, agg])
        rss, cpu, out = time_v([*once, *exporter_args(url, *extra)])
        lines = out.count("\n")
        res.add(
            f"peak RSS of a refresh (whole process, --once), {what}; {lines:,} exposition lines",
            f"{rss / MIB:.0f} MiB",
            f"python + requests + orjson.loads of the whole answer {b_rss / MIB:.0f} MiB",
            f"{rss / b_rss:.2f}x",
            f"<= {limit} MiB",
            rss <= limit * MIB,
        )
        res.add(
            f"CPU time of that process (user + sys, incl. start-up), {what}",
            f"{cpu:.2f} s",
            f"python + requests + orjson.loads {b_cpu:.2f} s",
            f"{cpu / b_cpu:.2f}x",
            "(none)",
            None,
        )


def serving_after_refreshes(url: str, extra: tuple[str, ...], refreshes: int) -> tuple[int, int]:
    """(peak, current) RSS of the serving exporter after `refreshes` successful refreshes, one a
    second, each rebuilding the snapshot (the answer changes on every request)."""
    exp = Exporter(url, "--refresh-interval", "1s", "--refresh-jitter", "0", *extra)
    try:
        seen: set[bytes] = set()
        deadline = time.monotonic() + 60 + 30 * refreshes
        while len(seen) < refreshes and time.monotonic() < deadline:
            c = http.client.HTTPConnection("127.0.0.1", exp.port, timeout=60)
            c.request("GET", "/metrics")
            m = _LAST.search(c.getresponse().read())
            c.close()
            if m:
                seen.add(m.group(1))
            time.sleep(0.2)
        assert len(seen) >= refreshes, f"only {len(seen)} refreshes in time"
        return exp.status("VmHWM"), exp.status("VmRSS")
    finally:
        exp.close()


def bench_serving(stub: Stub, res: Results) -> None:
    cases = [
        ("10,000 namespaces", stub.url(10000, vary=True), (), 10, 128),
        (
            "100,000 pods, pod-level output (--breakdowns pod --breakdown-top-n 10000)",
            stub.url(1000, vary=True),
            ("--breakdowns", "pod", "--breakdown-top-n", "10000"),
            5,
            256,
        ),
    ]
    for what, url, extra, n, limit in cases:
        peak, now = serving_after_refreshes(url, extra, n)
        res.add(
            f"peak RSS of the serving exporter after {n} refreshes (each answer different), {what}",
            f"{peak / MIB:.0f} MiB (now {now / MIB:.0f} MiB)",
            "",
            "",
            f"<= {limit} MiB",
            peak <= limit * MIB,
        )


def bench_idle(stub: Stub, res: Results) -> None:
    b_rss, _, _ = time_v([PY, "-c", "import requests, orjson, prometheus_client"])
    exp = Exporter(stub.url(10))
    try:
        time.sleep(2.0)
        rss = exp.status("VmRSS")
    finally:
        exp.close()
    for n in (1000, 10000):
        exp = Exporter(stub.url(n))
        try:
            time.sleep(2.0)
            steady, peak = exp.status("VmRSS"), exp.status("VmHWM")
        finally:
            exp.close()
        res.add(
            f"serving exporter after its first refresh, {n:,} namespaces: RSS (peak)",
            f"{steady / MIB:.0f} MiB ({peak / MIB:.0f} MiB)",
            "",
            "",
            "(sizing)",
            None,
        )
    res.add(
        "idle RSS after start (serving, first refresh done, 10 namespaces)",
        f"{rss / MIB:.1f} MiB",
        f"python importing requests, orjson, prometheus_client {b_rss / MIB:.1f} MiB",
        f"{rss / b_rss:.2f}x",
        "<= 45 MiB",
        rss <= 45 * MIB,
    )


# ---------------------------------------------------------------------------------------------


def versions() -> str:
    from importlib.metadata import version

    pkgs = ("kubecost-allocation-exporter", "msgspec", "orjson", "prometheus-client", "requests")
    return ", ".join(f"{p} {version(p)}" for p in pkgs)


def machine() -> str:
    model = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    mem = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1)) // 1024  # type: ignore[union-attr]
    return f"{os.cpu_count()} CPUs ({model}), {mem} MiB RAM, {platform.platform()}"


def git_rev() -> str:
    p = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
    )
    dirty = subprocess.run(
        ["git", "-C", str(ROOT), "status", "--porcelain", "exporter/src"],
        capture_output=True,
        text=True,
    )
    return p.stdout.strip() + (" (exporter/src modified)" if dirty.stdout.strip() else "")


def write(path: Path, res: Results, started: datetime, took: float, load: tuple[str, str]) -> None:
    table = [
        "| Figure | Exporter | Baseline (same run) | Ratio | Target | |",
        "|---|---|---|---|---|---|",
    ]
    table += ["| " + " | ".join(r) + " |" for r in res.rows]
    text = PAGE.format(
        table="\n".join(table),
        started=started.strftime("%Y-%m-%d %H:%M UTC"),
        took=f"{took / 60:.1f}",
        machine=machine(),
        python=platform.python_version(),
        versions=versions(),
        rev=git_rev(),
        load_start=load[0],
        load_end=load[1],
        notes="\n".join(f"* {n}" for n in res.notes) or "* none",
    )
    head, sep, _ = path.read_text().partition(MARK) if path.exists() else ("", "", "")
    if sep:
        text = head + MARK + "\n" + text
    else:
        text = TITLE + MARK + "\n" + text
    path.write_text(text)
    print(f"wrote {path}")


MARK = "<!-- generated by `make bench` (bench/run.py) below this line -->"
TITLE = "# Benchmarks\n\n"
PAGE = """
## Last run

Run {started} in {took} min on {machine}; Python {python}; {versions}; commit {rev}.
Load average (1 min) at start {load_start}, at end {load_end} (the machine is shared: absolute
times vary, the ratios compare figures taken in the same run under the same load).

{table}

Notes:
{notes}

Reproduce: `make bench` (or `python bench/run.py [--quick]` with the venv's Python).
"""


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer repetitions (a smoke run)")
    ap.add_argument("--out", default=str(ROOT / "docs" / "benchmarks.md"))
    ap.add_argument("--only", default="refresh,scrapes,memory,serving,idle")
    args = ap.parse_args()
    started = datetime.now(UTC)
    t0 = time.monotonic()
    load0 = f"{os.getloadavg()[0]:.1f}"
    res = Results()
    print("generating the answers (100,000 pods take ~30 s) ...", flush=True)
    stub = Stub(PODS if "memory" in args.only or "serving" in args.only else 0)
    steps: dict[str, Callable[[], Any]] = {
        "refresh": lambda: bench_refresh(stub, res, args.quick),
        "scrapes": lambda: bench_scrapes(stub, res, args.quick),
        "memory": lambda: bench_memory(stub, res),
        "serving": lambda: bench_serving(stub, res),
        "idle": lambda: bench_idle(stub, res),
    }
    try:
        for name in args.only.split(","):
            steps[name]()
    finally:
        stub.close()
    load1 = f"{os.getloadavg()[0]:.1f}"
    write(Path(args.out), res, started, time.monotonic() - t0, (load0, load1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
