"""Credentials out of text that leaves the process: log lines, `/readyz`, `--once` errors.

The client never puts a credential into a message on purpose. These helpers are the second line of
defence, for text the exporter does not write itself (an exception from a library that quotes a
header value or a request URL) and for URLs the user configured (`--kubecost-url` may carry
`user:password@` or a `?token=`).
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

MASK = "<redacted>"

# scheme://user:password@host -> scheme://host
_USERINFO = re.compile(r"(?<=://)[^/?#\s@]*@")
# ?name=value&other=value -> ?name=<redacted>&other=<redacted> (query values may be tokens, and the
# exporter's own query parameters are never needed in a message)
_QUERY_VALUE = re.compile(r"([?&;][^=&#\s'\"<>?]+=)[^&;#\s'\"<>]+")
# "Authorization: Basic dXNlcjpwYXNz", "'X-API-KEY': 'xyz'" (a header dict's repr): the whole value
_CREDENTIAL_HEADER = re.compile(
    r"(?i)\b(authorization|x-api-key|api[-_]?key|cookie)"
    r"(['\"]?[ \t]*[:=][ \t]*)('[^'\n]*'|\"[^\"\n]*\"|[^\n,;)}]+)"
)
# a bearer token on its own ("Bearer xyz")
_BEARER = re.compile(r"(?i)\b(bearer)([ \t]+)[^\s'\",;)}]+")
# requests ("... in header value: 'Bearer ...'") and http.client ("Invalid header value b'...'")
# quote a refused header value in full: everything after the marker, to the end of the line.
_HEADER_ECHO = re.compile(r"(?i)(\bheader (?:value|name|field value)\b:?[ \t]*)[^\n]+")


def redact_url(url: str) -> str:
    """The URL without `user:password@`, with every query value masked and no fragment, for logs."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return redact_text(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    if port is not None:
        host = f"{host}:{port}"
    query = _QUERY_VALUE.sub(r"\1" + MASK, "?" + parts.query)[1:] if parts.query else ""
    return urlunsplit((parts.scheme, host, parts.path, query, ""))


def redact_text(text: str) -> str:
    """Free text with URL credentials, query values and header credentials masked."""
    text = _HEADER_ECHO.sub(r"\1" + MASK, text)
    text = _USERINFO.sub("", text)
    text = _QUERY_VALUE.sub(r"\1" + MASK, text)
    text = _CREDENTIAL_HEADER.sub(lambda m: m.group(1) + m.group(2) + MASK, text)
    return _BEARER.sub(r"\1\2" + MASK, text)


def header_value_problem(value: str) -> str | None:
    """Why `value` cannot be sent as an HTTP header value (None if it can). Never quotes the value:
    the caller is about to report on a credential."""
    for ch in value:
        if ch == "\r":
            return "a carriage return (CR)"
        if ch == "\n":
            return "a line feed (LF)"
        if ch != "\t" and (ord(ch) < 0x20 or ord(ch) == 0x7F):
            return f"the control character U+{ord(ch):04X}"
        if ord(ch) > 0x7E:
            return "a non-ASCII character"
    return None
