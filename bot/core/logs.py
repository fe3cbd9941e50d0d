"""Structured logs: one JSON object per line, carrying the delivery id,
repository and service of the work in progress (set with :func:`bind`)."""

from __future__ import annotations

import contextvars
import logging
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from types import MappingProxyType
from typing import Any

import msgspec

# an immutable default: bind() always sets a new dict
_context: contextvars.ContextVar[Mapping[str, Any]] = contextvars.ContextVar(
    "lemi_log_context", default=MappingProxyType({})
)
_encoder = msgspec.json.Encoder(enc_hook=str)  # anything else is logged as its str()
FIELDS = ("delivery", "event", "repository", "service", "environment", "job")


@contextmanager
def bind(**values: Any) -> Iterator[None]:
    """Add fields to every log line inside the block. An exception leaving the block
    carries them (``exc.lemi_log``), so whoever logs the failure can name the service."""
    token = _context.set({**_context.get(), **{k: v for k, v in values.items() if v is not None}})
    try:
        yield
    except BaseException as exc:
        if not hasattr(exc, "lemi_log"):
            try:
                exc.lemi_log = dict(_context.get())  # type: ignore[attr-defined]
            except AttributeError:  # pragma: no cover - exceptions without a __dict__
                pass
        raise
    finally:
        _context.reset(token)


class JsonFormatter(logging.Formatter):
    _second = -1
    _stamp = ""

    def _time(self, created: float) -> str:
        """The record's time to the second (formatted once a second: intake logs every delivery)."""
        second = int(created)
        if second != self._second:
            self._stamp, self._second = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(second)), second
        return self._stamp

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self._time(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(_context.get())
        for key in FIELDS:  # explicit extra= wins over the ambient context
            if hasattr(record, key):
                entry[key] = getattr(record, key)
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return _encoder.encode(entry).decode()


def cheap_records() -> None:
    """Make every log record cheaper to build (the logging HOWTO's "Optimization"): no caller's
    file and line, thread or process fields, which no formatter of lemi's (nor uvicorn's) prints.
    Intake writes a line per delivery, and building the record was a fifth of that line's cost."""
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    logging._srcfile = None  # documented there: skips findCaller's stack walk


def setup(level: str = "INFO") -> None:
    cheap_records()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger("lemi")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
