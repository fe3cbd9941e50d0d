"""Where lemi.yml comes from: a file, the developer's copy, or the infra repository.

* the CLI's ``--config``, else ``$LEMI_CONFIG``, else ``./lemi.yml``, else the copy
  ``lemi config pull`` wrote into the user's configuration directory (:func:`user_config_file`);
* the App may name the infra repository instead of a file:
  ``LEMI_CONFIG=github://OWNER/INFRA/lemi.yml`` (:func:`remote_source`), read through the GitHub
  API with the App's installation there.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from bot.core.names import GITHUB_REPO_RE

SCHEME = "github://"
FILE_NAME = "lemi.yml"
_PATH_RE = re.compile(r"[A-Za-z0-9_.-]+(?:/[A-Za-z0-9_.-]+)*")


@dataclass(frozen=True)
class RemoteSource:
    """lemi.yml in a repository, read on its default branch."""

    repository: str
    path: str

    def __str__(self) -> str:
        return f"{SCHEME}{self.repository}/{self.path}"


class SourceError(ValueError):
    """A ``github://`` value that names no repository file; the message says how to write it."""


def remote_source(value: str | None) -> RemoteSource | None:
    """``github://OWNER/NAME/PATH`` as a :class:`RemoteSource`; None for a file path.
    Raises :class:`SourceError` for a ``github://`` value that is not one."""
    if not value or not value.startswith(SCHEME):
        return None
    parts = value.removeprefix(SCHEME).split("/", 2)
    example = f"write it as {SCHEME}OWNER/INFRA/lemi.yml, e.g. {SCHEME}acme/infra/lemi.yml"
    if len(parts) < 3 or not parts[2]:
        raise SourceError(f"LEMI_CONFIG={value}: no file named after the repository; {example}")
    repository, path = f"{parts[0]}/{parts[1]}", parts[2]
    if not GITHUB_REPO_RE.fullmatch(repository):
        raise SourceError(f"LEMI_CONFIG={value}: {repository!r} is not a repository; {example}")
    if not _PATH_RE.fullmatch(path) or ".." in path.split("/") or not path.endswith((".yml", ".yaml")):
        raise SourceError(f"LEMI_CONFIG={value}: {path!r} is not a YAML file in the repository; {example}")
    return RemoteSource(repository, path)


def user_config_dir(environ: Mapping[str, str], home: Path) -> Path:
    """The user's lemi directory: ``$XDG_CONFIG_HOME/lemi``, else ``~/.config/lemi``."""
    base = environ.get("XDG_CONFIG_HOME")
    root = Path(base) if base and Path(base).is_absolute() else home / ".config"
    return root / "lemi"


def user_config_file(environ: Mapping[str, str], home: Path) -> Path:
    """Where ``lemi config pull`` writes lemi.yml, and where commands look after ``./lemi.yml``."""
    return user_config_dir(environ, home) / FILE_NAME
