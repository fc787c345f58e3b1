"""Cardinality guard (--max-series) at 10,000 namespaces and paged breakdown queries
(--page-size, Kubecost 2.x offset/limit), through a real local HTTP server (bench/kubecost_stub.py,
the benchmark's Kubecost-shaped server). No timing assertions here: figures are in `make bench`."""

from __future__ import annotations

import random
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import pytest
from bench.kubecost_stub import Handler, Server, Stub
from pipeline import oracle

from kubecost_allocation_exporter.config import load
from kubecost_allocation_exporter.costs import tidy, tidy_all
from kubecost_allocation_exporter.kubecost import AllocationClient, ApiError
from kubecost_allocation_exporter.metrics import render_costs
from kubecost_allocation_exporter.refresher import Refresher, collect
from kubecost_allocation_exporter.snapshot import cap_breakdowns

pytestmark = pytest.mark.unit

WINDOW = "2026-11-26T16:00:00Z,2026-11-26T17:00:00Z"
NOW = datetime(2026, 11, 26, 18, 0, tzinfo=UTC).timestamp()
NS_LINE = re.compile(r"^cloudtuner_kubecost_namespace_\w+\{", re.M)
COST_LINE = re.compile(
    r"^cloudtuner_kubecost_(?:cluster|namespace|breakdown|exported|window)\w*\{", re.M
)
DROPPED = re.compile(r"^cloudtuner_kubecost_dropped_series_total\{[^}]*\} (\S+)$", re.M)


@contextmanager
def stub_server(pods: int = 0, handler: type[Handler] = Handler) -> Iterator[tuple[str, Stub]]:
    server = Server(("127.0.0.1", 0), handler)
    server.stub = Stub(pods)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", server.stub
    finally:
        server.shutdown()
        server.server_close()


def cfg_for(url: str, *extra: str) -> Any:
    args = ["--kubecost-url", url, "--api", "kubecost", "--cluster-name", "c1"]
    return load([*args, "--tenant-id", "acme", "--window", WINDOW, *extra], {})


def test_max_series_caps_10000_namespaces_and_counts_what_was_dropped() -> None:
    with stub_server() as (base, _):
        url = base + "/n10000/model/allocation"
        cfg = cfg_for(url, "--max-series", "50000")
        client = AllocationClient(cfg)
        refresher = Refresher(cfg, client, wall_clock=lambda: NOW)
        assert refresher.refresh_once() is None
        text = refresher.exposition().decode()
        assert refresher.refresh_once() is None  # the same answer again: snapshot reused
        text2 = refresher.exposition().decode()
        client.close()
        # the uncapped snapshot, for comparison
        uncapped_cfg = cfg_for(url, "--max-series", "0")
        full = collect(AllocationClient(uncapped_cfg), uncapped_cfg, NOW).snapshot
    cost_lines = len(COST_LINE.findall(text))
    assert cost_lines <= 50000
    uncapped = len(COST_LINE.findall(render_costs(full, cfg).decode()))
    assert uncapped > 100000  # 10,000 namespaces x 11 families
    dropped = float(DROPPED.search(text).group(1))  # type: ignore[union-attr]
    assert dropped == uncapped - cost_lines > 0
    # counted again on every refresh that leaves them out
    assert float(DROPPED.search(text2).group(1)) == 2 * dropped  # type: ignore[union-attr]
    # every cluster series kept; the namespaces kept are the most expensive ones, each whole
    assert "cloudtuner_kubecost_cluster_total_cost{" in text
    assert "cloudtuner_kubecost_window_coverage_ratio{" in text
    kept = set(
        re.findall(
            r'^cloudtuner_kubecost_namespace_total_cost\{[^}]*namespace="([^"]+)"', text, re.M
        )
    )
    assert len(NS_LINE.findall(text)) == 11 * len(kept)
    ranked = sorted(full.clusters[0].namespaces.items(), key=lambda kv: -(kv[1].total or 0.0))
    assert kept == {ns for ns, _ in ranked[: len(kept)]}
    exported = 'cloudtuner_kubecost_exported_namespaces{cluster="c1",tenant_id="acme"} '
    assert f"{exported}{float(len(kept))}\n" in text
    # and the cluster totals still cover every namespace
    assert refresher.snapshot is not None
    assert refresher.snapshot.clusters[0].costs == full.clusters[0].costs


def test_no_cap_at_the_default_and_the_writer_equals_the_registry_at_10000_namespaces() -> None:
    with stub_server() as (base, _):
        cfg = cfg_for(base + "/n10000/model/allocation")
        collected = collect(AllocationClient(cfg), cfg, NOW)
    snap = collected.snapshot
    assert collected.dropped == 0
    assert len(snap.clusters[0].namespaces) == 10000
    assert render_costs(snap, cfg) == oracle(snap, cfg)


def test_cap_drops_breakdown_rows_after_namespaces() -> None:
    with stub_server(pods=3000) as (base, _):
        cfg = cfg_for(
            base + "/n100/model/allocation", "--breakdowns", "pod", "--breakdown-top-n", "50"
        )
        snap = collect(AllocationClient(cfg), cfg, NOW).snapshot
    assert len(snap.breakdowns) == 51
    cluster_and_ns = len(COST_LINE.findall(render_costs(snap, cfg).decode())) - 51
    capped, dropped = cap_breakdowns(snap, snap.breakdowns, cluster_and_ns + 10)
    assert dropped == 41
    assert capped.breakdowns == snap.breakdowns[:10]
    assert capped.clusters[0].namespaces == snap.clusters[0].namespaces


def test_paged_breakdown_equals_one_request_and_reads_pages() -> None:
    with stub_server(pods=5000) as (base, stub):
        url = base + "/n1000/model/allocation"
        args = ("--breakdowns", "pod", "--breakdown-top-n", "200")
        before = stub.requests
        one = collect(
            AllocationClient(cfg_for(url, *args, "--page-size", "0")),
            cfg_for(url, *args, "--page-size", "0"),
            NOW,
        )
        single = stub.requests - before
        cfg = cfg_for(url, *args, "--page-size", "700")
        before = stub.requests
        paged = collect(AllocationClient(cfg), cfg, NOW)
        requests_paged = stub.requests - before
        # the same answers again: the snapshot is reused
        again = collect(AllocationClient(cfg), cfg, NOW, paged)
    assert single == 2
    # ceil(1000 / 700) namespace pages + ceil(5000 / 700) pod pages
    assert requests_paged == 2 + 8
    assert paged.snapshot.breakdowns == one.snapshot.breakdowns
    assert len(paged.snapshot.breakdowns) == 201
    # the namespace query paged too: the same namespaces, __idle__ (in every page) counted once
    a, b = paged.snapshot.clusters[0], one.snapshot.clusters[0]
    assert a.namespaces == b.namespaces
    assert len(a.namespaces) == 1000
    assert a.idle == b.idle
    for x, y in zip(a.costs, b.costs, strict=True):
        assert x == pytest.approx(y, rel=1e-9)  # summed in another order
    assert again.reused


class _IgnoresOffset(Handler):
    def do_GET(self) -> None:
        self.path = re.sub(r"offset=\d+", "offset=0", self.path)
        super().do_GET()


class _IgnoresPaging(Handler):
    def do_GET(self) -> None:
        self.path = re.sub(r"&(offset|limit)=\d+", "", self.path)
        super().do_GET()


def test_a_server_that_ignores_offset_fails_the_refresh_and_says_why() -> None:
    with stub_server(pods=2000, handler=_IgnoresOffset) as (base, _):
        cfg = cfg_for(base + "/n10/model/allocation", "--breakdowns", "pod", "--page-size", "500")
        with pytest.raises(ApiError) as err:
            collect(AllocationClient(cfg), cfg, NOW)
    assert err.value.reason == "bad_response"
    assert "--page-size 0" in str(err.value)


def test_a_server_that_ignores_paging_is_read_once() -> None:
    with stub_server(pods=2000, handler=_IgnoresPaging) as (base, stub):
        url = base + "/n10/model/allocation"
        cfg = cfg_for(url, "--breakdowns", "pod", "--page-size", "500")
        before = stub.requests
        paged = collect(AllocationClient(cfg), cfg, NOW)
        assert stub.requests - before == 2
        whole = collect(
            AllocationClient(cfg_for(url, "--breakdowns", "pod", "--page-size", "0")), cfg, NOW
        )
    assert paged.snapshot.breakdowns == whole.snapshot.breakdowns


def test_bulk_tidy_equals_tidy_and_repr_for_odd_values() -> None:
    rnd = random.Random(7)
    values = [0.0, -0.0, 5.0, -3.0, 1e-05, -2.5e-07, 0.1 + 0.2, 123456.7890123456, 999999.9999999]
    values += [rnd.uniform(-1, 1) * 10 ** rnd.randint(-8, 5) for _ in range(2000)]
    for sample in (values, [v for v in values if v != 0.0], [0.0, 0.0, 1.5, 1.5]):
        floats, texts = tidy_all(sample)
        assert floats == [tidy(v) for v in sample]
        assert texts == [repr(tidy(v)) for v in sample]
