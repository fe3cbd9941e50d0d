"""The jobs lemi queues: typed messages in one union, tagged by ``kind``, and their codec.

* :class:`WebhookJob`: a delivery as intake accepted it, with the JSON document intake kept
  (``document``, a :class:`msgspec.Raw`: the delivery's summary, or for a delivery of an
  unexpected shape the whole document as received; the queue stores it byte for byte);
* :class:`DeployJob`: one service deployed to one environment (a push, or a deploy a lock held);
* :class:`CommandJob`: a long slash command (restart, rollback, ``deploy <tag>``), as accepted.

A message is encoded as a JSON object with its ``kind`` and its fields; a webhook's document
is its ``data`` field. :func:`read_message` also reads what a lemi from before these types
stored (a ``deploy`` or ``command`` payload as a flat object without ``kind``; a webhook's
event, delivery and repository, likewise): jobs queued, retrying or held by a lock when lemi
was upgraded run as they would have.
"""

from __future__ import annotations

from typing import Any

import msgspec

from bot.core.command_parser import Command


class DeployRequest(msgspec.Struct, frozen=True):
    """One service, one environment, one image tag, from the service files at ``sha``."""

    repository: str
    service: str
    environment: str
    sha: str
    tag: str
    requested_by: str
    source: str = "push"  # "push" | "command"
    delivery: str = ""
    installation: int | None = None
    branch: str = ""  # the environment branch a push deploy came from


class Invocation(msgspec.Struct, frozen=True):
    """A slash command as it was asked: by whom, on which pull request, in which delivery."""

    repository: str
    number: int  # the pull request
    comment_id: int
    user: str
    head_sha: str
    command: Command
    installation: int | None = None
    delivery: str = ""

    @property
    def text(self) -> str:
        """The command, written out the way lemi reads it."""
        c = self.command
        parts = ["/lemi", c.name] + ([c.argument] if c.argument else [])
        parts += ["-e", c.env] if c.env else []
        parts += ["-s", c.service] if c.service else []
        return " ".join(parts)


class Target(msgspec.Struct, frozen=True):
    """The service and environment a command acts on, and the service files it reads."""

    service: str
    environment: str
    ref: str = ""  # the commit whose service files the command reads
    source: str = "this pull request"  # where that commit comes from, for the reply
    named_after: bool = True  # the files follow the naming rule (not when the infra file gave it here)


class _Message(msgspec.Struct, frozen=True, tag_field="kind", omit_defaults=True):
    def log_fields(self) -> dict[str, str]:
        """What every log line of the job names (bot.core.logs fields)."""
        raise NotImplementedError


NO_DOCUMENT = msgspec.Raw()


class WebhookJob(_Message, frozen=True, tag="webhook"):
    """A delivery: what intake routed it by, and the document intake kept of it (its summary)."""

    event: str
    delivery: str
    repository: str
    # one JSON object, checked at intake; the SQLite queue keeps a large one in a file beside its row
    document: msgspec.Raw = msgspec.field(name="data", default=NO_DOCUMENT)

    def data(self) -> dict[str, Any]:
        """The document, parsed."""
        parsed: dict[str, Any] = _document_decoder.decode(self.document)
        return parsed

    def log_fields(self) -> dict[str, str]:
        return {"event": self.event, "repository": self.repository}


class DeployJob(_Message, frozen=True, tag="deploy"):
    request: DeployRequest
    released: bool = False  # held by a lock, queued again by /lemi unlock: a later deploy wins

    def log_fields(self) -> dict[str, str]:
        req = self.request
        return {"repository": req.repository, "service": req.service, "environment": req.environment}


class CommandJob(_Message, frozen=True, tag="command"):
    invocation: Invocation
    target: Target
    rollback_to: str | None = None  # the revision chosen when a rollback was accepted

    def log_fields(self) -> dict[str, str]:
        t = self.target
        return {"repository": self.invocation.repository, "service": t.service, "environment": t.environment}


Message = WebhookJob | DeployJob | CommandJob


class Unreadable(msgspec.Struct, frozen=True):
    """A job whose message the queue could not read back (a damaged store), or does not keep.

    A worker fails it and reports it at once instead of the queue failing on every lease."""

    kind: str
    reason: str
    stored: str = ""  # what the queue held, where it cannot keep it itself (SQS), for inspection

    def log_fields(self) -> dict[str, str]:
        return {}


def kind_of(message: Message | Unreadable) -> str:
    if isinstance(message, Unreadable):
        return message.kind
    return str(message.__struct_config__.tag)


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Message)
_document_decoder = msgspec.json.Decoder(dict[str, Any])
_legacy_decoder = msgspec.json.Decoder(dict[str, Any])


def encode_message(message: Message) -> bytes:
    """The message as stored: JSON with its ``kind``; a webhook's document embedded verbatim."""
    return _encoder.encode(message)


def read_message(kind: str, stored: bytes | str | msgspec.Raw) -> Message:
    """The message of a job stored as ``kind``, in today's shape or an older lemi's.

    ValueError when it cannot be read (only a damaged store: everything stored was encoded)."""
    try:
        message = _decoder.decode(stored)
    except msgspec.ValidationError as exc:  # JSON, not of today's shape (a subclass of DecodeError)
        message = _legacy(kind, stored, exc)
    except msgspec.DecodeError as exc:
        raise ValueError(f"a stored {kind} job is not JSON: {exc}") from None
    if kind_of(message) != kind:
        raise ValueError(f"a job stored as {kind} holds a {kind_of(message)} message")
    return message


def _legacy(kind: str, stored: bytes | str | msgspec.Raw, error: msgspec.ValidationError) -> Message:
    """A payload written before jobs were typed: a flat object without ``kind``."""
    try:
        if kind == "webhook":  # the same fields; its ``kind`` is optional for one type
            return msgspec.json.decode(stored, type=WebhookJob)
        fields = _legacy_decoder.decode(stored)
        if "kind" in fields:  # today's shape, but not valid
            raise ValueError(f"a stored {kind} job is not valid: {error}")
        if kind == "deploy":
            return DeployJob(msgspec.convert(fields, DeployRequest), released=bool(fields.get("released", False)))
        if kind == "command":
            invocation = msgspec.convert(fields, Invocation)
            target = Target(
                fields["service"],
                fields["environment"],
                fields.get("ref") or invocation.head_sha,  # queued before `ref`: the pull request's head, as then
                fields.get("source") or "this pull request",
                bool(fields.get("named_after", True)),
            )
            return CommandJob(invocation, target, fields.get("rollback_to"))
    except (msgspec.DecodeError, msgspec.ValidationError, KeyError, TypeError) as exc:
        raise ValueError(f"a stored {kind} job is not valid: {exc}") from None
    raise ValueError(f"lemi does not know jobs of kind {kind!r}")


def read_document(document: bytes) -> msgspec.Raw:
    """A stored webhook document, as it was stored, once it is checked to be one JSON value
    (checked, not parsed: the handler parses it). ValueError when it is not (a damaged file)."""
    try:
        msgspec.json.decode(document, type=msgspec.Raw)
    except msgspec.DecodeError as exc:
        raise ValueError(f"a stored document is not JSON: {exc}") from None
    return msgspec.Raw(document)


def service_key(repository: str, service: str, environment: str) -> str:
    """The concurrency key of deploys and long commands: one service in one environment at a time."""
    return f"{repository}:{service}:{environment}"
