"""HTTP client for the Allocation API of Kubecost 2.x/3.x and OpenCost (the I/O edge).

One `AllocationClient.fetch()` is one GET with explicit parameters. Retries (connect errors, read
timeouts, HTTP 429/502/503/504) are urllib3's `Retry` mounted on the session, bounded by
`--retries` with exponential backoff. Every failure becomes an `ApiError` with a bounded `reason`
and a one-line message naming the cause; credentials never appear in a message.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import orjson
import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from kubecost_allocation_exporter import __version__, fastpath
from kubecost_allocation_exporter.config import Config

log = logging.getLogger(__name__)

# Bounded values of the `reason` label of cloudtuner_kubecost_scrape_errors_total.
REASONS = ("timeout", "connection", "http_status", "not_json", "api_error", "bad_response", "auth")
AGGREGATOR_PORTS = (9004, 9008)
RETRY_STATUSES = (429, 502, 503, 504)
MAX_PAGES = 10_000
IDLE_KEY = "__idle__"

AllocationSet = dict[str, dict[str, Any]]


class ApiError(Exception):
    """A failed query. `reason` is one of REASONS; `str()` is a one-line cause."""

    def __init__(self, reason: str, message: str) -> None:
        assert reason in REASONS, reason
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Endpoint:
    url: str  # full URL of the allocation endpoint
    flavour: str  # "kubecost" or "opencost"


@dataclass(frozen=True)
class FetchResult:
    sets: list[AllocationSet]
    endpoint: Endpoint
    body: bytes
    skipped: int  # null / non-object entries dropped from `data`
    unchanged: bool = False  # body identical to `same_as`: not parsed again, `sets` is empty
    # the answer in the usual namespace shape, decoded into typed rows (then `sets` is empty)
    typed: fastpath.Page | None = None

    @property
    def rows(self) -> int:
        """Rows that count for paging: every key but `__idle__` ones."""
        if self.typed is not None:
            return self.typed.counted
        return sum(1 for s in self.sets for key in s if IDLE_KEY not in key)

    def parsed(self, typed: bool = False) -> FetchResult:
        """This result with its answer read (an `unchanged` body, known to be good): typed rows
        when asked for and the answer has the usual shape, else `sets`."""
        if not self.unchanged:
            return self
        return decode_body(200, self.body, "", self.endpoint, typed)

    def general(self) -> FetchResult:
        """This result with `sets` filled in by the general parser (for a typed one)."""
        if self.typed is None and not self.unchanged:
            return self
        return decode_body(200, self.body, "", self.endpoint, False)


def redact_url(url: str) -> str:
    """Drop user:password@ from a URL so it can be logged."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


def one_line(text: str, limit: int = 200) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def _port(url: str) -> int | None:
    try:
        return urlsplit(url).port
    except ValueError:
        return None


def candidate_endpoints(base_url: str, api: str) -> list[Endpoint]:
    """The endpoints to try, in order. More than one only for `--api auto` on a bare base URL."""
    path = urlsplit(base_url).path.rstrip("/")
    aggregator = _port(base_url) in AGGREGATOR_PORTS
    if path:
        if api == "auto":
            flavour = "kubecost" if path.endswith("/model/allocation") or aggregator else "opencost"
        else:
            flavour = api
        return [Endpoint(base_url, flavour)]
    if api == "kubecost":
        return [Endpoint(base_url + ("/allocation" if aggregator else "/model/allocation"), api)]
    if api == "opencost":
        return [Endpoint(base_url + "/allocation", api)]
    if aggregator:
        return [Endpoint(base_url + "/allocation", "kubecost")]
    return [
        Endpoint(base_url + "/model/allocation", "kubecost"),
        Endpoint(base_url + "/allocation", "opencost"),
    ]


def query_params(window: str, aggregate: str, share_idle: str, split_idle: bool) -> dict[str, str]:
    """The explicit query: never rely on server defaults (they changed between versions)."""
    params = {
        "window": window,
        "aggregate": aggregate,
        "accumulate": "true",
        "idle": "true",  # Kubecost's name
        "includeIdle": "true",  # OpenCost's name
        "shareIdle": "true" if share_idle == "weighted" else "false",
    }
    if split_idle:
        params["splitIdle"] = "true"
    return params


def _short_cause(exc: BaseException) -> str:
    text = str(exc)
    for pattern in (
        r"\[Errno -?\d+\] [^'\")\]]+",
        r"Connection refused",
        r"Name or service not known",
        r"Connection reset by peer",
        r"RemoteDisconnected\([^)]*\)",
        r"IncompleteRead\([^)]*\)",
        r"certificate verify failed[^'\")]*",
    ):
        m = re.search(pattern, text)
        if m:
            return m.group(0).strip()
    return one_line(type(exc).__name__ + ": " + text, 120)


def _loads(body: bytes) -> tuple[bool, Any]:
    try:
        return True, orjson.loads(body)
    except orjson.JSONDecodeError:
        return False, None


def normalize_data(data: Any) -> tuple[list[AllocationSet], int]:
    """`data` -> list of sets (key -> allocation object). Tolerates [], [{}], [null], null,
    the /allocation/summary shape {"sets":[{"allocations":{...}}]} and a bare set object.
    Returns the sets and the number of entries dropped because they were not objects."""
    skipped = 0
    raw_sets: list[Any]
    if data is None:
        return [], 0
    if isinstance(data, list):
        raw_sets = data
    elif isinstance(data, dict) and isinstance(data.get("sets"), list):
        raw_sets = [s.get("allocations") if isinstance(s, dict) else None for s in data["sets"]]
    elif isinstance(data, dict):
        raw_sets = [data]
    else:
        raise ApiError("bad_response", f"'data' is a JSON {type(data).__name__}, expected a list")
    sets: list[AllocationSet] = []
    for raw in raw_sets:
        if not isinstance(raw, dict):
            skipped += 1
            continue
        clean: AllocationSet = {}
        for key, alloc in raw.items():
            if isinstance(alloc, dict):
                clean[str(key)] = alloc
            else:
                skipped += 1
        sets.append(clean)
    return sets, skipped


def parse_response(status: int, body: bytes, content_type: str, url: str) -> Any:
    """Check HTTP status and the body's `code`; return the body's `data`. Raises ApiError."""
    is_json, doc = _loads(body)
    where = redact_url(url)
    if not 200 <= status < 300:
        detail = ""
        if is_json and isinstance(doc, dict) and doc.get("message"):
            detail = one_line(str(doc["message"]))
        elif body:
            detail = one_line(body.decode("utf-8", "replace"))
        raise ApiError(
            "http_status", f"HTTP {status} from {where}" + (f": {detail}" if detail else "")
        )
    if not is_json:
        excerpt = one_line(body.decode("utf-8", "replace"), 120) or "empty body"
        ctype = content_type or "no content type"
        raise ApiError(
            "not_json", f"answer from {where} is not JSON (HTTP {status}, {ctype}): {excerpt}"
        )
    if not isinstance(doc, dict):
        raise ApiError(
            "bad_response",
            f"answer from {where} is a JSON {type(doc).__name__}, expected an object",
        )
    code = doc.get("code")
    if code is not None:
        try:
            code_int = int(code)
        except (TypeError, ValueError):
            code_int = -1
        if code_int != 200:
            message = one_line(str(doc.get("message") or doc.get("status") or "no message"))
            shown = one_line(str(code), 40)  # the answer's own text: never let it break the line
            raise ApiError("api_error", f"API error code {shown} from {where}: {message}")
    if "data" not in doc:
        raise ApiError("bad_response", f"answer from {where} has no 'data' field")
    return doc["data"]


def decode_body(
    status: int, body: bytes, content_type: str, endpoint: Endpoint, typed: bool
) -> FetchResult:
    """An answer -> FetchResult. With `typed`, a 2xx answer in the usual namespace shape is
    decoded into typed rows (fastpath); anything else goes through the general parser, which
    checks status, `code` and `data` and raises ApiError."""
    if typed and 200 <= status < 300:
        page = fastpath.decode(body)
        if page is not None:
            return FetchResult([], endpoint, body, 0, typed=page)
    sets, skipped = normalize_data(parse_response(status, body, content_type, endpoint.url))
    return FetchResult(sets, endpoint, body, skipped)


def _read_secret(path: str, what: str) -> str:
    try:
        with open(path, encoding="utf-8") as fh:
            value = fh.read().strip()
    except OSError as exc:
        raise ApiError("auth", f"cannot read {what} file {path}: {exc.strerror}") from None
    if not value:
        raise ApiError("auth", f"{what} file {path} is empty")
    return value


class AllocationClient:
    """Queries one Allocation API. Thread-compatible: used by one refresher at a time."""

    def __init__(self, cfg: Config, session: requests.Session | None = None) -> None:
        self._cfg = cfg
        self._session = session or requests.Session()
        retry = Retry(
            total=cfg.retries,
            connect=cfg.retries,
            read=cfg.retries,
            status=cfg.retries,
            other=0,
            backoff_factor=cfg.retry_backoff,
            backoff_max=30,
            status_forcelist=RETRY_STATUSES,
            allowed_methods=frozenset({"GET"}),
            raise_on_status=False,
            respect_retry_after_header=False,  # keep every refresh bounded in time
        )
        adapter = HTTPAdapter(max_retries=retry, pool_connections=1, pool_maxsize=2)
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)
        self._session.headers["User-Agent"] = f"kubecost-allocation-exporter/{__version__}"
        self._session.headers["Accept"] = "application/json"
        self._candidates = candidate_endpoints(cfg.kubecost_url, cfg.api)
        self._endpoint: Endpoint | None = (
            self._candidates[0] if len(self._candidates) == 1 else None
        )
        self._announced = False
        self._lock = threading.Lock()

    @property
    def endpoint(self) -> Endpoint | None:
        """The chosen endpoint, or None while auto-detection has not succeeded yet."""
        return self._endpoint

    def close(self) -> None:
        self._session.close()

    def _headers(self) -> dict[str, str]:
        headers: dict[str, str] = {}
        if self._cfg.auth_token_file:
            headers["Authorization"] = "Bearer " + _read_secret(self._cfg.auth_token_file, "token")
        if self._cfg.api_key_file:
            headers["X-API-KEY"] = _read_secret(self._cfg.api_key_file, "API key")
        return headers

    def _get(self, url: str, params: Mapping[str, str]) -> requests.Response:
        timeout = (self._cfg.connect_timeout, self._cfg.request_timeout)
        where = redact_url(url)
        try:
            resp = self._session.get(
                url, params=params, headers=self._headers(), timeout=timeout, stream=True
            )
            self._read_body(resp, where)
            return resp
        except requests.exceptions.ConnectTimeout:
            raise ApiError(
                "timeout", f"timed out connecting to {where} after {self._cfg.connect_timeout:g}s"
            ) from None
        except requests.exceptions.ReadTimeout:
            raise ApiError(
                "timeout",
                f"no answer from {where} within {self._cfg.request_timeout:g}s (read timeout)",
            ) from None
        except requests.exceptions.ChunkedEncodingError as exc:
            raise ApiError(
                "connection", f"answer from {where} was cut off: {_short_cause(exc)}"
            ) from None
        except requests.exceptions.ConnectionError as exc:
            if "Read timed out" in str(exc):
                raise ApiError(
                    "timeout",
                    f"no answer from {where} within {self._cfg.request_timeout:g}s (read timeout)",
                ) from None
            raise ApiError(
                "connection", f"cannot connect to {where}: {_short_cause(exc)}"
            ) from None
        except requests.exceptions.RequestException as exc:
            raise ApiError(
                "connection", f"request to {where} failed: {_short_cause(exc)}"
            ) from None

    def _read_body(self, resp: requests.Response, where: str) -> None:
        """Read the answer into `resp._content`, refusing more than --max-response-bytes (a runaway
        answer must not exhaust the memory limit). A body cut short raises a requests error."""
        limit = self._cfg.max_response_bytes
        declared = resp.headers.get("Content-Length", "")
        too_big = ApiError(
            "bad_response",
            f"answer from {where} is larger than --max-response-bytes ({limit} bytes)",
        )
        if declared.isdigit() and int(declared) > limit:
            resp.close()
            raise too_big
        chunks: list[bytes] = []
        size = 0
        for chunk in resp.iter_content(1 << 20):
            size += len(chunk)
            if size > limit:
                resp.close()
                raise too_big
            chunks.append(chunk)
        resp._content = b"".join(chunks)

    def _announce(self, endpoint: Endpoint, detected: bool) -> None:
        if self._announced:
            return
        self._announced = True
        how = "detected" if detected else "configured"
        log.info(
            "using %s Allocation API at %s (%s)",
            endpoint.flavour,
            redact_url(endpoint.url),
            how,
            extra={"api": endpoint.flavour, "url": redact_url(endpoint.url)},
        )

    def fetch_pages(
        self,
        window: str,
        aggregate: str,
        limit: int,
        split_idle: bool = False,
        typed: bool = False,
    ) -> Iterator[FetchResult]:
        """One query read in pages of `limit` rows (Kubecost 2.x `offset`/`limit`, rows by
        totalCost), each page parsed on its own so the whole answer is never in memory at once.
        Stops at a page with fewer than `limit` rows, or more (a server that ignores paging, e.g.
        OpenCost, answered everything at once). `__idle__` rows do not count. A server that
        honours `limit` but not `offset` repeats rows: the consumer must check (build_breakdown's
        accumulator does). `typed`: see `decode_body`."""
        offset = 0
        for _ in range(MAX_PAGES):
            params = query_params(window, aggregate, self._cfg.share_idle, split_idle)
            params["offset"] = str(offset)
            params["limit"] = str(limit)
            result = self._fetch_params(params, None, typed)
            rows = result.rows
            yield result
            endpoint = self._endpoint
            if rows != limit or (endpoint is not None and endpoint.flavour == "opencost"):
                return
            offset += limit
        raise ApiError(
            "bad_response", f"more than {MAX_PAGES} pages of {limit} rows for aggregate={aggregate}"
        )

    def fetch(
        self,
        window: str,
        aggregate: str,
        split_idle: bool = False,
        same_as: bytes | None = None,
        typed: bool = False,
    ) -> FetchResult:
        """One query. With `same_as` (a body that parsed fine before), an identical 2xx answer is
        returned as `unchanged` without parsing it again. `typed`: see `decode_body`."""
        params = query_params(window, aggregate, self._cfg.share_idle, split_idle)
        return self._fetch_params(params, same_as, typed)

    def _fetch_params(
        self, params: dict[str, str], same_as: bytes | None, typed: bool = False
    ) -> FetchResult:
        with self._lock:
            if self._endpoint is not None:
                self._announce(self._endpoint, detected=False)
                return self._fetch_from(self._endpoint, params, same_as, typed)
            return self._detect_and_fetch(params)

    def _fetch_from(
        self, endpoint: Endpoint, params: Mapping[str, str], same_as: bytes | None, typed: bool
    ) -> FetchResult:
        resp = self._get(endpoint.url, params)
        body = resp.content
        if same_as is not None and 200 <= resp.status_code < 300 and body == same_as:
            return FetchResult([], endpoint, body, 0, unchanged=True)
        return decode_body(
            resp.status_code, body, resp.headers.get("Content-Type", ""), endpoint, typed
        )

    def _detect_and_fetch(self, params: Mapping[str, str]) -> FetchResult:
        """`--api auto` on a bare URL: the first candidate that exists wins (404/405 or a non-JSON
        200, e.g. a UI page, mean "not here"); the choice is kept and logged once."""
        last: ApiError | None = None
        for endpoint in self._candidates:
            resp = self._get(endpoint.url, params)
            body = resp.content
            if resp.status_code in (404, 405) or (resp.status_code == 200 and not _loads(body)[0]):
                log.debug(
                    "auto-detect: %s answered HTTP %s", redact_url(endpoint.url), resp.status_code
                )
                last = ApiError(
                    "http_status",
                    f"no Allocation API at {redact_url(endpoint.url)} (HTTP {resp.status_code})",
                )
                continue
            self._endpoint = endpoint
            self._announce(endpoint, detected=True)
            ctype = resp.headers.get("Content-Type", "")
            return decode_body(resp.status_code, body, ctype, endpoint, False)
        tried = ", ".join(redact_url(e.url) for e in self._candidates)
        assert last is not None
        raise ApiError("http_status", f"no Allocation API found (tried {tried}); last: {last}")
