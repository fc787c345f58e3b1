"""The one decoder and the cost functions: every answer shape through the same path.

Generated answers in many shapes (numbers as floats, integers or strings, split into pages the way
Kubecost 2.x pages them) must give the same snapshot and the same bytes as the plain answer; the
decoder reads odd structures, counts rows before decoding, and refuses more rows than the budget;
`tidy_all`'s shortcut for repeated values is checked against formatting every value.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pipeline import oracle, snapshot

from kubecost_allocation_exporter.config import load
from kubecost_allocation_exporter.costs import tidy, tidy_all
from kubecost_allocation_exporter.decode import (
    BATCH_ROWS,
    DIRECT_DECODE_BYTES,
    ApiError,
    Row,
    count_objects,
    decode,
)
from kubecost_allocation_exporter.metrics import render_costs
from kubecost_allocation_exporter.snapshot import FIELDS

pytestmark = pytest.mark.unit

T0 = datetime(2026, 11, 26, 10, tzinfo=UTC)
NOW = datetime(2026, 11, 27, 0, tzinfo=UTC).timestamp()
API_FIELDS = [
    msgspec.structs.fields(Row)[i].encode_name for i in range(len(msgspec.structs.fields(Row)))
]
NUMBER_FIELDS = [
    f for f in API_FIELDS if f not in ("name", "type", "properties", "window", "start", "end")
]
CFG = load(["--kubecost-url", "http://kc:9090", "--cluster-name", "c1", "--tenant-id", "t1"], {})


def _window(hours: int) -> dict[str, str]:
    return {
        "start": T0.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "end": (T0 + timedelta(hours=hours)).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


# JSON numbers as Kubecost writes them (5 decimals), integers, -0.0, long and large values
number = st.one_of(
    st.floats(min_value=-5, max_value=50, allow_nan=False).map(lambda x: round(x, 5)),
    st.integers(min_value=-3, max_value=10**7),
    st.just(-0.0),
    st.floats(min_value=-1e9, max_value=1e13, allow_nan=False, allow_infinity=False),
)


@st.composite
def row(draw: st.DrawFn, name: str, window: dict[str, str]) -> dict[str, Any]:
    r: dict[str, Any] = {"name": name, "properties": {"namespace": name}, "window": window}
    for f in NUMBER_FIELDS:
        r[f] = draw(number)
    r["minutes"] = draw(st.sampled_from([60, 60.0, 120.0, 0.0, 37.5]))
    r["pvs"] = None  # fields the exporter does not read are skipped whatever they hold
    r["rawAllocationOnly"] = {"cpuCoreUsageMax": 1.5}
    return r


@st.composite
def answers(draw: st.DrawFn) -> tuple[dict[str, dict[str, Any]], dict[str, Any] | None, int]:
    window = _window(draw(st.sampled_from([1, 2, 3])))
    names = draw(
        st.lists(
            st.sampled_from(["default", "kube-system", "web", "__unallocated__", "__unmounted__"])
            | st.text("abcdefghijklmnopqrstuvwxyz-0123456789", min_size=1, max_size=12),
            unique=True,
            min_size=1,
            max_size=12,
        )
    )
    rows = {n: draw(row(n, window)) for n in names}
    idle = draw(row("__idle__", window)) if draw(st.booleans()) else None
    return rows, idle, draw(st.integers(min_value=1, max_value=len(names)))


def pages(rows: dict[str, Any], idle: dict[str, Any] | None, size: int) -> list[bytes]:
    """The answer as Kubecost 2.x pages it: `size` rows a page, the idle row in every page."""
    out = []
    names = list(rows)
    for start in range(0, len(names), size):
        chunk = {n: rows[n] for n in names[start : start + size]}
        if idle is not None:
            chunk["__idle__"] = idle
        out.append(orjson.dumps({"code": 200, "data": [chunk]}))
    return out


def as_strings(rows: dict[str, Any]) -> dict[str, Any]:
    """The same rows with every number written as a string (some engines' proxies do)."""
    return {
        k: {f: repr(v) if type(v) in (int, float) else v for f, v in r.items()}
        for k, r in rows.items()
    }


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(answers(), st.sampled_from(["rate", "total"]))
def test_pages_and_number_spellings_give_the_same_snapshot_and_bytes(
    generated: tuple[dict[str, Any], dict[str, Any] | None, int], mode: str
) -> None:
    rows, idle, size = generated
    whole = {**rows, **({"__idle__": idle} if idle else {})}
    want = snapshot([whole], window="1h", now=NOW, mode=mode)
    for got in (
        snapshot(*pages(rows, idle, size), window="1h", now=NOW, mode=mode),
        snapshot([as_strings(whole)], window="1h", now=NOW, mode=mode),
    ):
        assert got == want
        assert [c.namespaces for c in got.clusters] == [c.namespaces for c in want.clusters]
        assert render_costs(got, CFG) == render_costs(want, CFG)
    assert render_costs(want, CFG) == oracle(want, CFG)


def test_the_row_reads_the_documented_api_fields() -> None:
    assert API_FIELDS[:6] == ["name", "type", "properties", "window", "start", "end"]
    assert set(NUMBER_FIELDS) == {
        "minutes", "totalCost", "cpuCost", "cpuCostAdjustment", "ramCost", "ramCostAdjustment",
        "pvCost", "pvCostAdjustment", "networkCost", "networkCostAdjustment", "loadBalancerCost",
        "loadBalancerCostAdjustment", "gpuCost", "gpuCostAdjustment", "sharedCost",
        "cpuEfficiency", "ramEfficiency", "totalEfficiency", "cpuCoreUsageAverage",
        "cpuCoreRequestAverage", "ramByteUsageAverage", "ramByteRequestAverage",
        "cpuCoreHours", "ramByteHours",  # the unit prices of the savings estimate
    }  # fmt: skip
    stored = {f.replace("_", "") for f in FIELDS} | {"cpucorehours", "rambytehours"}
    assert stored == {f.lower() for f in NUMBER_FIELDS}


@pytest.mark.parametrize(
    ("doc", "sets", "skipped"),
    [
        ({"code": 200, "data": [{"a": {"totalCost": 1}, "b": None, "c": 5}]}, [["a"]], 2),
        ({"code": 200, "data": [{"a": {"totalCost": 1}}, None, 7, {}]}, [["a"], []], 2),
        ({"code": 200, "data": {"a": {"totalCost": 1}}}, [["a"]], 0),  # a bare set
        (
            {"code": 200, "data": {"sets": [{"allocations": {"a": {}}}, {"allocations": None}]}},
            [["a"]],
            1,
        ),
        ({"code": 200, "data": None}, [], 0),
        ({"code": "200", "status": "success", "data": []}, [], 0),
    ],
)
def test_odd_structures_are_read(doc: Any, sets: list[list[str]], skipped: int) -> None:
    pages = list(decode(200, json.dumps(doc).encode(), "", "http://kc", 1000))
    assert [list(s) for p in pages for s in p.sets] == sets
    assert sum(p.skipped for p in pages) == skipped
    assert [p.first for p in pages] == [True] + [False] * (len(pages) - 1)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"[1, 2]", "bad_response"),
        (b'{"code": 200}', "bad_response"),
        (b'{"code": 200, "data": 7}', "bad_response"),
        (b'{"code": 500, "message": "boom", "data": null}', "api_error"),
        (b'{"code": "\\n", "data": []}', "api_error"),
        (b"<html>", "not_json"),
        (b"", "not_json"),
        (b'{"code": 200, "data": [{"a": {"totalCost": 1e400}}]}', "bad_response"),
    ],
)
def test_unusable_answers_name_their_reason(body: bytes, reason: str) -> None:
    with pytest.raises(ApiError) as err:
        list(decode(200, body, "", "http://kc", 1000))
    assert err.value.reason == reason
    assert "\n" not in str(err.value)


def test_more_rows_than_the_budget_are_refused_before_they_are_decoded() -> None:
    rows = ",".join(f'"ns-{i}":{{"totalCost":0.1,"name":"a{{b}}\\"{{\\\\"}}' for i in range(2000))
    body = ('{"code":200,"data":[{' + rows + "}]}").encode()
    assert json.loads(body)["data"][0]["ns-7"]["name"] == 'a{b}"{\\'
    assert sum(p.rows for p in decode(200, body, "", "http://kc", 2000)) == 2000
    with pytest.raises(ApiError) as err:
        list(decode(200, body, "", "http://kc", 1999))
    assert err.value.reason == "too_large"
    assert "has 2000 rows" in str(err.value)


def test_a_large_answer_is_decoded_in_batches_with_the_same_rows() -> None:
    """A body whose rows could take more memory than DIRECT_DECODE_BYTES is decoded BATCH_ROWS
    rows at a time: the pages continue one answer and hold the same rows."""
    n = 3 * BATCH_ROWS + 7
    rows = {f"ns-{i:05d}": {"name": f"ns-{i:05d}", "totalCost": i + 0.5} for i in range(n)}
    rows["odd"] = 5  # type: ignore[assignment]
    body = json.dumps({"code": 200, "data": [rows, None]}).encode()
    whole = list(decode(200, body, "", "http://kc", 10**6))
    assert [p.rows for p in whole] == [n, 0]  # small enough for one call per set
    small = DIRECT_DECODE_BYTES // 2**20  # the same body, decoded as if it were large
    import kubecost_allocation_exporter.decode as module

    try:
        module.DIRECT_DECODE_BYTES = 1024
        parts = list(decode(200, body, "", "http://kc", 10**6))
    finally:
        module.DIRECT_DECODE_BYTES = small * 2**20
    assert [p.first for p in parts] == [True, False, False, False, False]
    assert [p.rows for p in parts] == [BATCH_ROWS] * 3 + [7, 0]
    assert sum(p.skipped for p in parts) == sum(p.skipped for p in whole) == 2
    got = {k: r.total_cost for p in parts for s in p.sets for k, r in s.items()}
    assert got == {k: r.total_cost for p in whole for s in p.sets for k, r in s.items()}


json_values = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=False) | st.text('{}[]"\\ab', max_size=6),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text('{}[]"\\x', max_size=4), inner, max_size=4)
    ),
    max_leaves=25,
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text('{}[]"\\k', max_size=5), json_values, max_size=8))
def test_count_objects_counts_the_object_members_of_any_object(doc: dict[str, Any]) -> None:
    text = json.dumps(doc).encode()
    want = sum(isinstance(v, dict) for v in doc.values())
    assert count_objects(text, 2) == want
    assert count_objects(bytearray(text), 2) == want
    assert count_objects(json.dumps({"data": [doc]}).encode(), 4) == want


finite = st.floats(allow_nan=False, allow_infinity=False)
summed = st.tuples(
    st.floats(min_value=-100, max_value=100).map(lambda x: round(x, 5)),
    st.floats(min_value=-100, max_value=100).map(lambda x: round(x, 5)),
).map(lambda t: t[0] + t[1])


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(finite, summed, st.just(-0.0), st.just(0.0), st.integers(-5, 5).map(float)),
        max_size=40,
    )
)
def test_tidy_all_matches_tidy_and_repr_for_every_value(values: list[float]) -> None:
    got_values, got_texts = tidy_all(values)
    assert [v.hex() for v in got_values] == [tidy(v).hex() for v in values]
    # the texts are what rendering writes for the tidied value (repr below 1e6), and always
    # read back as that value
    assert [t for t, v in zip(got_texts, got_values, strict=True) if abs(v) < 1e6] == [
        repr(v) for v in got_values if abs(v) < 1e6
    ]
    assert [float(t).hex() for t in got_texts] == [v.hex() for v in got_values]


@pytest.mark.parametrize(
    "names",
    [
        ["plain", "team-a"],
        ['we"ird', "back\\slash", "new\nline", "ünïcode"],
        ["plain", 'one"quote'],
    ],
)
def test_render_escapes_namespace_names_like_prometheus_client(names: list[str]) -> None:
    rows = {
        n: {"name": n, "window": _window(1), **dict.fromkeys(NUMBER_FIELDS, 0.5)} for n in names
    }
    snap = snapshot([rows], window="1h", now=NOW, mode="rate", cluster='c"1')
    cfg = load(
        ["--kubecost-url", "http://kc:9090", "--cluster-name", "c1", "--tenant-id", "t\\1"], {}
    )
    text = render_costs(snap, cfg)
    assert text == oracle(snap, cfg)
    assert text.count(b"cloudtuner_kubecost_namespace_total_cost{") == len(names)
