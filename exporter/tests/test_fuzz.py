"""The response parser fuzzed with hypothesis: any bytes, any JSON, any allocation-shaped document.

The whole parse path a refresh runs (`decode` -> `NamespaceRows` -> `build` -> `render_costs`) may
only ever raise `ApiError`; anything else would be a crash the refresher
has to paper over. Memory: parsing stays within a small multiple of the input size (tracemalloc
peak), so an answer cannot blow up in the parser.
"""

from __future__ import annotations

import json
import tracemalloc
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from kubecost_allocation_exporter.config import load
from kubecost_allocation_exporter.decode import ApiError, decode
from kubecost_allocation_exporter.metrics import render_costs
from kubecost_allocation_exporter.snapshot import NamespaceRows, build
from kubecost_allocation_exporter.windows import coverage, requested_window

pytestmark = pytest.mark.unit

URL = "http://kubecost:9090/model/allocation"
NOW = datetime(2026, 11, 26, 18, tzinfo=UTC).timestamp()
HOUR = "2026-11-26T16:00:00Z,2026-11-26T17:00:00Z"
CFG = load(["--cluster-name", "c", "--tenant-id", "t"], {})
FIELDS = [
    "name",
    "properties",
    "window",
    "start",
    "end",
    "minutes",
    "cpuCost",
    "cpuCostAdjustment",
    "ramCost",
    "pvCost",
    "networkCost",
    "loadBalancerCost",
    "gpuCost",
    "sharedCost",
    "totalCost",
    "cpuEfficiency",
    "ramEfficiency",
    "totalEfficiency",
    "cpuCoreRequestAverage",
    "cpuCoreUsageAverage",
    "ramByteRequestAverage",
    "ramByteUsageAverage",
]
KEYS = [
    "default",
    "__idle__",
    "__unallocated__",
    "kube-system",
    "cluster-one/default",
    "",
    'ns\n"x\\',
]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=30),
    st.sampled_from(["2026-11-26T16:00:00Z", "2026-11-26T17:00:00Z", "NaN", "+Inf", "1e308", "-0"]),
)
json_values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=5), st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=30,
)
windows = st.one_of(
    json_values,
    st.fixed_dictionaries(
        {
            "start": st.sampled_from(["2026-11-26T16:00:00Z", "2026-11-26T15:30:00Z", "bad", None]),
            "end": st.sampled_from(
                ["2026-11-26T17:00:00Z", "2026-11-26T16:00:00Z", "2099-01-01T00:00:00Z", 3]
            ),
        }
    ),
)
allocations = st.one_of(
    json_values,
    st.dictionaries(
        st.sampled_from(FIELDS),
        st.one_of(
            scalars, windows, st.dictionaries(st.sampled_from(["cluster", "namespace"]), scalars)
        ),
        max_size=len(FIELDS),
    ),
)
sets = st.one_of(json_values, st.dictionaries(st.sampled_from(KEYS), allocations, max_size=6))
data = st.one_of(
    json_values,
    st.lists(sets, max_size=4),
    st.fixed_dictionaries(
        {
            "sets": st.lists(
                st.one_of(sets, st.fixed_dictionaries({"allocations": sets})), max_size=3
            )
        }
    ),
)
documents = st.one_of(
    json_values,
    st.fixed_dictionaries({"code": st.one_of(st.just(200), scalars), "data": data}),
    st.fixed_dictionaries({"code": st.just(200), "status": st.just("success"), "data": data}),
)


def full_parse(status: int, body: bytes) -> bytes:
    """Everything a refresh does with one answer; returns the rendered cost part."""
    pages = list(decode(status, body, "application/json", URL, 250_000))
    for mode in ("rate", "total"):
        rows = NamespaceRows("c", False)
        for page in pages:
            rows.add(page)
        cov = coverage(rows.windows, requested_window(HOUR, NOW), NOW)
        snap, _ = build(rows, cov, mode, 150_000)
        out = render_costs(snap, CFG)
        assert b"NaN" not in out, out[:500]
        assert b"Inf" not in out, out[:500]
    return out


def check(status: int, body: bytes) -> None:
    message = ""
    try:
        full_parse(status, body)
    except ApiError as exc:
        message = str(exc)
    assert "\n" not in message, "an ApiError message must be one line"


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2000), st.sampled_from([200, 201, 204, 302, 400, 404, 500, 503]))
def test_any_bytes_never_crash_the_parser(body: bytes, status: int) -> None:
    check(status, body)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents)
@example({"code": "\n", "data": []})  # found by this test: the answer's code broke the log line
def test_any_allocation_shaped_json_never_crashes_the_parser(doc: Any) -> None:
    check(200, json.dumps(doc).encode())


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents, st.integers(min_value=1, max_value=200))
def test_cutting_a_valid_answer_anywhere_never_crashes(doc: Any, cut: int) -> None:
    body = json.dumps(doc).encode()
    check(200, body[: max(0, len(body) - cut)])


@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    st.lists(st.sampled_from(KEYS[:4]), min_size=1, max_size=4),
    st.integers(min_value=100, max_value=800),
)
def test_parser_memory_is_bounded_by_the_input(keys: list[str], copies: int) -> None:
    """Peak Python allocations while parsing stay below 40x the answer's size (+ 4 MiB fixed)."""
    alloc = {
        "window": {"start": "2026-11-26T16:00:00Z", "end": "2026-11-26T17:00:00Z"},
        "cpuCost": 0.5,
        "ramCost": 0.25,
        "totalCost": 0.75,
        "cpuEfficiency": 0.4,
        "properties": {"cluster": "c", "namespace": "x"},
    }
    aset = {f"{k}-{i}": dict(alloc) for i in range(copies) for k in keys}
    body = json.dumps({"code": 200, "data": [aset]}).encode()
    tracemalloc.start()
    try:
        full_parse(200, body)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 40 * len(body) + 4 * 2**20, (peak, len(body))
