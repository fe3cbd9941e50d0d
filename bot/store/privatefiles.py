"""Files and directories only lemi's own user can open: 0600 and 0700, whatever the umask.

lemi's embedded store (the SQLite queue, its webhook documents, locks and redelivery
record) holds what GitHub sent: pull request titles and bodies, commit messages, user
names, file paths of private repositories. Files are created with the mode set
exactly (``fchmod`` / ``chmod`` after creating: the umask can only take bits away, and a
umask such as 0277 takes the owner's own write bit).

A file or directory of the store that other users can open already (made by an older
lemi, copied in, a leftover of a crashed process) is tightened when lemi opens it:
group and other bits are removed, and a warning says which file it was and what its
mode had been, since what it held may have been read before.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

FILE_MODE = 0o600
DIR_MODE = 0o700
_OTHERS = 0o077  # group and other bits

log = logging.getLogger("lemi.files")


def create_dirs(path: str | Path) -> None:
    """Create ``path`` and its missing parents, each with mode 0700. Directories that
    exist already are left as they are (the store may live in a checkout or in /var/lib)."""
    missing = []
    directory = Path(path)
    while not os.path.lexists(directory):
        missing.append(directory)
        if directory.parent == directory:
            break
        directory = directory.parent
    for directory in reversed(missing):
        try:
            os.mkdir(directory, DIR_MODE)
        except FileExistsError:  # another process made it at the same moment
            continue
        os.chmod(directory, DIR_MODE)


def private_dir(path: str | Path) -> None:
    """A directory of lemi's own (created 0700, or tightened if others can open it)."""
    create_dirs(path)
    tighten(path)


def private_file(path: str | Path) -> None:
    """Create ``path`` empty with mode 0600 unless it exists; an existing one is tightened."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
    except FileExistsError:
        tighten(path)
        return
    try:
        os.fchmod(fd, FILE_MODE)
    finally:
        os.close(fd)


def create_private(path: str | Path, flags: int) -> int:
    """``os.open(path, flags | O_CREAT)`` for a new file of lemi's own: mode exactly 0600."""
    fd = os.open(path, flags | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
    try:
        if stat.S_IMODE(os.fstat(fd).st_mode) != FILE_MODE:
            os.fchmod(fd, FILE_MODE)
    except BaseException:
        os.close(fd)
        raise
    return fd


def tighten(path: str | Path) -> bool:
    """Take the group and other bits off ``path`` if it has any (nothing if it is absent).
    True when its mode was changed."""
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        return False
    if not mode & _OTHERS:
        return False
    try:
        os.chmod(path, mode & ~_OTHERS)
    except OSError as exc:  # not ours (another user's file): say so, and go on using it
        log.warning(
            "%s can be opened by other users (mode %03o) and lemi cannot change that (%s): chmod go= %s",
            path, mode, exc.strerror or exc, path,
        )  # fmt: skip
        return False
    log.warning(
        "%s could be opened by other users (mode %03o); lemi set it to %03o. What it held may have been read",
        path, mode, mode & ~_OTHERS,
    )  # fmt: skip
    return True
