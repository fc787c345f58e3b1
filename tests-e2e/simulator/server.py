"""HTTP front of the Kubecost API simulator (a test double), with fault injection switchable at run time.

API routes (GET):
    /model/allocation, /model/allocation/compute     Kubecost (frontend `/model` prefix)
    /allocation, /allocation/compute                 OpenCost (same handler for both)
    /model/assets, /assets                           the Assets API beside each of them (never affected by faults,
                                                     not in the request log: switched by `assets` below)
    /model/savings/requestSizingV2                   Kubecost's request-sizing recommendations (simulator.savings;
                                                     like the assets, switched by `savings` below)
    /healthz                                         200 "ok"

Control routes (JSON in, JSON out; never affected by faults):
    POST /__sim__/fault    {"mode": "none"|"http500"|"http4xx"|"code500"|"nonjson"|"delay"|"empty"
                                     |"truncated"|"reset"|"huge",
                            "seconds": 5.0,        # delay mode: sleep, then answer normally
                            "status": 200,         # nonjson mode: HTTP status of the non-JSON body;
                                                   # http4xx mode: the 4xx status (default 403)
                            "size": 67108864,      # huge mode: bytes of the (valid JSON) answer
                            "shape": "[]"|"[{}]"|"[null]",   # empty mode: what `data` holds
                            "count": N}            # optional: only the next N API requests, then back to none
    POST /__sim__/config   {"scale": 2.0, "nan_namespaces": ["default"],   # cost multiplier; NaN RAM usage quirk
                            "assets": "present"|"absent"|"error",        # the Assets API (simulator.assets)
                            "assets_drift": 1.1,                          # Node assets 10 % above the allocations
                            "savings": "present"|"absent"|"error",       # the request-sizing API (simulator.savings)
                            "quirks": {"own_windows": true, "idle_hours": 3,  # window quirks (model.Quirks)
                                       "shift_hours": 24, "step_hours": 1, "empty_steps": [0, 2]}}
    GET  /__sim__/state    current fault, scale, request count
    GET  /__sim__/requests?limit=N   the last API requests (time, path, params, status), newest last
    POST /__sim__/reset    no fault, scale 1, no NaN namespaces, empty request log
"""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from simulator.assets import assets_query
from simulator.cluster import SyntheticCluster, default_cluster
from simulator.model import ApiError, Flavour, Quirks, allocation_query, envelope, utcnow
from simulator.savings import request_sizing

FAULT_MODES = ("none", "http500", "http4xx", "code500", "nonjson", "delay", "empty", "truncated", "reset", "huge")
# truncated: the real answer's headers (Content-Length of the whole body), half the body, then the connection closes.
# reset: the request is read, then the connection is closed with a TCP RST (SO_LINGER 0) and no answer at all.
# huge: the real answer padded to `size` bytes with a JSON string field, so it stays valid JSON.
EMPTY_SHAPES = {"[]": [], "[{}]": [{}], "[null]": [None]}
ROUTES = {
    "/model/allocation": Flavour.KUBECOST,
    "/model/allocation/compute": Flavour.KUBECOST_COMPUTE,
    "/allocation": Flavour.OPENCOST,
    "/allocation/compute": Flavour.OPENCOST,
}
#: The Assets API route beside each allocation route family (it exists where that family does).
ASSET_ROUTES = {"/model/assets": "/model/allocation", "/assets": "/allocation"}
#: Kubecost's request-sizing API (OpenCost has none).
SAVINGS_ROUTE = "/model/savings/requestSizingV2"
#: `--api` choices: which of the routes above exist (the others answer 404, as a different product would).
API_CHOICES = {
    "both": set(ROUTES),
    "kubecost": {"/model/allocation", "/model/allocation/compute"},
    "opencost": {"/allocation", "/allocation/compute"},
}


@dataclass
class Fault:
    mode: str = "none"
    seconds: float = 5.0
    status: int = 200
    shape: str = "[]"
    count: int | None = None
    size: int = 64 * 1024 * 1024

    @classmethod
    def parse(cls, body: Mapping[str, Any]) -> Fault:
        mode = str(body.get("mode", "none"))
        if mode not in FAULT_MODES:
            raise ValueError(f"mode must be one of {', '.join(FAULT_MODES)}")
        shape = str(body.get("shape", "[]"))
        if shape not in EMPTY_SHAPES:
            raise ValueError(f"shape must be one of {', '.join(EMPTY_SHAPES)}")
        count = body.get("count")
        status = int(body.get("status", 403 if mode == "http4xx" else 200))
        if mode == "http4xx" and not 400 <= status <= 499:
            raise ValueError("http4xx mode needs a status from 400 to 499")
        size = int(body.get("size", 64 * 1024 * 1024))
        if not 0 < size <= 1 << 31:
            raise ValueError("size must be from 1 to 2^31 bytes")
        return cls(mode, float(body.get("seconds", 5.0)), status, shape, None if count is None else int(count), size)


@dataclass
class SimulatorState:
    """Mutable run-time state, shared by the handler threads (guarded by `lock`)."""

    cluster: SyntheticCluster
    routes: set[str]
    scale: float = 1.0
    nan_namespaces: frozenset[str] = frozenset()
    quirks: Quirks = field(default_factory=Quirks)
    fault: Fault = field(default_factory=Fault)
    assets: str = "present"  # present | absent (404, an engine without one) | error (HTTP 500)
    assets_drift: float = 1.0
    savings: str = "present"  # present | absent (404) | error (HTTP 500)
    requests: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=500))
    request_count: int = 0
    in_flight: int = 0  # API requests being answered (their log entry is written after the answer)
    lock: threading.Lock = field(default_factory=threading.Lock)
    settled: threading.Condition = field(init=False)

    def __post_init__(self) -> None:
        self.settled = threading.Condition(self.lock)

    def take_fault(self) -> Fault:
        with self.lock:
            f = self.fault
            if f.count is not None and f.count <= 0:
                self.fault = Fault()
                return Fault()
            if f.count is not None:
                f.count -= 1
            return Fault(f.mode, f.seconds, f.status, f.shape, None, f.size)

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {
                "cluster": self.cluster.name,
                "routes": sorted(self.routes),
                "scale": self.scale,
                "nan_namespaces": sorted(self.nan_namespaces),
                "quirks": vars(self.quirks).copy(),
                "assets": self.assets,
                "assets_drift": self.assets_drift,
                "savings": self.savings,
                "fault": vars(self.fault).copy(),
                "request_count": self.request_count,
            }


class _Handler(BaseHTTPRequestHandler):
    server: SimulatorServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.verbose:
            super().log_message(format, *args)

    # -- plumbing
    def _send(self, status: int, body: bytes, ctype: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _reset(self) -> None:
        """Close the connection with a TCP RST and no answer (SO_LINGER on, 0 s)."""
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True
        self.connection.close()

    def _send_truncated(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[: len(body) // 2])
        self.wfile.flush()
        self.close_connection = True
        self.connection.shutdown(socket.SHUT_RDWR)

    def _send_huge(self, body: bytes, size: int) -> None:
        """`body` (a JSON object) with a padding field so the whole answer is `size` bytes, streamed in chunks."""
        head = body.rstrip().rstrip(b"}") + b',"padding":"'
        tail = b'"}\n'
        pad = max(0, size - len(head) - len(tail))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(head) + pad + len(tail)))
        self.end_headers()
        self.wfile.write(head)
        chunk = b"x" * (1 << 20)
        while pad > 0:
            n = min(pad, len(chunk))
            self.wfile.write(chunk[:n])
            pad -= n
        self.wfile.write(tail)

    def _json(self, status: int, obj: Any) -> None:
        self._send(status, json.dumps(obj, indent=1).encode() + b"\n")

    def _body(self) -> dict[str, Any]:
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b"{}"
        data = json.loads(raw or b"{}")
        if not isinstance(data, dict):
            raise ValueError("body must be a JSON object")
        return data

    # -- routes
    def do_GET(self) -> None:
        url = urlsplit(self.path)
        path = url.path.rstrip("/") or "/"
        state = self.server.state
        if path == "/healthz":
            self._send(200, b"ok\n", "text/plain")
        elif path == "/__sim__/state":
            self._json(200, state.snapshot())
        elif path == "/__sim__/requests":
            limit = int(dict(parse_qsl(url.query)).get("limit", "50"))
            with state.lock:
                # a client that already has its answer must find its request here: wait (briefly)
                # for the handler threads that answered to write their log entries
                state.settled.wait_for(lambda: state.in_flight == 0, timeout=2.0)
                items = list(state.requests)[-limit:]
            self._json(200, items)
        elif path in state.routes:
            self._allocation(ROUTES[path], path, url.query)
        elif path in ASSET_ROUTES and ASSET_ROUTES[path] in state.routes and state.assets != "absent":
            self._assets(ROUTES[ASSET_ROUTES[path]], url.query)
        elif path == SAVINGS_ROUTE and "/model/allocation" in state.routes and state.savings != "absent":
            self._savings(url.query)
        else:
            self._send(404, b"404 page not found\n", "text/plain; charset=utf-8")

    do_HEAD = do_GET

    def do_POST(self) -> None:
        path = urlsplit(self.path).path.rstrip("/")
        state = self.server.state
        try:
            body = self._body()
            if path == "/__sim__/fault":
                fault = Fault.parse(body)
                with state.lock:
                    state.fault = fault
            elif path == "/__sim__/config":
                with state.lock:
                    if "scale" in body:
                        scale = float(body["scale"])
                        if scale < 0:
                            raise ValueError("scale must be >= 0")
                        state.scale = scale
                    if "nan_namespaces" in body:
                        state.nan_namespaces = frozenset(str(n) for n in body["nan_namespaces"])
                    if "quirks" in body:
                        state.quirks = Quirks.parse(body["quirks"])
                    if "assets" in body:
                        if body["assets"] not in ("present", "absent", "error"):
                            raise ValueError("assets must be present, absent or error")
                        state.assets = str(body["assets"])
                    if "assets_drift" in body:
                        state.assets_drift = float(body["assets_drift"])
                    if "savings" in body:
                        if body["savings"] not in ("present", "absent", "error"):
                            raise ValueError("savings must be present, absent or error")
                        state.savings = str(body["savings"])
            elif path == "/__sim__/reset":
                with state.lock:
                    state.fault, state.scale, state.nan_namespaces = Fault(), 1.0, frozenset()
                    state.quirks = Quirks()
                    state.assets, state.assets_drift, state.savings = "present", 1.0, "present"
                    state.requests.clear()
            else:
                self._send(404, b"404 page not found\n", "text/plain; charset=utf-8")
                return
        except (ValueError, TypeError) as err:
            self._json(400, {"error": str(err)})
            return
        self._json(200, state.snapshot())

    def _assets(self, flavour: Flavour, query: str) -> None:
        state = self.server.state
        with state.lock:
            scale, quirks, mode, drift = state.scale, state.quirks, state.assets, state.assets_drift
        try:
            if mode == "error":
                self._send(500, envelope(None, 500, "Error: asset ETL not available (assets error)"))
                return
            try:
                data = assets_query(
                    state.cluster, dict(parse_qsl(query)), flavour, utcnow(), scale=scale, drift=drift, quirks=quirks
                )
            except ApiError as err:
                self._send(err.status, envelope(None, err.status, err.message))
                return
            self._send(200, envelope(data))
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up

    def _savings(self, query: str) -> None:
        state = self.server.state
        with state.lock:
            scale, mode = state.scale, state.savings
        try:
            if mode == "error":
                self._send(500, envelope(None, 500, "Error: request sizing not available (savings error)"))
                return
            try:
                answer = request_sizing(state.cluster, dict(parse_qsl(query, keep_blank_values=True)), scale=scale)
            except ApiError as err:
                self._send(err.status, envelope(None, err.status, err.message))
                return
            self._json(200, answer)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up

    def _allocation(self, flavour: Flavour, path: str, query: str) -> None:
        state = self.server.state
        params = dict(parse_qsl(query, keep_blank_values=True))
        fault = state.take_fault()
        with state.lock:
            state.request_count += 1
            state.in_flight += 1
            scale, nan_ns, quirks = state.scale, state.nan_namespaces, state.quirks
        status = 200
        try:
            if fault.mode == "delay":
                time.sleep(fault.seconds)
            if fault.mode == "http500":
                status = 500
                self._send(500, envelope(None, 500, "Error: simulated internal error (fault http500)"))
            elif fault.mode == "http4xx":
                status = fault.status
                self._send(status, envelope(None, status, f"Error: simulated client error (fault http4xx {status})"))
            elif fault.mode == "reset":
                status = 0
                self._reset()
            elif fault.mode in ("truncated", "huge"):
                result = allocation_query(
                    state.cluster, params, flavour, utcnow(), scale=scale, nan_namespaces=nan_ns, quirks=quirks
                )
                body = envelope(result.json_data())
                if fault.mode == "truncated":
                    status = 206  # logged as "partial": the client saw a 200 with half the body
                    self._send_truncated(body)
                else:
                    self._send_huge(body, fault.size)
            elif fault.mode == "code500":
                self._send(200, envelope(None, 500, "Error: error accumulating allocation set range (fault code500)"))
            elif fault.mode == "nonjson":
                status = fault.status
                html = (
                    f"<html><head><title>{status} upstream error</title></head><body><center><h1>"
                    "upstream request timeout</h1></center><hr><center>nginx</center></body></html>\n"
                )
                self._send(status, html.encode(), "text/html")
            elif fault.mode == "empty":
                self._send(200, envelope(EMPTY_SHAPES[fault.shape]))
            else:
                result = allocation_query(
                    state.cluster, params, flavour, utcnow(), scale=scale, nan_namespaces=nan_ns, quirks=quirks
                )
                self._send(200, envelope(result.json_data()))
        except ApiError as err:
            status = err.status
            if err.plain:
                self._send(err.status, (err.message + "\n").encode(), "text/plain; charset=utf-8")
            else:
                self._send(err.status, envelope(None, err.status, err.message))
        except (BrokenPipeError, ConnectionResetError):
            status = 499  # the client gave up (e.g. its read timeout during a delay fault)
        finally:
            with state.lock:
                state.requests.append(
                    {
                        "time": time.time(),
                        "path": path,
                        "params": params,
                        "status": status,
                        "fault": fault.mode,
                        "scale": scale,
                    }
                )
                state.in_flight -= 1
                state.settled.notify_all()


class SimulatorServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], state: SimulatorState, verbose: bool = False) -> None:
        self.state = state
        self.verbose = verbose
        super().__init__(address, _Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"


def serve(
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    cluster: SyntheticCluster | None = None,
    api: str = "both",
    scale: float = 1.0,
    verbose: bool = False,
) -> SimulatorServer:
    """Bind (port 0 = any free port) and return the server; call `serve_forever()` or run it in a thread."""
    state = SimulatorState(cluster=cluster or default_cluster(), routes=set(API_CHOICES[api]), scale=scale)
    return SimulatorServer((host, port), state, verbose)
