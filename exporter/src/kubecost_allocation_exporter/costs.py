"""The one set of cost functions: the numbers of decoded rows, for every answer.

Rules (docs/metrics.md):
- a value the API does not give as a finite number (null, NaN/Inf, a string that is not a number,
  a boolean, a missing cost) is unknown; unknown is NaN here and is never exported;
- each resource cost = `<r>Cost + <r>CostAdjustment` (a missing adjustment is 0, a null one makes
  the cost unknown); sums of several rows are unknown when one member is;
- efficiencies of several rows (a cluster, a namespace spanning several sets) are combined as
  Kubecost aggregates allocations: minute-weighted usage / minute-weighted request. With no
  request at all the engines disagree (older ones say 0, newer 1), so the rows' own values are
  kept (their cost-weighted mean) instead of either rule;
- exported costs are tidied (`%.12g`), which drops the float noise of summing 5-decimal values.

Columns are lists of floats, one value per row; the work is done by C-level `map`/`sum` over
whole columns, not a Python loop per row (10,000 namespaces per refresh).
"""

from __future__ import annotations

import operator
import struct
from array import array
from collections.abc import Iterable, Sequence
from itertools import compress, repeat
from typing import Any, NamedTuple, cast

NAN = float("nan")
_FLOATS = frozenset({float})
_NUMBERS = frozenset({float, int})
_CONVERTIBLE = frozenset({float, int, str})
_NEGATIVE_ZERO = struct.pack("<d", -0.0)


def number(v: Any) -> float:
    """One field value -> a finite float, or NaN when it is not a finite number."""
    if type(v) in _CONVERTIBLE:
        try:
            f = float(v)
        except (ValueError, OverflowError):
            return NAN
        return f if f - f == 0.0 else NAN
    return NAN  # None, bool, objects, arrays


def column(values: list[Any]) -> list[float]:
    """Field values of many rows -> floats (NaN where unknown). The usual column, all JSON
    numbers, takes C-level paths only."""
    types = set(map(type, values))
    if types <= _FLOATS:
        return cast(list[float], values)  # msgspec never decodes a NaN or an infinity
    if types <= _NUMBERS:
        try:
            return list(map(float, values))
        except OverflowError:
            pass
    return list(map(number, values))


def known(values: Iterable[float]) -> bool:
    """Whether every value is finite (one NaN or infinity makes the sum non-finite)."""
    total = sum(values)
    return total - total == 0.0


def add(a: Sequence[float], b: Sequence[float]) -> list[float]:
    return list(map(operator.add, a, b))


def efficiency(
    usage: Sequence[float],
    request: Sequence[float],
    minutes: Sequence[float],
    cost: Sequence[float],
    engine: Sequence[float],
) -> float:
    """Efficiency of several rows: minute-weighted usage / request when every row has usage,
    request and minutes and the combined request is not zero; otherwise the rows' own
    (engine) efficiencies, weighted by |cost| (a plain mean when no row has a cost)."""
    if len(engine) == 1:
        return engine[0]
    if known(usage) and known(request) and known(minutes):
        req: float = sum(map(operator.mul, request, minutes))
        if req > 0:
            return float(sum(map(operator.mul, usage, minutes))) / req
    pairs = [
        (e, abs(c) if c - c == 0.0 else 0.0)
        for e, c in zip(engine, cost, strict=True)
        if e - e == 0.0
    ]
    if not pairs:
        return NAN
    weight = sum(w for _, w in pairs)
    if weight == 0:
        return sum(e for e, _ in pairs) / len(pairs)
    return sum(e * w for e, w in pairs) / weight


def total_efficiency(cpu_e: float, ram_e: float, cpu: float, ram: float) -> float:
    """(cpuEff x cpuCost + ramEff x ramCost) / (cpuCost + ramCost), costs incl. adjustments."""
    if cpu + ram == 0:
        return 0.0 if known((cpu_e, ram_e)) else NAN
    return (cpu_e * cpu + ram_e * ram) / (cpu + ram)


class Costs(NamedTuple):
    """One exported label set: cost parts (USD or USD/h) and efficiencies; None = omitted."""

    total: float | None = None
    cpu: float | None = None
    ram: float | None = None
    pv: float | None = None
    network: float | None = None
    lb: float | None = None
    gpu: float | None = None
    shared: float | None = None
    cpu_efficiency: float | None = None
    ram_efficiency: float | None = None
    total_efficiency: float | None = None

    @classmethod
    def of(cls, values: Iterable[float]) -> Costs:
        return cls._make(v if v - v == 0.0 else None for v in values)


def tidy(v: float) -> float:
    """Drop float noise from sums of 5-decimal API values (0.027500000000000004 -> 0.0275)."""
    return float(f"{v:.12g}")


def sum_known(values: Iterable[float]) -> float:
    """The tidied sum of the finite values; NaN when there is none."""
    finite = [v for v in values if v - v == 0.0]
    return tidy(sum(finite)) if finite else NAN


def tidy_all(values: Sequence[float]) -> tuple[list[float], list[str]]:
    """`[tidy(v) for v in values]` with the formatting and parsing done in C loops, and the text
    of each result, `repr(tidy(v))` (from the `%.12g` text: 12 significant digits identify a
    double, and below 1e6 both use the same notation; see `_texts`). When values repeat (most
    pv/lb/gpu/shared parts are 0.0) each distinct value is formatted once, unless a -0.0 is among
    them (it equals 0.0 as a dict key but is written `-0.0`)."""
    distinct = set(values)
    each = len(distinct) * 2 > len(values) or (0.0 in distinct and _has_negative_zero(values))
    ordered = values if each else list(distinct)
    formatted = list(map("%.12g".__mod__, ordered))
    floats = list(map(float, formatted))
    texts = _texts(formatted, floats)
    if each:
        return floats, texts
    if len(ordered) == 1:
        return floats * len(values), texts * len(values)
    as_float = dict(zip(ordered, floats, strict=True))
    as_text = dict(zip(ordered, texts, strict=True))
    return list(map(as_float.__getitem__, values)), list(map(as_text.__getitem__, values))


def _has_negative_zero(values: Sequence[float]) -> bool:
    raw = array("d", values).tobytes()
    pos = raw.find(_NEGATIVE_ZERO)
    while pos != -1 and pos % 8:
        pos = raw.find(_NEGATIVE_ZERO, pos + 1)
    return pos != -1


def _texts(formatted: list[str], floats: list[float]) -> list[str]:
    """`repr` of each tidied value from its `%.12g` text: an integer gets its `.0` (`1e+20`
    needs none); a tiny value (exponent -3xx, where subnormals have fewer than 12 digits) makes
    `repr` write them all; `nan`/`inf` texts are never written (unknown values are omitted)."""
    if "e-3" in "".join(formatted):  # texts end in a digit: a match never spans two of them
        return list(map(repr, floats))
    texts = formatted
    for i in compress(range(len(floats)), map(float.is_integer, floats)):
        if "e" not in texts[i]:
            if texts is formatted:
                texts = list(formatted)
            texts[i] += ".0"
    return texts


def scale(values: Sequence[float], factor: float) -> list[float]:
    return list(map(operator.mul, values, repeat(factor))) if factor != 1.0 else list(values)
