"""The query library against a local HTTP server that speaks the Prometheus HTTP API (answers in
the shapes Thanos Query gives: vector, scalar, error JSON, a proxy's HTML error page)."""

from __future__ import annotations

import http.server
import importlib.metadata
import json
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import cloudtuner_kubecost_queries
import pytest
from cloudtuner_kubecost_queries import (
    QueryError,
    ThanosClient,
    cost_per_day,
    namespace_costs,
    selector,
)

pytestmark = pytest.mark.unit

#: (path, params) -> (HTTP status, body bytes, content type)
Answer = Callable[[str, dict[str, str]], tuple[int, bytes, str]]


@dataclass
class PromApi:
    url: str
    answer: Answer
    calls: list[tuple[str, dict[str, str], dict[str, str]]] = field(default_factory=list)


def vector(*series: tuple[dict[str, str], float | str]) -> tuple[int, bytes, str]:
    result = [{"metric": m, "value": [1.7e9, str(v)]} for m, v in series]
    body = {"status": "success", "data": {"resultType": "vector", "result": result}}
    return 200, json.dumps(body).encode(), "application/json"


@pytest.fixture
def prom_api() -> Iterator[Callable[[Answer], PromApi]]:
    servers: list[http.server.ThreadingHTTPServer] = []

    def start(answer: Answer) -> PromApi:
        api = PromApi("", answer)

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                parsed = urlparse(self.path)
                params = {k: v[0] for k, v in parse_qs(parsed.query).items()}
                api.calls.append((parsed.path, params, dict(self.headers)))
                status, body, ctype = api.answer(parsed.path, params)
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        api.url = f"http://127.0.0.1:{server.server_port}"
        return api

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def test_selector_builds_and_refuses_injection() -> None:
    assert selector("prod", "acme", namespace="ns") == '{cluster="prod",tenant_id="acme",namespace="ns"}'
    for bad in ('a"}or vector(1)', "a\\b", "a\nb"):
        with pytest.raises(ValueError, match="not allowed"):
            selector(bad, "acme")


def test_instant_reads_vector_and_scalar_drops_nan_sends_headers(
    prom_api: Callable[[Answer], PromApi],
) -> None:
    def answer(path: str, params: dict[str, str]) -> tuple[int, bytes, str]:
        if params["query"] == "scalar(1)":
            body = {
                "status": "success",
                "data": {"resultType": "scalar", "result": [1.7e9, "2.5"]},
            }
            return 200, json.dumps(body).encode(), "application/json"
        return vector(({"namespace": "a"}, 1.25), ({"namespace": "b"}, "NaN"))

    api = prom_api(answer)
    client = ThanosClient(api.url + "/", headers={"THANOS-TENANT": "acme"})
    at = datetime(2026, 12, 6, 12, tzinfo=UTC)
    assert client.instant("up", at=at) == [({"namespace": "a"}, 1.25)]
    assert client.instant("scalar(1)") == [({}, 2.5)]
    path, params, headers = api.calls[0]
    assert path == "/api/v1/query"
    assert params == {"query": "up", "time": f"{at.timestamp():.3f}"}
    assert headers["THANOS-TENANT"] == "acme"
    assert "time" not in api.calls[1][1]


def test_errors_raise_query_error_with_the_reason(
    prom_api: Callable[[Answer], PromApi],
) -> None:
    def answer(path: str, params: dict[str, str]) -> tuple[int, bytes, str]:
        if params["query"] == "bad(":
            body = {
                "status": "error",
                "errorType": "bad_data",
                "error": "1:5: parse error: unclosed left parenthesis",
            }
            return 400, json.dumps(body).encode(), "application/json"
        return 502, b"<html><body>502 Bad Gateway</body></html>", "text/html"

    client = ThanosClient(prom_api(answer).url)
    with pytest.raises(QueryError, match=r"HTTP 400: 1:5: parse error: unclosed left parenthesis"):
        client.instant("bad(")
    with pytest.raises(QueryError, match=r"HTTP 502, not JSON: .*Bad Gateway"):
        client.instant("up")


def test_unreachable_thanos_raises_query_error() -> None:
    with socket.socket() as s:  # a port nobody listens on once closed
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(QueryError, match=rf"127\.0\.0\.1:{port}/api/v1/query: ConnectionError"):
        ThanosClient(f"http://127.0.0.1:{port}", timeout=5).instant("up")


START = datetime(2026, 12, 1, tzinfo=UTC)
END = START + timedelta(minutes=10)


def test_no_data_is_an_answer_not_an_empty_result(
    prom_api: Callable[[Answer], PromApi],
) -> None:
    api = prom_api(lambda path, params: vector())
    result = namespace_costs(ThanosClient(api.url), "prod", "acme", START, END)
    assert result.no_data
    assert not result.ok
    assert result.value == {}
    assert "cluster='prod' tenant_id='acme'" in result.reason
    # Only the presence query ran, and it is the one reported.
    assert [c[1]["query"] for c in api.calls] == list(result.queries)
    assert result.queries[0].startswith('count(last_over_time({__name__=~"cloudtuner_kubecost_.+",cluster="prod"')
    assert result.queries[0].endswith("[600s]))")


def _bench_answer(mode: str) -> Answer:
    def answer(path: str, params: dict[str, str]) -> tuple[int, bytes, str]:
        q = params["query"]
        if q.startswith("count(last_over_time("):
            return vector(({}, 30))
        if "exporter_info" in q:
            return vector(({"metric_mode": mode}, 1))
        if "namespace_total_cost" in q:
            return vector(({"namespace": "a"}, 0.5), ({"namespace": "b"}, 0.25))
        if "cluster_total_cost" in q:
            return vector(({}, 24.0))
        return 400, b'{"status":"error","error":"unexpected query"}', "application/json"

    return answer


def test_namespace_costs_over_a_range(prom_api: Callable[[Answer], PromApi]) -> None:
    api = prom_api(_bench_answer("rate"))
    result = namespace_costs(ThanosClient(api.url), "prod", "acme", START, END)
    assert result.ok
    assert result.value == {"a": 0.5, "b": 0.25}
    (promql,) = result.queries
    assert promql == (
        'sum by (namespace) (avg_over_time(cloudtuner_kubecost_namespace_total_cost{cluster="prod",'
        'tenant_id="acme"}[600s])) * 600 / 3600'
    )
    assert api.calls[-1][1]["time"] == f"{END.timestamp():.3f}"


def test_total_mode_is_unsupported_for_ranges(
    prom_api: Callable[[Answer], PromApi],
) -> None:
    client = ThanosClient(prom_api(_bench_answer("total")).url)
    result = namespace_costs(client, "prod", "acme", START, END)
    assert result.status == "unsupported"
    assert "rate mode" in result.reason
    assert cost_per_day(client, "prod", "acme", START, END).status == "unsupported"


def test_cost_per_day_whole_and_partial_days(
    prom_api: Callable[[Answer], PromApi],
) -> None:
    api = prom_api(_bench_answer("rate"))
    end = START + timedelta(days=2, hours=6)
    result = cost_per_day(ThanosClient(api.url), "prod", "acme", START, end)
    assert result.ok
    assert list(result.value) == ["2026-12-01", "2026-12-02", "2026-12-03"]
    assert [q.endswith(" * 24") for q in result.queries] == [True, True, False]
    assert result.queries[2].endswith("[21600s])) * 21600 / 3600")
    day_queries = [c for c in api.calls if "cluster_total_cost" in c[1]["query"]]
    assert [float(c[1]["time"]) for c in day_queries] == [
        (START + timedelta(days=1)).timestamp(),
        (START + timedelta(days=2)).timestamp(),
        end.timestamp(),
    ]


def test_a_range_must_end_after_it_starts(
    prom_api: Callable[[Answer], PromApi],
) -> None:
    client = ThanosClient(prom_api(_bench_answer("rate")).url)
    with pytest.raises(ValueError, match="is not after start"):
        namespace_costs(client, "prod", "acme", END, START)


def test_the_library_needs_requests_only() -> None:
    """The backend installs the library without the exporter: requests is its only dependency and
    none of its modules imports the exporter."""
    assert importlib.metadata.requires("cloudtuner-kubecost-queries") == ["requests~=2.34.2"]
    package = Path(cloudtuner_kubecost_queries.__file__).parent
    assert (package / "py.typed").is_file()
    sources = "".join(p.read_text() for p in package.rglob("*.py"))
    assert "import requests" in sources
    assert "kubecost_allocation_exporter" not in sources
