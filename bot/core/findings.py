"""A finding: one thing that stops a deploy, with what to do about it.

Made by the pure checks (which secrets and parameters a service may
reference, a task definition file against its environment) and by the AWS
checks of bot/aws/verify.py alike, so every caller lists them the same way.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True, slots=True)
class Finding:
    check: str  # "cluster", "service", "secret", "parameter", "image", "family", "container", "role", ...
    subject: str  # what was checked: a name, an env var, an image
    message: str
    hint: str

    def render(self) -> str:
        return f"{self.check} {self.subject}: {self.message}\n    hint: {self.hint}"

    def as_dict(self) -> dict[str, str]:
        return asdict(self)
