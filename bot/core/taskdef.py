"""A task definition file (``lemi deploy --task-definition FILE``) checked against its environment.

Pure: the JSON document, lemi.yml, the environment's and the service's names
in; findings out, plus what only AWS can confirm (the image tag is in ECR,
each secret and parameter exists). The rules are the conventions
``lemi compile`` follows, so a file compiled for this environment passes and
one compiled for another (its family, roles, ``DD_ENV``, log group, image
registry or secret ARNs) does not:

* family ``<service>-<env>``; a container named ``<service>``;
* its image ``<account>.dkr.ecr.<region>.amazonaws.com/<repository>:<tag>``
  of the environment's account and region;
* ``executionRoleArn`` and ``taskRoleArn`` exactly the environment's roles;
* every ``valueFrom`` (container ``secrets`` and log ``secretOptions``) a
  Secrets Manager or SSM ARN in the environment's partition, account and
  region, and allowed by lemi.yml's ``references`` (the Datadog API key of
  lemi.yml is exempt: it is the infra team's own);
* ``DD_ENV``, where a container sets it, is the environment's name; a log
  group following lemi's ``/ecs/...`` convention is the service's in this
  environment, ``/ecs/<service>-<env>`` (never another service's), in its
  region; the service container writing there (lemi.yml's ``logs: cloudwatch``)
  uses the stream prefix ``<service>``, so ``lemi logs`` finds its lines.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from bot.core.config import Config
from bot.core.conventions import family, log_group, registry, role_arn
from bot.core.findings import Finding
from bot.core.names import ECR_REPO_RE, IMAGE_TAG_RE
from bot.core.references import outside, refuse_parameters, refuse_secrets
from bot.core.refs import BadReference, ParameterRef, SecretRef, parse_secret, parse_value_from

LOG_GROUP_PREFIX = "/ecs/"


@dataclass
class Checked:
    """The findings, and what is left for AWS to confirm (only what passed here)."""

    findings: list[Finding] = field(default_factory=list)
    image: tuple[str, str] | None = None  # (ECR repository, tag)
    secrets: dict[str, SecretRef] = field(default_factory=dict)  # label -> reference
    parameters: dict[str, ParameterRef] = field(default_factory=dict)


def _recompile(service: str, env_name: str) -> str:
    return (
        f"deploy a file compiled for {env_name} (lemi compile -s {service} -e {env_name} -t <tag> -o FILE), "
        f"or the tag itself: lemi deploy -s {service} -e {env_name} -t <tag>"
    )


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def check_task_definition(document: Mapping[str, Any], config: Config, env_name: str, service: str) -> Checked:
    env = config.environment(env_name)
    out = Checked()
    add = out.findings.append
    again = _recompile(service, env_name)

    wanted_family = family(service, env_name)
    if document.get("family") != wanted_family:
        add(Finding("family", str(document.get("family")),
                    f"is not {wanted_family!r}, the family of {service} in {env_name}",
                    again))  # fmt: skip

    for key, kind in (("executionRoleArn", "execution"), ("taskRoleArn", "task")):
        wanted = role_arn(service, env_name, env, kind)
        if document.get(key) != wanted:
            given = document.get(key)
            add(Finding("role", key, f"is {given!r}, not {env_name}'s {kind} role {wanted}" if given
                        else f"is missing; {service} in {env_name} runs with {wanted}", again))  # fmt: skip

    containers = document.get("containerDefinitions")
    if not isinstance(containers, list) or not containers or len(_dicts(containers)) != len(containers):
        add(Finding("container", "containerDefinitions", "the file has no list of container definitions", again))
        containers = []
    names = [c.get("name") for c in containers]
    if containers and service not in names:
        shown = ", ".join(map(str, names)) or "none"
        add(Finding("container", service, f"the task definition has no container named {service!r} (containers: {shown})",
                    again))  # fmt: skip

    for container in containers:
        name = str(container.get("name"))
        if name == service:
            _image(out, str(container.get("image")), config, env_name, again)
        for var in _dicts(container.get("environment")):
            if var.get("name") == "DD_ENV" and var.get("value") != env_name:
                add(Finding("variable", f"{name} DD_ENV", f"is {var.get('value')!r}, not {env_name!r}", again))
        _log_group(out, name, container.get("logConfiguration"), config, env_name, service, again)
        _references(out, name, container, config, env_name, service, again)
    return out


def _image(out: Checked, image: str, config: Config, env_name: str, again: str) -> None:
    env = config.environment(env_name)
    prefix = registry(env) + "/"
    repository, colon, tag = image[len(prefix) :].rpartition(":") if image.startswith(prefix) else ("", "", "")
    if not (colon and ECR_REPO_RE.fullmatch(repository) and IMAGE_TAG_RE.fullmatch(tag)):
        out.findings.append(Finding(
            "image", image,
            f"the image is not a tagged image of {env_name}'s ECR ({prefix}<repository>:<tag>)",
            again))  # fmt: skip
        return
    out.image = (repository, tag)


def _log_group(out: Checked, name: str, logging: Any, config: Config, env_name: str, service: str, again: str) -> None:
    options = logging.get("options") if isinstance(logging, dict) else None
    if not isinstance(options, dict):
        return
    group = options.get("awslogs-group")
    if not (isinstance(group, str) and group.startswith(LOG_GROUP_PREFIX)):
        return  # not lemi's convention: nothing to compare with
    field = f"{name}'s logConfiguration.options.awslogs-group"
    wanted = log_group(service, env_name)
    if group != wanted:
        out.findings.append(Finding("log group", f"{name} {group}",
                                    f"{field} is not {env_name}'s log group {wanted}: a group under {LOG_GROUP_PREFIX} "
                                    f"belongs to one service in one environment, and this one is not {service}'s "
                                    f"in {env_name}", again))  # fmt: skip
        return
    region = options.get("awslogs-region")
    if region is not None and region != config.environment(env_name).region:
        out.findings.append(Finding("log group", f"{name} {group}",
                                    f"is in region {region!r}, not {env_name}'s {config.environment(env_name).region}",
                                    again))  # fmt: skip
    prefix = options.get("awslogs-stream-prefix")
    if name == service and prefix != service:
        given = f"is {prefix!r}" if prefix else "is missing"
        out.findings.append(Finding("log group", f"{name} {group}",
                                    f"{name}'s logConfiguration.options.awslogs-stream-prefix {given}, not "
                                    f"{service!r}: lemi reads the service's lines from the streams "
                                    f"{service}/{service}/<task-id>", again))  # fmt: skip


def _references(
    out: Checked, name: str, container: dict[str, Any], config: Config, env_name: str, service: str, again: str
) -> None:
    env = config.environment(env_name)
    api_key = parse_secret(config.datadog.api_key_secret).value_from(env.region, env.account_id)
    # labels: the service's env vars by name, anything else with its container
    prefix = "" if name == service else f"{name} "
    entries = [(f"{prefix}{s.get('name')}", s.get("valueFrom")) for s in _dicts(container.get("secrets"))]
    logging = container.get("logConfiguration")
    if isinstance(logging, dict):
        entries += [(f"{name} log {s.get('name')}", s.get("valueFrom")) for s in _dicts(logging.get("secretOptions"))]
    secrets: dict[str, SecretRef] = {}
    parameters: dict[str, ParameterRef] = {}
    for label, value in entries:
        try:
            ref = parse_value_from(value) if isinstance(value, str) else None
        except BadReference as exc:
            out.findings.append(Finding("secret", f"{label} ({value})", exc.message, f"{exc.hint}; or {again}"))
            continue
        if ref is None:
            out.findings.append(Finding("secret", label, "has no valueFrom", again))
            continue
        exempt = value == api_key  # lemi.yml's own Datadog key: the infra team's, named by lemi.yml
        kind = "secret" if isinstance(ref, SecretRef) else "parameter"
        parts = ref.arn_parts
        where = None if exempt or parts is None else outside(parts, env_name, env)
        if where:
            out.findings.append(Finding(kind, f"{label} ({value})", where, again))
            continue
        if exempt:
            _group(out.secrets, label, parse_secret(str(value)))  # still checked to exist
        elif isinstance(ref, SecretRef):
            secrets[label] = ref
        else:
            parameters[label] = ref
    refused_secrets = refuse_secrets(config.references, env_name, env, service, secrets)
    refused_parameters = refuse_parameters(config.references, env_name, env, service, parameters)
    out.findings += [*refused_secrets.values(), *refused_parameters.values()]
    for label, ref in secrets.items():
        if label not in refused_secrets:
            _group(out.secrets, label, ref)
    out.parameters.update({k: v for k, v in parameters.items() if k not in refused_parameters})


def _group(secrets: dict[str, SecretRef], label: str, ref: SecretRef) -> None:
    """One entry per secret: containers that share one (the Datadog key) are checked once, named together."""
    for known, other in list(secrets.items()):
        if other == ref:
            del secrets[known]
            secrets[f"{known}, {label}"] = ref
            return
    secrets[label] = ref
