"""Optional breakdowns (`--breakdowns`): one extra query per entry, summed page by page.

Only `totalCost` per (cluster, namespace, value) is kept while the pages arrive (a 100,000-pod
answer is never in memory at once); at the end the top N rows by cost per cluster are exported
plus one `__other__` row with the rest, so per cluster the rows sum to sum(namespace_total_cost).
Idle rows are not part of it.
"""

from __future__ import annotations

import operator
from collections import defaultdict
from collections.abc import Iterable, Mapping
from itertools import repeat

from kubecost_allocation_exporter import costs
from kubecost_allocation_exporter.costs import NAN
from kubecost_allocation_exporter.decode import Page, Row
from kubecost_allocation_exporter.keys import (
    IDLE,
    OTHER,
    UNALLOCATED,
    AnswerKeys,
    properties_of,
    split_key,
    strip_label_prefix,
)
from kubecost_allocation_exporter.savings import Key, accumulate
from kubecost_allocation_exporter.snapshot import BreakdownRow, row_savings
from kubecost_allocation_exporter.windows import Interval, row_windows

_GET = tuple(map(operator.attrgetter, ("name", "total_cost")))


class BreakdownTotals:
    """A breakdown query (aggregate=[cluster,]namespace,<breakdown>) accumulated page by page:
    totalCost per (namespace, value) and cluster, as the API gives it (scaled in `rows`)."""

    def __init__(
        self, breakdown: str, cluster_name: str, multi_cluster: bool, savings: bool = False
    ) -> None:
        self.breakdown = breakdown
        self.props = ("cluster", "namespace", breakdown)[0 if multi_cluster else 1 :]
        self.cluster_name = cluster_name
        self.multi_cluster = multi_cluster
        self.totals: defaultdict[str, dict[tuple[str, str], float]] = defaultdict(dict)
        # the controller breakdown also sums the savings estimate per (cluster, namespace, value)
        self.savings: dict[Key, float] | None = (
            {} if savings and breakdown == "controller" else None
        )
        self.windows: set[Interval] = set()
        self.rows = 0
        self._answers = AnswerKeys()

    def add(self, page: Page) -> None:
        for aset in self._answers.new_rows(page):
            self._add_set(aset)

    def _add_set(self, aset: Mapping[str, Row]) -> None:
        rows = list(aset.values())
        self.rows += len(rows)
        names, totals = (list(map(g, rows)) for g in _GET)
        self.windows |= row_windows(rows)
        prop = self.props[-1]
        fast = not self.multi_cluster
        est: Iterable[float] = repeat(NAN) if self.savings is None else row_savings(rows)
        for key, name, total, row, saving in zip(
            aset, names, costs.column(totals), rows, est, strict=False
        ):
            if total - total != 0.0:
                continue  # unknown cost: not part of any row (nor of namespace_total_cost)
            ns, sep, value = key.partition("/")
            if fast and sep and "/" not in value and IDLE not in key and name != IDLE:
                value = strip_label_prefix(prop, value.strip())
                slot = (ns.strip() or UNALLOCATED, value or UNALLOCATED)
                cluster = self.cluster_name
            else:
                rk = split_key(key, name, properties_of(row), self.props)
                if rk.idle:
                    continue
                cluster = rk.cluster or self.cluster_name
                slot = (rk.values[-2], rk.values[-1])
            per = self.totals[cluster]
            per[slot] = per.get(slot, 0.0) + total
            if self.savings is not None:
                accumulate(self.savings, (cluster, *slot), saving)

    def result(self, top_n: int, factor: float) -> list[BreakdownRow]:
        """The top `top_n` rows by cost per cluster and one `__other__` row with the rest, costs
        multiplied by `factor` (rate mode: 1 / covered hours; unknown: no rows)."""
        out: list[BreakdownRow] = []
        if factor - factor != 0.0:
            return out
        for cluster in sorted(self.totals):
            scaled = [(slot, t * factor) for slot, t in self.totals[cluster].items()]
            ranked = sorted(scaled, key=lambda kv: (-kv[1], kv[0]))
            for (ns, value), total in ranked[:top_n]:
                out.append(BreakdownRow(cluster, self.breakdown, ns, value, costs.tidy(total)))
            if rest := ranked[top_n:]:
                other = costs.tidy(sum(t for _, t in rest))
                out.append(BreakdownRow(cluster, self.breakdown, OTHER, OTHER, other))
        return out
