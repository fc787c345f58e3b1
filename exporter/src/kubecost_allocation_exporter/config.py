"""Configuration: every setting is a flag and an env var, validated into a frozen `Config` up front.

Precedence: command-line flag, then environment variable, then default. A bad value raises
`ConfigError`, whose message is one line naming the flag, the env var and what is allowed.
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn
from urllib.parse import urlsplit

PROG = "kubecost-allocation-exporter"

API_CHOICES = ("auto", "kubecost", "opencost")
METRIC_MODES = ("rate", "total")
SHARE_IDLE_CHOICES = ("weighted", "none")
LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("text", "json")
BOOL_TRUE = ("true", "1", "yes", "on")
BOOL_FALSE = ("false", "0", "no", "off")
DEFAULT_WINDOW_NAMES = ("", "last-complete-hour")

WINDOW_KEYWORDS = ("today", "yesterday", "week", "month", "lastweek", "lastmonth")
_RFC3339 = r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:\d{2})"
_WINDOW_RES = (
    re.compile(r"\d+[mhdw]"),  # duration: 30m, 12h, 7d, 2w
    re.compile(r"\d+[mhdw] offset \d+[mhdw]"),  # "7d offset 1d"
    re.compile(rf"{_RFC3339},{_RFC3339}"),  # RFC3339 pair
    re.compile(r"\d{9,11},\d{9,11}"),  # unix seconds pair
)
WINDOW_ALLOWED = (
    "empty or last-complete-hour (default), today, yesterday, week, month, lastweek, lastmonth, "
    "a duration like 30m/12h/7d/2w (optionally '7d offset 1d'), a pair of RFC3339 times "
    "'2026-01-01T00:00:00Z,2026-01-02T00:00:00Z' or a pair of unix seconds"
)

# Breakdowns are Kubecost aggregation properties (research section 1.3).
BREAKDOWN_PROPERTIES = (
    "node",
    "controllerKind",
    "controller",
    "service",
    "pod",
    "container",
    "deployment",
    "statefulset",
    "daemonset",
    "job",
    "department",
    "environment",
    "owner",
    "product",
    "team",
)
BREAKDOWN_ALLOWED = (
    "comma list of " + ", ".join(BREAKDOWN_PROPERTIES) + ", label:<key>, annotation:<key>"
)
_LABEL_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
DURATION_ALLOWED = "a duration like 120, 120s, 2m, 1h or 1h30m"


class ConfigError(Exception):
    """A setting has a bad value. `str()` is the one-line message shown to the user."""


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
    breakdowns: tuple[str, ...]
    breakdown_top_n: int
    page_size: int
    max_series: int
    multi_cluster: bool
    once: bool

    @property
    def window_label(self) -> str:
        """The configured window as shown in the info metric (stable, not the computed pair)."""
        return self.window or "last-complete-hour"


Converter = Callable[[str, "Setting"], Any]


@dataclass(frozen=True)
class Setting:
    """One configuration setting: flag, env var, default, converter and help text."""

    attr: str
    flag: str
    env: str
    default: str
    convert: Converter
    help: str
    allowed: str
    boolean: bool = False

    def fail(self, value: str, allowed: str | None = None) -> NoReturn:
        raise ConfigError(
            f"{self.flag}/{self.env}: invalid value {value!r}; allowed: {allowed or self.allowed}"
        )


def parse_duration(text: str) -> float | None:
    """`120`, `120s`, `2m`, `1h`, `1h30m`, `500ms` -> seconds; None when not a duration."""
    text = text.strip()
    if re.fullmatch(r"\d+(?:\.\d+)?", text):
        return float(text)
    pos, total = 0, 0.0
    for m in _DURATION_PART.finditer(text):
        if m.start() != pos:
            return None
        total += float(m.group(1)) * _DURATION_UNITS[m.group(2)]
        pos = m.end()
    if pos != len(text) or pos == 0:
        return None
    return total


def valid_window(text: str) -> bool:
    if text in DEFAULT_WINDOW_NAMES or text in WINDOW_KEYWORDS:
        return True
    return any(r.fullmatch(text) for r in _WINDOW_RES)


def _choice(choices: Sequence[str]) -> Converter:
    def convert(value: str, s: Setting) -> str:
        v = value.strip().lower()
        if v not in choices:
            s.fail(value)
        return v

    return convert


def _bool(value: str, s: Setting) -> bool:
    v = value.strip().lower()
    if v in BOOL_TRUE:
        return True
    if v in BOOL_FALSE:
        return False
    s.fail(value)


def _duration(minimum: float, maximum: float) -> Converter:
    def convert(value: str, s: Setting) -> float:
        d = parse_duration(value)
        if d is None or not minimum <= d <= maximum:
            s.fail(value, f"{DURATION_ALLOWED}, between {minimum:g}s and {maximum:g}s")
        return d

    return convert


def _int(minimum: int, maximum: int) -> Converter:
    def convert(value: str, s: Setting) -> int:
        try:
            n = int(value.strip())
        except ValueError:
            s.fail(value)
        if not minimum <= n <= maximum:
            s.fail(value)
        return n

    return convert


def _float(minimum: float, maximum: float) -> Converter:
    def convert(value: str, s: Setting) -> float:
        try:
            f = float(value.strip())
        except ValueError:
            s.fail(value)
        if not minimum <= f <= maximum:
            s.fail(value)
        return f

    return convert


def _url(value: str, s: Setting) -> str:
    v = value.strip()
    parts = urlsplit(v)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        s.fail(value)
    try:
        _ = parts.port
    except ValueError:
        s.fail(value)
    return v.rstrip("/")


def _label_value(value: str, s: Setting) -> str:
    v = value.strip()
    if not v or len(v) > 256 or any(ord(c) < 32 for c in v):
        s.fail(value)
    return v


def _window(value: str, s: Setting) -> str:
    v = value.strip()
    if not valid_window(v):
        s.fail(value)
    return "" if v in DEFAULT_WINDOW_NAMES else v


def _listen(value: str, s: Setting) -> tuple[str, int]:
    v = value.strip()
    m = re.fullmatch(r"(?:\[([0-9A-Fa-f:.]+)\]|([^:\[\]]*)):(\d{1,5})", v)
    if not m:
        s.fail(value)
    host = m.group(1) or m.group(2) or "0.0.0.0"
    port = int(m.group(3))
    if not 0 <= port <= 65535:
        s.fail(value)
    return host, port


def _optional_file(value: str, s: Setting) -> str | None:
    v = value.strip()
    if not v:
        return None
    if not os.path.isfile(v) or not os.access(v, os.R_OK):
        s.fail(value, "empty, or the path of a readable file")
    return v


def _breakdowns(value: str, s: Setting) -> tuple[str, ...]:
    out: list[str] = []
    for raw in value.split(","):
        item = raw.strip()
        if not item:
            continue
        kind, _, key = item.partition(":")
        if kind in ("label", "annotation"):
            if not _LABEL_KEY.fullmatch(key):
                s.fail(value)
        elif key or item not in BREAKDOWN_PROPERTIES or item == "namespace":
            s.fail(value)
        if item not in out:
            out.append(item)
    return tuple(out)


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "kubecost_url",
        "--kubecost-url",
        "KUBECOST_URL",
        "http://kubecost-cost-analyzer.kubecost:9090",
        _url,
        "Base URL of the Kubecost frontend (9090), aggregator (9004) or OpenCost (9003); "
        "a URL with a path (e.g. .../model/allocation) is used as is",
        "an http:// or https:// URL",
    ),
    Setting(
        "api",
        "--api",
        "KUBECOST_API",
        "auto",
        _choice(API_CHOICES),
        "API flavour; auto probes /model/allocation then /allocation once and logs the choice",
        ", ".join(API_CHOICES),
    ),
    Setting(
        "cluster_name",
        "--cluster-name",
        "CLUSTER_NAME",
        "",
        _label_value,
        "Value of the cluster label (with --multi-cluster: health series and fallback only)",
        "a non-empty label value (at most 256 characters)",
    ),
    Setting(
        "tenant_id",
        "--tenant-id",
        "TENANT_ID",
        "",
        _label_value,
        "Value of the tenant_id label on every series",
        "a non-empty label value (at most 256 characters)",
    ),
    Setting(
        "metric_mode",
        "--metric-mode",
        "METRIC_MODE",
        "rate",
        _choice(METRIC_MODES),
        "rate = USD per hour (cost / elapsed hours of the returned window); "
        "total = USD over the window",
        ", ".join(METRIC_MODES),
    ),
    Setting(
        "window",
        "--window",
        "WINDOW",
        "",
        _window,
        "Kubecost window; empty = the last complete hour (minus --data-lag) as an RFC3339 pair",
        WINDOW_ALLOWED,
    ),
    Setting(
        "data_lag",
        "--data-lag",
        "DATA_LAG",
        "15m",
        _duration(0, 7 * 86400),
        "How far behind now the default window ends (Kubecost needs time to build the hour)",
        DURATION_ALLOWED,
    ),
    Setting(
        "share_idle",
        "--share-idle",
        "SHARE_IDLE",
        "weighted",
        _choice(SHARE_IDLE_CHOICES),
        "weighted = shareIdle=true (idle spread over namespaces by cost); none = idle kept apart",
        ", ".join(SHARE_IDLE_CHOICES),
    ),
    Setting(
        "refresh_interval",
        "--refresh-interval",
        "REFRESH_INTERVAL",
        "90s",
        _duration(1, 86400),
        "How often the background refresher queries the API",
        DURATION_ALLOWED,
    ),
    Setting(
        "refresh_jitter",
        "--refresh-jitter",
        "REFRESH_JITTER",
        "0.1",
        _float(0.0, 0.5),
        "Random +/- fraction applied to each refresh interval",
        "a number from 0 to 0.5",
    ),
    Setting(
        "staleness_limit",
        "--staleness-limit",
        "STALENESS_LIMIT",
        "15m",
        _duration(1, 7 * 86400),
        "Cost series are dropped when the last successful refresh is older than this",
        DURATION_ALLOWED,
    ),
    Setting(
        "listen_address",
        "--listen-address",
        "LISTEN_ADDRESS",
        "0.0.0.0:9103",
        _listen,
        "host:port for /metrics, /healthz, /readyz",
        "host:port, e.g. 0.0.0.0:9103 or [::]:9103",
    ),
    Setting(
        "log_level",
        "--log-level",
        "LOG_LEVEL",
        "info",
        _choice(LOG_LEVELS),
        "Log level; debug also prints tracebacks",
        ", ".join(LOG_LEVELS),
    ),
    Setting(
        "log_format",
        "--log-format",
        "LOG_FORMAT",
        "text",
        _choice(LOG_FORMATS),
        "Log format (logs go to stderr)",
        ", ".join(LOG_FORMATS),
    ),
    Setting(
        "auth_token_file",
        "--auth-token-file",
        "AUTH_TOKEN_FILE",
        "",
        _optional_file,
        "File holding a bearer token, sent as 'Authorization: Bearer ...' (re-read every refresh)",
        "empty, or the path of a readable file",
    ),
    Setting(
        "api_key_file",
        "--api-key-file",
        "API_KEY_FILE",
        "",
        _optional_file,
        "File holding a Kubecost API key, sent as 'X-API-KEY' (re-read every refresh)",
        "empty, or the path of a readable file",
    ),
    Setting(
        "connect_timeout",
        "--connect-timeout",
        "CONNECT_TIMEOUT",
        "5s",
        _duration(0.1, 300),
        "TCP connect timeout per attempt",
        DURATION_ALLOWED,
    ),
    Setting(
        "request_timeout",
        "--request-timeout",
        "REQUEST_TIMEOUT",
        "60s",
        _duration(0.1, 3600),
        "Read timeout per attempt (time between bytes of the answer)",
        DURATION_ALLOWED,
    ),
    Setting(
        "retries",
        "--retries",
        "RETRIES",
        "2",
        _int(0, 10),
        "Retries after a connect error, read timeout or HTTP 429/502/503/504 (0-10)",
        "an integer from 0 to 10",
    ),
    Setting(
        "retry_backoff",
        "--retry-backoff",
        "RETRY_BACKOFF",
        "0.5",
        _float(0.0, 60.0),
        "Backoff factor in seconds: retry n waits factor * 2^(n-1)",
        "a number from 0 to 60",
    ),
    Setting(
        "max_response_bytes",
        "--max-response-bytes",
        "MAX_RESPONSE_BYTES",
        "67108864",
        _int(1024, 1 << 34),
        "Largest API answer read, in bytes (64 MiB); a larger one is refused (reason bad_response) "
        "before it can exhaust the memory limit",
        "an integer from 1024 to 17179869184",
    ),
    Setting(
        "breakdowns",
        "--breakdowns",
        "BREAKDOWNS",
        "",
        _breakdowns,
        "Extra breakdowns below namespace, e.g. controller,label:team (off by default; pod too)",
        BREAKDOWN_ALLOWED,
    ),
    Setting(
        "breakdown_top_n",
        "--breakdown-top-n",
        "BREAKDOWN_TOP_N",
        "20",
        _int(1, 10000),
        "Series per breakdown: the top N by total cost, the rest summed into one __other__ series",
        "an integer from 1 to 10000",
    ),
    Setting(
        "page_size",
        "--page-size",
        "PAGE_SIZE",
        "5000",
        _int(0, 1_000_000),
        "Kubecost answers are read in pages of this many rows (Kubecost 2.x offset/limit, by "
        "totalCost), each parsed on its own, so a large answer is never in memory at once; "
        "0 = one request. OpenCost (no paging) is always read in one request",
        "an integer from 0 to 1000000",
    ),
    Setting(
        "max_series",
        "--max-series",
        "MAX_SERIES",
        "150000",
        _int(0, 100_000_000),
        "Cardinality guard: at most this many cost series per refresh; beyond it the cheapest "
        "namespaces (all their series), then breakdown rows, are dropped and counted in "
        "cloudtuner_kubecost_dropped_series_total; 0 = no cap",
        "an integer from 0 to 100000000",
    ),
    Setting(
        "multi_cluster",
        "--multi-cluster",
        "MULTI_CLUSTER",
        "false",
        _bool,
        "The API serves several clusters (Kubecost primary): the cluster label comes from the data",
        "true or false",
        boolean=True,
    ),
    Setting(
        "once",
        "--once",
        "ONCE",
        "false",
        _bool,
        "Refresh once, print the exposition text on stdout and exit (0 ok, 1 failed)",
        "true or false",
        boolean=True,
    ),
)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise ConfigError(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="Export Kubecost/OpenCost Allocation API costs as Prometheus metrics.",
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    for s in SETTINGS:
        kwargs: dict[str, Any] = {
            "dest": s.attr,
            "default": None,
            "help": f"{s.help} [env {s.env}, default {s.default!r}]",
        }
        if s.boolean:
            kwargs.update(nargs="?", const="true", metavar="BOOL")
        else:
            kwargs["metavar"] = s.env
        parser.add_argument(s.flag, **kwargs)
    return parser


def load(argv: Sequence[str], environ: Mapping[str, str]) -> Config:
    """Flags > env > defaults; raises ConfigError with a one-line message."""
    ns = build_parser().parse_args(list(argv))
    values: dict[str, Any] = {}
    for s in SETTINGS:
        raw = getattr(ns, s.attr)
        if raw is None:
            raw = environ.get(s.env, s.default)
        values[s.attr] = s.convert(raw, s)
    host, port = values.pop("listen_address")
    cfg = Config(listen_host=host, listen_port=port, **values)
    if cfg.staleness_limit < cfg.refresh_interval:
        raise ConfigError(
            f"--staleness-limit/STALENESS_LIMIT: {cfg.staleness_limit:g}s is shorter than "
            f"--refresh-interval ({cfg.refresh_interval:g}s); "
            "allowed: a duration >= the refresh interval"
        )
    return cfg


def wants_version(argv: Sequence[str]) -> bool:
    return "--version" in argv
