"""lemi's log lines are written in batches (bot/core/logs.py), and none is lost on a clean exit."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.core import logs
from bot.core.logs import BufferedStreamHandler, JsonFormatter

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def logger() -> Iterator[logging.Logger]:
    log = logging.getLogger("lemi-test-buffered")
    log.propagate, log.level = False, logging.INFO
    yield log
    for handler in log.handlers[:]:
        log.removeHandler(handler)


def attach(log: logging.Logger, **options: float) -> tuple[BufferedStreamHandler, io.StringIO]:
    stream = io.StringIO()
    handler = BufferedStreamHandler(stream, **options)  # type: ignore[arg-type]
    handler.setFormatter(JsonFormatter())
    log.addHandler(handler)
    return handler, stream


def messages(stream: io.StringIO) -> list[str]:
    return [json.loads(line)["message"] for line in stream.getvalue().splitlines()]


def test_lines_wait_and_are_written_together_within_the_interval(logger: logging.Logger) -> None:
    _, stream = attach(logger, interval=0.2)
    for i in range(3):
        logger.info("line %d", i)
    assert stream.getvalue() == ""  # not one write per line
    deadline = time.monotonic() + 5
    while not stream.getvalue() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert messages(stream) == ["line 0", "line 1", "line 2"]
    logger.info("later")  # the timer goes on working for the next lines
    deadline = time.monotonic() + 5
    while len(messages(stream)) < 4 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert messages(stream)[-1] == "later"


def test_a_warning_is_written_at_once_after_the_lines_before_it(logger: logging.Logger) -> None:
    _, stream = attach(logger, interval=60)
    logger.info("first")
    logger.warning("trouble")
    assert messages(stream) == ["first", "trouble"]


def test_lines_are_written_once_capacity_characters_wait(logger: logging.Logger) -> None:
    handler, stream = attach(logger, interval=60, capacity=1000)
    logger.info("line 0")
    assert stream.getvalue() == ""
    for i in range(1, 100):
        logger.info("line %d", i)
    written = messages(stream)
    assert written, "nothing written although far more than the capacity waited"
    assert written == [f"line {i}" for i in range(len(written))]
    handler.flush()
    assert messages(stream) == [f"line {i}" for i in range(100)]


def test_flush_writes_what_waits(logger: logging.Logger) -> None:
    handler, stream = attach(logger, interval=60)
    logger.info("held")
    assert stream.getvalue() == ""
    handler.flush()
    assert messages(stream) == ["held"]


def test_setup_buffers_lemis_lines_and_flush_writes_them(monkeypatch: pytest.MonkeyPatch) -> None:
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    root = logging.getLogger("lemi")
    before = root.handlers[:], root.level, root.propagate
    try:
        logs.setup()
        (handler,) = root.handlers
        assert isinstance(handler, BufferedStreamHandler)
        handler.interval = 60  # only flush() writes here
        logging.getLogger("lemi.app").info("delivery d-1 queued", extra={"delivery": "d-1"})
        logs.flush()
        (entry,) = [json.loads(line) for line in stream.getvalue().splitlines()]
        assert entry["message"] == "delivery d-1 queued" and entry["delivery"] == "d-1"
    finally:
        root.handlers[:], root.level, root.propagate = before


def test_a_process_that_exits_writes_every_line_it_logged() -> None:
    """Nothing is lost at a clean exit: the interpreter's logging.shutdown flushes the handler."""
    code = textwrap.dedent(
        """
        import logging
        from bot.core import logs
        logs.setup()
        logging.getLogger("lemi").handlers[0].interval = 3600
        log = logging.getLogger("lemi.app")
        for i in range(2000):
            log.info("delivery %d queued", i)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60, env={**os.environ}
    )
    assert out.returncode == 0, out.stderr[-2000:]
    lines = [json.loads(line)["message"] for line in out.stderr.splitlines()]
    assert lines == [f"delivery {i} queued" for i in range(2000)]


def test_an_info_line_made_without_a_record_is_the_line_a_record_makes(logger: logging.Logger) -> None:
    """Intake's line per delivery skips the log record when it goes to lemi's handler alone: the
    same JSON, in the same order among the other lines, with the bound context."""
    handler, stream = attach(logger)
    fields = {"delivery": "d-1", "event": "pull_request", "repository": "acme/app"}
    with logs.bind(service="web"):
        logger.info("before")
        logs.info_line(logger, "delivery d-1 queued", fields)
        logger.info("delivery %s %s", "d-1", "queued", extra=fields)
    handler.flush()
    before, fast, slow = (json.loads(line) for line in stream.getvalue().splitlines())
    assert before["message"] == "before"
    assert fast == slow
    assert fast["message"] == "delivery d-1 queued" and fast["service"] == "web" and fast["delivery"] == "d-1"


def test_an_info_line_goes_through_logging_when_anything_else_could_see_it(
    logger: logging.Logger, caplog: pytest.LogCaptureFixture
) -> None:
    """Another handler, a filter or a level above INFO: the line is an ordinary record."""
    handler, stream = attach(logger)
    logger.propagate = True  # caplog's handler on the root sees it too
    with caplog.at_level(logging.INFO, logger=logger.name):
        logs.info_line(logger, "delivery d-2 queued", {"delivery": "d-2"})
    assert {(r.getMessage(), getattr(r, "delivery", None)) for r in caplog.records} == {("delivery d-2 queued", "d-2")}
    logger.propagate = False
    logger.addFilter(lambda record: "secret" not in record.getMessage())
    logs.info_line(logger, "delivery secret queued", {})
    logger.filters.clear()
    logger.setLevel(logging.WARNING)
    logs.info_line(logger, "delivery d-3 queued", {})
    logger.setLevel(logging.INFO)
    handler.flush()
    assert [json.loads(line)["message"] for line in stream.getvalue().splitlines()] == ["delivery d-2 queued"]
