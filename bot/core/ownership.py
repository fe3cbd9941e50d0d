"""Who owns a service: the one check every path makes before acting on it.

The infra repository's ``services/<service>.tf`` (lemi.yml ``infra.path``, reviewed by
the infra team) records the owning repository in the service's module block::

    module "billing" {
      name       = "billing"
      repository = "acme/billing"
      ...
    }

A service is provisioned, deployed and operated only from its owning repository.
Precedence:

1. the file's module block whose ``name`` is the service names a repository: that
   decides. A rename or a transfer is an edit of that line in the infra repository;
2. the block has no ``repository``, or there is no file yet: the naming rule decides.
   The service is named after its repository (``<repo>`` or ``<repo>-<suffix>``); where
   several repositories fit (``api`` and ``api-gateway`` for ``api-gateway-v2``), the
   longest name that lemi is installed on owns it, so ``acme/api`` cannot claim
   ``api-gateway`` from ``acme/api-gateway``;
3. while one repository's infra pull request for a service is open, another
   repository's pull request for the same name is refused (:mod:`bot.flows.provision`).

A file lemi cannot read strictly (not HCL, two blocks for one service, a
``repository`` that is not a literal ``owner/name``) refuses everything for that
service until the infra team fixes it: ownership fails closed.

The file is read from the infra repository's default branch (``infra.base_branch``
when set) each time a decision needs it, with a conditional request: an unchanged file
is answered 304 from its ETag (GitHub does not count that against the rate limit), a
changed one is read at once, so every process and replica sees an edit immediately.
Parsing (python-hcl2, a real HCL parser) is pure, cached by the file's blob id, and
runs off the event loop. python-hcl2 builds its parser once per process (about a second of
CPU without its cache file, e.g. in a read-only install); :func:`hcl_parser` builds it in one
thread only, so a push's deploys asking at once do not each build one and fill every thread
the event loop hands work to (the queue's among them).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import hcl2
from hcl2.parser import parser as _parser
from hcl2.utils import SerializationOptions

from bot.core.errors import UserError
from bot.core.names import GITHUB_REPO_RE

MAX_INFRA_FILE = 256 * 1024
_HCL = SerializationOptions(with_comments=False, explicit_blocks=False)
_BUILDING = threading.Lock()


def hcl_parser() -> None:
    """Build python-hcl2's parser if it is not built yet: one thread builds it, the others
    wait for it (its own cache, an ``lru_cache``, lets every thread that asks before the first
    build ends build one more). The App calls it at start-up, off the event loop."""
    with _BUILDING:
        _parser()


@dataclass(frozen=True)
class Record:
    """What the infra file says about a service's owner."""

    path: str
    exists: bool
    repository: str | None = None  # the module block's `repository`, when it has one
    problem: str = ""  # the file exists but cannot be read strictly


@dataclass(frozen=True)
class Verdict:
    """May ``repository`` act on ``service``? ``why`` is a sentence for the user."""

    service: str
    allowed: bool
    owner: str | None  # the owning repository, when lemi can name it
    why: str = ""
    by_file: bool = False  # decided by the infra file's `repository` (not the naming rule)

    @property
    def named_after(self) -> bool:
        """Must the service files follow the naming rule? Not when the infra file gives the
        service to this repository: a rename or a transfer is an edit of that file."""
        return not (self.allowed and self.by_file)


class NotOwner(UserError):
    """Raised by :meth:`bot.github.owners.Owners.require`; the message is the refusal shown to the user."""

    def __init__(self, verdict: Verdict) -> None:
        super().__init__(verdict.why)
        self.verdict = verdict


def _literal(value: Any) -> str | None:
    """The text of an HCL string literal as python-hcl2 serialises it (``'"acme/x"'``), or
    None for anything else (a number, a reference, an interpolation, an escape)."""
    if not isinstance(value, str) or len(value) < 2 or not (value.startswith('"') and value.endswith('"')):
        return None
    inner = value[1:-1]
    if "\\" in inner or "${" in inner or "%{" in inner or '"' in inner:
        return None
    return inner


def _module_bodies(tree: Any) -> list[dict[str, Any]]:
    bodies: list[dict[str, Any]] = []
    for entry in tree.get("module", []) if isinstance(tree, dict) else []:
        if isinstance(entry, dict):
            bodies.extend(body for body in entry.values() if isinstance(body, dict))
    return bodies


def recorded_owner(text: bytes, service: str, path: str) -> Record:
    """The owner ``path``'s text records for ``service`` (pure; a few ms of parsing)."""
    if len(text) > MAX_INFRA_FILE:
        return Record(path, True, problem=f"it is larger than {MAX_INFRA_FILE:,} bytes")
    hcl_parser()
    try:
        tree = hcl2.loads(text.decode("utf-8"), serialization_options=_HCL)
    except UnicodeDecodeError:
        return Record(path, True, problem="it is not UTF-8 text")
    except Exception as exc:  # noqa: BLE001 - lark raises many kinds; any of them means "not HCL"
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        return Record(path, True, problem=f"it is not valid HCL ({first})")
    blocks = [body for body in _module_bodies(tree) if _literal(body.get("name")) == service]
    if not blocks:
        return Record(path, True)
    if len(blocks) > 1:
        return Record(path, True, problem=f'{len(blocks)} module blocks have name = "{service}"')
    if "repository" not in blocks[0]:
        return Record(path, True)
    repository = _literal(blocks[0]["repository"])
    if repository is None or not GITHUB_REPO_RE.fullmatch(repository):
        return Record(path, True, problem='its `repository` is not a literal "owner/name"')
    return Record(path, True, repository=repository)


def same_repository(a: str, b: str) -> bool:
    """GitHub names are case-insensitive."""
    return a.casefold() == b.casefold()


def longer_names(service: str, repository: str) -> list[str]:
    """Repository names (same owner) that fit ``service`` better than ``repository``'s, longest
    first: for service ``api-gateway-v2`` and ``acme/api``: acme/api-gateway-v2, acme/api-gateway."""
    owner, name = repository.split("/", 1)
    parts = service.split("-")
    fits = ["-".join(parts[:n]) for n in range(len(parts), 0, -1)]
    return [f"{owner}/{fit}" for fit in fits if len(fit) > len(name)]


def naming_rule_fits(service: str, repository: str) -> bool:
    name = repository.rsplit("/", 1)[-1].lower()
    return service == name or (service.startswith(name + "-") and len(service) > len(name) + 1)


def decide(service: str, repository: str, record: Record, *, better: str | None, infra: str) -> Verdict:
    """The verdict for ``repository`` acting on ``service`` (pure). ``better``: a repository
    lemi is installed on whose name fits ``service`` more closely (see :func:`longer_names`)."""
    where = f"`{record.path}` in {infra}"
    if record.problem:
        return Verdict(
            service, False, None,
            f"lemi cannot tell who owns `{service}`: {where} cannot be read ({record.problem}); "
            "the infra team fixes that file",
        )  # fmt: skip
    if record.repository is not None:
        if same_repository(record.repository, repository):
            return Verdict(service, True, record.repository, by_file=True)
        return Verdict(
            service, False, record.repository,
            f"`{service}` is owned by {record.repository} ({where} says `repository = \"{record.repository}\"`); "
            f"operate it from there, or ask the infra team to change that line", by_file=True,
        )  # fmt: skip
    if not naming_rule_fits(service, repository):
        repo = repository.rsplit("/", 1)[-1].lower()
        return Verdict(
            service, False, None,
            f"`{service}` is not named after {repository} (`{repo}` or `{repo}-<suffix>`), and {where} "
            "names no other owner",
        )  # fmt: skip
    if better is not None and not same_repository(better, repository):
        return Verdict(
            service, False, better,
            f"`{service}` is named after {better}, which owns it by the naming rule ({where} names no "
            "`repository`); operate it from there",
        )  # fmt: skip
    return Verdict(service, True, repository)
