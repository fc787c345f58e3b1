"""Hostile Allocation API answers, for the memory and deadline tests of the exporter process.

Run as its own process (the answers are large; generating them must not count against the exporter):

    python bench/hostile_stub.py [--port 0] [--only usual62,multi31,...]

The first line on stdout is the port. Paths (every answer repeats on every request):

    /usual62/model/allocation    ~62 MB answer of the usual Kubecost 2.x shape (~44,000 namespace rows);
                                 honours offset/limit like Kubecost 2.x (rows by totalCost, __idle__ in
                                 every page), so the exporter reads it in pages
    /whole62/model/allocation    the same rows, ignoring offset/limit: one ~62 MB answer
    /multi31/model/allocation    ~31 MB `aggregate=cluster,namespace` answer of 40 clusters, paging ignored
    /minimal1m/model/allocation  1,000,000 minimal rows (`"ns-0000001":{"totalCost":0.1}`), ~27 MB,
                                 paging ignored
    /endless/model/allocation    HTTP 200, chunked, a JSON object that never ends
    /html50/model/allocation     a 50 MB HTML page with HTTP 200 (`/html50-502/...`: with HTTP 502)
    /drip/model/allocation       a valid small answer sent one byte every 0.2 s (never slow enough for a
                                 read timeout)
    /worst/model/allocation      the worst case the default limits allow: one answer just under 32 MiB
                                 with 149,000 rows of eight numbers each (paging ignored); one value
                                 changes on every request, so every refresh rebuilds the snapshot
    /worstpaged/model/allocation the same rows, honouring offset/limit
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import contextlib

from bench.kubecost_stub import allocation, idle_row

USUAL_ROWS = 44_000
MULTI_CLUSTERS, MULTI_NAMESPACES = 40, 550
MINIMAL_ROWS = 1_000_000
WORST_ROWS = 149_000


def usual_rows() -> list[tuple[str, dict[str, Any]]]:
    rnd = random.Random(5)
    rows = [(f"ns-{i:06d}", allocation(f"ns-{i:06d}", f"ns-{i:06d}", rnd, {})) for i in range(USUAL_ROWS)]
    rows.sort(key=lambda kv: -kv[1]["totalCost"])
    return rows


def multi_body() -> bytes:
    rnd = random.Random(6)
    rows: dict[str, Any] = {}
    for c in range(MULTI_CLUSTERS):
        cluster = f"cluster-{c:02d}"
        for n in range(MULTI_NAMESPACES):
            key = f"{cluster}/ns-{n:04d}"
            row = allocation(key, f"ns-{n:04d}", rnd, {"cluster": cluster})
            rows[key] = row
        idle = idle_row(rnd)
        idle["properties"] = {"cluster": cluster}
        rows[f"{cluster}/__idle__"] = idle
    return orjson.dumps({"code": 200, "data": [rows]})


def minimal_body() -> bytes:
    parts = [b'{"code":200,"data":[{']
    parts.append(b",".join(b'"ns-%07d":{"totalCost":0.1}' % i for i in range(MINIMAL_ROWS)))
    parts.append(b"}]}")
    return b"".join(parts)


def worst_rows() -> list[bytes]:
    """Rows of eight numbers (no window: taken as the requested one), ~200 bytes of JSON each."""
    fields = ("totalCost", "cpuCost", "ramCost", "cpuEfficiency", "ramEfficiency", "minutes",
              "cpuCoreUsageAverage", "cpuCoreRequestAverage")  # fmt: skip
    out = []
    for i in range(WORST_ROWS):
        values = ",".join(f'"{f}":{(i % 997) / 7 + j / 3:.4f}' for j, f in enumerate(fields))
        out.append(f'"n{i:07d}":{{{values}}}'.encode())
    return out


class Answers:
    def __init__(self, only: set[str]) -> None:
        self.usual = usual_rows() if only & {"usual62", "whole62"} else []
        self.idle = idle_row(random.Random(7))
        self.whole = (
            orjson.dumps({"code": 200, "data": [dict([*self.usual, ("__idle__", self.idle)])]}) if self.usual else b""
        )
        self.multi = multi_body() if "multi31" in only else b""
        self.minimal = minimal_body() if "minimal1m" in only else b""
        self.worst = worst_rows() if only & {"worst", "worstpaged"} else []
        self.requests = 0

    def worst_body(self, offset: int = 0, limit: int | None = None) -> bytes:
        """The worst-case rows (a page of them), the first one's cost changed on every request."""
        self.requests += 1
        rows = self.worst[offset:] if limit is None else self.worst[offset : offset + limit]
        if rows and offset == 0:
            rows = [b'"n0000000":{"totalCost":%d.5}' % self.requests, *rows[1:]]
        return b'{"code":200,"data":[{' + b",".join(rows) + b"}]}"

    def usual_page(self, offset: int, limit: int) -> bytes:
        page = self.usual[offset : offset + limit]
        return orjson.dumps({"code": 200, "data": [dict([*page, ("__idle__", self.idle)])]})


class Handler(BaseHTTPRequestHandler):
    server: Server
    protocol_version = "HTTP/1.1"

    def _send(self, status: int, body: bytes, ctype: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        q = {k: v[0] for k, v in parse_qs(parts.query).items()}
        head = parts.path.strip("/").split("/")[0]
        answers = self.server.answers
        if not parts.path.rstrip("/").endswith("/allocation"):  # no Assets API here
            self._send(404, b"404 page not found\n", "text/plain")
            return
        try:
            if head == "usual62" and q.get("limit"):
                self._send(200, answers.usual_page(int(q.get("offset") or 0), int(q["limit"])))
            elif head in ("usual62", "whole62"):
                self._send(200, answers.whole)
            elif head == "worst":
                self._send(200, answers.worst_body())
            elif head == "worstpaged":
                limit = int(q["limit"]) if q.get("limit") else None
                self._send(200, answers.worst_body(int(q.get("offset") or 0), limit))
            elif head == "multi31":
                self._send(200, answers.multi)
            elif head == "minimal1m":
                self._send(200, answers.minimal)
            elif head.startswith("html50"):
                status = 502 if head.endswith("502") else 200
                page = b"<html><body>" + b"<p>upstream error</p>\n" * (50_000_000 // 22) + b"</body></html>"
                self._send(status, page, "text/html")
            elif head == "endless":
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                chunk = b'{"code":200,"data":[{"a":{"name":"' + b"x" * (1 << 20)
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                filler = b"x" * (1 << 20)
                while True:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(filler), filler))
            elif head == "drip":
                body = b'{"code":200,"data":[{"a":{"totalCost":1.0}}]}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                for i in range(len(body)):
                    self.wfile.write(body[i : i + 1])
                    self.wfile.flush()
                    time.sleep(0.2)
            else:
                self._send(404, b"not found\n", "text/plain")
        except (BrokenPipeError, ConnectionResetError):
            pass

    def log_message(self, format: str, *args: Any) -> None:
        pass


class Server(ThreadingHTTPServer):
    daemon_threads = True
    answers: Answers


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--only", default="usual62,whole62,multi31,minimal1m,worst")
    args = ap.parse_args()
    server = Server(("127.0.0.1", args.port), Handler)
    server.answers = Answers(set(args.only.split(",")))
    print(server.server_address[1], flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
