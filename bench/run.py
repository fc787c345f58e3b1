"""`make bench`: the exporter at 10, 1,000 and 10,000 namespaces and 100,000 pods, each figure
next to a baseline measured in the same run, every measurement repeated over several rounds.

    python bench/run.py [--quick] [--rounds N] [--out .run/bench/benchmarks.md]

Writes the page (and the same figures as JSON beside it, `results.json`) to `.run/bench/` by default;
`make bench-update-docs` writes them into docs/benchmarks.md and docs/bench-results.json instead.

Spread and verdicts: each figure is measured once per round (a round runs every step; rounds follow each
other, so a burst of load on the shared machine hits one round, not every figure of one round in a row).
The page shows the median of the rounds and their range (min-max). A target is
  met        when every round meets it (the worst round included),
  NOT met    when the median of the rounds misses it,
  unsettled  otherwise (the median meets it but some round does not: rerun with more --rounds),
so one noisy round can neither pass nor fail a target. The exit status is 0 only if every target is met.

Everything runs locally: a Kubecost-shaped stub server (bench/kubecost_stub.py, own process),
the exporter in-process (refresh timing) and as a real subprocess (scrapes, RSS, CPU), and a
prometheus-client on-scrape exporter (bench/baseline_exporter.py) as the /metrics baseline.
The step `sizing` measures every sizing preset of the chart (charts/kubecost-integration/files/sizing.yaml) at
its scale: the serving exporter with the preset's settings, and a real Prometheus 3 agent (`make tools`)
scraping it and remote-writing to a local sink; docs/benchmarks.md ("Sizing presets") says what rests on them.
"""

from __future__ import annotations

import argparse
import functools
import gc
import http.client
import http.server
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import orjson
import requests
import yaml
from kubecost_allocation_exporter.config import load
from kubecost_allocation_exporter.kubecost import AllocationClient, query_params
from kubecost_allocation_exporter.refresher import Refresher

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
WINDOW = "2026-11-26T16:00:00Z,2026-11-26T17:00:00Z"
SIZES = (10, 1000, 10000)
PODS = 100_000
MIB = 1024 * 1024
#: The sizing presets (`sizing.preset`): the step `sizing` measures each at its scale with its exporter settings.
SIZING = ROOT / "charts" / "kubecost-integration" / "files" / "sizing.yaml"
POD_LEVEL = ("--breakdowns", "pod", "--breakdown-top-n", "10000")
SIZING_REFRESHES = 5
#: A preset's memory limits are at least this times the peak RSS measured at its scale (the bench's target): room
#: for answers the stub does not shape (longer names, more labels) and, for the agent, the WAL checkpoint every 2 h
#: that a 30-second run does not reach.
SIZING_MEMORY_MARGIN = 1.5
AGENT_SCRAPES, AGENT_INTERVAL = 6, 5


def exporter_args(url: str, *extra: str) -> list[str]:
    return [
        "--kubecost-url", url, "--api", "kubecost", "--cluster-name", "bench",
        "--tenant-id", "tenant-bench", "--window", WINDOW, *extra,
    ]  # fmt: skip


@dataclass(frozen=True)
class Figure:
    """One figure of one round. `limit` bounds `ratio` (value / baseline) when `on_ratio`, else `value`."""

    what: str
    value: float
    unit: str  # "s" (wall time), "cpu-s", "MiB", "MB" or "" (a plain number)
    baseline: float | None = None
    baseline_what: str = ""
    limit: float | None = None
    on_ratio: bool = False
    extra: str = ""  # shown after the value (e.g. the current RSS next to the peak)

    @property
    def ratio(self) -> float | None:
        return None if self.baseline is None else self.value / self.baseline

    @property
    def checked(self) -> float | None:
        return self.ratio if self.on_ratio else self.value

    def meets(self) -> bool | None:
        checked = self.checked
        return None if self.limit is None or checked is None else checked <= self.limit


@dataclass
class Results:
    rounds: dict[str, list[Figure]] = field(default_factory=dict)  # what -> one Figure per round
    notes: dict[str, str] = field(default_factory=dict)  # key -> note (a later round replaces it)

    def add(self, fig: Figure) -> None:
        self.rounds.setdefault(fig.what, []).append(fig)
        ratio = "" if fig.ratio is None else f" | {fig.ratio:.3g}x baseline {show(fig.baseline, fig.unit)}"
        ok = fig.meets()
        print(f"{fig.what}: {show(fig.value, fig.unit)}{ratio} | {'' if ok is None else 'ok' if ok else 'MISSED'}")
        sys.stdout.flush()

    def verdicts(self) -> dict[str, str]:
        return {what: verdict(figs) for what, figs in self.rounds.items()}


def verdict(figs: list[Figure]) -> str:
    """met: every round meets the target; NOT met: the median misses it; unsettled: in between."""
    first = figs[0]
    if first.limit is None:
        return "n/a"
    checked = [f.checked for f in figs if f.checked is not None]
    if checked and max(checked) <= first.limit:
        return "met"
    if not checked or statistics.median(checked) > first.limit:
        return "NOT met"
    return "unsettled"


def show(v: float | None, unit: str) -> str:
    if v is None:
        return ""
    if unit == "s":
        return f"{v * 1000:.1f} ms" if v < 10 else f"{v:.2f} s"
    if unit == "MiB":
        return f"{v:.0f} MiB" if v >= 40 else f"{v:.1f} MiB"
    if unit == "cpu-s":
        return f"{v:.2f} s" if v >= 0.1 else f"{v:.3f} s"
    if unit == "MB":
        return f"{v:.1f} MB"
    return f"{v:.3g}"


def spread(values: list[float], fmt: Callable[[float], str]) -> str:
    """median (min-max) of the rounds; a single round shows the value alone."""
    med = fmt(statistics.median(values))
    return med if len(values) == 1 else f"{med} ({fmt(min(values))} to {fmt(max(values))})"


# ---------------------------------------------------------------------------------------------


class Stub:
    def __init__(self, pods: int, warm: str = "10,1000,10000") -> None:
        self.proc = subprocess.Popen(
            [PY, str(ROOT / "bench" / "kubecost_stub.py"), "--pods", str(pods), "--warm", warm],
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
        cpu: list[float] = []
        size = 0
        for i in range(reps + 2):
            gc.disable()
            t0 = time.perf_counter()
            content = session.get(url, params=params).content
            doc = orjson.loads(content)
            t1 = time.perf_counter()
            size = len(content)
            del doc, content
            gc.enable()
            r = Refresher(cfg, client)
            c2, t2 = time.process_time(), time.perf_counter()
            err = r.refresh_once()
            t3, c3 = time.perf_counter(), time.process_time()
            assert err is None, err
            assert r.snapshot is not None
            assert r.snapshot.namespace_count == n
            if i >= 2:  # warm-up
                base.append(t1 - t0)
                ref.append(t3 - t2)
                cpu.append(c3 - c2)
        b, f = statistics.median(base), statistics.median(ref)
        client.close()
        what = f"refresh, {n:,} namespaces" + (", one null in one row" if null else "")
        res.add(Figure(what, f, "s", b, "fetch + orjson.loads", 2.0 if n >= 1000 else None, on_ratio=True))
        if not null and n >= 1000:  # the figures docs/deployment.md and values.yaml quote for sizing
            res.add(
                Figure(f"CPU time of one refresh (process time), {n:,} namespaces", statistics.median(cpu), "cpu-s")
            )
            res.add(Figure(f"answer size, {n:,} namespaces (one request)", size / 1e6, "MB"))
        res.notes[f"refresh{n}"] = f"refresh, {n:,} namespaces: each round's figure is the median of {reps} refreshes."


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
    def __init__(self, url: str, port_file: Path) -> None:
        port_file.write_text("")
        self.port_file = port_file
        self.proc = subprocess.Popen([PY, str(ROOT / "bench" / "baseline_exporter.py"), url, str(port_file)])
        deadline = time.monotonic() + 120
        while not port_file.read_text():
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError("baseline exporter did not start")
            time.sleep(0.05)
        self.port = int(port_file.read_text())

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        self.port_file.unlink()


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
            assert r.status == 200, r.status
            assert body, r.status
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


def bench_scrapes(stub: Stub, res: Results, quick: bool, workdir: Path) -> None:
    seconds = 4.0 if quick else 8.0
    scrapers = 4
    url = stub.url(1000)
    exp = Exporter(url, "--refresh-interval", "10m")
    base = Baseline(url, workdir / "baseline.port")
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
    what = f"/metrics median, 1,000 namespaces, {scrapers} concurrent scrapers"
    res.add(Figure(what, a, "s", b, "prometheus-client render on scrape", 0.15, on_ratio=True))
    res.notes["scrapes"] = f"{what}: {len(ours)} / {len(theirs)} scrapes in the last round."

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
    what = "/metrics median while a refresh runs, 1,000 namespaces"
    if not during:  # counted as a miss: the figure could not be taken
        res.add(Figure(what, float("inf"), "s", 1.0, "no scrape overlapped a refresh", 1.5, on_ratio=True))
        return
    a, b = statistics.median(during), statistics.median(idle)
    res.add(Figure(what, a, "s", b, "same exporter between refreshes", 1.5, on_ratio=True))
    res.notes["during"] = f"{what}: {len(during)} scrapes during {len(spans)} refreshes in the last round."


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
        peak = f"peak RSS of a refresh (whole process, --once), {what}"
        base = "python + requests + orjson.loads of the whole answer"
        res.add(Figure(peak, rss / MIB, "MiB", b_rss / MIB, base, limit))
        res.add(Figure(f"CPU time of that process (user + sys, incl. start-up), {what}", cpu, "cpu-s", b_cpu, base))
        res.notes[f"lines {what}"] = f"--once, {what}: {out.count(chr(10)):,} exposition lines."


def serving_after_refreshes(url: str, extra: tuple[str, ...], refreshes: int) -> tuple[int, int]:
    """(peak, current) RSS of the serving exporter after `refreshes` successful refreshes, one a
    second, each rebuilding the snapshot (the answer changes on every request)."""
    exp = Exporter(url, "--refresh-interval", "1s", "--refresh-jitter", "0", *extra)
    try:
        refreshes_seen(exp.port, refreshes)
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
            Figure(
                f"peak RSS of the serving exporter after {n} refreshes (each answer different), {what}",
                peak / MIB,
                "MiB",
                limit=limit,
                extra=f"now {now / MIB:.0f} MiB",
            )
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
            Figure(
                f"serving exporter after its first refresh, {n:,} namespaces: RSS",
                steady / MIB,
                "MiB",
                extra=f"peak {peak / MIB:.0f} MiB",
            )
        )
    res.add(
        Figure(
            "idle RSS after start (serving, first refresh done, 10 namespaces)",
            rss / MIB,
            "MiB",
            b_rss / MIB,
            "python importing requests, orjson, prometheus_client",
            45,
        )
    )


# ---------------------------------------------------------------------------------------------
# Sizing presets: every preset of the chart's files/sizing.yaml at its scale, with its exporter settings.


def sizing_presets() -> dict[str, dict[str, Any]]:
    presets: dict[str, dict[str, Any]] = yaml.safe_load(SIZING.read_text())
    return presets


def sizing_figures(preset: str, spec: dict[str, Any]) -> dict[str, str]:
    """The names of the figures the preset rests on (bench-results.json keys), by what they measure."""
    ns = f"sizing preset {preset}: {spec['namespaces']:,} namespaces"
    pods = f"sizing preset {preset}: {spec['pods']:,} pods, pod-level output ({' '.join(POD_LEVEL)})"
    serving = f"the serving exporter after {SIZING_REFRESHES} refreshes (each answer different)"
    return {
        "exporter_peak_namespaces": f"peak RSS of {serving}, {ns}",
        "exporter_rss_namespaces": f"RSS of {serving}, {ns}",
        "exporter_cpu_namespaces": f"CPU time per refresh of {serving}, {ns}",
        "exporter_peak_pods": f"peak RSS of {serving}, {pods}",
        "exporter_rss_pods": f"RSS of {serving}, {pods}",
        "exporter_cpu_pods": f"CPU time per refresh of {serving}, {pods}",
        "agent_peak": f"peak RSS of the Prometheus agent after {AGENT_SCRAPES} scrapes of the exporter, {ns}",
        "agent_rss": f"RSS of the Prometheus agent after {AGENT_SCRAPES} scrapes of the exporter, {ns}",
        "agent_cpu": f"CPU time per scrape of the Prometheus agent (incl. remote write), {ns}",
    }


def env_args(env: dict[str, Any]) -> tuple[str, ...]:
    """The preset's exporter environment (`MAX_SERIES: "300000"`) as the flags it stands for."""
    return tuple(a for k, v in env.items() for a in (f"--{k.lower().replace('_', '-')}", str(v)))


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process so far (clock ticks of /proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_status(pid: int, key: str) -> int:
    m = re.search(rf"^{key}:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text(), re.M)
    assert m, key
    return int(m.group(1)) * 1024


class _Sink(http.server.BaseHTTPRequestHandler):
    """Accepts remote_write requests (204) and counts their bytes: Thanos Receive's part, kept out of the figure."""

    protocol_version = "HTTP/1.1"
    received = 0

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        type(self).received += len(body)
        self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


def prometheus_binary() -> str:
    cache = Path(os.environ.get("KCI_CACHE") or Path.home() / ".cache" / "kubecost-integration")
    for candidate in (cache / "bin" / "prometheus", shutil.which("prometheus")):
        if candidate and Path(candidate).is_file():
            return str(candidate)
    raise SystemExit("the bench step sizing needs Prometheus 3: run `make tools` (or scripts/tools.sh prometheus)")


def agent_after_scrapes(exporter_port: int, workdir: Path) -> tuple[int, int, float, int]:
    """(peak RSS, RSS, CPU seconds, active series) of a real Prometheus agent after AGENT_SCRAPES scrapes of the
    exporter, remote-writing with the chart's queue_config to a local sink."""
    _Sink.received = 0
    sink = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    threading.Thread(target=sink.serve_forever, daemon=True).start()
    queue = yaml.safe_load((ROOT / "charts" / "kubecost-integration" / "values.yaml").read_text())["remoteWrite"][
        "queueConfig"
    ]
    config = {
        "global": {"scrape_interval": f"{AGENT_INTERVAL}s", "scrape_timeout": f"{AGENT_INTERVAL}s"},
        "scrape_configs": [{"job_name": "exporter", "static_configs": [{"targets": [f"127.0.0.1:{exporter_port}"]}]}],
        "remote_write": [{"url": f"http://127.0.0.1:{sink.server_address[1]}/api/v1/receive", "queue_config": queue}],
    }
    data = workdir / "agent"
    shutil.rmtree(data, ignore_errors=True)
    data.mkdir(parents=True)
    (data / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    proc = subprocess.Popen(
        [prometheus_binary(), "--agent", f"--config.file={data / 'prometheus.yml'}",
         f"--storage.agent.path={data / 'wal'}", f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
    )  # fmt: skip
    try:
        wait_http(port, "/-/ready", proc=proc)
        time.sleep(AGENT_SCRAPES * AGENT_INTERVAL + 1)
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        c.request("GET", "/metrics")
        text = c.getresponse().read().decode()
        c.close()
        m = re.search(r"^prometheus_agent_active_series (\S+)$", text, re.M)
        series = int(float(m.group(1))) if m else 0
        assert _Sink.received > 0, "the agent sent nothing to the remote_write sink"
        return proc_status(proc.pid, "VmHWM"), proc_status(proc.pid, "VmRSS"), cpu_seconds(proc.pid), series
    finally:
        proc.terminate()
        proc.wait(30)
        sink.shutdown()
        sink.server_close()


def bench_sizing(stub: Stub, res: Results, workdir: Path) -> None:
    for preset, spec in sizing_presets().items():
        names = sizing_figures(preset, spec)
        caps = env_args(spec["exporter"].get("env") or {})
        mem = spec["exporter"]["resources"]["limits"]["memory"]
        cases = [
            ("namespaces", stub.url(spec["namespaces"], vary=True), ()),
            ("pods", stub.url(1000, vary=True).replace("/v1000/", f"/v1000-p{spec['pods']}/"), POD_LEVEL),
        ]
        for kind, url, extra in cases:
            exp = Exporter(url, "--refresh-interval", "1s", "--refresh-jitter", "0", *caps, *extra)
            try:
                cpu0 = cpu_seconds(exp.proc.pid)
                seen = refreshes_seen(exp.port, SIZING_REFRESHES + 1)
                cpu = (cpu_seconds(exp.proc.pid) - cpu0) / SIZING_REFRESHES
                peak, now = exp.status("VmHWM"), exp.status("VmRSS")
            finally:
                exp.close()
            res.add(Figure(names[f"exporter_peak_{kind}"], peak / MIB, "MiB", limit=mib(mem) / SIZING_MEMORY_MARGIN))
            res.add(Figure(names[f"exporter_rss_{kind}"], now / MIB, "MiB"))
            res.add(Figure(names[f"exporter_cpu_{kind}"], cpu, "cpu-s"))
            res.notes[f"sizing {preset} {kind}"] = f"{names[f'exporter_peak_{kind}']}: {seen} refreshes seen."
        # the agent: the exporter serving the preset's namespaces, every series exported
        exp = Exporter(stub.url(spec["namespaces"]), "--refresh-interval", "10m", *caps)
        try:
            peak, now, cpu, series = agent_after_scrapes(exp.port, workdir)
        finally:
            exp.close()
        agent_mem = spec["agent"]["resources"]["limits"]["memory"]
        res.add(Figure(names["agent_peak"], peak / MIB, "MiB", limit=mib(agent_mem) / SIZING_MEMORY_MARGIN))
        res.add(Figure(names["agent_rss"], now / MIB, "MiB"))
        res.add(Figure(names["agent_cpu"], cpu / AGENT_SCRAPES, "cpu-s"))
        res.notes[f"sizing {preset} agent"] = f"{names['agent_peak']}: {series:,} active series."


def mib(quantity: str) -> float:
    """A Kubernetes memory quantity in Mi or Gi, in MiB."""
    value, unit = re.fullmatch(r"(\d+)(Mi|Gi)", quantity).groups()  # type: ignore[union-attr]
    return float(value) * (1024 if unit == "Gi" else 1)


def refreshes_seen(port: int, refreshes: int) -> int:
    """Wait until `refreshes` distinct successful refreshes were served; return how many were seen."""
    seen: set[bytes] = set()
    deadline = time.monotonic() + 60 + 60 * refreshes
    while len(seen) < refreshes and time.monotonic() < deadline:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        c.request("GET", "/metrics")
        m = _LAST.search(c.getresponse().read())
        c.close()
        if m:
            seen.add(m.group(1))
        time.sleep(0.2)
    assert len(seen) >= refreshes, f"only {len(seen)} refreshes in time"
    return len(seen)


# ---------------------------------------------------------------------------------------------


def versions() -> str:
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
        check=False,
    )
    dirty = subprocess.run(
        ["git", "-C", str(ROOT), "status", "--porcelain", "exporter/src"],
        capture_output=True,
        text=True,
        check=False,
    )
    return p.stdout.strip() + (" (exporter/src modified)" if dirty.stdout.strip() else "")


def table(res: Results) -> str:
    rows = [
        "| Figure | Exporter: median (min-max) | Baseline (same run), median | Ratio: median (min-max) | Target | |",
        "|---|---|---|---|---|---|",
    ]
    for what, figs in res.rounds.items():
        f = figs[0]
        value = spread([g.value for g in figs], functools.partial(show, unit=f.unit))
        if f.extra:
            value += f" ({figs[-1].extra} in the last round)"
        baseline = ""
        if f.baseline is not None:
            baseline = f"{f.baseline_what} {show(statistics.median([g.baseline or 0.0 for g in figs]), f.unit)}"
        ratios = [r for g in figs if (r := g.ratio) is not None]
        ratio = spread(ratios, lambda v: f"{v:.2f}x" if v >= 0.1 else f"{v:.3f}x") if ratios else ""
        target = "(none)"
        if f.limit is not None:
            target = f"<= {f.limit:g}x" if f.on_ratio else f"<= {show(f.limit, f.unit)}"
        v = verdict(figs)
        rows.append(f"| {what} | {value} | {baseline} | {ratio} | {target} | {v if v == 'n/a' else f'**{v}**'} |")
    return "\n".join(rows)


def write(path: Path, res: Results, meta: dict[str, str]) -> None:
    text = PAGE.format(table=table(res), notes="\n".join(f"* {n}" for n in res.notes.values()) or "* none", **meta)
    head, sep, _ = path.read_text().partition(MARK) if path.exists() else ("", "", "")
    text = head + MARK + "\n" + text if sep else TITLE + MARK + "\n" + text
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    data = {
        "meta": meta,
        "verdicts": res.verdicts(),
        "figures": {what: [asdict(f) for f in figs] for what, figs in res.rounds.items()},
    }
    results = path.parent / ("bench-results.json" if path.parent.name == "docs" else "results.json")
    results.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    print(f"wrote {path} and {results}")


MARK = "<!-- generated by `make bench` (bench/run.py) below this line -->"
TITLE = "# Benchmarks\n\n"
PAGE = """
## Last run

Run {started} in {took} min ({rounds} rounds) on {machine}; Python {python}; {versions}; commit {rev}.
Load average (1 min) at start {load_start}, at end {load_end} (the machine is shared: absolute
times vary, the ratios compare figures taken in the same run under the same load).

Each figure is the median of the rounds with their range (min-max). A target is **met** when every round
meets it, **NOT met** when the median of the rounds misses it, **unsettled** otherwise.

{table}

Notes:
{notes}

Reproduce: `make bench` (writes .run/bench/); `make bench-update-docs` rewrites this section.
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer repetitions and one round (a smoke run)")
    ap.add_argument("--rounds", type=int, default=None, help="rounds of every step (default 3; --quick: 1)")
    ap.add_argument("--out", type=Path, default=ROOT / ".run" / "bench" / "benchmarks.md")
    ap.add_argument("--only", default="refresh,scrapes,memory,serving,idle,sizing")
    args = ap.parse_args()
    rounds = args.rounds or (1 if args.quick else 3)
    workdir = ROOT / ".run" / "bench"
    workdir.mkdir(parents=True, exist_ok=True)
    started = datetime.now(UTC)
    t0 = time.monotonic()
    load0 = f"{os.getloadavg()[0]:.1f}"
    res = Results()
    print("generating the answers (100,000 pods take ~30 s) ...", flush=True)
    stub = Stub(PODS if "memory" in args.only or "serving" in args.only else 0)
    # the presets' pods come from a stub of their own, so the 100,000-pod figures keep their answer
    presets = sizing_presets().values()
    sizing_stub = stub
    if "sizing" in args.only:
        warm = ",".join(str(p["namespaces"]) for p in presets)
        sizing_stub = Stub(max(p["pods"] for p in presets), warm)
    steps: dict[str, Callable[[], Any]] = {
        "refresh": lambda: bench_refresh(stub, res, args.quick),
        "scrapes": lambda: bench_scrapes(stub, res, args.quick, workdir),
        "memory": lambda: bench_memory(stub, res),
        "serving": lambda: bench_serving(stub, res),
        "idle": lambda: bench_idle(stub, res),
        "sizing": lambda: bench_sizing(sizing_stub, res, workdir),
    }
    try:
        for r in range(rounds):
            round_start = time.monotonic()
            print(f"== round {r + 1} of {rounds}", flush=True)
            for name in args.only.split(","):
                steps[name]()
            took = time.monotonic() - round_start
            if r + 1 < rounds:
                print(f"== round {r + 1} took {took:.0f} s; about {took * (rounds - r - 1):.0f} s to go", flush=True)
    finally:
        stub.close()
        if sizing_stub is not stub:
            sizing_stub.close()
    meta = {
        "started": started.strftime("%Y-%m-%d %H:%M UTC"),
        "took": f"{(time.monotonic() - t0) / 60:.1f}",
        "rounds": str(rounds),
        "machine": machine(),
        "python": platform.python_version(),
        "versions": versions(),
        "rev": git_rev(),
        "load_start": load0,
        "load_end": f"{os.getloadavg()[0]:.1f}",
    }
    write(args.out, res, meta)
    verdicts = res.verdicts()
    missed = {what: v for what, v in verdicts.items() if v in ("NOT met", "unsettled")}
    for what, v in missed.items():
        print(f"target {v}: {what}", file=sys.stderr)
    met = sum(v == "met" for v in verdicts.values())
    print(f"{met} of {met + len(missed)} targets met across {rounds} rounds", flush=True)
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
