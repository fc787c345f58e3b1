"""Time windows: the `window` the exporter asks for, the time an answer covers, and whether the
two are the same time.

Kubecost's window grammar (the Allocation API's `window` parameter): keywords `today`, `yesterday`,
`week`, `month`, `lastweek`, `lastmonth` (UTC, weeks start on Sunday), durations `30m`, `12h`, `7d`,
`2w` rounded forward to the next unit boundary and optionally shifted (`7d offset 1d`), RFC3339
pairs and unix-second pairs. Times are unix seconds (floats) inside the exporter.

What an answer covers is the union of its rows' windows: each row's `window`, or its own
`start`/`end` when it has none. Kubecost 2.x gives every row of a set the set's window; older
Kubecost and OpenCost gave each allocation its own (e.g. `__idle__` covering the last 3 hours of a
24-hour query), so no single row speaks for the set.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

DEFAULT_WINDOW_NAMES = ("", "last-complete-hour")
KEYWORDS = ("today", "yesterday", "week", "month", "lastweek", "lastmonth")
WINDOW_ALLOWED = (
    "empty or last-complete-hour (default), today, yesterday, week, month, lastweek, lastmonth, "
    "a duration like 30m/12h/7d/2w (optionally '7d offset 1d'), a pair of RFC3339 times "
    "'2026-01-01T00:00:00Z,2026-01-02T00:00:00Z' or a pair of unix seconds"
)
_RFC3339 = r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:\d{2})"
_RFC3339_PAIR = re.compile(rf"({_RFC3339}),({_RFC3339})")
_UNIX_PAIR = re.compile(r"(\d{9,11}),(\d{9,11})")
_DURATION = re.compile(r"(\d+)([mhdw])(?: offset (\d+)([mhdw]))?")
_UNIT = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
#: An answer must cover more of the requested window than this (or all of it, when the requested
#: window is shorter): edges a few seconds apart from rounding still match, another hour does not.
MATCH_TOLERANCE_SECONDS = 60.0

Interval = tuple[float, float]


def parse_time(value: Any) -> float | None:
    """An RFC3339 time (as the API writes them) -> unix seconds; None when it is not one."""
    if not isinstance(value, str) or not value:
        return None
    try:
        t = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return (t if t.tzinfo is not None else t.replace(tzinfo=UTC)).timestamp()


def rfc3339(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def last_complete_hour(now: float, lag_seconds: float) -> Interval:
    end = (now - lag_seconds) // 3600 * 3600
    return end - 3600, end


def window_param(window: str, now: float, lag_seconds: float) -> str:
    if window:
        return window
    start, end = last_complete_hour(now, lag_seconds)
    return f"{rfc3339(start)},{rfc3339(end)}"


def requested_window(spec: str, now: float) -> Interval | None:
    """The interval Kubecost answers for a `window` string at `now`; None when `spec` is not in
    the grammar (the one window grammar of the exporter: settings are validated with it)."""
    s = spec.strip()
    day = datetime.fromtimestamp(now // 86400 * 86400, UTC)
    if s in KEYWORDS:
        sunday = day - timedelta(days=(day.weekday() + 1) % 7)
        first = day.replace(day=1)
        first_day, last_day = {
            "today": (day, day + timedelta(days=1)),
            "yesterday": (day - timedelta(days=1), day),
            "week": (sunday, day + timedelta(days=1)),
            "lastweek": (sunday - timedelta(days=7), sunday),
            "month": (first, day + timedelta(days=1)),
            "lastmonth": ((first - timedelta(days=1)).replace(day=1), first),
        }[s]
        return first_day.timestamp(), last_day.timestamp()
    if m := _RFC3339_PAIR.fullmatch(s):
        a, b = parse_time(m.group(1)), parse_time(m.group(2))
        return None if a is None or b is None else (a, b)
    if m := _UNIX_PAIR.fullmatch(s):
        return float(m.group(1)), float(m.group(2))
    if m := _DURATION.fullmatch(s):
        n, unit, off_n, off_unit = m.groups()
        step = _UNIT["d" if unit == "w" else unit]
        end = now // step * step + step - (int(off_n) * _UNIT[off_unit] if off_n else 0)
        return end - int(n) * _UNIT[unit], end
    return None


def valid_window(text: str) -> bool:
    return text in DEFAULT_WINDOW_NAMES or requested_window(text, 0.0) is not None


def union(intervals: Iterable[Interval]) -> list[Interval]:
    """The union as disjoint intervals in order (overlaps merged, empty intervals dropped)."""
    out: list[Interval] = []
    for start, end in sorted(intervals):
        if end <= start:
            continue
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(end, out[-1][1]))
        else:
            out.append((start, end))
    return out


def _length(intervals: Iterable[Interval]) -> float:
    return sum(e - s for s, e in intervals)


def _clip(intervals: Iterable[Interval], low: float, high: float) -> list[Interval]:
    return [(max(s, low), min(e, high)) for s, e in intervals if min(e, high) > max(s, low)]


def row_windows(rows: Sequence[Any]) -> set[Interval]:
    """The distinct windows of a set's rows: each row's `window` object (as the raw JSON text the
    decoder kept: rows share a handful of them), or its `start`/`end` when it has no usable window.
    Rows that say nothing about their time add nothing."""
    pairs: set[tuple[Any, Any]] = set()
    unusable: set[bytes] = set()
    for raw in {bytes(r.window) for r in rows}:
        try:
            w = msgspec.json.decode(raw)
        except msgspec.MsgspecError:
            w = None
        if type(w) is dict and type(s := w.get("start")) is str and type(e := w.get("end")) is str:
            pairs.add((s, e))
        else:
            unusable.add(raw)
    if unusable:
        for r in rows:
            if bytes(r.window) in unusable and type(r.start) is type(r.end) is str:
                pairs.add((r.start, r.end))
    times = ((parse_time(s), parse_time(e)) for s, e in pairs)
    return {(a, b) for a, b in times if a is not None and b is not None and b > a}


@dataclass(frozen=True)
class Coverage:
    """The time the numbers cover: the union of the answer's windows, clamped to the query time.
    `seconds` is the rate's divisor; `ratio` the share of the requested window covered (None when
    the answer does not say which time it covers and the requested window is assumed)."""

    start: float | None
    end: float | None
    seconds: float | None
    ratio: float | None = None

    @property
    def hours(self) -> float | None:
        return self.seconds / 3600.0 if self.seconds else None


def coverage(answered: set[Interval], requested: Interval | None, now: float) -> Coverage:
    parts = _clip(union(answered or ([requested] if requested else [])), float("-inf"), now)
    if not parts:
        return Coverage(None, None, None)
    ratio = None
    if answered and requested is not None:
        asked = _length(_clip([requested], float("-inf"), now))
        if asked > 0:
            ratio = min(1.0, _length(_clip(parts, *requested)) / asked)
    return Coverage(parts[0][0], parts[-1][1], _length(parts), ratio)


def mismatch(answered: set[Interval], requested: Interval | None, now: float) -> str | None:
    """Why an answer is for another time than the one asked (None when it is not): its windows
    cover at most MATCH_TOLERANCE_SECONDS of the requested window (or less than all of it, when
    that is shorter). An answer that covers only part of it (data lag) is not a mismatch."""
    if not answered or requested is None:
        return None
    low, high, parts = requested[0], min(requested[1], now), union(answered)
    covered = _length(_clip(parts, low, high))
    if high <= low or covered >= min(MATCH_TOLERANCE_SECONDS, high - low) > 0:
        return None
    return (
        f"the answer covers {rfc3339(parts[0][0])}..{rfc3339(parts[-1][1])} but "
        f"{rfc3339(requested[0])}..{rfc3339(requested[1])} was asked"
    )
