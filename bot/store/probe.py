"""Can lemi store jobs in the queue ``LEMI_QUEUE`` names? (``lemi doctor`` and ``/readyz``.)

* ``sqlite:///path``: a write transaction on the file, rolled back (nothing is changed); a
  file that does not exist yet must be creatable in its directory (lemi creates it);
* ``sqs://...``: the queue answers ``GetQueueAttributes`` (reachable, with lemi's credentials).

:func:`queue_problem` answers None (writable) or what is wrong and how to fix it.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
from pathlib import Path

from bot.store.backends import open_queue


def _sqlite_problem(path: str) -> str | None:
    file = Path(path)
    if not file.exists():
        directory = file.parent if str(file.parent) else Path(".")
        while not directory.exists() and directory != directory.parent:
            directory = directory.parent  # lemi creates the missing directories
        if not directory.is_dir() or not os.access(directory, os.W_OK | os.X_OK):
            return f"{path} does not exist and cannot be created: {directory} is not writable by this user"
        return None
    try:
        db = sqlite3.connect(file.resolve().as_uri() + "?mode=rw", uri=True, timeout=2, isolation_level=None)
    except sqlite3.Error as exc:
        return f"{path} cannot be opened for writing ({exc}); give lemi's user write access to it and its directory"
    try:
        db.execute("BEGIN IMMEDIATE")
        db.execute("CREATE TABLE lemi_probe (x)")  # written to the journal, then rolled back
        db.execute("ROLLBACK")
    except sqlite3.Error as exc:
        return f"{path} is not writable ({exc}); give lemi's user write access to it and its directory"
    finally:
        db.close()
    return None


async def queue_problem(url: str) -> str | None:
    """None when jobs can be stored in the queue ``url`` names; else what is wrong, with the fix."""
    if url.startswith("sqlite:///"):
        return await asyncio.to_thread(_sqlite_problem, url.removeprefix("sqlite:///") or "lemi-queue.db")
    try:
        queue = open_queue(url)
    except ValueError as exc:
        return str(exc)
    try:
        await queue.depth()
    except Exception as exc:  # noqa: BLE001 - botocore's and aiohttp's errors alike: the queue is not usable
        return f"the SQS queue cannot be reached ({exc}); check LEMI_QUEUE, the region and lemi's sqs permissions"
    finally:
        await queue.close()
    return None
