"""A finding: one thing that stops a deploy, with what to do about it.

Made by the pure checks (which secrets and parameters a service may
reference, a task definition file against its environment) and by the AWS
checks of bot/aws/verify.py alike, so every caller lists them the same way.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

IMAGE_NOT_IN_ECR = "the image is not in ECR"
BUILD_MAY_HAVE_FAILED = "the build may have failed"


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


def image_not_in_ecr(repository: str, tag: str, waited: float) -> Finding:
    """The image ``repository:tag`` did not arrive in ECR (within ``waited`` seconds): its
    build did not push it, because it failed (the tests, say) or has not finished."""
    after = f" after waiting {waited:g} s" if waited else ""
    return Finding(
        "image",
        f"{repository}:{tag}",
        f"{IMAGE_NOT_IN_ECR}{after}",
        f"{BUILD_MAY_HAVE_FAILED}: the build workflow pushes the image tagged with the commit SHA only "
        "after the commit's tests pass; look at the commit's checks, fix the build and push again",
    )


def image_never_arrived(findings: list[Finding]) -> bool:
    """Is one of ``findings`` an image its build never pushed?"""
    return never_arrived_tag(findings) is not None


def never_arrived_tag(findings: list[Finding]) -> str | None:
    """The tag of the image its build never pushed, if one of ``findings`` says so."""
    for f in findings:
        if f.check == "image" and f.message.startswith(IMAGE_NOT_IN_ECR):
            return f.subject.rsplit(":", 1)[1]
    return None
