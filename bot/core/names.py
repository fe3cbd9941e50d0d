"""Rules for every name lemi puts into AWS, Terraform, DNS and shells.

These are deliberately narrower than what each system allows: a name that
passes here is safe in all of them at once (an ECS service, an IAM role
name ``<service>-<env>-execution``, a DNS label ``<service>-internal``, an
ALB target group name, a Terraform string and a shell word).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable

# service: a DNS label, at most 32 characters (ALB target group names cap it)
SERVICE_RE = re.compile(r"^[a-z](?:[a-z0-9]|-(?=[a-z0-9])){0,31}$")
SERVICE_MAX = 32
# environment key in lemi.yml: short, lowercase
ENV_RE = re.compile(r"^[a-z][a-z0-9]{0,9}$")
# owner/team tag
OWNER_RE = re.compile(r"^[a-z0-9](?:[a-z0-9_-]{0,62}[a-z0-9])?$")
# ECR repository name (AWS's own rule, length 2..256)
ECR_REPO_RE = re.compile(r"^(?=.{2,256}$)(?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*$")
# Docker image tag
IMAGE_TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
# environment variable names (POSIX portable)
ENV_VAR_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,254}$")
# GitHub owner/repository
GITHUB_REPO_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})/[A-Za-z0-9._-]{1,100}$")
# git branch names we accept in lemi.yml (a conservative subset of git's rules)
BRANCH_RE = re.compile(
    r"^(?!HEAD$)(?![/-])(?!.*//)(?!.*\.\.)(?!.*@\{)(?!(?:.*/)?\.)(?!.*\.lock(?:/|$))[A-Za-z0-9._/-]{1,200}(?<![./])$"
)
AWS_REGION_RE = re.compile(r"^[a-z]{2}(?:-gov|-iso[a-z]*)?-[a-z]+-\d$")
AWS_ACCOUNT_RE = re.compile(r"^\d{12}$")
ECS_CLUSTER_RE = re.compile(r"^[A-Za-z0-9_-]{1,255}$")
IAM_ROLE_ARN_RE = re.compile(r"^arn:aws(?:-cn|-us-gov)?:iam::\d{12}:role/[\w+=,.@/-]{1,512}$")
DOMAIN_RE = re.compile(
    r"^(?=.{1,200}$)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$"
)


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """' did you mean `desiredCount`?' or '' -- for unknown keys and commands."""
    choices = list(choices)
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    if not close:
        lowered = {c.lower(): c for c in choices}
        if word.lower() in lowered:
            close = [lowered[word.lower()]]
    return f"did you mean `{close[0]}`?" if close else ""


def service_name_problem(name: str, repository: str | None) -> str | None:
    """Why ``name`` cannot be a service of ``repository`` (its name, no owner), or None."""
    if not SERVICE_RE.fullmatch(name):
        return (
            f"{name!r} is not a valid service name: use lowercase letters, digits and single "
            f"hyphens, starting with a letter, at most {SERVICE_MAX} characters"
        )
    if repository is None:
        return None
    repo = repository.rsplit("/", 1)[-1].lower()
    if name == repo or (name.startswith(repo + "-") and len(name) > len(repo) + 1):
        return None
    return f"the service must be named after its repository: {repo!r} or {repo + '-<suffix>'!r}"


def partition(region: str) -> str:
    if region.startswith("cn-"):
        return "aws-cn"
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    return "aws"


def dns_suffix(region: str) -> str:
    return "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
