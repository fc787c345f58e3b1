"""Logging to stderr as text or JSON lines. Messages never carry credentials: the client never
logs headers, URLs are logged through `redact.redact_url`, and every line (message, extra fields,
traceback) goes through `redact.redact_text` last, for text that comes from libraries."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import IO, Any

from kubecost_allocation_exporter.redact import redact_text

# Attributes every LogRecord has; anything else was passed via `extra=` and is printed.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


def _ts(record: logging.LogRecord) -> str:
    t = datetime.fromtimestamp(record.created, UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{int(record.msecs):03d}Z"


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = f"{_ts(record)} {record.levelname.lower():7s} {record.name}: {record.getMessage()}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return redact_text(line)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": _ts(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": redact_text(record.getMessage()),
        }
        extras = {k: v for k, v in vars(record).items() if k not in _STANDARD}
        for k, v in extras.items():
            doc[k] = v if isinstance(v, int | float | bool) or v is None else redact_text(str(v))
        if record.exc_info:
            doc["exc"] = redact_text(self.formatException(record.exc_info))
        return json.dumps(doc, ensure_ascii=False)


def configure(level: str, fmt: str, stream: IO[str] | None = None) -> None:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    logging.basicConfig(handlers=[handler], level=level.upper(), force=True)
    # urllib3 logs every retry at WARNING; our own error line says what finally failed.
    logging.getLogger("urllib3").setLevel(logging.DEBUG if level == "debug" else logging.ERROR)
