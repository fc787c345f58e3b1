"""`make demo`'s program as a newcomer runs it (README "Try it here"): `tests-e2e/demo.py --free-ports`, started
directly (its shebang re-executes it with the cache venv), prints costs read back from Thanos and exits 0, stopping
every process it started; with one of its fixed ports taken and no flag, it says so and moves to free ports. And
`make demo-up`'s printed URLs and commands, run as printed."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from testsupport.procs import http_get, http_json

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "tests-e2e" / "demo.py"
#: One of the demo's fixed ports (Thanos Query's HTTP port in tests-e2e/demo.py).
FIXED_PORT = 19902


def run_demo(workdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(DEMO), "--workdir", str(workdir), *args],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env={k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")},
    )


def assert_costs_printed_and_nothing_left(out: subprocess.CompletedProcess[str], workdir: Path) -> None:
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert re.search(r"data landed in Thanos [\d.]+s after the agent started", out.stdout)
    assert "Costs for cluster 'prod-eu-1', tenant 'acme' — read back from Thanos Query" in out.stdout
    # the simulator's default namespaces, each with a cost, and the cluster lines
    for namespace in ("kube-system", "default", "kubecost"):
        assert re.search(rf"^\s*{namespace}\s+\d+\.\d+", out.stdout, re.M), namespace
    assert re.search(r"demo finished in \d+s \(tools and venv not counted\): stopping everything", out.stdout)
    # Thanos and Prometheus keep their data under the work dir (with --free-ports a new dir beside it): none may remain
    leftover = subprocess.run(
        ["pgrep", "-f", str(workdir.parent)], capture_output=True, text=True, check=False
    ).stdout.split()
    assert leftover == [], f"processes of the demo still running: {leftover}"


def test_demo_with_free_ports_prints_costs_and_stops_everything(tmp_path: Path) -> None:
    out = run_demo(tmp_path / "demo", "--free-ports")
    assert_costs_printed_and_nothing_left(out, tmp_path / "demo")
    assert "demo: listening on (free ports):" in out.stdout


def test_a_busy_fixed_port_moves_the_demo_to_free_ports(tmp_path: Path) -> None:
    holder = socket.socket()
    try:
        try:
            holder.bind(("127.0.0.1", FIXED_PORT))
            holder.listen()
        except OSError:
            pass  # already taken by someone else on this machine: busy either way
        out = run_demo(tmp_path / "demo")
    finally:
        holder.close()
    assert re.search(rf"demo: ports already in use: .*{FIXED_PORT} .*using free ports instead", out.stdout)
    assert_costs_printed_and_nothing_left(out, tmp_path / "demo")


def test_demo_up_prints_urls_that_answer_and_commands_that_work(tmp_path: Path) -> None:
    """`make demo-up` as the README has a newcomer use it: every URL it prints answers, its `verify` command passes
    as printed, and its simulator fault is switched off again by the command printed beside it."""
    workdir = tmp_path / "demo"
    output = tmp_path / "demo-up.out"
    with output.open("w") as out:
        proc = subprocess.Popen(
            [str(DEMO), "--workdir", str(workdir), "--keep-running", "--free-ports"],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")},
        )
    try:
        deadline = time.monotonic() + 300
        # The running block is one print and one flush: once its "Simulator scale" line is there, all of it is
        while "  Simulator scale:" not in output.read_text():
            assert proc.poll() is None, output.read_text()[-3000:]
            assert time.monotonic() < deadline, output.read_text()[-3000:]
            time.sleep(0.5)
        time.sleep(0.5)
        block = output.read_text()
        block = block[block.index("Everything is running") :]
        urls = re.findall(r"^  [A-Z][A-Za-z /]+?\s{2,}(http://\S+)", block, re.M)
        assert len(urls) == 5, block
        for url in urls:
            status, _ = http_get(url)
            assert status == 200, f"{url} answered {status}"

        verify = re.search(r"^  Check every link:\s+(.+?verify \\\n(?:.*\\\n)*.*)$", block, re.M)
        assert verify, f"no verify command printed:\n{block}"
        argv = shlex.split(verify.group(1).replace("\\\n", " "))
        checked = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
        assert checked.returncode == 0, checked.stdout + checked.stderr

        posts = dict(re.findall(r"^  (Simulator faults|Undo[^:]*):\s+curl -XPOST (\S+.*)$", block, re.M))
        assert set(posts) == {"Simulator faults", "Undo both"}, block
        sim = urls[-1]
        for what, expected in (("Simulator faults", 500), ("Undo both", 200)):
            url, _, body = posts[what].partition(" -d ")
            http_json(url, json.loads(body.strip("'")) if body else {})
            assert http_get(sim)[0] == expected, what
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=120)
        finally:
            proc.kill()


def test_a_missing_tool_is_named_in_one_line_with_the_command_that_builds_it(tmp_path: Path) -> None:
    """The README: "A missing tool is named in one line". The line says how to build that tool alone (minutes), not
    only `make tools` (every tool, about 20 minutes cold, and npm)."""
    empty = tmp_path / "cache"
    (empty / "bin").mkdir(parents=True)
    path = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep) if not shutil.which("thanos", path=p))
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    # the demo's own venv stays (it re-executes itself with it); only the tools' cache is empty
    env.update(KCI_CACHE=str(empty), KCI_VENV=os.environ.get("KCI_VENV") or sys.prefix, PATH=path)
    out = subprocess.run(
        [str(DEMO), "--workdir", str(tmp_path / "demo"), "--free-ports"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )
    assert out.returncode == 1, out.stdout + out.stderr
    (line,) = out.stderr.strip().splitlines()
    built = re.fullmatch(r"demo: error: required tool 'thanos' not found .*: run `scripts/tools.sh (\S+)`.*", line)
    assert built, line
    listed = subprocess.run(
        [str(ROOT / "scripts" / "tools.sh"), "--list"], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    assert built.group(1) in {row.split()[0] for row in listed.splitlines()}, listed
