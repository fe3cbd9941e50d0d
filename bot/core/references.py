"""Which secrets and parameters a service may reference: lemi.yml's ``references``.

Pure: the patterns of lemi.yml, the environment and the parsed references in,
findings out. A pattern is a glob on names: ``*`` matches any run of
characters (``/`` included, as in IAM resource patterns), ``?`` one
character, and ``{service}`` is the service's name; nothing else is special,
and case matters (as it does to AWS). An absent list allows anything, as
before the section existed; an empty one allows nothing.

When a list is set, a reference by ARN must point into the environment's
own partition, account and region, and its name must match too: a Secrets
Manager ARN may end with AWS's random ``-XXXXXX`` suffix (the name matches
with or without it); an SSM ARN ``...:parameter/a/b`` names ``/a/b`` and
``...:parameter/flat`` names ``flat``.

Callers check these before any AWS call for the reference, so a refused
secret is never described or read.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from bot.core.config import SERVICE_PLACEHOLDER, Environment, References
from bot.core.findings import Finding
from bot.core.names import partition
from bot.core.refs import ArnParts, ParameterRef, SecretRef

# the suffix Secrets Manager appends to a secret's name in its full ARN
RANDOM_SUFFIX_RE = re.compile(r"-[A-Za-z0-9]{6}$")


def expand(patterns: Sequence[str], service: str) -> list[str]:
    """The patterns for one service: ``{service}`` replaced by its name."""
    return [p.replace(SERVICE_PLACEHOLDER, service) for p in patterns]


def glob_regex(pattern: str) -> re.Pattern[str]:
    """``*`` any run of characters (``/`` too), ``?`` one character, everything else literal."""
    return re.compile("".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern), re.S)


def matches(names: Sequence[str], patterns: Sequence[str]) -> bool:
    """Does any of ``names`` (one resource's spellings) match any of the (expanded) ``patterns``?"""
    regexes = [glob_regex(p) for p in patterns]
    return any(r.fullmatch(name) for r in regexes for name in names)


def secret_names(ref: SecretRef) -> list[str]:
    """The names a secret reference may be matched by: its name, or its ARN's name with and without AWS's suffix."""
    parts = ref.arn_parts
    if parts is None:
        return [ref.secret]
    names = [parts.name]
    if RANDOM_SUFFIX_RE.search(parts.name):
        names.append(parts.name[:-7])
    return names


def parameter_names(ref: ParameterRef) -> list[str]:
    parts = ref.arn_parts
    return [parts.name if parts is not None else ref.parameter]


def outside(parts: ArnParts, env_name: str, env: Environment) -> str | None:
    """Why an ARN is not in the environment's partition, account and region (None when it is)."""
    differences = []
    if parts.partition != partition(env.region):
        differences.append(f"partition {parts.partition} (not {partition(env.region)})")
    if parts.account_id != env.account_id:
        differences.append(f"account {parts.account_id} (not {env.account_id})")
    if parts.region != env.region:
        differences.append(f"region {parts.region} (not {env.region})")
    if not differences:
        return None
    return f"the ARN points outside {env_name}: " + ", ".join(differences)


def _refusal(
    kind: str, var: str, written: str, parts: ArnParts | None, names: list[str], patterns: list[str] | None,
    env_name: str, env: Environment, service: str,
) -> Finding | None:  # fmt: skip
    if patterns is None:
        return None
    section = "secrets" if kind == "secret" else "parameters"
    subject = f"{var} ({written})"
    where = parts and outside(parts, env_name, env)
    if where:
        return Finding(
            kind,
            subject,
            f"{where}; lemi.yml's references.{section} only allows {kind}s of the environment's own account and region",
            f"reference a {kind} of {env_name} (account {env.account_id}, region {env.region}); "
            f"a name without arn: is looked up there",
        )
    if matches(names, patterns):
        return None
    allowed = ", ".join(patterns) if patterns else f"none: references.{section} is empty"
    return Finding(
        kind,
        subject,
        f"lemi.yml does not allow {service} to reference this {kind} (allowed: {allowed})",
        f"use a {kind} whose name matches an allowed pattern (* matches any characters, / included), "
        f"or ask the infra team to add a pattern to references.{section} in lemi.yml",
    )


def refuse_secrets(
    references: References, env_name: str, env: Environment, service: str, secrets: Mapping[str, SecretRef]
) -> dict[str, Finding]:
    """The secrets (by env var) lemi.yml does not allow ``service`` to reference, each with its finding."""
    patterns = None if references.secrets is None else expand(references.secrets, service)
    out = {}
    for var, ref in sorted(secrets.items()):
        finding = _refusal(
            "secret", var, ref.secret, ref.arn_parts, secret_names(ref), patterns, env_name, env, service
        )
        if finding is not None:
            out[var] = finding
    return out


def refuse_parameters(
    references: References, env_name: str, env: Environment, service: str, parameters: Mapping[str, ParameterRef]
) -> dict[str, Finding]:
    """The parameters (by env var) lemi.yml does not allow ``service`` to reference, each with its finding."""
    patterns = None if references.parameters is None else expand(references.parameters, service)
    out = {}
    for var, ref in sorted(parameters.items()):
        finding = _refusal(
            "parameter", var, ref.parameter, ref.arn_parts, parameter_names(ref), patterns, env_name, env, service
        )
        if finding is not None:
            out[var] = finding
    return out


# ---- IAM: the same patterns as resource ARNs ------------------------------------------------------


def secret_resources(patterns: Sequence[str], env: Environment, service: str = "*") -> list[str]:
    """IAM resources for ``secretsmanager:*`` actions that allow the names ``patterns`` allow.

    ``service="*"`` is what one shared deployer role can do: it approximates ``{service}``
    (``{service}/*`` becomes ``*/*``); a service's own role can name it exactly. A pattern
    that does not end in ``*`` gets ``-??????``: the random suffix of a secret's full ARN.
    """
    base = f"arn:{partition(env.region)}:secretsmanager:{env.region}:{env.account_id}:secret:"
    return [base + p + ("" if p.endswith("*") else "-??????") for p in expand(patterns, service)]


def parameter_resources(patterns: Sequence[str], env: Environment, service: str = "*") -> list[str]:
    """IAM resources for ``ssm:GetParameters`` that allow the names ``patterns`` allow (``/a/b`` is ``parameter/a/b``)."""
    base = f"arn:{partition(env.region)}:ssm:{env.region}:{env.account_id}:parameter"
    return [base + (p if p.startswith("/") else "/" + p) for p in expand(patterns, service)]
