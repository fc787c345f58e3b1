"""Configuration: every setting is a flag and an env var, validated into a frozen `Config` up front.

Precedence: command-line flag, then environment variable, then default. A bad value raises
`ConfigError`, whose message is one line naming the flag, the env var and what is allowed. Each
setting's "allowed" text comes from its converter, so the message, `--help` and
docs/configuration.md cannot drift apart.
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn
from urllib.parse import urlsplit

from kubecost_allocation_exporter.windows import DEFAULT_WINDOW_NAMES, WINDOW_ALLOWED, valid_window

PROG = "kubecost-allocation-exporter"

API_CHOICES = ("auto", "kubecost", "opencost")
METRIC_MODES = ("rate", "total")
SHARE_IDLE_CHOICES = ("weighted", "none")
LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("text", "json")
BOOL_TRUE = ("true", "1", "yes", "on")
BOOL_FALSE = ("false", "0", "no", "off")
# Kubecost aggregation properties usable below namespace (the Allocation API's `aggregate` values).
BREAKDOWN_PROPERTIES = (
    *("node", "controllerKind", "controller", "service", "pod", "container", "deployment"),
    *("statefulset", "daemonset", "job", "department", "environment", "owner", "product", "team"),
)
_LABEL_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
DURATION_ALLOWED = "a duration like 120, 120s, 2m, 1h or 1h30m"


class ConfigError(Exception):
    """A setting has a bad value. `str()` is the one-line message shown to the user."""


def parse_duration(text: str) -> float | None:
    """`120`, `120s`, `2m`, `1h`, `1h30m`, `500ms` -> seconds; None when not a duration. The one
    duration parser of the package (the `verify` command uses it too)."""
    text = text.strip()
    if re.fullmatch(r"\d+(?:\.\d+)?", text):
        return float(text)
    pos, total = 0, 0.0
    for m in _DURATION_PART.finditer(text):
        if m.start() != pos:
            return None
        total += float(m.group(1)) * _DURATION_UNITS[m.group(2)]
        pos = m.end()
    return total if pos == len(text) and pos else None


# -- converters: `parse` raises ValueError on a bad value; `allowed` says what is accepted ---------


@dataclass(frozen=True)
class Converter:
    allowed: str
    parse: Callable[[str], Any]


def choice(*choices: str) -> Converter:
    def parse(raw: str) -> str:
        if (v := raw.strip().lower()) not in choices:
            raise ValueError(raw)
        return v

    return Converter(", ".join(choices), parse)


def _bool(raw: str) -> bool:
    if (v := raw.strip().lower()) not in BOOL_TRUE + BOOL_FALSE:
        raise ValueError(raw)
    return v in BOOL_TRUE


def number(low: float, high: float, integer: bool = False) -> Converter:
    def parse(raw: str) -> float:
        v = int(raw.strip()) if integer else float(raw.strip())
        if not low <= v <= high:  # NaN fails this too
            raise ValueError(raw)
        return v

    if integer:
        return Converter(f"an integer from {int(low)} to {int(high)}", parse)
    return Converter(f"a number from {low:g} to {high:g}", parse)


def duration(low: float, high: float) -> Converter:
    def parse(raw: str) -> float:
        d = parse_duration(raw)
        if d is None or not low <= d <= high:
            raise ValueError(raw)
        return d

    return Converter(f"{DURATION_ALLOWED}, from {low:g}s to {high:g}s", parse)


def text(allowed: str, check: Callable[[str], Any]) -> Converter:
    """A checked string: `check(value)` returns the value to keep or raises ValueError."""
    return Converter(allowed, lambda raw: check(raw.strip()))


BOOL = Converter("true or false", _bool)


def _url(v: str) -> str:
    parts = urlsplit(v)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(v)
    _ = parts.port  # raises ValueError for a bad port
    return v.rstrip("/")


def _label_value(v: str) -> str:
    if not v or len(v) > 256 or any(ord(c) < 32 for c in v):
        raise ValueError(v)
    return v


def _window(v: str) -> str:
    if not valid_window(v):
        raise ValueError(v)
    return "" if v in DEFAULT_WINDOW_NAMES else v


def _listen(v: str) -> tuple[str, int]:
    m = re.fullmatch(r"(?:\[([0-9A-Fa-f:.]+)\]|([^:\[\]]*)):(\d{1,5})", v)
    if not m or int(m.group(3)) > 65535:
        raise ValueError(v)
    return m.group(1) or m.group(2) or "0.0.0.0", int(m.group(3))


def _optional_file(v: str) -> str | None:
    if v and not (os.path.isfile(v) and os.access(v, os.R_OK)):
        raise ValueError(v)
    return v or None


def _breakdowns(value: str) -> tuple[str, ...]:
    out: list[str] = []
    for item in filter(None, (raw.strip() for raw in value.split(","))):
        kind, _, key = item.partition(":")
        if kind in ("label", "annotation"):
            if not _LABEL_KEY.fullmatch(key):
                raise ValueError(value)
        elif key or item not in BREAKDOWN_PROPERTIES:
            raise ValueError(value)
        if item not in out:
            out.append(item)
    return tuple(out)


LABEL_VALUE = text("a non-empty label value (at most 256 characters)", _label_value)
FILE = text("empty, or the path of a readable file", _optional_file)


@dataclass(frozen=True)
class Setting:
    """One setting. The flag is `--<attr with dashes>`, the env var `<ATTR>` unless given."""

    attr: str
    default: str
    converter: Converter
    help: str
    env_name: str = ""

    @property
    def flag(self) -> str:
        return "--" + self.attr.replace("_", "-")

    @property
    def env(self) -> str:
        return self.env_name or self.attr.upper()

    def convert(self, raw: str | None) -> Any:
        """`raw` None: neither the flag nor the env var is given. A setting whose default the
        converter refuses (cluster name, tenant id) is required: "invalid value ''" would send the
        user looking for an empty value they never set, so the message says it is missing."""
        try:
            return self.converter.parse(self.default if raw is None else raw)
        except (ValueError, OverflowError):
            why = "not set and required (no default)" if raw is None else f"invalid value {raw!r}"
            why += f"; allowed: {self.converter.allowed}"
            raise ConfigError(f"{self.flag}/{self.env}: {why}") from None


S = Setting
SETTINGS: tuple[Setting, ...] = (
    S("kubecost_url", "http://kubecost-cost-analyzer.kubecost:9090",
      text("an http:// or https:// URL", _url),
      "Base URL of the Kubecost frontend (9090), aggregator (9004) or OpenCost (9003); "
      "a URL with a path (e.g. .../model/allocation) is used as is"),
    S("api", "auto", choice(*API_CHOICES),
      "API flavour; auto probes /model/allocation then /allocation once and logs the choice",
      "KUBECOST_API"),
    S("cluster_name", "", LABEL_VALUE,
      "Value of the cluster label (with --multi-cluster: health series and fallback only)"),
    S("tenant_id", "", LABEL_VALUE, "Value of the tenant_id label on every series"),
    S("metric_mode", "rate", choice(*METRIC_MODES),
      "rate = USD per hour (cost / elapsed hours of the returned window); "
      "total = USD over the window"),
    S("window", "", text(WINDOW_ALLOWED, _window),
      "Kubecost window; empty = the last complete hour (minus --data-lag) as an RFC3339 pair"),
    S("data_lag", "15m", duration(0, 7 * 86400),
      "How far behind now the default window ends (Kubecost needs time to build the hour)"),
    S("share_idle", "weighted", choice(*SHARE_IDLE_CHOICES),
      "weighted = shareIdle=true (idle spread over namespaces by cost); none = idle kept apart"),
    S("refresh_interval", "90s", duration(1, 86400),
      "How often the background refresher queries the API"),
    S("refresh_jitter", "0.1", number(0.0, 0.5),
      "Random +/- fraction applied to each refresh interval"),
    S("refresh_timeout", "5m", duration(1, 86400),
      "Deadline of one refresh (all queries and pages, retries included); a refresh still "
      "running then fails with reason timeout. At most --staleness-limit"),
    S("staleness_limit", "15m", duration(1, 7 * 86400),
      "Cost series are dropped when the last successful refresh is older than this"),
    S("listen_address", "0.0.0.0:9103",
      text("host:port, e.g. 0.0.0.0:9103 or [::]:9103", _listen),
      "host:port for /metrics, /healthz, /readyz"),
    S("log_level", "info", choice(*LOG_LEVELS), "Log level; debug also prints tracebacks"),
    S("log_format", "text", choice(*LOG_FORMATS), "Log format (logs go to stderr)"),
    S("auth_token_file", "", FILE,
      "File holding a bearer token, sent as 'Authorization: Bearer ...' (re-read every refresh)"),
    S("api_key_file", "", FILE,
      "File holding a Kubecost API key, sent as 'X-API-KEY' (re-read every refresh)"),
    S("connect_timeout", "5s", duration(0.1, 300), "TCP connect timeout per attempt"),
    S("request_timeout", "60s", duration(0.1, 3600),
      "Read timeout per attempt (time between bytes of the answer)"),
    S("retries", "2", number(0, 10, integer=True),
      "Retries after a connect error, read timeout or HTTP 429/502/503/504 (0-10)"),
    S("retry_backoff", "0.5", number(0.0, 60.0),
      "Backoff factor in seconds: retry n waits factor * 2^(n-1)"),
    S("max_response_bytes", "33554432", number(1024, 1 << 34, integer=True),
      "Largest API answer (one page) read, in bytes (32 MiB); a larger one is refused with "
      "reason too_large while it streams in"),
    S("max_rows", "150000", number(1000, 10_000_000, integer=True),
      "Most allocation rows read in one refresh (all queries and pages); an answer with more is "
      "refused with reason too_large before it is decoded"),
    S("breakdowns", "",
      text("comma list of " + ", ".join(BREAKDOWN_PROPERTIES) + ", label:<key>, annotation:<key>",
           _breakdowns),
      "Extra breakdowns below namespace, e.g. controller,label:team (off by default; pod too)"),
    S("breakdown_top_n", "20", number(1, 10000, integer=True),
      "Series per breakdown: the top N by total cost, the rest summed into one __other__ series"),
    S("page_size", "5000", number(0, 1_000_000, integer=True),
      "Kubecost answers are read in pages of this many rows (Kubecost 2.x offset/limit, by "
      "totalCost), each decoded and released before the next; 0 = one request. OpenCost (no "
      "paging) is always read in one request"),
    S("max_series", "150000", number(0, 100_000_000, integer=True),
      "Cardinality guard: at most this many cost series per refresh; beyond it the cheapest "
      "namespaces (all their series), then breakdown rows, then savings series, are dropped and "
      "counted in cloudtuner_kubecost_dropped_series_total; 0 = no cap"),
    S("assets", "true", BOOL,
      "Also read the Assets API (Kubecost /model/assets, OpenCost /assets) for the same window "
      "and export cloudtuner_kubecost_cluster_assets_cost; a missing or failing Assets API never "
      "fails the refresh (exporter_info says assets=absent or failed)"),
    S("savings", "none", choice("none", "estimate", "api"),
      "Right-sizing savings series (cloudtuner_kubecost_*_savings_monthly): estimate = from the "
      "allocations (no extra query); api = also Kubecost's request-sizing recommendations "
      "(savings/requestSizingV2, window 3d; a missing or failing one never fails the refresh: "
      "exporter_info says savings_api=absent or failed)"),
    S("multi_cluster", "false", BOOL,
      "The API serves several clusters (Kubecost primary): the cluster label comes from the data"),
    S("once", "false", BOOL,
      "Refresh once, print the exposition text on stdout and exit (0 ok, 1 failed)"),
)  # fmt: skip
del S


@dataclass(frozen=True)
class Config:
    kubecost_url: str
    api: str
    cluster_name: str
    tenant_id: str
    metric_mode: str
    window: str  # "" = last complete hour
    data_lag: float
    share_idle: str
    refresh_interval: float
    refresh_jitter: float
    refresh_timeout: float
    staleness_limit: float
    listen_host: str
    listen_port: int
    log_level: str
    log_format: str
    auth_token_file: str | None
    api_key_file: str | None
    connect_timeout: float
    request_timeout: float
    retries: int
    retry_backoff: float
    max_response_bytes: int
    max_rows: int
    breakdowns: tuple[str, ...]
    breakdown_top_n: int
    page_size: int
    max_series: int
    assets: bool
    savings: str
    multi_cluster: bool
    once: bool

    @property
    def window_label(self) -> str:
        """The configured window as shown in the info metric (stable, not the computed pair)."""
        return self.window or "last-complete-hour"

    @property
    def deadline(self) -> float:
        """Seconds one refresh may take: a refresh that outlives the staleness limit would let
        the costs go stale while scrape_success still says 1."""
        return min(self.refresh_timeout, self.staleness_limit)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise ConfigError(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        usage="%(prog)s [options]\n       %(prog)s verify [--help] [options]",
        description="Export Kubecost/OpenCost Allocation API costs as Prometheus metrics.",
        epilog="To check a running install end to end (Kubecost, the exporter, the agent's "
        f"target and remote_write, the costs in Thanos): `{PROG} verify --help`.",
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    for s in SETTINGS:
        flag = {"nargs": "?", "const": "true", "metavar": "BOOL"}
        kwargs: dict[str, Any] = flag if s.converter is BOOL else {"metavar": s.env}
        help_ = f"{s.help} [env {s.env}, default {s.default!r}]"
        parser.add_argument(s.flag, dest=s.attr, default=None, help=help_, **kwargs)
    return parser


def load(argv: Sequence[str], environ: Mapping[str, str]) -> Config:
    """Flags > env > defaults; raises ConfigError with a one-line message."""
    given = {k: v for k, v in vars(build_parser().parse_args(list(argv))).items() if v is not None}
    values = {s.attr: s.convert(given.get(s.attr, environ.get(s.env))) for s in SETTINGS}
    host, port = values.pop("listen_address")
    cfg = Config(listen_host=host, listen_port=port, **values)
    if cfg.staleness_limit < cfg.refresh_interval:
        raise ConfigError(
            f"--staleness-limit/STALENESS_LIMIT: {cfg.staleness_limit:g}s is shorter than "
            f"--refresh-interval ({cfg.refresh_interval:g}s); "
            "allowed: a duration >= the refresh interval"
        )
    return cfg
