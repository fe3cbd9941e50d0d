"""Structured logs: one JSON object per line, carrying the delivery id,
repository and service of the work in progress (set with :func:`bind`)."""

from __future__ import annotations

import contextvars
import logging
import sys
import threading
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

    def line(self, name: str, message: str, fields: Mapping[str, Any]) -> str:
        """The line :meth:`format` writes for an info record of logger ``name`` with this message
        and ``extra=fields`` (the keys of FIELDS), made without a record."""
        entry: dict[str, Any] = {"time": self._time(time.time()), "level": "info", "logger": name, "message": message}
        entry.update(_context.get())
        entry.update(fields)
        return _encoder.encode(entry).decode()


def cheap_records() -> None:
    """Make every log record cheaper to build (the logging HOWTO's "Optimization"): no caller's
    file and line, thread or process fields, which no formatter of lemi's (nor uvicorn's) prints.
    Intake writes a line per delivery, and building the record was a fifth of that line's cost."""
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    logging._srcfile = None  # documented there: skips findCaller's stack walk


class BufferedStreamHandler(logging.StreamHandler[Any]):
    """A StreamHandler that writes its lines in batches, not one ``write`` per line: intake logs
    every delivery, and the line's own write syscall was half of that line's cost.

    Lines are written, in order, when ``capacity`` characters are waiting, at once for a record
    at ``flush_level`` or above (warnings and errors are not held back), within ``interval``
    seconds of the first waiting line (a daemon thread), on :meth:`flush`, and at exit
    (``logging.shutdown``, which the interpreter runs on a clean exit, flushes every handler).
    What a process killed outright (SIGKILL, a crash of the interpreter) had not written yet is
    lost: at most ``interval`` seconds of lines. The queue, not the log, is the record of a delivery."""

    def __init__(
        self,
        stream: Any = None,
        *,
        capacity: int = 64 * 1024,
        interval: float = 0.1,
        flush_level: int = logging.WARNING,
    ) -> None:
        super().__init__(stream)
        self.capacity, self.interval, self.flush_level = capacity, interval, flush_level
        self._lines: list[str] = []
        self._size = 0
        self._due = threading.Event()  # set when lines wait for the timer
        self._timer: threading.Thread | None = None

    def emit(self, record: logging.LogRecord) -> None:  # called with the handler's lock held
        try:
            line = self.format(record) + self.terminator
        except Exception:  # noqa: BLE001 - logging's own convention: report it, never raise
            self.handleError(record)
            return
        self._add(line, record.levelno)

    def add_line(self, line: str) -> None:
        """Write a line already formatted (an info line of :func:`info_line`) as :meth:`emit` would."""
        self.acquire()
        try:
            self._add(line + self.terminator, logging.INFO)
        finally:
            self.release()

    def _add(self, line: str, level: int) -> None:
        self._lines.append(line)
        self._size += len(line)
        if self._size >= self.capacity or level >= self.flush_level:
            self._write()
        elif not self._due.is_set():
            if self._timer is None or not self._timer.is_alive():  # the first line (or a forked child)
                self._timer = threading.Thread(target=self._flush_later, name="lemi-log-flush", daemon=True)
                self._timer.start()
            self._due.set()

    def _flush_later(self) -> None:
        while True:
            self._due.wait()
            time.sleep(self.interval)
            self.flush()

    def _write(self) -> None:
        """Write the waiting lines (the lock held)."""
        self._due.clear()
        if self._lines:
            text, self._lines, self._size = "".join(self._lines), [], 0
            try:
                self.stream.write(text)
                self.stream.flush()
            except Exception:  # noqa: BLE001 - as StreamHandler: a closed or broken stream is not the caller's problem
                pass

    def flush(self) -> None:
        self.acquire()
        try:
            self._write()
        finally:
            self.release()


def _lemi_handler(logger: logging.Logger) -> BufferedStreamHandler | None:
    """The handler of every line ``logger`` writes, when that is lemi's own JSON handler alone and
    nothing could filter or change a record on its way there (no filters, one handler)."""
    found: list[logging.Handler] = []
    current: logging.Logger | None = logger
    while current is not None:
        if current.filters:
            return None
        found.extend(current.handlers)
        current = current.parent if current.propagate else None
    if len(found) != 1:
        return None
    handler = found[0]
    if type(handler) is not BufferedStreamHandler or handler.filters or type(handler.formatter) is not JsonFormatter:
        return None
    return handler


def info_line(logger: logging.Logger, message: str, fields: Mapping[str, Any]) -> None:
    """``logger.info(message, extra=fields)``, the same line for the same handlers, made without a
    log record when it goes to lemi's own JSON handler alone (:func:`setup`): intake writes one per
    delivery, and the record and the logging calls around it were most of that line's cost (about
    13 of 15 µs). Anywhere else (a test's handler, a filter, a level above INFO) it is ``logger.info``."""
    if not logger.isEnabledFor(logging.INFO):
        return
    handler = _lemi_handler(logger)
    if handler is None or handler.level > logging.INFO:
        logger.info("%s", message, extra=fields)
        return
    formatter = handler.formatter
    assert isinstance(formatter, JsonFormatter)
    handler.add_line(formatter.line(logger.name, message, fields))


_ADOPTED: set[str] = set()  # libraries' loggers that write through lemi's handler (:func:`adopt`)


def setup(level: str = "INFO") -> None:
    cheap_records()
    handler = BufferedStreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger("lemi")
    flush()  # what the handlers being replaced still hold
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
    for name in _ADOPTED:
        logging.getLogger(name).handlers[:] = [handler]


def adopt(name: str) -> None:
    """Let logger ``name`` (a library's: uvicorn's) write through lemi's JSON handler, now and after
    every :func:`setup`, so that every line lemi serve logs is a JSON line."""
    _ADOPTED.add(name)
    theirs = logging.getLogger(name)
    theirs.handlers[:] = list(logging.getLogger("lemi").handlers)
    theirs.propagate = False


def flush() -> None:
    """Write every line lemi's log handlers still hold (a server that stops calls it)."""
    for name in ("lemi", "lemi.access"):  # lemi.access: the access log (bot/server/peer.py), on stdout
        for handler in logging.getLogger(name).handlers:
            handler.flush()
