"""The typed fast path (fastpath.py) gives exactly what the general path gives, or steps aside.

For generated answers in the usual shape the snapshot built column-wise from typed rows must equal
`build_snapshot` over the orjson-parsed sets (every number, the texts kept for rendering, the
coverage) and render to the same bytes; for every unusual answer `decode` or `namespace_snapshot`
must return None so the general path runs. `_tidy_all`'s shortcut for values that need no
tidying is checked against formatting every value.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kubecost_allocation_exporter import fastpath
from kubecost_allocation_exporter.config import load
from kubecost_allocation_exporter.kubecost import normalize_data, parse_response
from kubecost_allocation_exporter.metrics import render_costs
from kubecost_allocation_exporter.model import (
    _tidy_all,
    build_snapshot,
    cap_series,
    tidy,
)

pytestmark = pytest.mark.unit

T0 = datetime(2026, 11, 26, 10, tzinfo=UTC)
NOW = datetime(2026, 11, 27, 0, tzinfo=UTC)
FIELDS = fastpath.FIELDS


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
    for f in FIELDS:
        r[f] = draw(number)
    r["minutes"] = draw(st.sampled_from([60, 60.0, 120.0, 0.0, 37.5]))
    r["pvs"] = None  # fields the exporter does not read are skipped whatever they hold
    r["rawAllocationOnly"] = {"cpuCoreUsageMax": 1.5}
    return r


@st.composite
def pages(draw: st.DrawFn) -> tuple[list[bytes], int]:
    hours = draw(st.sampled_from([1, 2, 3]))
    window = _window(hours)
    names = draw(
        st.lists(
            st.sampled_from(
                ["default", "kube-system", "web", "__unallocated__", "__unmounted__", "team-a"]
            )
            | st.text("abcdefghijklmnopqrstuvwxyz-0123456789", min_size=1, max_size=12),
            unique=True,
            min_size=2,
            max_size=12,
        )
    )
    rows = {n: draw(row(n, window)) for n in names}
    idle = draw(row("__idle__", window)) if draw(st.booleans()) else None
    size = draw(st.integers(min_value=1, max_value=len(names)))
    out = []
    for start in range(0, len(names), size):
        chunk = {n: rows[n] for n in names[start : start + size]}
        if idle is not None:
            chunk["__idle__"] = idle  # in every page, as Kubecost 2.x pages do
        out.append(orjson.dumps({"code": 200, "data": [chunk]}))
    return out, hours


def general(bodies: list[bytes], mode: str) -> Any:
    sets: list[dict[str, dict[str, Any]]] = []
    seen: set[str] = set()
    for body in bodies:
        for raw in normalize_data(parse_response(200, body, "", "http://x"))[0]:
            s = {k: v for k, v in raw.items() if k not in seen}
            seen.update(s)
            sets.append(s)
    return build_snapshot(
        sets,
        requested_window="1h",
        now=NOW,
        metric_mode=mode,
        cluster_name="c1",
        multi_cluster=False,
    )


def fast(bodies: list[bytes], mode: str) -> Any:
    typed = [fastpath.decode(b) for b in bodies]
    assert all(p is not None for p in typed)
    return fastpath.namespace_snapshot(
        [p for p in typed if p is not None],
        requested_window="1h",
        now=NOW,
        metric_mode=mode,
        cluster_name="c1",
    )


CFG = load(["--kubecost-url", "http://kc:9090", "--cluster-name", "c1", "--tenant-id", "t1"], {})


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(pages(), st.sampled_from(["rate", "total"]), st.integers(min_value=0, max_value=60))
def test_fast_path_equals_general_path(
    generated: tuple[list[bytes], int], mode: str, cap: int
) -> None:
    bodies, _ = generated
    want = general(bodies, mode)
    got = fast(bodies, mode)
    assert got is not None, "the fast path declined an answer in the usual shape"
    assert got == want
    if want.clusters[0].texts is not None:  # None when a row took the general per-row path
        assert got.clusters[0].texts == want.clusters[0].texts
    assert render_costs(got, CFG) == render_costs(want, CFG)
    # the cardinality guard cuts both the same way (and drops what the fast path handed over)
    got_cut, got_dropped = cap_series(got, cap)
    want_cut, want_dropped = cap_series(want, cap)
    assert (got_cut, got_dropped) == (want_cut, want_dropped)
    assert render_costs(got_cut, CFG) == render_costs(want_cut, CFG)


def _body(rows: dict[str, Any]) -> bytes:
    return orjson.dumps({"code": 200, "data": [rows]})


def _usual(name: str) -> dict[str, Any]:
    r: dict[str, Any] = {"name": name, "window": _window(1)}
    r.update(dict.fromkeys(FIELDS, 0.5))
    return r


@pytest.mark.parametrize(
    ("what", "change"),
    [
        ("a null cost", lambda rs: rs["a"].update(cpuCost=None)),
        ("a string number", lambda rs: rs["a"].update(ramCost="0.5")),
        ("a missing field", lambda rs: rs["a"].pop("minutes")),
        ("a boolean", lambda rs: rs["a"].update(gpuCost=True)),
        ("no window", lambda rs: rs["a"].pop("window")),
    ],
)
def test_unusual_rows_are_not_decoded(what: str, change: Any) -> None:
    rows = {"a": _usual("a"), "b": _usual("b")}
    assert fastpath.decode(_body(rows)) is not None
    change(rows)
    assert fastpath.decode(_body(rows)) is None, what


@pytest.mark.parametrize(
    "body",
    [
        orjson.dumps({"code": 500, "data": [{"a": _usual("a")}], "message": "boom"}),
        orjson.dumps({"code": 200, "data": [{"a": _usual("a")}, {"a": _usual("a")}]}),
        orjson.dumps({"code": 200, "data": []}),
        orjson.dumps({"code": 200, "data": None}),
        orjson.dumps({"code": 200, "data": [{"a": None}]}),
        b"not json",
        b'{"code": 200, "data": [{"a": {"totalCost": 1e400}}]}',
    ],
)
def test_unusual_answers_are_not_decoded(body: bytes) -> None:
    assert fastpath.decode(body) is None


@pytest.mark.parametrize(
    ("what", "rows"),
    [
        ("a key with a slash", {"c/a": _usual("a"), "b": _usual("b")}),
        ("an idle name on another key", {"a": _usual("__idle__"), "b": _usual("b")}),
        ("a key ending in __idle__", {"x/__idle__": _usual("__idle__"), "b": _usual("b")}),
        ("a key with spaces", {" a": _usual("a"), "b": _usual("b")}),
        ("an empty key", {"": _usual("a"), "b": _usual("b")}),
        ("one namespace", {"a": _usual("a")}),
    ],
)
def test_unusual_keys_take_the_general_path(what: str, rows: dict[str, Any]) -> None:
    page = fastpath.decode(_body(rows))
    assert page is not None
    snap = fastpath.namespace_snapshot(
        [page], requested_window="1h", now=NOW, metric_mode="rate", cluster_name="c1"
    )
    assert snap is None, what


def test_repeated_rows_across_pages_take_the_general_path() -> None:
    one = fastpath.decode(_body({"a": _usual("a"), "b": _usual("b")}))
    two = fastpath.decode(_body({"b": _usual("b"), "c": _usual("c")}))
    assert one is not None
    assert two is not None
    snap = fastpath.namespace_snapshot(
        [one, two], requested_window="1h", now=NOW, metric_mode="rate", cluster_name="c1"
    )
    assert snap is None


def test_rate_mode_without_a_window_takes_the_general_path() -> None:
    rows = {"a": _usual("a"), "b": _usual("b")}
    for r in rows.values():
        r["window"] = {"start": "not a time", "end": "2026-11-26T11:00:00Z"}
    page = fastpath.decode(_body(rows))
    assert page is not None
    snap = fastpath.namespace_snapshot(
        [page], requested_window="1h", now=NOW, metric_mode="rate", cluster_name="c1"
    )
    assert snap is None


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
    got_values, got_texts = _tidy_all(values)
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
    from kubecost_allocation_exporter.metrics import cost_families, render

    rows = {n: _usual(n) for n in names}
    snap = build_snapshot(
        [rows],
        requested_window="1h",
        now=NOW,
        metric_mode="rate",
        cluster_name='c"1',
        multi_cluster=False,
    )
    cfg = load(
        ["--kubecost-url", "http://kc:9090", "--cluster-name", "c1", "--tenant-id", "t\\1"], {}
    )
    text = render_costs(snap, cfg)
    assert text == render(cost_families(snap, cfg))
    assert text.count(b"cloudtuner_kubecost_namespace_total_cost{") == len(names)


def test_typed_row_reads_exactly_the_general_paths_fields_in_its_order() -> None:
    import msgspec

    fields = msgspec.structs.fields(fastpath.Row)
    assert [f.encode_name for f in fields[:2]] == ["name", "window"]
    assert tuple(f.encode_name for f in fields[2:]) == fastpath.FIELDS
