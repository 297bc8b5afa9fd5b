"""Log output, plain or JSON, with the capabilities and payloads kept out of it.

A session id (or a Gen-1 session URL) is a capability: whoever holds it can read and write the session. A txnId,
an access token and a payload are no better. So nothing here ever writes one in full: our own log calls pass
:func:`redact`-ed values, and :class:`RedactingFilter` rewrites the request paths that uvicorn puts into its
access and WebSocket lines (the query string, which may carry ``access_token`` or ``since``, is dropped).

Each worker calls :func:`configure_logging` when it builds its app, after uvicorn has set up its own loggers;
:func:`uvicorn_log_config` is the same setup as a ``logging.config`` dictionary, for the process that starts
uvicorn.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .config import Settings

#: How many leading characters of an identifier a log line may show: enough to tell sessions apart while
#: reading a log, far too few to use one (ids carry 192 random bits).
SHOWN_PREFIX = 4

#: Path segments that are part of the API's routes, never identifiers: these are shown as they are.
_ROUTE_SEGMENTS = frozenset(
    {
        "",
        "_matrix",
        "client",
        "unstable",
        "v1",
        "org.matrix.msc4108",
        "io.element.msc4388",
        "rendezvous",
        "watch",
        "health",
        "metrics",
        "_rendezvous",
        "openapi.json",
    }
)

#: uvicorn's loggers: their handlers get our formatter in JSON mode, and every one gets the redacting filter.
UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")
#: granian's: its access log passes the request fields as one mapping (``%(path)s``, ``%(query_string)s``).
GRANIAN_LOGGERS = ("_granian", "granian.access")


def redact(value: str) -> str:
    """The first :data:`SHOWN_PREFIX` characters of an identifier, then an ellipsis."""
    return value[:SHOWN_PREFIX] + "…"


def redact_path(path: str) -> str:
    """``path`` with every segment that is not a fixed route segment shortened, and the query dropped."""
    path, question_mark, _ = path.partition("?")
    segments = path.split("/")
    shown = "/".join(s if s in _ROUTE_SEGMENTS or len(s) <= SHOWN_PREFIX else redact(s) for s in segments)
    return shown + ("?…" if question_mark else "")


_WEBSOCKETS_PACKAGE = "websockets"


class RedactingFilter(logging.Filter):
    """Shortens the request paths in uvicorn's log records (access lines, WebSocket handshakes) and drops the
    websockets library's debug traces."""

    def filter(self, record: logging.LogRecord) -> bool:
        # The websockets library, logging through uvicorn's logger, traces every handshake header and frame at
        # debug level: frames carry payloads and headers may carry tokens. Those lines are dropped whole.
        if record.levelno < logging.INFO and _WEBSOCKETS_PACKAGE in Path(record.pathname).parts:
            return False
        args = record.args
        if isinstance(args, tuple) and args:
            record.args = tuple(
                redact_path(arg) if isinstance(arg, str) and arg.startswith("/") else arg for arg in args
            )
        elif isinstance(args, Mapping) and "path" in args:
            # granian's access line: the path apart, the query string apart (and only shown on request).
            fields = dict(args)
            if isinstance(fields["path"], str):
                fields["path"] = redact_path(fields["path"])
            if fields.get("query_string"):
                fields["query_string"] = "…"
            record.args = fields
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``time``, ``level``, ``logger``, ``message``, then any ``fields`` extras.

    ``logger.info("…", extra={"fields": {...}})`` adds structured fields; values must already be redacted.
    """

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": _iso_time(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update(fields)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


class PlainFormatter(logging.Formatter):
    """``time level logger: message key=value …`` for people reading a terminal."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict) and fields:
            line += " " + " ".join(f"{key}={value}" for key, value in fields.items())
        return line


def _iso_time(created: float) -> str:
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created))
    return f"{seconds}.{int(created % 1 * 1000):03d}Z"


def formatter_for(settings: Settings) -> logging.Formatter:
    """The formatter ``log_format`` asks for."""
    return JsonFormatter() if settings.log_format == "json" else PlainFormatter()


#: Marks the handler :func:`configure_logging` installed, so that calling it again replaces nothing twice.
_OURS = "_rendezvous_handler"


def configure_logging(settings: Settings) -> None:
    """Set up this process's logging for ``settings``: our logger's handler, uvicorn's formatters, redaction.

    Idempotent. uvicorn has configured its loggers by the time the app is built; only their formatters (in JSON
    mode) and filters change, so its levels and the ``access_log`` switch still apply.
    """
    level = settings.log_level.upper()
    ours = logging.getLogger("rendezvous")
    ours.setLevel(level)
    ours.propagate = False
    for handler in ours.handlers:
        if getattr(handler, _OURS, False):
            handler.setFormatter(formatter_for(settings))
            break
    else:
        handler = logging.StreamHandler(sys.stderr)
        setattr(handler, _OURS, True)
        handler.setFormatter(formatter_for(settings))
        ours.addHandler(handler)
    for name in (*UVICORN_LOGGERS, *GRANIAN_LOGGERS):
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactingFilter) for f in logger.filters):
            logger.addFilter(RedactingFilter())
        if settings.log_format == "json":
            for handler in logger.handlers:
                handler.setFormatter(JsonFormatter())


def uvicorn_log_config(settings: Settings) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` for ``uvicorn.run(log_config=…)``: uvicorn's own lines in our format.

    With several workers, the supervising process never builds an app, so this is how its few lines (startup,
    worker restarts) get the chosen format too.
    """
    formatter: dict[str, Any] = {"()": JsonFormatter} if settings.log_format == "json" else {"()": PlainFormatter}
    handler = {"class": "logging.StreamHandler", "formatter": "default", "stream": "ext://sys.stderr"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"default": formatter},
        "filters": {"redact": {"()": RedactingFilter}},
        "handlers": {"default": {**handler, "filters": ["redact"]}},
        "loggers": {
            "uvicorn": {"handlers": ["default"], "level": settings.log_level.upper(), "propagate": False},
            "uvicorn.error": {"level": settings.log_level.upper()},
            "uvicorn.access": {"handlers": ["default"], "level": "INFO", "propagate": False},
        },
    }
