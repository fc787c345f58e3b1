"""Kubecost-shaped Allocation API answers for the benchmark, served from a local HTTP server.

Run as its own process (so its work does not share a GIL with what is measured):

    python bench/kubecost_stub.py --port 0 --pods 100000

Paths select the size: `/n<N>/model/allocation` answers `aggregate=namespace` with N namespaces
(plus one `__idle__` row) and `aggregate=namespace,pod` with the pods (spread over 1,000
namespaces), honouring Kubecost 2.x `offset`/`limit` (rows sorted by totalCost, descending).
`/v<N>/...` is the same but one value changes on every request (defeats snapshot reuse).
`/<x><N>-p<M>/...` serves only the M most expensive pods (the sizing presets' pod counts from one stub).
The first line on stdout is the port.
"""

from __future__ import annotations

import argparse
import contextlib
import random
import re
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson

_HEAD = re.compile(r"([nvz])(\d+)(?:-p(\d+))?")
WINDOW = {"start": "2026-11-26T16:00:00Z", "end": "2026-11-26T17:00:00Z"}


def allocation(name: str, namespace: str, rnd: random.Random, extra: dict[str, Any]) -> dict[str, Any]:
    """One allocation row with every field Kubecost 2.x returns (values rounded to 5 decimals)."""
    cpu_req = round(rnd.uniform(0.05, 4.0), 5)
    cpu_use = round(cpu_req * rnd.uniform(0.05, 1.3), 5)
    ram_req = float(int(rnd.uniform(64, 8192)) * 1_048_576)
    ram_use = float(int(ram_req * rnd.uniform(0.1, 1.2)))
    cpu_cost = round(cpu_req * 0.0316, 5)
    ram_cost = round(ram_req / 1e9 * 0.0042, 5)
    pv_cost = round(rnd.choice((0.0, 0.0, rnd.uniform(0, 0.01))), 5)
    net_cost = round(rnd.uniform(0, 0.002), 5)
    cpu_adj = round(-cpu_cost * rnd.uniform(0, 0.1), 5)
    ram_adj = round(-ram_cost * rnd.uniform(0, 0.1), 5)
    total = round(cpu_cost + cpu_adj + ram_cost + ram_adj + pv_cost + net_cost, 5)
    cpu_eff = round(cpu_use / cpu_req, 5)
    ram_eff = round(ram_use / ram_req, 5)
    cc, rc = cpu_cost + cpu_adj, ram_cost + ram_adj
    tot_eff = round((cpu_eff * cc + ram_eff * rc) / (cc + rc), 5) if cc + rc else 0.0
    props: dict[str, Any] = {
        "cluster": "bench-cluster",
        "namespace": namespace,
        "namespaceLabels": {
            "kubernetes_io_metadata_name": namespace,
            "team": f"team-{rnd.randint(1, 40)}",
        },
    }
    props.update(extra)
    return {
        "name": name,
        "properties": props,
        "window": WINDOW,
        "start": WINDOW["start"],
        "end": WINDOW["end"],
        "minutes": 60.0,
        "cpuCores": cpu_req,
        "cpuCoreRequestAverage": cpu_req,
        "cpuCoreUsageAverage": cpu_use,
        "cpuCoreHours": cpu_req,
        "cpuCost": cpu_cost,
        "cpuCostAdjustment": cpu_adj,
        "cpuCostIdle": 0.0,
        "cpuEfficiency": cpu_eff,
        "gpuCount": 0,
        "gpuRequestAverage": 0,
        "gpuUsageAverage": 0,
        "gpuHours": 0,
        "gpuCost": 0.0,
        "gpuCostAdjustment": 0.0,
        "gpuCostIdle": 0,
        "gpuEfficiency": 0,
        "networkTransferBytes": float(rnd.randint(0, 10**9)),
        "networkReceiveBytes": float(rnd.randint(0, 10**8)),
        "networkCost": net_cost,
        "networkCrossZoneCost": round(net_cost * 0.6, 5),
        "networkCrossRegionCost": 0,
        "networkInternetCost": round(net_cost * 0.4, 5),
        "networkCostAdjustment": 0.0,
        "loadBalancerCost": 0.0,
        "loadBalancerCostAdjustment": 0.0,
        "pvBytes": 0,
        "pvByteHours": 0,
        "pvCost": pv_cost,
        "pvs": None,
        "pvCostAdjustment": 0.0,
        "ramBytes": ram_req,
        "ramByteRequestAverage": ram_req,
        "ramByteUsageAverage": ram_use,
        "ramByteHours": ram_req,
        "ramCost": ram_cost,
        "ramCostAdjustment": ram_adj,
        "ramCostIdle": 0.0,
        "ramEfficiency": ram_eff,
        "externalCost": 0.0,
        "sharedCost": 0.0,
        "totalCost": total,
        "totalEfficiency": tot_eff,
        "rawAllocationOnly": None,
        "proportionalAssetResourceCosts": {},
        "lbAllocations": None,
        "sharedCostBreakdown": {},
    }


def idle_row(rnd: random.Random) -> dict[str, Any]:
    row = allocation("__idle__", "", rnd, {})
    row["properties"] = {"cluster": "bench-cluster"}
    return row


def namespace_rows(n: int, seed: int = 1) -> list[tuple[str, dict[str, Any]]]:
    rnd = random.Random(seed)
    rows = [(f"ns-{i:05d}", allocation(f"ns-{i:05d}", f"ns-{i:05d}", rnd, {})) for i in range(n)]
    rows.append(("__idle__", idle_row(rnd)))
    return rows


def pod_rows(n: int, namespaces: int = 1000, seed: int = 2) -> list[tuple[str, dict[str, Any]]]:
    """`aggregate=namespace,pod` rows, sorted by totalCost descending (Kubecost's paging order)."""
    rnd = random.Random(seed)
    rows = []
    for i in range(n):
        ns = f"ns-{i % namespaces:05d}"
        pod = f"app-{i // namespaces:04d}-{rnd.getrandbits(40):010x}"
        key = f"{ns}/{pod}"
        rows.append((key, allocation(key, ns, rnd, {"pod": pod, "node": f"node-{i % 300}"})))
    rows.sort(key=lambda kv: -kv[1]["totalCost"])
    return rows


def envelope(rows: list[tuple[str, dict[str, Any]]]) -> bytes:
    return orjson.dumps({"code": 200, "data": [dict(rows)]})


class Stub:
    def __init__(self, pods: int) -> None:
        self.ns_rows: dict[int, list[tuple[str, dict[str, Any]]]] = {}
        self.ns_body: dict[int, bytes] = {}
        self.ns_sorted: dict[int, list[tuple[str, dict[str, Any]]]] = {}
        self.pods = pod_rows(pods) if pods else []
        self.counter = 0
        self.lock = threading.Lock()
        self.requests = 0

    def namespaces(self, n: int, vary: bool, null: bool = False) -> bytes:
        if n not in self.ns_rows:
            self.ns_rows[n] = namespace_rows(n)
            self.ns_body[n] = envelope(self.ns_rows[n])
        if not vary:
            return self.ns_body[n]
        with self.lock:
            self.counter += 1
            c = self.counter
        rows = self.ns_rows[n]
        key, first = rows[0]
        changed = dict(first, networkReceiveBytes=float(c))  # a field the exporter does not export
        if null:
            changed["gpuCostAdjustment"] = None  # one null: the exporter's general path
        return orjson.dumps({"code": 200, "data": [{key: changed, **dict(rows[1:])}]})

    def namespaces_page(self, n: int, vary: bool, offset: int, limit: int, null: bool = False) -> bytes:
        """A page of the namespace answer: rows by totalCost descending, the `__idle__` row in
        every page (the worst case for the client)."""
        if n not in self.ns_rows:
            self.namespaces(n, False)
        rows = self.ns_rows[n]
        ranked = self.ns_sorted.get(n)
        if ranked is None:
            # rows re-allocated in page order: serializing dicts scattered across memory (the API
            # order they were built in) costs orjson twice the time per byte, which would count
            # against the paging client and not against the one-request baseline
            ranked = self.ns_sorted[n] = [
                (k, orjson.loads(orjson.dumps(v))) for k, v in sorted(rows[:-1], key=lambda kv: -kv[1]["totalCost"])
            ]
        page = ranked[offset : offset + limit]
        if vary and page:
            with self.lock:
                self.counter += 1
                c = self.counter
            key, first = page[0]
            changed = dict(first, networkReceiveBytes=float(c))
            if null:
                changed["gpuCostAdjustment"] = None  # one null: the exporter's general path
            page = [(key, changed), *page[1:]]
        return envelope([*page, rows[-1]])

    def pods_page(self, offset: int, limit: int | None, pods: int | None = None) -> bytes:
        end = len(self.pods) if pods is None else min(pods, len(self.pods))
        rows = self.pods[offset:end] if limit is None else self.pods[offset : min(offset + limit, end)]
        return envelope(rows)


class Handler(BaseHTTPRequestHandler):
    server: Server
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms delayed-ACK stalls

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        q = {k: v[0] for k, v in parse_qs(parts.query).items()}
        stub = self.server.stub
        # /n<N>: fixed answer; /v<N>: changes every request; /z<N>: changes and has one null; -p<M>: M pods.
        # Only the Allocation API: the exporter's Assets API query finds none (404, not counted).
        head = _HEAD.fullmatch(parts.path.strip("/").split("/")[0])
        if head is None or not parts.path.rstrip("/").endswith("/allocation"):
            self.send_error(404)
            return
        kind, n = head.group(1), int(head.group(2))
        stub.requests += 1
        agg = q.get("aggregate", "namespace")
        if agg.endswith(",pod"):
            limit = int(q["limit"]) if q.get("limit") else None
            pods = int(head.group(3)) if head.group(3) else None
            body = stub.pods_page(int(q.get("offset") or 0), limit, pods)
        elif q.get("limit"):
            offset, limit = int(q.get("offset") or 0), int(q["limit"])
            body = stub.namespaces_page(n, kind != "n", offset, limit, null=kind == "z")
        else:
            body = stub.namespaces(n, kind != "n", null=kind == "z")
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class Server(ThreadingHTTPServer):
    daemon_threads = True
    stub: Stub


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--pods", type=int, default=0)
    ap.add_argument("--warm", default="", help="comma list of namespace counts to pre-generate")
    args = ap.parse_args()
    server = Server(("127.0.0.1", args.port), Handler)
    server.stub = Stub(args.pods)
    for n in filter(None, args.warm.split(",")):
        server.stub.namespaces(int(n), False)
    print(server.server_address[1], flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
