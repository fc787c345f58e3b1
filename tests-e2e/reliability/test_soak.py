"""Soak (`make soak`, marker `soak`, not part of `make test`): thousands of refresh cycles with random faults.

The exporter's own `serve()` (HTTP server + background refresher, `testsupport.soak_driver`) refreshes every 50 ms
against the Kubecost API simulator while this test switches a random fault (or none) every 0.1-0.6 s and scrapes
/metrics in between. Sampled from /proc every 2 s: RSS, threads, sockets, open fds. Passes when the process never
exits, at least `SOAK_MIN_CYCLES` refreshes ran, threads/sockets/fds end where they started (+2), and the RSS slope
over the second half (after warm-up) is under 1 MiB per 1000 cycles. The figures go to `soak.json` in the work dir
and to the terminal.

`SOAK_SECONDS` (default 300) and `SOAK_MIN_CYCLES` (default 2000) tune the length.
"""

from __future__ import annotations

import json
import os
import random
import statistics
import time
from pathlib import Path
from typing import Any

import pytest

from testsupport.faults import fd_count, rss_bytes, socket_count, start_sim_and_exporter, thread_count
from testsupport.procs import http_json

pytestmark = pytest.mark.soak

SECONDS = float(os.environ.get("SOAK_SECONDS", "300"))
MIN_CYCLES = int(os.environ.get("SOAK_MIN_CYCLES", "2000"))
REFRESH = 0.05
FAULTS: list[dict[str, Any]] = [
    {"mode": "none"},
    {"mode": "none"},
    {"mode": "none"},
    {"mode": "http500"},
    {"mode": "http4xx", "status": 403},
    {"mode": "http4xx", "status": 429},
    {"mode": "code500"},
    {"mode": "nonjson", "status": 200},
    {"mode": "nonjson", "status": 502},
    {"mode": "delay", "seconds": 0.5},
    {"mode": "empty", "shape": "[null]"},
    {"mode": "truncated"},
    {"mode": "reset"},
    {"mode": "huge", "size": 2 * 1024 * 1024},
]


def slope_per_x(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope of ys over xs."""
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den if den else 0.0


def test_thousands_of_refreshes_with_random_faults(tmp_path: Path) -> None:
    s = start_sim_and_exporter(
        tmp_path,
        env={
            "STALENESS_LIMIT": "2s",
            "REQUEST_TIMEOUT": "0.3s",
            "CONNECT_TIMEOUT": "0.3s",
            "MAX_RESPONSE_BYTES": str(1024 * 1024),
        },
        soak_refresh_seconds=REFRESH,
    )
    rng = random.Random(20261126)
    pid = s.exporter.popen.pid
    samples: list[dict[str, float]] = []
    faults_used: dict[str, int] = {}
    scrapes = 0
    try:
        time.sleep(2)
        start_state = http_json(f"{s.sim_url}/__sim__/state")
        base = {"threads": thread_count(pid), "sockets": socket_count(pid), "fds": fd_count(pid)}
        t0 = time.monotonic()
        next_sample = t0
        while time.monotonic() - t0 < SECONDS:
            fault = rng.choice(FAULTS)
            s.fault(**fault)
            faults_used[fault["mode"]] = faults_used.get(fault["mode"], 0) + 1
            until = time.monotonic() + rng.uniform(0.1, 0.6)
            while time.monotonic() < until:
                s.scrape()
                scrapes += 1
                time.sleep(0.05)
            assert s.exporter.alive(), f"exporter exited during the soak:\n{s.exporter.tail()}"
            if time.monotonic() >= next_sample:
                state = http_json(f"{s.sim_url}/__sim__/state")
                samples.append(
                    {
                        "t": time.monotonic() - t0,
                        "cycles": state["request_count"] - start_state["request_count"],
                        "rss": rss_bytes(pid),
                        "threads": thread_count(pid),
                        "sockets": socket_count(pid),
                        "fds": fd_count(pid),
                    }
                )
                next_sample += 2.0
        s.fault("none")
        time.sleep(1.0)  # let the last faulty refresh finish
        end = {"threads": thread_count(pid), "sockets": socket_count(pid), "fds": fd_count(pid)}
        final = s.scrape()
        cycles = http_json(f"{s.sim_url}/__sim__/state")["request_count"] - start_state["request_count"]
    finally:
        s.group.stop_all()
    half = [x for x in samples if x["t"] >= SECONDS / 2]
    slope_cycles = slope_per_x([x["cycles"] for x in half], [x["rss"] for x in half]) * 1000 / 2**20
    slope_minute = slope_per_x([x["t"] for x in half], [x["rss"] for x in half]) * 60 / 2**10
    report = {
        "seconds": SECONDS,
        "refresh_cycles": cycles,
        "scrapes": scrapes,
        "fault_switches": faults_used,
        "errors_by_reason": final.errors,
        "threads": {"start": base["threads"], "end": end["threads"], "max": max(x["threads"] for x in samples)},
        "sockets": {"start": base["sockets"], "end": end["sockets"], "max": max(x["sockets"] for x in samples)},
        "fds": {"start": base["fds"], "end": end["fds"], "max": max(x["fds"] for x in samples)},
        "rss_mib": {
            "first": round(samples[0]["rss"] / 2**20, 1),
            "last": round(samples[-1]["rss"] / 2**20, 1),
            "max": round(max(x["rss"] for x in samples) / 2**20, 1),
        },
        "rss_slope_second_half": {
            "mib_per_1000_cycles": round(slope_cycles, 3),
            "kib_per_minute": round(slope_minute, 1),
        },
    }
    text = json.dumps(report)
    (tmp_path / "soak.json").write_text(text + "\n")
    print(f"\nsoak: {text}")
    assert cycles >= MIN_CYCLES, report
    assert final.success == 1, report
    assert end["threads"] <= base["threads"] + 2, report
    assert end["sockets"] <= base["sockets"] + 2, report
    assert end["fds"] <= base["fds"] + 2, report
    assert slope_cycles < 1.0, report
