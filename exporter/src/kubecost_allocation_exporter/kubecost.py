"""HTTP client for the Allocation API of Kubecost 2.x/3.x and OpenCost (the I/O edge).

`AllocationClient.query()` reads one query page by page: each answer is streamed into one buffer
(refused once it passes `--max-response-bytes`), decoded into rows (`decode.decode`) and released
before the next page is asked for. A non-2xx or non-JSON answer is read only as far as its error
message needs. Every read checks the refresh's `Budget` (rows and deadline). Retries (connect
errors, read timeouts, HTTP 429/502/503/504) are urllib3's `Retry` on the session, bounded by
`--retries`. Every failure becomes an `ApiError` with a bounded `reason` and a one-line message;
credentials never appear in a message.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit, urlunsplit

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from kubecost_allocation_exporter import __version__
from kubecost_allocation_exporter.config import Config
from kubecost_allocation_exporter.decode import (
    EXCERPT_BYTES,
    REASONS,
    ApiError,
    Page,
    decode,
    http_error,
    looks_like_json,
    not_json,
    one_line,
)
from kubecost_allocation_exporter.hints import connection_hint
from kubecost_allocation_exporter.redact import header_value_problem, redact_url
from kubecost_allocation_exporter.savings import Key, recommendations

__all__ = ["REASONS", "AllocationClient", "ApiError", "Budget", "Endpoint"]
log = logging.getLogger(__name__)

AGGREGATOR_PORTS = (9004, 9008)
RETRY_STATUSES = (429, 502, 503, 504)
MAX_PAGES = 10_000
CHUNK_BYTES = 1 << 20
IDLE_KEY = "__idle__"


@dataclass(frozen=True)
class Endpoint:
    url: str  # full URL of the allocation endpoint
    flavour: str  # "kubecost" or "opencost"


class Budget:
    """What one refresh may still use: rows (`--max-rows`) and time (`--refresh-timeout`)."""

    def __init__(self, cfg: Config, clock: Callable[[], float] = time.monotonic) -> None:
        self.rows = cfg.max_rows
        self.seconds = cfg.deadline
        self._clock = clock
        self._deadline = clock() + cfg.deadline

    def check(self, where: str) -> float:
        """The seconds left; ApiError `timeout` once the deadline has passed."""
        left = self._deadline - self._clock()
        if left <= 0:
            raise ApiError(
                "timeout",
                f"refresh not finished within --refresh-timeout ({self.seconds:g}s); "
                f"stopped reading {where}",
            )
        return left

    def take(self, rows: int, where: str) -> None:
        self.rows -= rows
        if self.rows < 0:
            raise ApiError("too_large", f"more rows than --max-rows in one refresh (at {where})")


def candidate_endpoints(base_url: str, api: str) -> list[Endpoint]:
    """The endpoints to try, in order. More than one only for `--api auto` on a bare base URL."""
    path = urlsplit(base_url).path.rstrip("/")
    aggregator = False
    with contextlib.suppress(ValueError):  # a port that is not a number
        aggregator = urlsplit(base_url).port in AGGREGATOR_PORTS
    if path:
        auto = "kubecost" if path.endswith("/model/allocation") or aggregator else "opencost"
        return [Endpoint(base_url, auto if api == "auto" else api)]
    kubecost = Endpoint(
        base_url + ("/allocation" if aggregator else "/model/allocation"), "kubecost"
    )
    opencost = Endpoint(base_url + "/allocation", "opencost")
    auto_order = [kubecost] if aggregator else [kubecost, opencost]
    return {"kubecost": [kubecost], "opencost": [opencost]}.get(api, auto_order)


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
    return (params | {"splitIdle": "true"}) if split_idle else params


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
        r"\[SSL[^\]]*\] [^'\"(]*",  # e.g. "[SSL: WRONG_VERSION_NUMBER] wrong version number"
    ):
        if m := re.search(pattern, text):
            return m.group(0).strip()
    return one_line(type(exc).__name__ + ": " + text, 120)


def _read_secret(path: str, what: str) -> str:
    try:
        with open(path, encoding="utf-8", newline="") as fh:  # a CR stays a CR
            value = fh.read().strip()
    except OSError as exc:
        raise ApiError("auth", f"cannot read {what} file {path}: {exc.strerror}") from None
    if not value:
        raise ApiError("auth", f"{what} file {path} is empty")
    problem = header_value_problem(value)
    if problem is not None:  # never quote the value: it is a credential
        raise ApiError(
            "auth",
            f"{what} file {path} holds {problem}, which an HTTP header cannot carry "
            "(the content is not shown)",
        )
    return value


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    port = parts.port or {"http": 80, "https": 443}.get(scheme)
    return scheme, (parts.hostname or "").lower(), port


def _refuse_other_origins(resp: requests.Response, *_: object, **__: object) -> requests.Response:
    """A response hook: refuse, not follow, a redirect to another origin (scheme, host or port).

    requests drops `Authorization` on such a redirect but sends `X-API-KEY` (and every other header)
    to the new origin, and its answer would be taken for Kubecost's. So a redirect that leaves the
    configured origin fails the query with reason `http_status`, whatever credential is configured
    (bearer token, API key, user:password in the URL) or none; one within the origin (e.g. an added
    trailing slash) is followed as before, credentials included."""
    if not resp.is_redirect:
        return resp
    target = urljoin(resp.url, resp.headers["location"])
    with contextlib.suppress(ValueError):  # a port that is not a number: another origin
        if _origin(target) == _origin(resp.url):
            return resp
    resp.close()
    scheme, host, port = _origin(resp.url)
    raise ApiError(
        "http_status",
        f"HTTP {resp.status_code} from {redact_url(resp.url)} redirects to another origin "
        f"({redact_url(target)}); not followed: credentials and queries go only to "
        f"{scheme}://{host}:{port}",
    )


@dataclass
class Answer:
    """One HTTP answer: status, the body read (all of it for a 2xx JSON answer, else the start
    of it), its content type, and where it came from (the URL, redacted)."""

    status: int
    body: bytearray
    content_type: str
    where: str

    def fingerprint(self) -> int:
        """Length and CRC of the body: recognises an unchanged answer without keeping it."""
        return len(self.body) << 32 | zlib.crc32(self.body)

    def pages(self, budget: Budget) -> Iterator[Page]:
        for page in decode(self.status, self.body, self.content_type, self.where, budget.rows):
            budget.take(page.rows, self.where)
            yield page


class AllocationClient:
    """Queries one Allocation API. Thread-compatible: used by one refresher at a time."""

    def __init__(self, cfg: Config) -> None:
        self._cfg = cfg
        self._candidates = candidate_endpoints(cfg.kubecost_url, cfg.api)
        self._endpoint = self._candidates[0] if len(self._candidates) == 1 else None
        self._announced = False
        self._lock = threading.Lock()
        # The session every query uses (session-wide request policy belongs here): bounded
        # retries with backoff, identification headers, no redirect to another origin.
        self._session = session = requests.Session()
        retry = Retry(
            total=cfg.retries,  # bounds connect, read and status retries together
            other=0,
            backoff_factor=cfg.retry_backoff,
            backoff_max=30,
            status_forcelist=RETRY_STATUSES,
            allowed_methods=frozenset({"GET"}),
            raise_on_status=False,
            respect_retry_after_header=False,  # keep every refresh bounded in time
        )
        adapter = HTTPAdapter(max_retries=retry, pool_connections=1, pool_maxsize=2)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        session.headers["User-Agent"] = f"kubecost-allocation-exporter/{__version__}"
        session.headers["Accept"] = "application/json"
        session.hooks["response"].append(_refuse_other_origins)

    @property
    def endpoint(self) -> Endpoint | None:
        """The chosen endpoint, or None while auto-detection has not succeeded yet."""
        return self._endpoint

    def close(self) -> None:
        self._session.close()

    def query(
        self,
        window: str,
        aggregate: str,
        budget: Budget | None = None,
        split_idle: bool = False,
        fingerprints: list[int] | None = None,
    ) -> Iterator[Page]:
        """One query, page by page: Kubecost 2.x `offset`/`limit` (rows by totalCost) when
        `--page-size` is set and the API is not OpenCost (which ignores paging), else one page.
        Stops at a page with fewer rows than the limit (`__idle__` rows do not count) or more (a
        server that ignores paging answered everything at once). A large answer comes as several
        Pages (its batches). With `fingerprints`, a hash of every answer is appended to it (to
        recognise an unchanged answer). Without `budget`, in a budget of its own."""
        budget, limit = budget or Budget(self._cfg), self._cfg.page_size
        for i in range(MAX_PAGES):
            params = query_params(window, aggregate, self._cfg.share_idle, split_idle)
            paging = limit > 0 and (self._endpoint is None or self._endpoint.flavour != "opencost")
            if paging:
                params.update(offset=str(i * limit), limit=str(limit))
            counted = 0
            for page in self._fetch(params, budget, fingerprints):
                counted += page.rows - sum(k.count(IDLE_KEY) for s in page.sets for k in s)
                yield page
            opencost = self._endpoint is not None and self._endpoint.flavour == "opencost"
            if not paging or counted != limit or opencost:
                return
        raise ApiError(
            "bad_response", f"more than {MAX_PAGES} pages of {limit} rows for aggregate={aggregate}"
        )

    def assets(self, window: str, aggregate: str, budget: Budget) -> list[Page] | None:
        """The Assets API's answer beside the allocation endpoint (`.../model/assets` or
        `.../assets`), in the refresh's budget; None when the engine has none."""
        params = {"window": window, "aggregate": aggregate, "accumulate": "true"}
        if (answer := self._beside("/assets", params, budget)) is None:
            return None
        return list(answer.pages(budget))

    def savings(self, budget: Budget, prints: list[int]) -> dict[Key, float] | None:
        """Kubecost's request-sizing recommendations beside the allocation endpoint as savings per
        namespace and controller, None when there are none; only `window` (2.x refuses unknown
        parameters, serves no hourly window). Appends the answer's fingerprint to `prints`."""
        if (answer := self._beside("/savings/requestSizingV2", {"window": "3d"}, budget)) is None:
            return None
        where = answer.where
        if not 200 <= answer.status < 300:
            raise http_error(answer.status, answer.body, where)
        prints.append(answer.fingerprint())
        sums = recommendations(answer.body, where, self._cfg.cluster_name, self._cfg.multi_cluster)
        budget.take(len(sums), where)
        return sums

    def _beside(self, path: str, params: Mapping[str, str], budget: Budget) -> Answer | None:
        """GET `path` beside the allocation endpoint (keeping a query string of --kubecost-url);
        None when there is none (404/405 or a non-JSON page, as for `--api auto`)."""
        with self._lock:
            if self._endpoint is None:
                return None
            parts = urlsplit(self._endpoint.url)
            url = urlunsplit(parts._replace(path=parts.path.rsplit("/allocation", 1)[0] + path))
            answer = self._get(url, params, budget, probe=True)
        ok = 200 <= answer.status < 300
        absent = answer.status in (404, 405) or (ok and not looks_like_json(answer.body[:64]))
        return None if absent else answer

    def _fetch(
        self, params: Mapping[str, str], budget: Budget, fingerprints: list[int] | None
    ) -> Iterator[Page]:
        """One request: its answer read whole, then decoded into Pages; the answer is released
        when the last of them has been taken."""
        with self._lock:
            endpoint, answer = self._endpoint, None
            if endpoint is None:
                endpoint, answer = self._detect(params, budget)
            if not self._announced:
                self._announced = True
                url, flavour = redact_url(endpoint.url), endpoint.flavour
                how = "detected" if len(self._candidates) > 1 else "configured"
                log.info(
                    f"using {flavour} Allocation API at {url} ({how})",
                    extra={"api": flavour, "url": url},
                )
            answer = answer or self._get(endpoint.url, params, budget)
            if fingerprints is not None:
                fingerprints.append(answer.fingerprint())
        yield from answer.pages(budget)

    def _detect(self, params: Mapping[str, str], budget: Budget) -> tuple[Endpoint, Answer]:
        """`--api auto` on a bare URL: the first candidate that exists wins (404/405 or a non-JSON
        200, e.g. a UI page, mean "not here"); the choice is kept and logged once. Returns it and
        its answer to this query."""
        last = ""
        for endpoint in self._candidates:
            answer = self._get(endpoint.url, params, budget, probe=True)
            status, where = answer.status, answer.where
            if status not in (404, 405) and (status != 200 or looks_like_json(answer.body[:64])):
                self._endpoint = endpoint
                return endpoint, answer
            log.debug("auto-detect: %s answered HTTP %s", where, status)
            last = f"no Allocation API at {where} (HTTP {status})"
        tried = ", ".join(redact_url(e.url) for e in self._candidates)
        raise ApiError("http_status", f"no Allocation API found (tried {tried}); last: {last}")

    def _headers(self) -> dict[str, str]:
        headers: dict[str, str] = {}
        if self._cfg.auth_token_file:
            headers["Authorization"] = "Bearer " + _read_secret(self._cfg.auth_token_file, "token")
        if self._cfg.api_key_file:
            headers["X-API-KEY"] = _read_secret(self._cfg.api_key_file, "API key")
        return headers

    def _get(
        self, url: str, params: Mapping[str, str], budget: Budget, probe: bool = False
    ) -> Answer:
        """GET and read the answer. A 2xx JSON answer is read whole, refused (too_large) past
        `--max-response-bytes`; anything else is read only as far as its message (or, when
        `probe`, the detection) needs, and the connection dropped."""
        cfg = self._cfg
        where = redact_url(url)
        left = budget.check(where)
        timeout = (min(cfg.connect_timeout, left), min(cfg.request_timeout, left))
        try:
            resp = self._session.get(
                url, params=params, headers=self._headers(), timeout=timeout, stream=True
            )
        except requests.exceptions.ConnectTimeout:
            raise ApiError(
                "timeout", f"timed out connecting to {where} after {timeout[0]:g}s"
            ) from None
        except requests.exceptions.ReadTimeout:
            raise _read_timeout(where, timeout[1]) from None
        except requests.exceptions.ConnectionError as exc:
            if "Read timed out" in str(exc):
                raise _read_timeout(where, timeout[1]) from None
            cause = _short_cause(exc) + connection_hint(url, exc)
            raise ApiError("connection", f"cannot connect to {where}: {cause}") from None
        except requests.exceptions.RequestException as exc:
            raise ApiError(
                "connection", f"request to {where} failed: {_short_cause(exc)}"
            ) from None
        body = bytearray()
        try:
            status, ctype = resp.status_code, resp.headers.get("Content-Type", "")
            ok = 200 <= status < 300
            limit = cfg.max_response_bytes if ok else EXCERPT_BYTES
            declared = resp.headers.get("Content-Length", "")
            if ok and declared.isdigit() and int(declared) > limit:
                raise _too_large(where, limit)
            exact = ok and declared.isdigit() and "Content-Encoding" not in resp.headers
            got = 0
            while chunk := resp.raw.read1(CHUNK_BYTES, decode_content=True):
                if got == 0 and ok and not looks_like_json(chunk[:64]):
                    if probe:  # a UI page: "not here"
                        return Answer(status, bytearray(chunk), "", where)
                    raise not_json(status, chunk, ctype, where)
                if got == 0 and exact:
                    body = bytearray(int(declared))  # one block of the answer's size, never regrown
                body[got : got + len(chunk)] = chunk  # in place; grows the buffer past its end
                got += len(chunk)
                if got > limit and ok:
                    raise _too_large(where, limit)
                if got > limit or (probe and not ok):
                    break
                budget.check(where)
            del body[got:]  # a body cut short raised above; only an early stop leaves a tail
            return Answer(status, body, ctype, where)
        except urllib3.exceptions.ReadTimeoutError:
            raise _read_timeout(where, timeout[1]) from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise ApiError(
                "connection", f"answer from {where} was cut off: {_short_cause(exc)}"
            ) from None
        finally:
            resp.close()
            del body  # an error raised here must not keep the buffer alive through this frame


def _too_large(where: str, limit: int) -> ApiError:
    return ApiError(
        "too_large", f"answer from {where} is larger than --max-response-bytes ({limit} bytes)"
    )


def _read_timeout(where: str, seconds: float) -> ApiError:
    return ApiError("timeout", f"no answer from {where} within {seconds:g}s (read timeout)")
