"""Large webhook documents of the embedded queue, in append-only files beside it.

Intake stores a delivery's summary, which stays in its row (sqlite_queue.INLINE_DOCUMENT);
a document over that size (a long pull request body, a delivery of an unexpected shape
kept whole) comes here. SQLite costs about 40 µs of CPU per 24 KB document it stores (B-tree pages,
WAL frames and their checksums, the checkpoint's second copy) and the group
commit waits for all of it. Here a batch of documents is one ``writev`` and
one ``fdatasync`` (the GIL released for both), and the job's row only says
where its document is: ``(file, offset, length)``.

* Each process appends to its own file (``<queue>.bodies/<pid>-<random>-<n>.seg``)
  and holds an exclusive ``flock`` on it while it does; at 64 MiB it starts a
  new one. The documents are synced before the rows that point at them are
  committed, so every stored row can read its document.
* Any process reads any file (``pread``).
* ``collect`` deletes the files no open or failed job points at and no live
  process appends to (the ``flock`` of a killed process is gone with it).
* The directory is lemi's alone (mode 0700) and so is every file (0600), whatever
  the umask. ``make_private`` (the queue calls it when it opens its database)
  tightens a directory or files that other users could open (privatefiles.py).
"""

from __future__ import annotations

import fcntl
import os
import re
import secrets
from collections.abc import Callable, Collection, Iterable
from pathlib import Path

from bot.store import privatefiles

SEGMENT_BYTES = 64 * 1024 * 1024
_NAME = re.compile(r"^[0-9]+-[0-9a-f]{8}-[0-9]+\.seg$")
_IOV_MAX = 512  # os.writev takes at most IOV_MAX (1024 on Linux) buffers per call
_DSYNC = getattr(os, "O_DSYNC", 0)
_sync = getattr(os, "fdatasync", os.fsync)  # macOS has no fdatasync


def _write_all(fd: int, buffers: list[bytes]) -> None:
    written = os.writev(fd, buffers)
    if written < sum(len(b) for b in buffers):  # a short write (a full disk raises instead): the rest
        rest = b"".join(buffers)[written:]
        while rest:
            rest = rest[os.write(fd, rest) :]


class BodyError(OSError):
    """A document cannot be read back (its file is gone or shorter than the row says)."""


class Bodies:
    def __init__(self, directory: str | Path, *, segment_bytes: int = SEGMENT_BYTES) -> None:
        self.directory = Path(directory)
        self.segment_bytes = segment_bytes
        self._prefix = f"{os.getpid()}-{secrets.token_hex(4)}"
        self._serial = 0
        self._fd: int | None = None
        self._name = ""

    @property
    def active(self) -> str:
        """The file this process appends to now ('' before the first append)."""
        return self._name

    def append(self, documents: list[bytes]) -> list[tuple[str, int, int]]:
        """Write the documents, durably, and say where each one is: (file, offset, length)."""
        if self._fd is not None and os.fstat(self._fd).st_size >= self.segment_bytes:
            self.close()
        if self._fd is None:
            self._rotate()
        assert self._fd is not None
        try:
            # where the file really ends: after a failed write it holds more than was counted
            offset = os.fstat(self._fd).st_size
            where = []
            for document in documents:
                where.append((self._name, offset, len(document)))
                offset += len(document)
            for start in range(0, len(documents), _IOV_MAX):
                _write_all(self._fd, documents[start : start + _IOV_MAX])
            if not _DSYNC:
                _sync(self._fd)
        except BaseException:
            self.close()  # a disk that failed once: start a new file next time
            raise
        return where

    def make_private(self) -> None:
        """Take away other users' access to the directory and its files, where they have any."""
        privatefiles.tighten(self.directory)
        for name in self.files():
            privatefiles.tighten(self.directory / name)

    def _rotate(self) -> None:
        self.close()
        privatefiles.private_dir(self.directory)
        self._serial += 1
        name = f"{self._prefix}-{self._serial}.seg"
        # O_DSYNC: each write returns once its data is on disk (one call, not write + fdatasync)
        fd = privatefiles.create_private(self.directory / name, os.O_WRONLY | os.O_APPEND | _DSYNC)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # ours alone: collect() leaves it be
            directory = os.open(self.directory, os.O_RDONLY)
            try:
                os.fsync(directory)  # the new file's name is durable before a row points at it
            finally:
                os.close(directory)
        except BaseException:
            os.close(fd)
            raise
        self._fd, self._name = fd, name

    def read(self, name: str, offset: int, length: int) -> bytes:
        if not _NAME.match(name):
            raise BodyError(f"not a document file name: {name!r}")
        try:
            fd = os.open(self.directory / name, os.O_RDONLY)
        except FileNotFoundError:
            raise BodyError(f"the document file {self.directory / name} is gone") from None
        try:
            data = os.pread(fd, length, offset)
        finally:
            os.close(fd)
        if len(data) != length:
            raise BodyError(f"{self.directory / name} is shorter than the queue says ({offset}+{length})")
        return data

    def files(self) -> Iterable[str]:
        try:
            return sorted(name for name in os.listdir(self.directory) if _NAME.match(name))
        except FileNotFoundError:
            return []

    def collect(self, in_use: Callable[[], Collection[str]]) -> list[str]:
        """Delete the files no live process appends to and no row points at.

        The files are locked first and ``in_use`` (the files rows point at) is asked
        after: a file whose writer let go of it gets no new rows, so none can appear
        between the question and the deletion."""
        locked: dict[str, int] = {}
        try:
            for name in self.files():
                if name == self._name:
                    continue
                try:
                    fd = os.open(self.directory / name, os.O_RDONLY)
                except FileNotFoundError:
                    continue
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:  # another process appends to it
                    os.close(fd)
                    continue
                locked[name] = fd
            if not locked:
                return []
            used = set(in_use())
            deleted = [name for name in locked if name not in used]
            for name in deleted:
                (self.directory / name).unlink(missing_ok=True)
            return deleted
        finally:
            for fd in locked.values():
                os.close(fd)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # releases the flock: the file can be collected once unused
            self._fd, self._name = None, ""
