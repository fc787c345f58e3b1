"""What to do about a failed connection: one sentence appended to the error line, for the causes
a user meets first (a cluster-internal URL used from outside the cluster, https spoken to a
plain-HTTP port, nothing listening). Shared by the exporter's refresh errors and `verify`, which
also shows what Thanos Query warns about (`ThanosWarnings`)."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

import requests

# The resolver's words for "no such host" (glibc, musl, macOS, urllib3)
_NO_SUCH_HOST = re.compile(
    r"Name or service not known|No address associated with hostname"
    r"|Temporary failure in name resolution|nodename nor servname|Name does not resolve"
    r"|NameResolutionError|getaddrinfo failed"
)
# OpenSSL's words for "the answer was not TLS" (1.1: wrong version number; 3: record layer failure)
_NOT_TLS = re.compile(
    r"WRONG_VERSION_NUMBER|wrong version number|record layer failure|http request", re.I
)
_REFUSED = re.compile(r"Connection refused|Errno 111\b|ConnectionRefusedError")


def connection_hint(url: str, error: BaseException | str, *, flag: str = "--kubecost-url") -> str:
    """' (hint: ...)' naming what to change after a connection error to `url`, or ''."""
    text = str(error)
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:  # a port that is not a number: the URL check reports that
        return ""
    address = f"{host}:{port}"
    if _NO_SUCH_HOST.search(text):
        # <service>.<namespace>[.svc[.cluster.local]] resolves only inside the cluster
        if host.count(".") == 1 or host.endswith((".svc", ".svc.cluster.local")):
            return (
                f" (hint: {host!r} is a cluster-internal Service name, which resolves only "
                f"inside the cluster. Outside it, set {flag} to an address this machine "
                f"reaches, e.g. `kubectl port-forward -n <namespace> svc/<service> 9090` and "
                f"{flag} http://127.0.0.1:9090)"
            )
        return f" (hint: {host!r} does not resolve here: check the host name in {flag})"
    if parts.scheme == "https" and _NOT_TLS.search(text):
        return f" (hint: the server at {address} speaks plain HTTP, not TLS: use http:// in {flag})"
    if _REFUSED.search(text):
        return (
            f" (hint: nothing listens on {address}: check the host and port in {flag}, "
            "or the port-forward)"
        )
    return ""


class ThanosWarnings:
    """The `warnings` of every Prometheus-API answer, collected by a `requests` response hook
    (Thanos Query names the stores it could not reach there: its answer is then partial)."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def collect(self, resp: requests.Response, *_args: Any, **_kwargs: Any) -> None:
        try:
            doc = resp.json()
        except ValueError:
            return
        if isinstance(doc, dict):
            for w in doc.get("warnings") or []:
                if str(w) not in self.seen:
                    self.seen.append(str(w))
