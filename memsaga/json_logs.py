"""Log records as JSON lines (``MEMSAGA_LOG_FORMAT=json``): one object per record, never wrapped.

Each line holds ``ts`` (ISO-8601, UTC), ``level``, ``logger``, ``message``, ``role`` (the
process's role: worker, relay, projector, mcp, client) when known, ``exc`` (the formatted
exception, one string) when the record carries one, and the record's ``extra`` fields (for
instance ``temporal_activity`` from Temporal's activity logger); a value JSON cannot hold is
written as its ``str``.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


def current_role() -> str | None:
    """The role this process declared in its tracing setup (``memsaga.telemetry``), if any."""
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        return None
    role = provider.resource.attributes.get("memsaga.role")
    return str(role) if role is not None else None


class JsonLogFormatter(logging.Formatter):
    """Formats a record as one line of JSON (see the module docstring)."""

    def __init__(self, role: str | None = None) -> None:
        super().__init__()
        self.role = role

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if self.role is not None:
            line["role"] = self.role
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exc"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_") and key not in line:
                line[key] = value
        return json.dumps(line, default=str, ensure_ascii=False)
