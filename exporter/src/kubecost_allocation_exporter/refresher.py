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
import weakref
from collections.abc import Callable
from dataclasses import dataclass, replace

from kubecost_allocation_exporter import memory
from kubecost_allocation_exporter.assets import asset_costs
from kubecost_allocation_exporter.breakdown import BreakdownTotals
from kubecost_allocation_exporter.config import Config
from kubecost_allocation_exporter.decode import REASONS, ApiError, one_line
from kubecost_allocation_exporter.kubecost import AllocationClient, Budget
from kubecost_allocation_exporter.metrics import Health, render_costs, render_health
from kubecost_allocation_exporter.savings import Key, assemble
from kubecost_allocation_exporter.snapshot import (
    AssetCost,
    NamespaceRows,
    Snapshot,
    build,
    cap_breakdowns,
    factor,
)
from kubecost_allocation_exporter.windows import coverage, mismatch, requested_window, window_param

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
    """One refresh's result: the snapshot and what it came from (`key`: the window, a fingerprint
    of every answer, the asset costs and the APIs' states); when that equals the previous
    refresh's (a closed window), `snapshot` is the previous one."""

    key: tuple[object, ...]
    snapshot: Snapshot
    reused: bool = False
    dropped: int = 0  # series left out by the cardinality guard (--max-series)
    assets: str = "disabled"  # the Assets API: present, absent (none), failed or disabled
    savings_api: str = "disabled"  # the request-sizing API: the same states


def collect(
    client: AllocationClient,
    cfg: Config,
    now: float,
    previous: Collected | None = None,
    budget: Budget | None = None,
) -> Collected:
    """All queries of one refresh -> one snapshot. Raises ApiError.

    Each page is decoded into compact rows and released before the next is asked for. With the
    default window the same closed hour is queried ~40 times; when every answer is identical to
    the previous refresh's, the previous snapshot is reused (no snapshot work, no rendering)."""
    budget = budget or Budget(cfg)
    window = window_param(cfg.window, now, cfg.data_lag)
    requested = requested_window(window, now)
    base = "cluster,namespace" if cfg.multi_cluster else "namespace"
    on = cfg.savings != "none"
    ns_rows = NamespaceRows(cfg.cluster_name, cfg.multi_cluster, on)
    totals = [BreakdownTotals(b, cfg.cluster_name, cfg.multi_cluster, on) for b in cfg.breakdowns]
    closed = requested is not None and requested[1] <= now
    prints: list[int] = []  # of every answer, in order
    fingerprints = prints if closed else None
    targets: list[NamespaceRows | BreakdownTotals] = [ns_rows, *totals]
    for i, target in enumerate(targets):
        aggregate = base if i == 0 else f"{base},{cfg.breakdowns[i - 1]}"
        for page in client.query(window, aggregate, budget, cfg.multi_cluster, fingerprints):
            target.add(page)
        if (why := mismatch(target.windows, requested, now)) is not None:
            raise ApiError(
                "window_mismatch", f"answer to aggregate={aggregate} is for another time: {why}"
            )
    del target, targets  # `ns_rows` is then the only reference to the rows
    assets, state = _assets(client, cfg, window, now, budget) if cfg.assets else ((), "disabled")
    engine, savings_state = _savings(client, cfg, budget, prints)
    key = (window, tuple(prints), assets, state, savings_state)
    if closed and previous is not None and previous.key == key:
        return replace(previous, reused=True)
    cov = coverage(ns_rows.windows, requested, now)
    if ns_rows.rows and cov.hours is None and cfg.metric_mode == "rate":
        log.warning("the answer has no usable window; cost rates cannot be computed")
    snapshot, dropped = build(ns_rows, cov, cfg.metric_mode, cfg.max_series)
    estimated = ns_rows.estimated() if on else {}
    del ns_rows  # the rows are not needed any more: freed before the breakdowns and rendering
    scaled = [(t, factor(cfg.metric_mode, coverage(t.windows, requested, now))) for t in totals]
    rows = [r for t, f in scaled for r in t.result(cfg.breakdown_top_n, f)]
    kept = {(c.name, n, "") for c in snapshot.clusters for n in c.names} if dropped and on else None
    by_controller = next((t.savings for t in totals if t.savings is not None), None)
    saved, dropped_savings = assemble(estimated, engine, kept, by_controller, cfg.breakdown_top_n)
    dropped += dropped_savings
    if rows or saved:
        snapshot, more = cap_breakdowns(snapshot, rows, cfg.max_series, saved)
        dropped += more
    if dropped:
        log.warning(
            f"cardinality guard: {dropped} cost series over --max-series {cfg.max_series} left "
            "out (cheapest namespaces first; cluster series kept)",
            extra={"dropped_series": dropped},
        )
    snapshot = replace(snapshot, assets=assets)
    return Collected(key, snapshot, dropped=dropped, assets=state, savings_api=savings_state)


def _assets(
    client: AllocationClient, cfg: Config, window: str, now: float, budget: Budget
) -> tuple[tuple[AssetCost, ...], str]:
    """The asset costs and the state exporter_info shows. A failure is logged and leaves the
    asset series out; the allocation numbers are published all the same (they do not depend on
    the assets, and a failing Assets API must not hide them)."""
    try:
        opencost = client.endpoint is not None and client.endpoint.flavour == "opencost"
        # OpenCost's Assets API aggregates by type only
        aggregate = "cluster,type" if cfg.multi_cluster and not opencost else "type"
        if (pages := client.assets(window, aggregate, budget)) is None:
            return (), "absent"
        return asset_costs(pages, cfg, requested_window(window, now), now), "present"
    except ApiError as exc:
        log.warning(
            "assets not read, allocation costs published without them: %s",
            exc,
            extra={"reason": exc.reason},
        )
        return (), "failed"


def _savings(
    client: AllocationClient, cfg: Config, budget: Budget, prints: list[int]
) -> tuple[dict[Key, float] | None, str]:
    """Kubecost's recommendations (their fingerprint added to `prints`) and the state
    exporter_info shows; a failure is logged and the estimates stand in, as for the assets."""
    try:
        got = client.savings(budget, prints) if cfg.savings == "api" else None
    except ApiError as exc:
        log.warning("savings API not read, estimates used: %s", exc, extra={"reason": exc.reason})
        return None, "failed"
    return got, "disabled" if cfg.savings != "api" else "absent" if got is None else "present"


class Refresher:
    def __init__(
        self,
        cfg: Config,
        client: AllocationClient,
        *,
        wall_clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        memory.tune()
        self._cfg = cfg
        self._client = client
        self._wall = wall_clock
        self._mono = monotonic
        # the health series' record, updated in place by each refresh and rendered right away
        self._health = Health(
            None,
            None,
            dict.fromkeys(REASONS, 0),
            assets="unknown" if cfg.assets else "disabled",
            savings_api="unknown" if cfg.savings == "api" else "disabled",
        )
        self._collected: Collected | None = None
        self._state = Exposition(self._render_health(), b"", None)
        self.attempted = threading.Event()  # set once the first refresh finished (ok or not)
        self.last_error: ApiError | None = None
        self.snapshot: Snapshot | None = None
        self._beat = monotonic()
        self._busy_since: float | None = None
        self._thread: threading.Thread | None = None
        self._gzip_lock = threading.Lock()
        # keyed by a weak reference, not id(): a new exposition may reuse a freed one's memory
        self._gzip_cache: tuple[weakref.ref[Exposition], bool, bytes] | None = None

    def _render_health(self) -> bytes:
        endpoint = self._client.endpoint
        self._health.api_flavour = endpoint.flavour if endpoint is not None else "unknown"
        return render_health(self._health, self._cfg)

    def refresh_once(self, *, log_failure: bool = True) -> ApiError | None:
        """One refresh; returns the error (also counted and logged) or None."""
        self._busy_since = started = self._mono()
        health = self._health
        now_wall = self._wall()
        error: ApiError | None = None
        costs: bytes | None = None
        # A refresh makes many acyclic objects freed by reference counting; the cyclic GC would
        # walk them repeatedly while they are built. Pause it for this bounded piece of work.
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            budget = Budget(self._cfg, self._mono)
            collected = collect(self._client, self._cfg, now_wall, self._collected, budget)
            if collected.reused and self._state.costs:
                costs = self._state.costs
            else:
                costs = render_costs(collected.snapshot, self._cfg)
                # the namespaces' numbers are in `costs` now: not kept twice until the next refresh
                collected = replace(collected, snapshot=collected.snapshot.without_values())
            self._collected = collected
            self.snapshot = collected.snapshot
            health.dropped_series += collected.dropped
            health.assets, health.savings_api = collected.assets, collected.savings_api
        except ApiError as exc:
            log.debug("refresh failed: %s", exc, exc_info=True, extra={"reason": exc.reason})
            # a copy without traceback: the frames of the failed refresh (and the answer in
            # their locals) are freed now, not kept until the next refresh or a full collection
            error = exc.clean()
        except Exception as exc:  # a bug or an answer we did not foresee: say why, keep running
            log.debug("refresh failed: %s", exc, exc_info=True, extra={"reason": "bad_response"})
            why = one_line(f"could not process the answer: {type(exc).__name__}: {exc}")
            error = ApiError("bad_response", why)
        finally:
            if gc_was_enabled:
                gc.enable()
            memory.release()
        finished = self._mono()
        health.duration_seconds = finished - started
        if error is None and health.success is not True and (snap := self.snapshot) is not None:
            how, n = "ok" if health.success is None else "recovered", snap.namespace_count
            log.info(
                f"refresh {how}: {n} namespaces in {len(snap.clusters)} clusters, "
                f"{health.duration_seconds:.3f}s",
                extra={"namespaces": n},
            )
        health.success = error is None
        self.last_error = error
        if error is not None:
            health.errors[error.reason] += 1
            if log_failure:
                log.warning("refresh failed: %s", error, extra={"reason": error.reason})
        else:
            health.last_success_timestamp = now_wall
        rendered = self._render_health()
        if costs is not None:
            self._state = Exposition(rendered, costs, finished)
            log.debug("refreshed in %.3fs", health.duration_seconds)
        else:
            self._state = replace(self._state, health=rendered)
        self._busy_since = None
        self._beat = self._mono()
        self.attempted.set()
        return error

    @property
    def reused(self) -> bool:
        """The last successful refresh got identical answers and reused its snapshot."""
        return self._collected is not None and self._collected.reused

    def _current(self) -> tuple[Exposition, bool]:
        state = self._state
        at = state.success_monotonic
        return state, at is not None and self._mono() - at <= self._cfg.staleness_limit

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
        with self._gzip_lock:
            if (got := self._gzip_cache) and got[0]() is state and got[1] == fresh:
                return got[2]
            body = gzip.compress(state.health + state.costs if fresh else state.health, 6)
            self._gzip_cache = (weakref.ref(state), fresh, body)
            return body

    # -- background loop ----------------------------------------------------------------------

    def next_delay(self) -> float:
        j = self._cfg.refresh_jitter
        return self._cfg.refresh_interval * (1.0 + random.uniform(-j, j))

    def run(self, stop: threading.Event) -> None:
        # This thread yields the CPU to the serving threads (Linux: a thread is a task with its
        # own nice value); a no-op where that is not possible.
        with contextlib.suppress(AttributeError, OSError):
            tid = threading.get_native_id()
            nice = os.getpriority(os.PRIO_PROCESS, tid)
            os.setpriority(os.PRIO_PROCESS, tid, min(19, nice + REFRESHER_NICE))
        while not stop.is_set():
            self.refresh_once()
            stop.wait(self.next_delay())

    def start(self, stop: threading.Event) -> threading.Thread:
        thread = threading.Thread(target=self.run, args=(stop,), name="refresher", daemon=True)
        self._thread = thread
        thread.start()
        return thread

    def healthy(self) -> bool:
        """Liveness: the loop thread runs and is not stuck longer than a refresh can take."""
        if self._thread is not None and not self._thread.is_alive():
            return False
        cfg, busy = self._cfg, self._busy_since
        if busy is not None:
            # The longest a healthy refresh can take: its deadline, plus one query whose every
            # attempt times out (the deadline is checked between reads).
            per_query = (cfg.retries + 1) * (cfg.connect_timeout + cfg.request_timeout)
            backoff = sum(min(30.0, cfg.retry_backoff * 2.0**i) for i in range(cfg.retries))
            return self._mono() - busy <= cfg.deadline + per_query + backoff + 30.0
        return self._mono() - self._beat <= cfg.refresh_interval * (1 + cfg.refresh_jitter) + 30.0
