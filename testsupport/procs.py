"""Local processes for the e2e layers and `make demo`: tools, ports, start/wait/stop, logs.

Generic on purpose (nothing here knows about Thanos or the exporter; `testsupport.pipeline` does):

* `require_tool(name)` finds a binary in `PATH`, then `$KCI_CACHE/bin`; a missing one raises `ToolMissing`
  naming it and saying "run make tools" (tests fail on it, never skip).
* `Ports` hands out free loopback ports (never the same one twice in a run) or checks fixed ones, raising
  `PortInUse` with the port, what wanted it and what to do.
* `ProcessGroup` starts each process in its own session with stdout+stderr in `<workdir>/logs/<name>.log`,
  waits for readiness while watching the process (an early exit fails at once with the log tail), and stops
  everything it started — SIGTERM to each process group in reverse order, SIGKILL after a grace period.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from testsupport.render import kci_cache

T = TypeVar("T")


class ToolMissing(RuntimeError):
    """A binary the run needs is not installed."""


class PortInUse(RuntimeError):
    """A loopback port the run needs is taken."""


class StartupError(RuntimeError):
    """A process exited early or never became ready; the message carries its log tail."""


#: `scripts/tools.sh` names of the binaries it installs under another name (the others share theirs).
TOOL_OF_BINARY = {
    "prometheus": "prometheus3",
    "promtool": "prometheus3",
    "kube-apiserver": "kube_control_plane",
    "kube-controller-manager": "kube_control_plane",
    "kube-scheduler": "kube_control_plane",
    "kwokctl": "kwok",
    "helm-docs": "helm_docs",
    "renovate-config-validator": "renovate",
}


def tools_hint(binary: str) -> str:
    """What to run for a missing binary: its tool alone takes minutes, `make tools` builds every tool (about
    20 minutes cold and needs npm), so a reader who only wants the demo or one layer should not be sent there."""
    return f"run `scripts/tools.sh {TOOL_OF_BINARY.get(binary, binary)}` (this tool alone) or `make tools` (every tool)"


def require_tool(name: str, extra_dirs: Sequence[Path | str] = (), hint: str | None = None) -> str:
    """Absolute path of `name` from PATH, `$KCI_CACHE/bin` or `extra_dirs`; else `ToolMissing`."""
    cache_bin = kci_cache() / "bin"
    found = shutil.which(name)
    if found:
        return found
    for d in (cache_bin, *map(Path, extra_dirs)):
        cand = Path(d) / name
        if cand.is_file() and os.access(cand, os.X_OK):
            return str(cand)
    raise ToolMissing(f"required tool {name!r} not found in PATH or {cache_bin}: {hint or tools_hint(name)}")


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


class Ports:
    """Loopback ports for one run: `free(what)` picks an unused one, `fixed(port, what)` checks a given one."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.taken: dict[int, str] = {}

    def free(self, what: str) -> int:
        for _ in range(50):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.bind((self.host, 0))
                port = int(s.getsockname()[1])
            if port not in self.taken:
                self.taken[port] = what
                return port
        raise PortInUse(f"could not find a free port on {self.host} for {what}")

    def fixed(self, port: int, what: str, hint: str = "") -> int:
        if port in self.taken:
            raise PortInUse(f"port {port} is configured twice: for {self.taken[port]} and for {what}")
        if not port_is_free(port, self.host):
            raise PortInUse(
                f"port {port} on {self.host} (for {what}) is already in use by another process"
                + (f"; {hint}" if hint else "")
            )
        self.taken[port] = what
        return port


@dataclass
class Proc:
    name: str
    argv: list[str]
    popen: subprocess.Popen[bytes]
    log_path: Path

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


def http_get(url: str, timeout: float = 5.0, headers: Mapping[str, str] | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, headers=dict(headers or {}))
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return int(r.status), r.read()
    except urllib.error.HTTPError as err:
        return int(err.code), err.read()


def http_json(url: str, body: Any = None, timeout: float = 10.0) -> Any:
    """GET (or POST `body` as JSON) and parse the JSON answer; HTTP errors raise."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(
        url, data, {"Content-Type": "application/json"} if data else {}, method="POST" if data is not None else "GET"
    )
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read())


def wait_until(
    check: Callable[[], T | None],
    timeout: float,
    what: str,
    *,
    interval: float = 0.25,
    procs: Sequence[Proc] = (),
    on_wait: Callable[[float], None] | None = None,
) -> T:
    """Poll `check` until it returns a truthy value; fail early if one of `procs` exits, late on timeout."""
    start = time.monotonic()
    last_err: BaseException | None = None
    while True:
        for p in procs:
            if not p.alive():
                raise StartupError(
                    f"{p.name} exited with code {p.popen.returncode} while waiting for {what}; "
                    f"last lines of {p.log_path}:\n{p.tail()}"
                )
        try:
            value = check()
            if value:
                return value
        except (OSError, ValueError) as err:  # connection refused, bad JSON while starting, ...
            last_err = err
        elapsed = time.monotonic() - start
        if elapsed > timeout:
            detail = f" (last error: {last_err})" if last_err else ""
            logs = "".join(f"\nlast lines of {p.log_path}:\n{p.tail()}" for p in procs)
            raise StartupError(f"timed out after {timeout:.0f}s waiting for {what}{detail}{logs}")
        if on_wait:
            on_wait(elapsed)
        time.sleep(interval)


@dataclass
class ProcessGroup:
    """Every process of one run; `stop_all()` (or leaving the `with` block) ends them all."""

    workdir: Path
    procs: list[Proc] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.workdir = Path(self.workdir)
        (self.workdir / "logs").mkdir(parents=True, exist_ok=True)

    def __enter__(self) -> ProcessGroup:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()

    def start(
        self, name: str, argv: Sequence[str], env: Mapping[str, str] | None = None, cwd: Path | str | None = None
    ) -> Proc:
        log_path = self.workdir / "logs" / f"{name}.log"
        full_env = dict(os.environ)
        full_env.update(env or {})
        with open(log_path, "ab") as log:
            log.write(f"$ {' '.join(argv)}\n".encode())
            log.flush()
            try:
                popen = subprocess.Popen(
                    list(argv),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=full_env,
                    cwd=str(cwd) if cwd else None,
                    start_new_session=True,
                )
            except FileNotFoundError as err:
                raise ToolMissing(f"cannot run {argv[0]!r} for {name}: {err.strerror}; run `make tools`") from err
        proc = Proc(name, list(argv), popen, log_path)
        self.procs.append(proc)
        return proc

    def wait_http(
        self,
        proc: Proc,
        url: str,
        timeout: float = 60.0,
        ok: Callable[[int, bytes], bool] = lambda status, _body: status == 200,
    ) -> None:
        """Wait until GET `url` satisfies `ok`, failing early if `proc` exits."""
        wait_until(lambda: ok(*http_get(url, timeout=2.0)), timeout, f"{proc.name} at {url}", procs=[proc])

    def check_alive(self) -> None:
        dead = [p for p in self.procs if not p.alive()]
        if dead:
            raise StartupError(
                "; ".join(
                    f"{p.name} exited with code {p.popen.returncode}; last lines of {p.log_path}:\n{p.tail()}"
                    for p in dead
                )
            )

    def stop_all(self, grace: float = 10.0) -> None:
        for p in reversed(self.procs):
            if p.alive():
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.popen.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for p in reversed(self.procs):
            try:
                p.popen.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.popen.pid, signal.SIGKILL)
                p.popen.wait(timeout=5)

    def logs_report(self, lines: int = 30) -> str:
        return "\n".join(f"----- {p.name} ({p.log_path}) -----\n{p.tail(lines)}" for p in self.procs)
