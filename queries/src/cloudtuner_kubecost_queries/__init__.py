"""The PromQL the platform runs against Thanos for `cloudtuner_kubecost_*` data (docs/queries.md).

A distribution of its own (`cloudtuner-kubecost-queries`, requests only) so the backend installs it
without the exporter; the exporter's `verify` uses its client::

    client = ThanosClient("https://thanos-query.example", headers={"THANOS-TENANT": "acme"})
    result = namespace_costs(client, cluster="prod-eu-1", tenant_id="acme", start=t0, end=t1)
    if result.no_data:
        ...  # fall back to the older (Phase 1) path
    else:
        for namespace, usd in result.value.items(): ...

Every function returns a `QueryResult`: `status` is `ok`, `no_data` (no `cloudtuner_kubecost_*`
series of this cluster and tenant in the asked time range: the explicit signal to fall back) or
`unsupported` (e.g. a range cost asked of a cluster whose exporter runs in `total` mode). HTTP and
PromQL errors raise `QueryError`.

Costs in `rate` mode (the default) are USD per hour; a cost over a time range is the average
hourly rate over the range times its hours (gaps are bridged at the average rate). Efficiencies
are ratios (usage / request).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, Literal, TypeVar

import requests

__version__ = "0.1.0"
T = TypeVar("T")
PREFIX = "cloudtuner_kubecost_"
RESOURCES = ("cpu", "ram", "pv", "network", "lb", "gpu", "shared", "idle")
_LABEL_VALUE = re.compile(r'^[^"\\\n]*$')


class QueryError(RuntimeError):
    """Thanos could not be reached or refused a query."""


@dataclass(frozen=True)
class QueryResult(Generic[T]):
    status: Literal["ok", "no_data", "unsupported"]
    value: T
    #: The PromQL that produced `value` (or that found nothing), for logs and docs.
    queries: tuple[str, ...] = ()
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def no_data(self) -> bool:
        return self.status == "no_data"


@dataclass
class ThanosClient:
    """Instant and range queries against a Prometheus-compatible API (Thanos Query, Prometheus)."""

    url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    timeout: float = 30.0
    session: requests.Session = field(default_factory=requests.Session)

    def _get(self, path: str, params: Mapping[str, str]) -> Any:
        url = self.url.rstrip("/") + path
        try:
            resp = self.session.get(url, params=params, headers=dict(self.headers), timeout=self.timeout)
        except requests.RequestException as exc:
            raise QueryError(f"{url}: {type(exc).__name__}: {exc}") from exc
        try:
            doc = resp.json()
        except ValueError as exc:
            raise QueryError(f"{url}: HTTP {resp.status_code}, not JSON: {resp.text[:200]!r}") from exc
        if resp.status_code != 200 or doc.get("status") != "success":
            raise QueryError(f"{url}: HTTP {resp.status_code}: {doc.get('error') or doc}")
        return doc["data"]

    def instant(self, promql: str, at: datetime | None = None) -> list[tuple[dict[str, str], float]]:
        """(labels, value) of every series of an instant vector; NaN samples dropped."""
        params = {"query": promql}
        if at is not None:
            params["time"] = f"{at.timestamp():.3f}"
        data = self._get("/api/v1/query", params)
        if data["resultType"] == "scalar":
            return [({}, float(data["result"][1]))]
        out = [(dict(r["metric"]), float(r["value"][1])) for r in data["result"]]
        return [(m, v) for m, v in out if not math.isnan(v)]

    def range(
        self, promql: str, start: datetime, end: datetime, step: timedelta
    ) -> list[tuple[dict[str, str], list[tuple[float, float]]]]:
        params = {
            "query": promql,
            "start": f"{start.timestamp():.3f}",
            "end": f"{end.timestamp():.3f}",
            "step": f"{step.total_seconds():g}s",
        }
        data = self._get("/api/v1/query_range", params)
        return [(dict(r["metric"]), [(float(t), float(v)) for t, v in r["values"]]) for r in data["result"]]


def selector(cluster: str, tenant_id: str, **extra: str) -> str:
    """`{cluster="...",tenant_id="..."}`; values are checked, never escaped into PromQL blindly."""
    labels = {"cluster": cluster, "tenant_id": tenant_id, **extra}
    for k, v in labels.items():
        if not _LABEL_VALUE.match(v):
            raise ValueError(f"{k}={v!r}: quotes, backslashes and newlines are not allowed in a label value")
    return "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}"


def _seconds(delta: timedelta) -> int:
    return max(1, int(delta.total_seconds()))


def _check_range(start: datetime, end: datetime) -> None:
    if end <= start:
        raise ValueError(f"end {end.isoformat()} is not after start {start.isoformat()}")


def data_present(client: ThanosClient, cluster: str, tenant_id: str, start: datetime, end: datetime) -> bool:
    """True when a `cloudtuner_kubecost_*` series of cluster and tenant has a sample in range."""
    promql = data_presence_query(cluster, tenant_id, _seconds(end - start))
    return bool(client.instant(promql, at=end))


def data_presence_query(cluster: str, tenant_id: str, range_seconds: int) -> str:
    sel = selector(cluster, tenant_id).replace("{", f'{{__name__=~"{PREFIX}.+",', 1)
    return f"count(last_over_time({sel}[{range_seconds}s]))"


def metric_mode(
    client: ThanosClient,
    cluster: str,
    tenant_id: str,
    at: datetime,
    lookback: timedelta,
) -> str:
    """`rate` or `total` from `cloudtuner_kubecost_exporter_info`; `rate` when it is absent."""
    sel = selector(cluster, tenant_id)
    promql = f"last_over_time({PREFIX}exporter_info{sel}[{_seconds(lookback)}s])"
    modes = {m.get("metric_mode", "rate") for m, _ in client.instant(promql, at=at)}
    return "total" if modes == {"total"} else "rate"


def _missing(
    client: ThanosClient, cluster: str, tenant_id: str, start: datetime, end: datetime, *, empty: T
) -> QueryResult[T] | None:
    """The `no_data` answer when no series of cluster and tenant has a sample in [start, end]; else None."""
    promql = data_presence_query(cluster, tenant_id, _seconds(end - start))
    if client.instant(promql, at=end):
        return None
    reason = (
        f"no {PREFIX}* series for cluster={cluster!r} tenant_id={tenant_id!r} "
        f"between {start.isoformat()} and {end.isoformat()}"
    )
    return QueryResult("no_data", empty, (promql,), reason)


def namespace_costs(
    client: ThanosClient, cluster: str, tenant_id: str, start: datetime, end: datetime
) -> QueryResult[dict[str, float]]:
    """USD per namespace over [start, end] (rate mode): average hourly rate x hours of the range."""
    _check_range(start, end)
    seconds = _seconds(end - start)
    if (missing := _missing(client, cluster, tenant_id, start, end, empty=dict[str, float]())) is not None:
        return missing
    if metric_mode(client, cluster, tenant_id, end, end - start) != "rate":
        return QueryResult("unsupported", {}, (), "cost over a range needs the exporter in rate mode")
    promql = (
        f"sum by (namespace) "
        f"(avg_over_time({PREFIX}namespace_total_cost{selector(cluster, tenant_id)}"
        f"[{seconds}s])) * {seconds} / 3600"
    )
    return QueryResult(
        "ok",
        {m.get("namespace", ""): v for m, v in client.instant(promql, at=end)},
        (promql,),
    )


def cluster_totals(
    client: ThanosClient,
    cluster: str,
    tenant_id: str,
    at: datetime | None = None,
    lookback: timedelta = timedelta(minutes=10),
) -> QueryResult[dict[str, float]]:
    """The cluster's current cost by resource (`total`, `cpu`, ..., `idle`): USD/h in rate mode."""
    at = at or datetime.now(UTC)
    if (missing := _missing(client, cluster, tenant_id, at - lookback, at, empty=dict[str, float]())) is not None:
        return missing
    promql = (
        f'label_replace({{__name__=~"{PREFIX}cluster_(total|{"|".join(RESOURCES)})_cost",'
        f"{selector(cluster, tenant_id)[1:-1]}}}, "
        f'"resource", "$1", "__name__", "{PREFIX}cluster_(.+)_cost")'
    )
    promql = f"max by (resource) ({promql})"
    return QueryResult("ok", {m["resource"]: v for m, v in client.instant(promql, at=at)}, (promql,))


def asset_coverage_query(cluster: str, tenant_id: str) -> str:
    assets = selector(cluster, tenant_id, type="total")
    return (
        f"max({PREFIX}cluster_total_cost{selector(cluster, tenant_id)}) / max({PREFIX}cluster_assets_cost{assets} > 0)"
    )


def asset_coverage(
    client: ThanosClient, cluster: str, tenant_id: str, at: datetime | None = None
) -> QueryResult[float]:
    """Allocations incl. idle / what the cluster's assets cost, now (docs/metrics.md "Assets"):
    1.0 when they add up. `unsupported` when the exporter exports no asset costs (an engine
    without an Assets API, or `--assets false`)."""
    at = at or datetime.now(UTC)
    lookback = timedelta(minutes=10)
    if (missing := _missing(client, cluster, tenant_id, at - lookback, at, empty=math.nan)) is not None:
        return missing
    promql = asset_coverage_query(cluster, tenant_id)
    result = client.instant(promql, at=at)
    if not result:
        return QueryResult("unsupported", math.nan, (promql,), "no asset costs exported")
    return QueryResult("ok", result[0][1], (promql,))


@dataclass(frozen=True)
class Efficiency:
    cluster: dict[str, float]
    namespaces: dict[str, dict[str, float]]


def efficiency(
    client: ThanosClient, cluster: str, tenant_id: str, start: datetime, end: datetime
) -> QueryResult[Efficiency]:
    """Average efficiency (usage / request) over [start, end]: cluster and per namespace,
    each as `cpu`, `ram` and `total`."""
    _check_range(start, end)
    seconds = _seconds(end - start)
    empty = Efficiency({}, {})
    if (missing := _missing(client, cluster, tenant_id, start, end, empty=empty)) is not None:
        return missing
    sel = selector(cluster, tenant_id)
    queries: list[str] = []
    value = Efficiency({}, {})
    for kind in ("cpu", "ram", "total"):
        q_cluster = f"max(avg_over_time({PREFIX}cluster_{kind}_efficiency{sel}[{seconds}s]))"
        q_ns = f"max by (namespace) (avg_over_time({PREFIX}namespace_{kind}_efficiency{sel}[{seconds}s]))"
        queries += [q_cluster, q_ns]
        for _, v in client.instant(q_cluster, at=end):
            value.cluster[kind] = v
        for m, v in client.instant(q_ns, at=end):
            value.namespaces.setdefault(m.get("namespace", ""), {})[kind] = v
    return QueryResult("ok", value, tuple(queries))


def cost_per_day(
    client: ThanosClient, cluster: str, tenant_id: str, start: datetime, end: datetime
) -> QueryResult[dict[str, float]]:
    """USD per UTC day (`YYYY-MM-DD`) for the days overlapping [start, end], from rate-mode data.

    A complete day is its average hourly rate x 24 (hours without data are bridged at the day's
    average rate); the day that is still running is its average rate x the hours elapsed so far.
    """
    _check_range(start, end)
    if (missing := _missing(client, cluster, tenant_id, start, end, empty=dict[str, float]())) is not None:
        return missing
    if metric_mode(client, cluster, tenant_id, end, end - start) != "rate":
        return QueryResult("unsupported", {}, (), "cost per day needs the exporter in rate mode")
    sel = selector(cluster, tenant_id)
    out: dict[str, float] = {}
    queries: list[str] = []
    day = datetime(start.year, start.month, start.day, tzinfo=UTC)
    while day < end:
        day_end = min(day + timedelta(days=1), end)
        seconds = _seconds(day_end - day)
        promql = f"sum(avg_over_time({PREFIX}cluster_total_cost{sel}[{seconds}s])) * 24"
        if day_end < day + timedelta(days=1):
            promql = f"sum(avg_over_time({PREFIX}cluster_total_cost{sel}[{seconds}s])) * {seconds} / 3600"
        queries.append(promql)
        result = client.instant(promql, at=day_end)
        if result:
            out[day.date().isoformat()] = result[0][1]
        day += timedelta(days=1)
    return QueryResult("ok", out, tuple(queries))
