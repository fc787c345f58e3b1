"""Allocation API semantics of the simulator (a test double): parameters -> sets of allocations -> JSON.

Pure functions, no I/O. Follows the public sources: Kubecost's Allocation API documentation
(https://docs.kubecost.com/apis/monitoring-apis/api-allocation, kubecost/docs `apis/monitoring-apis/api-allocation.md`
and `apis/apis-overview.md`), OpenCost's (https://opencost.io/docs/integrations/api) and OpenCost's source
(opencost/opencost `core/pkg/opencost/allocation.go`, `allocation_json.go`, `window.go`, `allocationprops.go`,
`pkg/costmodel/aggregation.go`, `router.go`). The section marks (§) below name the topics of those pages:
§1.3/§1.4 window parameter and alignment, §2.3-§2.8 allocation fields, keys, totals, efficiencies, rounding.

* window: keywords (`today`, `yesterday`, `week`, `month`, `lastweek`, `lastmonth`), durations rounded *forward*
  (`30m`, `24h`, `7d`, `2w`, optionally `"3d offset 1d"`), RFC3339 pairs, unix-second pairs (§1.3, §1.4);
* aggregate: cluster, node, namespace, controllerKind, controller (`kind:name`), service, pod, container,
  `label:<k>`, `annotation:<k>`, deployment/statefulset/daemonset/job, team-style label aliases, comma lists;
  missing values are `__unallocated__`; keys are values joined by `/` (§2.5);
* accumulate (`true`, `false` = hourly/daily steps, `hour`, `day`, `week`, `month`, `quarter`), `step`;
* idle (`idle` on Kubecost, `includeIdle` on OpenCost) as one `__idle__` row; `shareIdle` weighted per resource
  into cpuCost/ramCost (+ `cpuCostIdle`/`ramCostIdle`); idle rows carry no adjustments (§2.5, §2.6);
* Kubecost reconciliation adjustments (`reconcile`, none on `/compute` and OpenCost); `totalCost` includes them;
* efficiencies with the zero-request rule; properties intersected on aggregation (§2.4, §2.7);
* window quirks of real engines, switched on per run (`Quirks`): older Kubecost/OpenCost giving every allocation
  its own window, idle known for only the last hours of a set, an answer for another time (a stale cache), an
  engine that answers in steps whatever `accumulate` says, and empty sets `{}` for steps without data;
* serialization: OpenCost's field order, top-level numbers rounded to 5 decimals, NaN/Inf -> `null`,
  integral numbers printed without a fraction, nested `pvs`/`lbAllocations` unrounded, `pvs`/`lbAllocations`
  `null` when empty, map keys sorted (Go's encoder) (§2.3, §2.8).
"""

from __future__ import annotations

import enum
import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from simulator.cluster import GIB, Container, SyntheticCluster

IDLE = "__idle__"
UNALLOCATED = "__unallocated__"
#: Kubecost's hourly ETL store covers this much; longer `accumulate=false` windows get daily sets.
HOURLY_STORE = timedelta(hours=49)
MAX_SETS = 2000
#: Reconciliation against the (imaginary) cloud bill: a committed-use discount on compute, PV list price drift.
ADJUSTMENT = {"cpu": -0.03, "ram": -0.03, "pv": 0.02}


class Flavour(enum.Enum):
    KUBECOST = "kubecost"  # /model/allocation (frontend -> aggregator), reconciled
    KUBECOST_COMPUTE = "kubecost-compute"  # /model/allocation/compute, not reconciled
    OPENCOST = "opencost"  # /allocation and /allocation/compute


class ApiError(Exception):
    """A request the real API would refuse. `plain` = the API answers with a text body, not JSON."""

    def __init__(self, status: int, message: str, plain: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.plain = plain


# --------------------------------------------------------------------------------------------------------
# Window


@dataclass(frozen=True)
class Window:
    start: datetime
    end: datetime

    @property
    def hours(self) -> float:
        return (self.end - self.start).total_seconds() / 3600.0

    def json(self) -> dict[str, str]:
        return {"start": _ts(self.start), "end": _ts(self.end)}


def _ts(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


_UNITS = {"m": timedelta(minutes=1), "h": timedelta(hours=1), "d": timedelta(days=1), "w": timedelta(weeks=1)}
_DURATION = re.compile(r"^(\d+)([mhdw])$")


def _floor(t: datetime, unit: str) -> datetime:
    if unit == "m":
        return t.replace(second=0, microsecond=0)
    if unit == "h":
        return t.replace(minute=0, second=0, microsecond=0)
    return t.replace(hour=0, minute=0, second=0, microsecond=0)


def _parse_time(s: str) -> datetime:
    s = s.strip()
    if re.fullmatch(r"\d{9,11}", s):
        return datetime.fromtimestamp(int(s), tz=UTC)
    t = datetime.fromisoformat(s.replace("Z", "+00:00"))
    if t.tzinfo is None:
        raise ValueError(f"time without zone: {s}")
    return t.astimezone(UTC)


def parse_window(text: str, now: datetime) -> Window:
    """Kubecost/OpenCost window grammar; durations end at the *next* unit boundary (rounded forward)."""
    s = text.strip()
    if not s:
        raise ValueError("empty window")
    today = _floor(now, "d")
    if s == "today":
        return Window(today, today + timedelta(days=1))
    if s == "yesterday":
        return Window(today - timedelta(days=1), today)
    if s in ("week", "lastweek"):
        sunday = today - timedelta(days=(today.weekday() + 1) % 7)
        if s == "week":
            return Window(sunday, today + timedelta(days=1))
        return Window(sunday - timedelta(days=7), sunday)
    if s in ("month", "lastmonth"):
        first = today.replace(day=1)
        if s == "month":
            return Window(first, today + timedelta(days=1))
        prev = (first - timedelta(days=1)).replace(day=1)
        return Window(prev, first)
    if "," in s:
        a, _, b = s.partition(",")
        start, end = _parse_time(a), _parse_time(b)
        if end <= start:
            raise ValueError(f"window end before start: {s}")
        return Window(start, end)
    offset = timedelta(0)
    m = re.fullmatch(r"(\S+)\s+offset\s+(\S+)", s)
    if m:
        s, off = m.group(1), m.group(2)
        om = _DURATION.match(off)
        if not om:
            raise ValueError(f"bad offset: {off}")
        offset = int(om.group(1)) * _UNITS[om.group(2)]
    dm = _DURATION.match(s)
    if not dm:
        raise ValueError(f"unrecognized window: {text}")
    n, unit = int(dm.group(1)), dm.group(2)
    if n <= 0:
        raise ValueError(f"window must be positive: {text}")
    end = _floor(now, "d" if unit == "w" else unit) + _UNITS["d" if unit == "w" else unit] - offset
    return Window(end - n * _UNITS[unit], end)


def split_window(w: Window, step: timedelta | str | None) -> list[Window]:
    """`None` = one set; a timedelta = fixed steps aligned to the window start; 'month'/'quarter' = calendar."""
    if step is None:
        return [w]
    out: list[Window] = []
    t = w.start
    while t < w.end:
        if isinstance(step, timedelta):
            nxt = t + step
        else:
            months = 1 if step == "month" else 3
            y, mo = divmod(t.month - 1 + months, 12)
            nxt = _floor(t, "d").replace(year=t.year + y, month=mo + 1, day=1)
        out.append(Window(t, min(nxt, w.end)))
        t = nxt
        if len(out) > MAX_SETS:
            raise ApiError(400, f"Error: too many sets requested (> {MAX_SETS})")
    return out


# --------------------------------------------------------------------------------------------------------
# Allocation arithmetic


@dataclass
class Alloc:
    """Unrounded allocation; serialized by `to_json`. Averages are kept as *-minutes so they add up."""

    name: str
    properties: dict[str, Any]
    window: Window
    start: datetime
    end: datetime
    cpu_request_min: float = 0.0
    cpu_limit_min: float = 0.0
    cpu_usage_min: float = 0.0
    cpu_core_hours: float = 0.0
    cpu_cost: float = 0.0
    cpu_adj: float = 0.0
    cpu_idle: float = 0.0
    gpu_hours: float = 0.0
    gpu_cost: float = 0.0
    gpu_adj: float = 0.0
    gpu_idle: float = 0.0
    net_transfer: float = 0.0
    net_receive: float = 0.0
    net_cost: float = 0.0
    net_internet: float = 0.0
    net_adj: float = 0.0
    lb_cost: float = 0.0
    lb_adj: float = 0.0
    pv_adj: float = 0.0
    ram_request_min: float = 0.0
    ram_limit_min: float = 0.0
    ram_usage_min: float = 0.0
    ram_byte_hours: float = 0.0
    ram_cost: float = 0.0
    ram_adj: float = 0.0
    ram_idle: float = 0.0
    shared_cost: float = 0.0
    external_cost: float = 0.0
    pvs: dict[str, dict[str, float]] = field(default_factory=dict)
    lbs: dict[str, dict[str, Any]] = field(default_factory=dict)
    raw: dict[str, float] | None = None

    @property
    def minutes(self) -> float:
        return (self.end - self.start).total_seconds() / 60.0

    @property
    def pv_cost(self) -> float:
        return sum(p["cost"] for p in self.pvs.values())

    @property
    def pv_byte_hours(self) -> float:
        return sum(p["byteHours"] for p in self.pvs.values())

    def avg(self, per_min: float) -> float:
        return per_min / self.minutes if self.minutes > 0 else 0.0

    def cpu_efficiency(self) -> float:
        return _efficiency(self.avg(self.cpu_request_min), self.avg(self.cpu_usage_min), self.cpu_cost)

    def ram_efficiency(self) -> float:
        return _efficiency(self.avg(self.ram_request_min), self.avg(self.ram_usage_min), self.ram_cost)

    def total_cost(self) -> float:
        return (
            self.cpu_cost
            + self.cpu_adj
            + self.gpu_cost
            + self.gpu_adj
            + self.ram_cost
            + self.ram_adj
            + self.pv_cost
            + self.pv_adj
            + self.net_cost
            + self.net_adj
            + self.lb_cost
            + self.lb_adj
            + self.shared_cost
            + self.external_cost
        )

    def total_efficiency(self) -> float:
        cpu_total, ram_total = self.cpu_cost + self.cpu_adj, self.ram_cost + self.ram_adj
        if cpu_total + ram_total > 0:
            return (self.cpu_efficiency() * cpu_total + self.ram_efficiency() * ram_total) / (cpu_total + ram_total)
        return 0.0

    def add(self, other: Alloc) -> None:
        """Merge `other` into self (OpenCost `Allocation.add`): sums, averages re-weighted by minutes."""
        self.start = min(self.start, other.start)
        self.end = max(self.end, other.end)
        for f in fields(self):
            if f.type == "float":
                setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))
        for k, v in other.pvs.items():
            cur = self.pvs.setdefault(k, {"byteHours": 0.0, "cost": 0.0})
            cur["byteHours"] += v["byteHours"]
            cur["cost"] += v["cost"]
        for k, lb in other.lbs.items():
            if k in self.lbs:
                self.lbs[k] = dict(
                    self.lbs[k], cost=self.lbs[k]["cost"] + lb["cost"], hours=self.lbs[k]["hours"] + lb["hours"]
                )
            else:
                self.lbs[k] = dict(lb)
        self.raw = None
        self.properties = _intersect(self.properties, other.properties)


def _efficiency(request: float, usage: float, cost: float) -> float:
    if request > 0:
        return usage / request
    if usage == 0.0 or cost == 0.0:
        return 0.0
    if usage > 0.0:
        return 1.0
    return 0.0 if not math.isnan(usage) else math.nan


def _intersect(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in a.items() if k in b and b[k] == v}


def container_alloc(
    c: Container,
    cluster: SyntheticCluster,
    w: Window,
    now: datetime,
    *,
    scale: float,
    reconcile: bool,
    nan_namespaces: frozenset[str],
) -> Alloc | None:
    """The container's allocation inside set window `w` (running from `cluster.created` until `now`)."""
    start, end = max(w.start, cluster.created), min(w.end, now)
    if end <= start:
        return None
    h = (end - start).total_seconds() / 3600.0
    mins = h * 60.0
    p = cluster.prices
    cpu_alloc = max(c.cpu_request, c.cpu_usage)
    ram_alloc = max(c.ram_request_bytes, c.ram_usage_bytes)
    ram_usage = math.nan if c.namespace in nan_namespaces else c.ram_usage_bytes
    a = Alloc(
        name="/".join([c.cluster, c.node.name, c.namespace, c.pod, c.container]),
        properties=_container_properties(c),
        window=w,
        start=start,
        end=end,
        cpu_request_min=c.cpu_request * mins,
        cpu_limit_min=2 * c.cpu_request * mins,
        cpu_usage_min=c.cpu_usage * mins,
        cpu_core_hours=cpu_alloc * h,
        cpu_cost=cpu_alloc * h * p.cpu_core_hour * scale,
        ram_request_min=c.ram_request_bytes * mins,
        ram_limit_min=2 * c.ram_request_bytes * mins,
        ram_usage_min=ram_usage * mins,
        ram_byte_hours=ram_alloc * h,
        ram_cost=ram_alloc / GIB * h * p.ram_gib_hour * scale,
        net_transfer=c.egress_bytes_hour * h,
        net_receive=c.egress_bytes_hour * h * 3,
        net_cost=c.egress_bytes_hour / GIB * h * p.network_gib * scale,
        raw={"cpuCoreUsageMax": c.cpu_usage * 1.6, "ramByteUsageMax": c.ram_usage_bytes * 1.3},
    )
    a.net_internet = a.net_cost
    for pv_name, nbytes in c.pvs:
        a.pvs[f"cluster={c.cluster}:name={pv_name}"] = {
            "byteHours": nbytes * h,
            "cost": nbytes / GIB * h * p.pv_gib_hour * scale,
        }
    if c.load_balancer:
        a.lb_cost = h * p.lb_hour * scale
        a.lbs[f"{c.cluster}/{c.namespace}/{c.load_balancer}"] = {
            "service": f"{c.namespace}/{c.load_balancer}",
            "cost": a.lb_cost,
            "private": False,
            "ip": "34.76.12.7",
            "hours": h,
        }
    if reconcile:
        a.cpu_adj = a.cpu_cost * ADJUSTMENT["cpu"]
        a.ram_adj = a.ram_cost * ADJUSTMENT["ram"]
        a.pv_adj = a.pv_cost * ADJUSTMENT["pv"]
    return a


def _container_properties(c: Container) -> dict[str, Any]:
    props: dict[str, Any] = {
        "cluster": c.cluster,
        "node": c.node.name,
        "container": c.container,
    }
    if c.controller:
        props["controller"] = c.controller
        props["controllerKind"] = c.controller_kind
    props["namespace"] = c.namespace
    props["pod"] = c.pod
    if c.services:
        props["services"] = list(c.services)
    props["providerID"] = c.node.provider_id
    if c.labels:
        props["labels"] = dict(c.labels)
    props["namespaceLabels"] = {"kubernetes_io_metadata_name": c.namespace}
    return props


def idle_alloc(
    cluster: SyntheticCluster,
    allocs: Iterable[Alloc],
    w: Window,
    now: datetime,
    *,
    scale: float,
    last_hours: float | None = None,
) -> Alloc | None:
    """Node capacity cost minus what the containers were allocated, per resource; no adjustments (§2.5).
    `last_hours`: asset data (hence idle) known only for the last hours of the set, as in older engines."""
    full_start, end = max(w.start, cluster.created), min(w.end, now)
    start = max(full_start, end - timedelta(hours=last_hours)) if last_hours else full_start
    if end <= start:
        return None
    h = (end - start).total_seconds() / 3600.0
    part = h / ((end - full_start).total_seconds() / 3600.0)  # allocations accrue linearly in time
    p = cluster.prices
    cap_cores = sum(n.cpu_cores for n in cluster.nodes)
    cap_bytes = sum(n.ram_gib for n in cluster.nodes) * GIB
    allocs = list(allocs)
    idle = Alloc(name=IDLE, properties={"cluster": cluster.name}, window=w, start=start, end=end)
    idle.cpu_core_hours = cap_cores * h - part * sum(a.cpu_core_hours for a in allocs)
    idle.cpu_cost = cap_cores * h * p.cpu_core_hour * scale - part * sum(a.cpu_cost for a in allocs)
    idle.ram_byte_hours = cap_bytes * h - part * sum(a.ram_byte_hours for a in allocs)
    idle.ram_cost = cap_bytes / GIB * h * p.ram_gib_hour * scale - part * sum(a.ram_cost for a in allocs)
    return idle


def share_idle(allocs: list[Alloc], idle: Alloc) -> None:
    """`shareIdle`: spread idle CPU over CPU cost and idle RAM over RAM cost, weighted by cost (§1.3, §2.6)."""
    cpu_total = sum(a.cpu_cost for a in allocs)
    ram_total = sum(a.ram_cost for a in allocs)
    for a in allocs:
        share_cpu = idle.cpu_cost * a.cpu_cost / cpu_total if cpu_total else 0.0
        share_ram = idle.ram_cost * a.ram_cost / ram_total if ram_total else 0.0
        a.cpu_idle += share_cpu
        a.cpu_cost += share_cpu
        a.ram_idle += share_ram
        a.ram_cost += share_ram


# --------------------------------------------------------------------------------------------------------
# Aggregation


_CONTROLLER_KINDS = ("deployment", "statefulset", "daemonset", "job")
_LABEL_ALIASES = ("department", "environment", "owner", "product", "team")
_CONTAINER_KEY = ["cluster", "node", "namespace", "pod", "container"]
_BASE_PROPS = ("cluster", "node", "namespace", "controllerKind", "controller", "service", "pod", "container")


def parse_aggregate(raw: str | None, flavour: Flavour) -> list[str]:
    """Validated aggregation tokens. Kubecost refuses unknown ones; OpenCost silently drops them (§1.3)."""
    tokens = [t.strip() for t in (raw or "").split(",") if t.strip()]
    ok: list[str] = []
    for t in tokens:
        valid = (
            t in _BASE_PROPS
            or t in _CONTROLLER_KINDS
            or t in _LABEL_ALIASES
            or (t.startswith(("label:", "annotation:")) and len(t.split(":", 1)[1]) > 0)
        )
        if valid:
            ok.append(t)
        elif flavour is not Flavour.OPENCOST:
            raise ApiError(400, f"Error: invalid aggregation property: {t}")
    if not ok:
        # Kubecost 2.x answers namespace rows without `aggregate`; OpenCost answers container rows (§1.3).
        ok = (
            ["namespace"]
            if flavour is not Flavour.OPENCOST and not tokens
            else (["cluster", "node", "namespace", "pod", "container"])
        )
    return ok


def _value(c: Container, token: str) -> str:
    if token == "cluster":
        return c.cluster
    if token == "node":
        return c.node.name
    if token == "namespace":
        return c.namespace
    if token == "pod":
        return c.pod
    if token == "container":
        return c.container
    if token == "controllerKind":
        return c.controller_kind or UNALLOCATED
    if token == "controller":
        return f"{c.controller_kind}:{c.controller}" if c.controller else UNALLOCATED
    if token == "service":
        return c.services[0] if c.services else UNALLOCATED
    if token in _CONTROLLER_KINDS:
        return c.controller if c.controller and c.controller_kind == token else UNALLOCATED
    if token in _LABEL_ALIASES:
        return c.labels.get(token, UNALLOCATED)
    if token.startswith("label:"):
        return c.labels.get(token.split(":", 1)[1], UNALLOCATED)
    return UNALLOCATED  # annotation:<k> (the synthetic pods carry no annotations)


def aggregate(pairs: list[tuple[Container, Alloc]], tokens: list[str]) -> dict[str, Alloc]:
    out: dict[str, Alloc] = {}
    for c, a in pairs:
        key = "/".join(_value(c, t) for t in tokens)
        full = tokens == _CONTAINER_KEY
        props = (
            a.properties
            if full
            else {k: v for k, v in a.properties.items() if k not in ("labels", "annotations", "services")}
        )
        b = replace(
            a,
            name=key,
            properties=props,
            pvs={k: dict(v) for k, v in a.pvs.items()},
            lbs={k: dict(v) for k, v in a.lbs.items()},
            raw=a.raw if full else None,
        )
        if key in out:
            out[key].add(b)
        else:
            out[key] = b
    return out


# --------------------------------------------------------------------------------------------------------
# Query


_TRUE = {"1", "t", "T", "TRUE", "true", "True"}
_FALSE = {"0", "f", "F", "FALSE", "false", "False"}


def _go_bool(raw: str | None, default: bool) -> bool:
    """Go's strconv.ParseBool; anything else falls back to the default silently (OpenCost mapper, §2.8)."""
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    return default


def _share_idle(raw: str | None, flavour: Flavour) -> bool:
    if flavour is Flavour.OPENCOST:
        return _go_bool(raw, False)  # `weighted` is not a bool: silently false
    # Kubecost documents a boolean but its own example sends `weighted`; `even` is the other split.
    if raw is not None and raw.lower() in ("weighted", "even"):
        return True
    return _go_bool(raw, False)


def _step(params: Mapping[str, str], flavour: Flavour, w: Window) -> timedelta | str | None:
    acc = params.get("accumulate", "false")
    named = {"hour": timedelta(hours=1), "day": timedelta(days=1), "week": timedelta(weeks=1)}
    if acc in named:
        return named[acc]
    if acc in ("month", "quarter"):
        return acc
    if acc == "all" or _go_bool(acc, False):
        return None
    step = params.get("step")
    if step:
        m = _DURATION.match(step)
        if m:
            return int(m.group(1)) * _UNITS[m.group(2)]
        if flavour is not Flavour.OPENCOST:
            raise ApiError(400, f"Error: invalid step: {step}")
        return None  # OpenCost: a bad step silently means "the whole window"
    if flavour is Flavour.OPENCOST:
        return None  # step defaults to the window: one set
    return timedelta(hours=1) if w.end - w.start <= HOURLY_STORE else timedelta(days=1)


@dataclass(frozen=True)
class Quirks:
    """Window behaviour of real engines other than current Kubecost (all off by default)."""

    own_windows: bool = False  # every allocation's `window` is its own start/end (older Kubecost/OpenCost)
    idle_hours: float | None = None  # idle known only for the last N hours of a set
    shift_hours: float = 0.0  # the answer is for the asked window moved N hours back (a stale cache)
    step_hours: float | None = None  # sets of N hours whatever `accumulate` says (an engine ignoring it)
    empty_steps: tuple[int, ...] = ()  # these sets (0-based) are empty `{}`: steps without data

    @classmethod
    def parse(cls, body: Mapping[str, Any]) -> Quirks:
        idle, step = body.get("idle_hours"), body.get("step_hours")
        return cls(
            own_windows=bool(body.get("own_windows", False)),
            idle_hours=None if idle is None else float(idle),
            shift_hours=float(body.get("shift_hours", 0.0)),
            step_hours=None if step is None else float(step),
            empty_steps=tuple(int(i) for i in body.get("empty_steps", ())),
        )


@dataclass(frozen=True)
class QueryResult:
    sets: list[dict[str, Alloc]]
    own_windows: bool = False

    def json_data(self) -> list[dict[str, Any]]:
        return [{k: to_json(s[k], self.own_windows) for k in sorted(s)} for s in self.sets]


def allocation_query(
    cluster: SyntheticCluster,
    params: Mapping[str, str],
    flavour: Flavour,
    now: datetime,
    *,
    scale: float = 1.0,
    nan_namespaces: frozenset[str] = frozenset(),
    quirks: Quirks = Quirks(),
) -> QueryResult:
    """Answer one `/allocation` request. Raises `ApiError` for what the real API refuses."""
    raw_window = params.get("window")
    if not raw_window:
        if flavour is Flavour.OPENCOST:
            raise ApiError(400, "Missing window", plain=True)
        raise ApiError(400, "Error: missing window argument")
    try:
        window = parse_window(raw_window, now)
    except ValueError as err:
        if flavour is Flavour.OPENCOST:
            raise ApiError(400, f"Invalid window: {err}", plain=True) from err
        raise ApiError(400, f"Error: invalid window: {err}") from err
    if quirks.shift_hours:
        shift = timedelta(hours=quirks.shift_hours)
        window = Window(window.start - shift, window.end - shift)
    tokens = parse_aggregate(params.get("aggregate"), flavour)
    idle_on = (
        _go_bool(params.get("includeIdle"), False)
        if flavour is Flavour.OPENCOST
        else _go_bool(params.get("idle"), True)
    )
    share = _share_idle(params.get("shareIdle"), flavour)
    if flavour is Flavour.OPENCOST and not idle_on:
        share = False  # OpenCost: shareIdle is a no-op without includeIdle
    reconcile = flavour is Flavour.KUBECOST and _go_bool(params.get("reconcile"), True)
    containers = cluster.containers()
    sets: list[dict[str, Alloc]] = []
    step = timedelta(hours=quirks.step_hours) if quirks.step_hours else _step(params, flavour, window)
    for index, w in enumerate(split_window(window, step)):
        if index in quirks.empty_steps:
            sets.append({})
            continue
        pairs = [
            (c, a)
            for c in containers
            if (
                a := container_alloc(
                    c, cluster, w, now, scale=scale, reconcile=reconcile, nan_namespaces=nan_namespaces
                )
            )
            is not None
        ]
        allocs = [a for _, a in pairs]
        idle = idle_alloc(cluster, allocs, w, now, scale=scale, last_hours=quirks.idle_hours) if pairs else None
        if idle is not None and share:
            share_idle([a for _, a in pairs], idle)
        agg = aggregate(pairs, tokens)
        if idle is not None and idle_on and not share:
            agg[IDLE] = idle
        sets.append(agg)
    return QueryResult(sets, quirks.own_windows)


# --------------------------------------------------------------------------------------------------------
# Serialization


def _num(x: float) -> float | None:
    """OpenCost formatFloat64ForResponse: NaN/Inf -> null, else rounded to 5 decimals."""
    if math.isnan(x) or math.isinf(x):
        return None
    return round(x * 100000) / 100000.0


def to_json(a: Alloc, own_window: bool = False) -> dict[str, Any]:
    hours = a.minutes / 60.0

    def per_hour(v: float) -> float:
        return v / hours if hours > 0 else 0.0

    pv_bytes = per_hour(a.pv_byte_hours)
    return {
        "name": a.name,
        "properties": a.properties,
        "window": Window(a.start, a.end).json() if own_window else a.window.json(),
        "start": _ts(a.start),
        "end": _ts(a.end),
        "minutes": _num(a.minutes),
        "cpuCores": _num(per_hour(a.cpu_core_hours)),
        "cpuCoreRequestAverage": _num(a.avg(a.cpu_request_min)),
        "cpuCoreLimitAverage": _num(a.avg(a.cpu_limit_min)),
        "cpuCoreUsageAverage": _num(a.avg(a.cpu_usage_min)),
        "cpuCoreHours": _num(a.cpu_core_hours),
        "cpuCost": _num(a.cpu_cost),
        "cpuCostAdjustment": _num(a.cpu_adj),
        "cpuCostIdle": _num(a.cpu_idle),
        "cpuEfficiency": _num(a.cpu_efficiency()),
        "gpuCount": _num(per_hour(a.gpu_hours)),
        "gpuHours": _num(a.gpu_hours),
        "gpuCost": _num(a.gpu_cost),
        "gpuCostAdjustment": _num(a.gpu_adj),
        "gpuCostIdle": _num(a.gpu_idle),
        "gpuEfficiency": _num(0.0),
        "networkTransferBytes": _num(a.net_transfer),
        "networkReceiveBytes": _num(a.net_receive),
        "networkCost": _num(a.net_cost),
        "networkCrossZoneCost": _num(0.0),
        "networkCrossRegionCost": _num(0.0),
        "networkInternetCost": _num(a.net_internet),
        "networkCostAdjustment": _num(a.net_adj),
        "loadBalancerCost": _num(a.lb_cost),
        "loadBalancerCostAdjustment": _num(a.lb_adj),
        "pvBytes": _num(pv_bytes),
        "pvByteHours": _num(a.pv_byte_hours),
        "pvCost": _num(a.pv_cost),
        "pvs": {k: dict(v) for k, v in sorted(a.pvs.items())} or None,
        "pvCostAdjustment": _num(a.pv_adj),
        "ramBytes": _num(per_hour(a.ram_byte_hours)),
        "ramByteRequestAverage": _num(a.avg(a.ram_request_min)),
        "ramByteLimitAverage": _num(a.avg(a.ram_limit_min)),
        "ramByteUsageAverage": _num(a.avg(a.ram_usage_min)),
        "ramByteHours": _num(a.ram_byte_hours),
        "ramCost": _num(a.ram_cost),
        "ramCostAdjustment": _num(a.ram_adj),
        "ramCostIdle": _num(a.ram_idle),
        "ramEfficiency": _num(a.ram_efficiency()),
        "externalCost": _num(a.external_cost),
        "sharedCost": _num(a.shared_cost),
        "totalCost": _num(a.total_cost()),
        "totalEfficiency": _num(a.total_efficiency()),
        **({"rawAllocationOnly": a.raw} if a.raw is not None else {}),
        "proportionalAssetResourceCosts": {},
        "lbAllocations": {k: dict(v) for k, v in sorted(a.lbs.items())} or None,
        "sharedCostBreakdown": {},
        "gpuAllocation": None,
    }


def _gofloats(o: Any) -> Any:
    """Integral numbers print as Go prints them (`1440`, not `1440.0`): clients see ints and floats mixed."""
    if isinstance(o, float) and math.isfinite(o) and o == int(o) and abs(o) < 1e15:
        return int(o)
    if isinstance(o, dict):
        return {k: _gofloats(v) for k, v in o.items()}
    if isinstance(o, list):
        return [_gofloats(v) for v in o]
    return o


def envelope(data: Any, code: int = 200, message: str | None = None) -> bytes:
    body: dict[str, Any] = {"code": code, "status": "success" if code == 200 else "error", "data": data}
    if message is not None:
        body["message"] = message
    return json.dumps(_gofloats(body), separators=(",", ":"), allow_nan=False).encode()


def utcnow() -> datetime:
    return datetime.now(UTC)
