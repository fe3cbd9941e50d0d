"""New jobs put by other processes, noticed within milliseconds: the SQLite file's ``data_version``.

Intake (``lemi serve``) and the work (``lemi worker``) share the queue's file. A worker
in this process waits on an event that a ``put`` here sets at once; a job put by
another process is seen by :class:`Notice`: a thread that asks SQLite, every
``interval`` seconds, for ``PRAGMA data_version`` on a connection of its own. The
number changes when any *other* connection commits to the file; only then does the
thread read ``MAX(id)``, and it wakes the workers when that grew (a new job, not a
lease or a retry this process wrote). Both reads look at the WAL index in shared
memory: no disk read, no lock that intake's commit could wait for. Intake pays
nothing: the thread runs only in a process whose workers wait for work.

What it costs in an idle worker process (``interval`` 10 ms): BENCHMARKS.md,
"Workers in their own process".
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable

from bot.store.sqlitedb import connect

log = logging.getLogger("lemi.queue")

INTERVAL = 0.01  # seconds between two looks at data_version


class Notice:
    """Calls ``wake`` (from its own thread) when a job was put into ``path`` by another connection."""

    def __init__(self, path: str, wake: Callable[[], None], *, interval: float = INTERVAL) -> None:
        self.path = path
        self.wake = wake
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        if self.running:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._watch, name="lemi-queue-notice", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _watch(self) -> None:
        try:
            db = connect(self.path)
        except (sqlite3.Error, OSError) as exc:  # the workers still poll (wait_for_work's timeout)
            log.warning("cannot watch %s for new jobs (%s); workers look every poll interval instead", self.path, exc)
            return
        try:
            version, top = -1, None
            while not self._stop.wait(self.interval):
                try:
                    now = db.execute("PRAGMA data_version").fetchone()[0]
                    if now == version:
                        continue
                    version = now
                    newest = db.execute("SELECT MAX(id) FROM jobs").fetchone()[0] or 0
                except sqlite3.Error:  # no jobs table yet, or the file is busy: look again next time
                    continue
                if top is None or newest > top:  # the first look wakes too: a job may have come before it
                    self.wake()
                top = newest
        finally:
            db.close()
