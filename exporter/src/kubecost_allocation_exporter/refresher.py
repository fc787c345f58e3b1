"""Background refresher: query, build a whole new snapshot, render it, swap it in atomically.

`/metrics` reads `Refresher.exposition()`, which only concatenates pre-rendered bytes: health
series always, cost series only while the last success is younger than --staleness-limit.
"""

from __future__ import annotations

import contextlib
import gc
import gzip
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from kubecost_allocation_exporter import fastpath
from kubecost_allocation_exporter.config import Config
from kubecost_allocation_exporter.kubecost import (
    REASONS,
    AllocationClient,
    AllocationSet,
    ApiError,
    FetchResult,
    one_line,
)
from kubecost_allocation_exporter.metrics import Health, health_families, render, render_costs
from kubecost_allocation_exporter.model import (
    IDLE,
    BreakdownRow,
    BreakdownTotals,
    Snapshot,
    build_snapshot,
    cap_series,
    explicit_window,
    window_param,
)

log = logging.getLogger(__name__)
#: Niceness added to the refresher thread so /metrics answers first when the CPU is busy.
REFRESHER_NICE = 10


@dataclass(frozen=True)
class Exposition:
    """What /metrics serves; replaced as a whole (attribute assignment is atomic)."""

    health: bytes
    costs: bytes
    success_monotonic: float | None  # when `costs` was built


@dataclass(frozen=True)
class Collected:
    """One refresh's result: the snapshot, the raw answers it came from, and whether they were
    byte-identical to the previous refresh's (then `snapshot` is the previous one, reused)."""

    window: str
    snapshot: Snapshot
    bodies: tuple[bytes, ...]
    reused: bool = False
    dropped: int = 0  # series left out by the cardinality guard (--max-series)


def _closed(window: str, now: datetime) -> bool:
    """A window whose numbers cannot change with `now` (an explicit pair that ended)."""
    pair = explicit_window(window)
    return pair is not None and pair[1] <= now


def collect(
    client: AllocationClient, cfg: Config, now: datetime, previous: Collected | None = None
) -> Collected:
    """All queries of one refresh -> one snapshot. Raises ApiError.

    With the default window the same hour is queried ~30 times; when every answer is
    byte-identical to the previous refresh's, the previous snapshot is reused (no parsing,
    no model work, no rendering)."""
    window = window_param(cfg.window, now, cfg.data_lag)
    base = "cluster,namespace" if cfg.multi_cluster else "namespace"
    aggregates = [base] + [f"{base},{b}" for b in cfg.breakdowns]
    cacheable = (
        previous is not None
        and previous.window == window
        and len(previous.bodies) == len(aggregates)
        and _closed(window, now)
    )
    # Kubecost 2.x pages (offset/limit by totalCost): each page is parsed on its own, so the
    # whole answer (and the parser's transient copy of it) is never in memory at once. OpenCost
    # ignores paging; it is not asked.
    endpoint = client.endpoint
    paging = cfg.page_size > 0 and (endpoint is None or endpoint.flavour != "opencost")
    results: list[FetchResult] = []
    totals: list[BreakdownTotals] = []
    bodies: list[bytes] = []
    unchanged: list[bool] = []
    # The namespace query of a single cluster is asked for typed rows (fastpath): the usual
    # answer then skips the general parser and model; any other answer takes the general path.
    typed = not cfg.multi_cluster
    ns_pages: list[FetchResult] = []
    for i, aggregate in enumerate(aggregates):
        same_as = previous.bodies[i] if cacheable and previous is not None else None
        if not paging:
            res = client.fetch(
                window,
                aggregate,
                split_idle=cfg.multi_cluster,
                same_as=same_as,
                typed=typed and i == 0,
            )
            results.append(res)
            bodies.append(res.body)
            unchanged.append(res.unchanged)
            continue
        acc = _totals(cfg, cfg.breakdowns[i - 1], window, now) if i else None
        seen: set[str] = set()
        prints = []
        for page in client.fetch_pages(
            window, aggregate, cfg.page_size, cfg.multi_cluster, typed=typed and acc is None
        ):
            prints.append((len(page.body), hash(page.body)))
            if acc is None:
                # a server that ignores `offset` is caught at its second page, not its 10,000th
                for aset in page.sets if page.typed is None else [page.typed.rows]:
                    _check_repeats(aset, seen, len(prints))
                    seen.update(aset)
                ns_pages.append(page)
                continue
            try:
                acc.add(page.sets)
            except ValueError as exc:
                raise ApiError("bad_response", str(exc)) from None
        if acc is not None:
            totals.append(acc)
        bodies.append(b"pages:" + repr(prints).encode())
        unchanged.append(same_as is not None and bodies[-1] == same_as)
    if previous is not None and cacheable and all(unchanged):
        return Collected(
            window, previous.snapshot, tuple(bodies), reused=True, dropped=previous.dropped
        )
    if not paging:
        results = [r.parsed(typed and i == 0) for i, r in enumerate(results)]
        ns_pages = [results.pop(0)]
    snapshot = _namespace_snapshot(ns_pages, cfg, window, now)
    del ns_pages  # the namespace answer is not needed any more
    if snapshot.allocations and snapshot.coverage.hours is None and cfg.metric_mode == "rate":
        log.warning("the answer has no usable window; cost rates cannot be computed")
    for breakdown, res in zip(cfg.breakdowns, results, strict=False):
        acc = _totals(cfg, breakdown, window, now)
        acc.add(res.sets)
        totals.append(acc)
    rows: list[BreakdownRow] = []
    for acc in totals:
        rows.extend(acc.rows(cfg.breakdown_top_n))
    if rows:
        snapshot = replace(snapshot, breakdowns=tuple(rows))
    snapshot, dropped = cap_series(snapshot, cfg.max_series)
    if dropped:
        log.warning(
            "cardinality guard: %d cost series over --max-series %d left out "
            "(cheapest namespaces first; cluster series kept)",
            dropped,
            cfg.max_series,
            extra={"dropped_series": dropped},
        )
    return Collected(window, snapshot, tuple(bodies), dropped=dropped)


def _namespace_snapshot(
    pages: list[FetchResult], cfg: Config, window: str, now: datetime
) -> Snapshot:
    """The namespace query's pages -> snapshot: column-wise when every page came in the usual
    shape (fastpath), else the general model over the pages' sets joined by `_new_rows`."""
    typed = [p.typed for p in pages if p.typed is not None]
    if pages and len(typed) == len(pages):
        fast = fastpath.namespace_snapshot(
            typed,
            requested_window=window,
            now=now,
            metric_mode=cfg.metric_mode,
            cluster_name=cfg.cluster_name,
        )
        if fast is not None:
            return fast
    ns_sets: list[AllocationSet] = []
    seen: set[str] = set()
    for n, page in enumerate(pages, 1):
        full = page.general()
        if full.skipped:
            log.debug("ignored %d null or non-object entries in 'data'", full.skipped)
        ns_sets.extend(_new_rows(full.sets, seen, n))
    return build_snapshot(
        ns_sets,
        requested_window=window,
        now=now,
        metric_mode=cfg.metric_mode,
        cluster_name=cfg.cluster_name,
        multi_cluster=cfg.multi_cluster,
    )


def _new_rows(sets: list[AllocationSet], seen: set[str], page: int) -> Iterator[AllocationSet]:
    """A page's sets without rows an earlier page had: an `__idle__` row repeated in every page is
    kept once; any other repeated row means the server ignores `offset` (an error)."""
    for raw in sets:
        aset = raw
        if page > 1 and not seen.isdisjoint(raw):
            _check_repeats(raw, seen, page)
            aset = {k: v for k, v in raw.items() if k not in seen}
        seen.update(aset)
        yield aset


def _lower_priority() -> None:
    """The calling thread yields the CPU to the serving threads (Linux: a thread is a task with
    its own nice value); a no-op where that is not possible."""
    with contextlib.suppress(AttributeError, OSError):
        tid = threading.get_native_id()
        nice = os.getpriority(os.PRIO_PROCESS, tid)
        os.setpriority(os.PRIO_PROCESS, tid, min(19, nice + REFRESHER_NICE))


def _check_repeats(keys: Iterable[str], seen: set[str], page: int) -> None:
    """Raise when a row of an earlier page (other than `__idle__`) comes again."""
    if page > 1 and not seen.isdisjoint(keys):
        for key in seen.intersection(keys):
            if IDLE not in key:
                raise ApiError(
                    "bad_response",
                    f"row {key!r} came again in page {page}: the API ignores 'offset' "
                    "(set --page-size 0)",
                )


def _totals(cfg: Config, breakdown: str, window: str, now: datetime) -> BreakdownTotals:
    return BreakdownTotals(
        breakdown=breakdown,
        requested_window=window,
        now=now,
        metric_mode=cfg.metric_mode,
        cluster_name=cfg.cluster_name,
        multi_cluster=cfg.multi_cluster,
    )


class Refresher:
    def __init__(
        self,
        cfg: Config,
        client: AllocationClient,
        *,
        wall_clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._cfg = cfg
        self._client = client
        self._wall = wall_clock
        self._mono = monotonic
        self._errors = dict.fromkeys(REASONS, 0)
        self._dropped_series = 0
        self._success: bool | None = None
        self._duration: float | None = None
        self._last_success_wall: float | None = None
        self._state = Exposition(render(health_families(self._health(), cfg)), b"", None)
        self.attempted = threading.Event()  # set once the first refresh finished (ok or not)
        self.last_error: ApiError | None = None
        self.snapshot: Snapshot | None = None
        self._beat = monotonic()
        self._busy_since: float | None = None
        self._thread: threading.Thread | None = None
        self._gzip_lock = threading.Lock()
        self._collected: Collected | None = None
        self._gzip_cache: tuple[tuple[int, bool], bytes] | None = None

    def _health(self) -> Health:
        endpoint = self._client.endpoint
        return Health(
            success=self._success,
            duration_seconds=self._duration,
            errors=dict(self._errors),
            dropped_series=self._dropped_series,
            last_success_timestamp=self._last_success_wall,
            api_flavour=endpoint.flavour if endpoint is not None else "unknown",
        )

    def refresh_once(self, *, log_failure: bool = True) -> ApiError | None:
        """One refresh; returns the error (also counted and logged) or None."""
        started = self._mono()
        self._busy_since = started
        now_wall = self._wall()
        error: ApiError | None = None
        costs: bytes | None = None
        # The parsed answer is millions of acyclic objects freed by reference counting; the cyclic
        # GC would walk them repeatedly while they are built (measured: ~2x slower at 10k
        # namespaces). Pause it for this bounded piece of work.
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            now = datetime.fromtimestamp(now_wall, UTC)
            collected = collect(self._client, self._cfg, now, self._collected)
            if collected.reused and self._state.costs:
                costs = self._state.costs
            else:
                costs = render_costs(collected.snapshot, self._cfg)
            self._collected = collected
            self.snapshot = collected.snapshot
            self._dropped_series += collected.dropped
        except ApiError as exc:
            error = exc
        except Exception as exc:  # a bug or an answer we did not foresee: say why, keep running
            log.debug("refresh failed", exc_info=True)
            error = ApiError(
                "bad_response",
                one_line(f"could not process the answer: {type(exc).__name__}: {exc}"),
            )
        finally:
            if gc_was_enabled:
                gc.enable()
        finished = self._mono()
        self._duration = finished - started
        if error is None and self._success is not True and self.snapshot is not None:
            log.info(
                "refresh %s: %d namespaces in %d clusters, %.3fs",
                "ok" if self._success is None else "recovered",
                self.snapshot.namespace_count,
                len(self.snapshot.clusters),
                self._duration,
                extra={"namespaces": self.snapshot.namespace_count},
            )
        self._success = error is None
        self.last_error = error
        if error is not None:
            self._errors[error.reason] += 1
            if log_failure:
                log.warning("refresh failed: %s", error, extra={"reason": error.reason})
        else:
            self._last_success_wall = now_wall
        health = render(health_families(self._health(), self._cfg))
        if costs is not None:
            self._state = Exposition(health, costs, finished)
            log.debug("refreshed in %.3fs", self._duration)
        else:
            self._state = replace(self._state, health=health)
        self._busy_since = None
        self._beat = self._mono()
        self.attempted.set()
        return error

    @property
    def reused(self) -> bool:
        """The last successful refresh got byte-identical answers and reused its snapshot."""
        return self._collected is not None and self._collected.reused

    def _current(self) -> tuple[Exposition, bool]:
        state = self._state
        fresh = (
            state.success_monotonic is not None
            and self._mono() - state.success_monotonic <= self._cfg.staleness_limit
        )
        return state, fresh

    def exposition(self) -> bytes:
        return b"".join(self.exposition_parts())

    def exposition_parts(self) -> tuple[bytes, ...]:
        """The exposition as the pre-rendered pieces, to be written one after the other (no
        per-scrape copy of a 10 MB cost part)."""
        state, fresh = self._current()
        return (state.health, state.costs) if fresh and state.costs else (state.health,)

    def exposition_gzip(self) -> bytes:
        """The same bytes gzip-compressed; compressed at most once per snapshot (on the first
        scrape that asks for gzip), so a 10 MB exposition is not recompressed on every scrape."""
        state, fresh = self._current()
        key = (id(state), fresh)
        with self._gzip_lock:
            if self._gzip_cache is not None and self._gzip_cache[0] == key:
                return self._gzip_cache[1]
            body = gzip.compress(state.health + state.costs if fresh else state.health, 6)
            self._gzip_cache = (key, body)
            return body

    # -- background loop ----------------------------------------------------------------------

    def next_delay(self) -> float:
        j = self._cfg.refresh_jitter
        return self._cfg.refresh_interval * (1.0 + random.uniform(-j, j))

    def run(self, stop: threading.Event) -> None:
        _lower_priority()
        while not stop.is_set():
            self.refresh_once()
            self._beat = self._mono()
            stop.wait(self.next_delay())

    def start(self, stop: threading.Event) -> threading.Thread:
        self._thread = threading.Thread(
            target=self.run, args=(stop,), name="refresher", daemon=True
        )
        self._thread.start()
        return self._thread

    def refresh_budget(self) -> float:
        """Longest a healthy refresh can take: every attempt of every query timing out."""
        cfg = self._cfg
        per_query = (cfg.retries + 1) * (cfg.connect_timeout + cfg.request_timeout)
        backoff = sum(min(30.0, cfg.retry_backoff * 2.0**i) for i in range(cfg.retries))
        return (per_query + backoff) * (1 + len(cfg.breakdowns)) + 30.0

    def healthy(self) -> bool:
        """Liveness: the loop thread runs and is not stuck longer than a refresh can take."""
        if self._thread is not None and not self._thread.is_alive():
            return False
        busy = self._busy_since
        if busy is not None:
            return self._mono() - busy <= self.refresh_budget()
        limit = self._cfg.refresh_interval * (1 + self._cfg.refresh_jitter) + 30.0
        return self._mono() - self._beat <= limit
