"""References to Secrets Manager secrets and SSM parameters, as written in environment files.

A reference is a name (resolved in the environment's account and region) or
a full ARN. Secrets may select a JSON key: ``name:json-key:version-stage:version-id``
(ECS's own format, trailing parts may be empty: ``db-creds:password::``).
Parsing is pure; the compiler turns a reference into the ``valueFrom`` ARN
ECS wants, and verification (the AWS side) reads the same parsed value.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from bot.core.names import partition

_SECRET_NAME = r"[A-Za-z0-9/_+=.@-]{1,512}"
_SECRET_NAME_RE = re.compile(rf"^{_SECRET_NAME}$")
_SECRET_ARN_RE = re.compile(
    rf"^arn:(aws|aws-cn|aws-us-gov):secretsmanager:([a-z0-9-]+):(\d{{12}}):secret:({_SECRET_NAME})$"
)
_SUFFIX_PART_RE = re.compile(r"^[A-Za-z0-9_.@/+=-]{0,256}$")

# a flat name, or a hierarchy that starts with "/" (SSM requires it once there is a "/")
_PARAM_NAME_RE = re.compile(r"^(?:[A-Za-z0-9_.-]+|(?:/[A-Za-z0-9_.-]+)+)$")
_PARAM_ARN_RE = re.compile(r"^arn:(aws|aws-cn|aws-us-gov):ssm:([a-z0-9-]+):(\d{12}):parameter(/.+)$")


@dataclass(frozen=True, slots=True)
class ArnParts:
    """Where an ARN points: its partition, region, account, and the name of the secret or parameter."""

    partition: str
    region: str
    account_id: str
    name: str  # a secret's name as written (maybe with AWS's random "-XXXXXX"), a parameter's as SSM names it


def secret_arn_parts(arn: str) -> ArnParts | None:
    """``arn:aws:secretsmanager:<region>:<account>:secret:<name>`` (no JSON-key suffix), or None."""
    match = _SECRET_ARN_RE.fullmatch(arn)
    return ArnParts(*match.groups()) if match else None


def parameter_arn_parts(arn: str) -> ArnParts | None:
    """``...:parameter/a/b`` names ``/a/b``; ``...:parameter/flat`` names ``flat``. None if not an SSM ARN."""
    match = _PARAM_ARN_RE.fullmatch(arn)
    if not match:
        return None
    part, region, account, path = match.groups()
    return ArnParts(part, region, account, path if path.count("/") > 1 else path[1:])


class BadReference(ValueError):
    def __init__(self, message: str, hint: str) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


@dataclass(frozen=True, slots=True)
class SecretRef:
    secret: str  # the name, or the full ARN without the JSON-key suffix
    json_key: str = ""
    version_stage: str = ""
    version_id: str = ""

    @property
    def is_arn(self) -> bool:
        return self.secret.startswith("arn:")

    @property
    def has_suffix(self) -> bool:
        return bool(self.json_key or self.version_stage or self.version_id)

    @property
    def arn_parts(self) -> ArnParts | None:
        return secret_arn_parts(self.secret) if self.is_arn else None

    def secret_arn(self, region: str, account_id: str) -> str:
        if self.is_arn:
            return self.secret
        return f"arn:{partition(region)}:secretsmanager:{region}:{account_id}:secret:{self.secret}"

    def value_from(self, region: str, account_id: str) -> str:
        arn = self.secret_arn(region, account_id)
        if self.has_suffix:
            return f"{arn}:{self.json_key}:{self.version_stage}:{self.version_id}"
        return arn


@dataclass(frozen=True, slots=True)
class ParameterRef:
    parameter: str  # the name (with or without leading slash) or full ARN

    @property
    def is_arn(self) -> bool:
        return self.parameter.startswith("arn:")

    @property
    def arn_parts(self) -> ArnParts | None:
        return parameter_arn_parts(self.parameter) if self.is_arn else None

    @property
    def name(self) -> str:
        """The name SSM's GetParameters accepts (an ARN is accepted as is)."""
        return self.parameter

    def value_from(self, region: str, account_id: str) -> str:
        if self.is_arn:
            return self.parameter
        return f"arn:{partition(region)}:ssm:{region}:{account_id}:parameter/{self.parameter.lstrip('/')}"


def parse_secret(text: str) -> SecretRef:
    if text.startswith("arn:"):
        parts = text.split(":")
        base, rest = ":".join(parts[:7]), parts[7:]
        if not _SECRET_ARN_RE.fullmatch(base):
            raise BadReference(
                f"{text!r} is not a Secrets Manager secret ARN",
                "use arn:aws:secretsmanager:<region>:<account>:secret:<name>, or just the secret's name",
            )
    else:
        parts = text.split(":")
        base, rest = parts[0], parts[1:]
        if not _SECRET_NAME_RE.fullmatch(base):
            raise BadReference(
                f"{text!r} is not a valid secret name",
                "secret names use letters, digits and /_+=.@- (at most 512 characters)",
            )
    if not rest:
        return SecretRef(base)
    if len(rest) != 3 or not all(_SUFFIX_PART_RE.fullmatch(p) for p in rest) or not any(rest):
        raise BadReference(
            f"{text!r}: a JSON key reference needs three parts after the secret",
            f"write {base}:<json-key>:<version-stage>:<version-id>, leaving unused parts empty, e.g. {base}:password::",
        )
    return SecretRef(base, rest[0], rest[1], rest[2])


def parse_parameter(text: str) -> ParameterRef:
    if text.startswith("arn:"):
        if not _PARAM_ARN_RE.fullmatch(text) or not _PARAM_NAME_RE.fullmatch(text.split(":parameter", 1)[1]):
            raise BadReference(
                f"{text!r} is not an SSM parameter ARN",
                "use arn:aws:ssm:<region>:<account>:parameter/<name>, or just the parameter's name",
            )
        return ParameterRef(text)
    if len(text) > 2048 or not _PARAM_NAME_RE.fullmatch(text):
        raise BadReference(
            f"{text!r} is not a valid parameter name",
            "parameter names use letters, digits and _.-; a path starts with /, e.g. /demo-service/feature-x",
        )
    return ParameterRef(text)


_SECRET_SERVICE_RE = re.compile(r"^arn:[a-z-]+:secretsmanager:")
_PARAM_SERVICE_RE = re.compile(r"^arn:[a-z-]+:ssm:")


def parse_value_from(text: str) -> SecretRef | ParameterRef:
    """A task definition's ``valueFrom``: a Secrets Manager ARN (with an optional JSON-key
    suffix) or an SSM parameter ARN. Names are refused: they would resolve wherever ECS runs."""
    if _SECRET_SERVICE_RE.match(text):
        return parse_secret(text)
    if _PARAM_SERVICE_RE.match(text):
        return parse_parameter(text)
    raise BadReference(
        f"{text!r} is not a Secrets Manager or SSM parameter ARN",
        "a task definition names each secret by its full ARN (`lemi compile` writes them so)",
    )
