"""The one decoder: an Allocation API answer (status, body) -> its sets of rows, or an `ApiError`.

Every answer takes the same path. msgspec decodes the body straight into `Row`s that hold only
the fields the exporter reads (every other field is skipped unparsed); each field accepts any JSON
value (a null, a string number, a boolean are judged later, by `costs.number`), so one decode
serves the usual answer and the odd ones alike. Only an answer whose *structure* is unusual (a set
or a row that is not an object, `data` that is a bare set, the /allocation/summary shape) is
walked level by level, with the same `Row`.

Memory: before a body is decoded its rows are bounded. Every row is a JSON object, so the body's
count of `{` bounds its rows from above; when that bound exceeds the rows left to the refresh
(`--max-rows`), the rows are counted exactly (strings removed, brackets tracked, no object per row)
and too many is refused with reason `too_large` instead of being built. A body is decoded in one
call when its rows cannot take more than DIRECT_DECODE_BYTES; a larger one (a server that ignores
paging, 30 MB in one answer) is decoded BATCH_ROWS rows at a time, each batch handed on as a
`Page` and released before the next, so the memory of an answer is its bytes, a reference to each
of its rows (~150 bytes a row) and one batch.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Iterable, Iterator
from contextlib import suppress
from dataclasses import dataclass
from itertools import accumulate
from typing import Any

import msgspec

# Bounded values of the `reason` label of cloudtuner_kubecost_scrape_errors_total.
REASONS = (
    *("timeout", "connection", "http_status", "not_json", "api_error", "bad_response", "auth"),
    *("too_large", "window_mismatch"),
)
#: Bytes of a non-2xx or non-JSON answer that are read for its error message.
EXCERPT_BYTES = 64 * 1024
_JSON_TYPES = {ord("["): "list", ord('"'): "str", ord("t"): "bool", ord("f"): "bool"}


class ApiError(Exception):
    """A failed query or refresh. `reason` is one of REASONS; `str()` is a one-line cause."""

    def __init__(self, reason: str, message: str) -> None:
        assert reason in REASONS, reason
        super().__init__(message)
        self.reason = reason

    def clean(self) -> ApiError:
        """The same error without traceback or chained exceptions: a stored error must not keep
        the frames (and the answer buffers in their locals) of the refresh that raised it."""
        return ApiError(self.reason, str(self))


def one_line(text: str, limit: int = 200) -> str:
    flat = " ".join(text[: limit * 4].split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


class Row(msgspec.Struct, gc=False, rename="camel"):
    """One allocation: the fields the exporter reads. A missing adjustment is 0 (the API omits
    zeros in some versions); a missing cost, efficiency or average is unknown (None)."""

    name: Any = None
    type: Any = None  # an asset's type (Assets API answers, read by the same decoder)
    properties: msgspec.Raw = msgspec.Raw(b"null")  # read only for odd keys (snapshot.split_key)
    window: msgspec.Raw = msgspec.Raw(b"null")  # few distinct ones: parsed once each
    start: Any = None
    end: Any = None
    minutes: Any = None
    total_cost: Any = None
    cpu_cost: Any = None
    cpu_cost_adjustment: Any = 0.0
    ram_cost: Any = None
    ram_cost_adjustment: Any = 0.0
    pv_cost: Any = None
    pv_cost_adjustment: Any = 0.0
    network_cost: Any = None
    network_cost_adjustment: Any = 0.0
    load_balancer_cost: Any = None
    load_balancer_cost_adjustment: Any = 0.0
    gpu_cost: Any = None
    gpu_cost_adjustment: Any = 0.0
    shared_cost: Any = None
    cpu_efficiency: Any = None
    ram_efficiency: Any = None
    total_efficiency: Any = None
    cpu_core_usage_average: Any = None
    cpu_core_request_average: Any = None
    ram_byte_usage_average: Any = None
    ram_byte_request_average: Any = None
    cpu_core_hours: Any = None  # the unit prices of the savings estimate (savings.py)
    ram_byte_hours: Any = None


RowSet = dict[str, Row | None]


class _SummarySet(msgspec.Struct, gc=False):
    allocations: RowSet | None = None


class _Summary(msgspec.Struct, gc=False):
    sets: list[_SummarySet | None] | msgspec.UnsetType = msgspec.UNSET


class _Answer(msgspec.Struct, gc=False):
    code: Any = None
    message: Any = None
    status: Any = None
    data: list[RowSet | None] | _Summary | msgspec.UnsetType | None = msgspec.UNSET


class _RawAnswer(msgspec.Struct, gc=False):
    code: Any = None
    message: Any = None
    status: Any = None
    data: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET


_ANSWER = msgspec.json.Decoder(_Answer)
_RAW_ANSWER = msgspec.json.Decoder(_RawAnswer)
_RAW_LIST = msgspec.json.Decoder(list[msgspec.Raw])
_RAW_DICT = msgspec.json.Decoder(dict[str, msgspec.Raw])
_ROW_SET = msgspec.json.Decoder(RowSet)
_ROW = msgspec.json.Decoder(Row)


@dataclass
class Page:
    """Rows of one answer, or of one batch of it: its sets (key -> row), the entries that were not
    objects, and whether it starts a new answer (`first`; later batches continue it)."""

    sets: list[dict[str, Row]]
    skipped: int = 0
    first: bool = True

    @property
    def rows(self) -> int:
        return sum(map(len, self.sets))


#: Rows (and bytes of JSON) decoded in one call when a body is decoded in batches.
BATCH_ROWS, BATCH_BYTES = 5000, 4 * 1024 * 1024
#: A body is decoded in one call when its rows can take at most this much memory while they are
#: turned into columns (measured: under 1,000 bytes per row object, and a float of 24 bytes for
#: every 12 bytes of JSON at most).
DIRECT_DECODE_BYTES = 64 * 1024 * 1024
_ROW_LIST = msgspec.json.Decoder(list[Row])


def _first(buf: Any) -> int:
    """The first byte of a JSON text that is not whitespace (0 when there is none)."""
    head = bytes(memoryview(buf)[:64]).lstrip()
    return head[0] if head else 0


def _excerpt(body: Any, limit: int = 120) -> str:
    return one_line(bytes(memoryview(body)[:EXCERPT_BYTES]).decode("utf-8", "replace"), limit)


def http_error(status: int, body: Any, where: str) -> ApiError:
    message = None
    if len(body) < EXCERPT_BYTES and _first(body) == ord("{"):
        with suppress(msgspec.MsgspecError):
            message = _RAW_ANSWER.decode(body).message
    detail = (one_line(str(message)) if message else "") or _excerpt(body, 200)
    suffix = f": {detail}" if detail else ""
    return ApiError("http_status", f"HTTP {status} from {where}{suffix}")


def not_json(status: int, body: Any, content_type: str, where: str) -> ApiError:
    ctype = content_type or "no content type"
    return ApiError(
        "not_json",
        f"answer from {where} is not JSON (HTTP {status}, {ctype}): "
        + (_excerpt(body) or "empty body"),
    )


def looks_like_json(head: bytes | bytearray) -> bool:
    """Whether the first bytes of an answer can start a JSON document (a UI page cannot)."""
    first = head.lstrip()[:1]
    return first in (b"{", b"[", b'"', b"-", b"t", b"f", b"n") or first.isdigit()


def decode(
    status: int, body: Any, content_type: str, where: str, row_budget: int
) -> Iterator[Page]:
    """An answer -> its rows, as one Page or (a large answer) several. Raises ApiError:
    `http_status` (non-2xx), `not_json`, `api_error` (`code` other than 200 in the body),
    `bad_response` (no usable `data`), `too_large` (more rows than `row_budget`)."""
    if not 200 <= status < 300:
        raise http_error(status, body, where)
    objects = body.count(b"{")  # rows are objects: at most this many
    direct = objects * 1000 + 2 * len(body) <= DIRECT_DECODE_BYTES
    try:
        if direct and objects <= row_budget:
            try:
                answer = _ANSWER.decode(body)
            except msgspec.ValidationError:
                pass
            else:
                _check(answer, where)
                data = answer.data
                if not isinstance(data, _Summary) or data.sets is not msgspec.UNSET:
                    yield _page(data)
                    return
        yield from _decode_walking(body, where, row_budget, objects > row_budget, direct)
    except msgspec.DecodeError:
        raise not_json(status, body, content_type, where) from None


def _check(answer: _Answer | _RawAnswer, where: str) -> None:
    if (code := answer.code) is not None:
        code_ok = False
        with suppress(TypeError, ValueError, OverflowError):
            code_ok = int(code) == 200
        if not code_ok:
            text = one_line(str(answer.message or answer.status or "no message"))
            shown = one_line(str(code), 40)  # the answer's own text: never let it break the line
            raise ApiError("api_error", f"API error code {shown} from {where}: {text}")
    if answer.data is msgspec.UNSET:
        raise ApiError("bad_response", f"answer from {where} has no 'data' field")


def _page(data: list[RowSet | None] | _Summary | msgspec.UnsetType | None) -> Page:
    if isinstance(data, _Summary):
        sets = data.sets if isinstance(data.sets, list) else []
        raw: list[RowSet | None] = [s.allocations if s is not None else None for s in sets]
    else:
        raw = data or []
    page = Page([])
    for aset in raw:
        if aset is None:
            page.skipped += 1
        elif None in aset.values():
            page.sets.append({k: r for k, r in aset.items() if r is not None})
            page.skipped += len(aset) - len(page.sets[-1])
        else:
            page.sets.append(aset)  # type: ignore[arg-type]
    return page


def _decode_walking(
    body: Any, where: str, row_budget: int, count: bool, direct: bool
) -> Iterator[Page]:
    """An answer of unusual structure, or a large one: walked level by level (envelope, data,
    sets); its rows counted first when they may be more than the budget (`count`); each set
    decoded in one call (`direct`) or in batches."""
    try:
        answer = _RAW_ANSWER.decode(body)
    except msgspec.ValidationError:
        kind = _JSON_TYPES.get(_first(body), "number or null")
        raise ApiError(
            "bad_response", f"answer from {where} is a JSON {kind}, expected an object"
        ) from None
    _check(answer, where)
    assert not isinstance(answer.data, msgspec.UnsetType)
    skipped = [0]
    sets, depth = _raw_sets(answer.data, where, skipped)
    if count and (n := count_objects(body, depth)) > row_budget:
        raise ApiError(
            "too_large",
            f"answer from {where} has {n} rows, more than the {row_budget} left to this refresh "
            "by --max-rows",
        )
    first = True
    for raw_set in sets:
        if _first(raw_set) != ord("{"):
            skipped[0] += 1
            continue
        if direct:
            try:
                part = _ROW_SET.decode(raw_set)
            except msgspec.ValidationError:
                part = dict(_rows_one_by_one(_RAW_DICT.decode(raw_set).items(), skipped, where))
            page = _page([part])
            page.skipped, page.first, skipped[0] = page.skipped + skipped[0], first, 0
            yield page
            first = False
            continue
        for batch in _batches(_RAW_DICT.decode(raw_set).items(), skipped):
            pieces = [bytes(r) for _, r in batch]  # the batch as one JSON array: one decode call
            pieces[0] = b"[" + pieces[0]
            pieces[-1] += b"]"
            joined = b",".join(pieces)
            del pieces
            try:
                rows = dict(zip([k for k, _ in batch], _ROW_LIST.decode(joined), strict=True))
            except msgspec.ValidationError:
                rows = dict(_rows_one_by_one(batch, skipped, where))
            yield Page([rows], skipped[0], first)
            first, skipped[0] = False, 0
            del rows, batch, joined
    if first or skipped[0]:
        yield Page([], skipped[0], first)


def _batches(
    items: Iterable[tuple[str, msgspec.Raw]], skipped: list[int]
) -> Iterator[list[tuple[str, msgspec.Raw]]]:
    """Rows in batches of at most BATCH_ROWS rows and about BATCH_BYTES of JSON; entries that are
    not objects are counted in `skipped`."""
    batch: list[tuple[str, msgspec.Raw]] = []
    size = 0
    for key, raw in items:
        if _first(raw) != ord("{"):
            skipped[0] += 1
            continue
        batch.append((key, raw))
        size += len(memoryview(raw))
        if len(batch) == BATCH_ROWS or size >= BATCH_BYTES:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


def _raw_sets(data: msgspec.Raw, where: str, skipped: list[int]) -> tuple[list[msgspec.Raw], int]:
    """The sets in `data` and the depth of their rows in the whole answer."""
    first = _first(data)
    if first == ord("n"):
        return [], 4
    if first == ord("["):
        return _RAW_LIST.decode(data), 4
    if first != ord("{"):
        kind = _JSON_TYPES.get(first, "number")
        raise ApiError("bad_response", f"'data' from {where} is a JSON {kind}, expected a list")
    sets = _RAW_DICT.decode(data).get("sets")
    if sets is None or _first(sets) != ord("["):
        return [data], 3  # a bare set object
    out = []
    for entry in _RAW_LIST.decode(sets):  # /allocation/summary: data.sets[].allocations
        allocations = _RAW_DICT.decode(entry).get("allocations") if _first(entry) == 123 else None
        if allocations is None:
            skipped[0] += 1
        else:
            out.append(allocations)
    return out, 6


def _rows_one_by_one(
    items: Iterable[tuple[str, msgspec.Raw]], skipped: list[int], where: str
) -> Iterator[tuple[str, Row]]:
    for key, raw in items:
        if _first(raw) != ord("{"):
            skipped[0] += 1
            continue
        try:
            yield key, _ROW.decode(raw)
        except msgspec.ValidationError as exc:  # e.g. a number out of range: 1e400
            raise ApiError("bad_response", f"answer from {where}: row {key!r}: {exc}") from None


_STRING = re.compile(rb'"[^"]*"')
# JSON escapes are a backslash and one of these; kept by the first pass so `\n"` stays unambiguous
_KEEP_ESCAPES = bytes(set(range(256)) - set(b'"{}[]\\/bfnrtu'))
_DELETE = bytes(set(range(256)) - set(b'"{}[]'))
_DEPTH = [0] * 256
_DEPTH[ord("{")] = _DEPTH[ord("[")] = 1
_DEPTH[ord("}")] = _DEPTH[ord("]")] = -1


def count_objects(buf: Any, depth: int) -> int:
    """The objects opening at `depth` of a JSON text (a set's rows: 2 in the set, 4 in an
    answer), counted without decoding it and without a Python object per row, in C-level loops
    over ever smaller copies: quotes, brackets and escapes kept, escaped backslashes and quotes
    dropped, the rest of the escapes dropped, then the strings (adjacent quotes first: two quotes
    with nothing structural between them only ever enclose string text)."""
    text = buf.translate(None, _KEEP_ESCAPES) if hasattr(buf, "translate") else bytes(buf)
    text = bytes(text).replace(b"\\\\", b"").replace(b'\\"', b"").translate(None, _DELETE)
    while b'""' in text:
        text = text.replace(b'""', b"")
    if b'"' in text:  # strings that hold brackets
        text = _STRING.sub(b"", text)
    levels = accumulate(map(_DEPTH.__getitem__, text))
    return sum(map(operator.and_, map(depth.__eq__, levels), map((123).__eq__, text)))
