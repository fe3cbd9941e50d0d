"""Render a service's Terraform module block for the infra repository (pure).

Every value has been validated by the spec and config models (names limited
to safe characters), and every string is escaped for HCL here as well, so no
spec can close a string, add an attribute, a block or a resource, or start an
interpolation (``${...}``) or a template directive (``%{...}``).
"""

from __future__ import annotations

import re

from bot.core.config import Config
from bot.core.spec import ServiceFile
from bot.core.templating import render

_IDENT_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def hcl_string(value: str) -> str:
    """A double-quoted HCL string literal that means exactly ``value``."""
    out = []
    i = 0
    while i < len(value):
        ch = value[i]
        nxt = value[i + 1] if i + 1 < len(value) else ""
        if ch == "\\":
            out.append("\\\\")
        elif ch == '"':
            out.append('\\"')
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif ch in "$%" and nxt == "{":
            out.append(ch + ch + "{")  # $${ and %%{ are literal
            i += 1
        elif ord(ch) < 0x20 or ch == "\x7f":
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
        i += 1
    return '"' + "".join(out) + '"'


def hcl_identifier(name: str) -> str:
    ident = name.replace("-", "_")
    if not _IDENT_RE.match(ident):
        raise ValueError(f"{name!r} cannot be a Terraform identifier")
    return ident


def render_service_module(
    service: ServiceFile, config: Config, *, repository: str, pull_request: int | None = None
) -> str:
    environments = list(config.environments)
    return render(
        "terraform/service.tf.j2",
        module=hcl_identifier(service.name),
        source=hcl_string(config.infra.module_source),
        name=hcl_string(service.name),
        owner=hcl_string(service.owner),
        repository=hcl_string(repository),
        image=hcl_string(service.image),
        cpu=int(service.spec.resource.cpu),
        memory=int(service.spec.resource.memory),
        desired_count=int(service.spec.desired_count),
        environments="[" + ", ".join(hcl_string(e) for e in environments) + "]",
        domain=hcl_string(config.domain),
        origin=_comment_safe(f"{repository}#{pull_request}" if pull_request else repository),
        service=service.name,
    )


def _comment_safe(text: str) -> str:
    """Only characters that cannot end an HCL comment line."""
    return re.sub(r"[^A-Za-z0-9_.#/-]", "?", text)
