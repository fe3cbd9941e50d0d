"""Compile a service, one environment and an image tag into an ECS task definition.

Pure and deterministic: the same inputs give byte-identical JSON
(:func:`render`). The result is the input of ``RegisterTaskDefinition``.

Conventions (the README, "Conventions lemi enforces"):

* family ``<service>-<env>``; Fargate, ``awsvpc``; Linux x86_64;
* container ``<service>``: image ``<account>.dkr.ecr.<region>.amazonaws.com/<image>:<tag>``,
  port 8080, variables sorted by name, secrets and parameters as ``valueFrom`` ARNs;
* roles ``<service>-<env>-execution`` and ``<service>-<env>-task`` in the environment's account;
* a Datadog agent sidecar (traces, and metrics scraped from ``:8080/metrics``
  through the Docker labels of the service container);
* the service's logs: to Datadog through a FireLens log router sidecar (lemi.yml's
  ``logs: datadog``, the default), or with ``logs: cloudwatch`` to the log group
  ``/ecs/<service>-<env>`` with the ``awslogs`` driver, streams ``<service>/<service>/<task-id>``
  (no log router); the sidecars always log to that group, under their own prefixes;
* tags ``service``, ``owner``, ``environment``, ``managed-by=lemi``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from bot.core.config import Config, Datadog, Environment
from bot.core.conventions import MANAGED_BY, METRICS_PATH, PORT, family, image_uri, log_group, role_arn
from bot.core.names import IMAGE_TAG_RE
from bot.core.refs import parse_secret
from bot.core.spec import EnvironmentFile, Resource, ServiceFile, ServiceFiles

LOG_ROUTER = "log-router"
DATADOG_AGENT = "datadog-agent"


@dataclass(frozen=True)
class Compiled:
    task_definition: dict[str, Any]
    desired_count: int
    image: str

    def render(self) -> str:
        return render(self.task_definition)


def render(task_definition: dict[str, Any]) -> str:
    """Canonical JSON: sorted keys, two-space indent, trailing newline."""
    return json.dumps(task_definition, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def _compact(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def effective_resource(service: ServiceFile, env_file: EnvironmentFile) -> Resource:
    return env_file.resource or service.spec.resource


def effective_desired_count(service: ServiceFile, env_file: EnvironmentFile) -> int:
    return env_file.desired_count if env_file.desired_count is not None else service.spec.desired_count


def compile_service(
    service: ServiceFile,
    env_name: str,
    env_file: EnvironmentFile,
    env: Environment,
    datadog: Datadog,
    tag: str,
) -> Compiled:
    if not IMAGE_TAG_RE.fullmatch(tag):
        raise ValueError(f"{tag!r} is not a valid image tag (letters, digits, _ . -, at most 128)")
    name = service.name
    region, account = env.region, env.account_id
    resource = effective_resource(service, env_file)
    image = image_uri(service.image, tag, env)
    api_key = parse_secret(datadog.api_key_secret).value_from(region, account)
    awslogs = {
        "awslogs-group": log_group(name, env_name),
        "awslogs-region": region,
    }

    variables = dict(env_file.variables)
    variables.update({"DD_ENV": env_name, "DD_SERVICE": name, "DD_VERSION": tag})
    secrets = {k: ref.value_from(region, account) for k, ref in env_file.secret_refs().items()}
    secrets.update({k: ref.value_from(region, account) for k, ref in env_file.parameter_refs().items()})

    openmetrics = {
        "openmetrics": {
            "init_config": {},
            "instances": [
                {
                    "metrics": [".*"],
                    "namespace": name.replace("-", "_"),
                    "openmetrics_endpoint": f"http://%%host%%:{PORT}{METRICS_PATH}",
                }
            ],
        }
    }
    app = {
        "name": name,
        "image": image,
        "essential": True,
        "portMappings": [{"containerPort": PORT, "hostPort": PORT, "protocol": "tcp"}],
        "environment": [{"name": k, "value": variables[k]} for k in sorted(variables)],
        "secrets": [{"name": k, "valueFrom": secrets[k]} for k in sorted(secrets)],
        "dockerLabels": {
            "com.datadoghq.ad.checks": _compact(openmetrics),
            "com.datadoghq.tags.env": env_name,
            "com.datadoghq.tags.service": name,
            "com.datadoghq.tags.version": tag,
        },
        **_app_logging(service, env_name, env, datadog, tag, api_key),
    }
    agent = {
        "name": DATADOG_AGENT,
        "image": datadog.agent_image,
        "essential": False,
        "portMappings": [
            {"containerPort": 8125, "hostPort": 8125, "protocol": "udp"},
            {"containerPort": 8126, "hostPort": 8126, "protocol": "tcp"},
        ],
        "environment": [
            {"name": k, "value": v}
            for k, v in sorted(
                {
                    "DD_APM_ENABLED": "true",
                    "DD_ENV": env_name,
                    "DD_SERVICE": name,
                    "DD_SITE": datadog.site,
                    "DD_VERSION": tag,
                    "ECS_FARGATE": "true",
                }.items()
            )
        ],
        "secrets": [{"name": "DD_API_KEY", "valueFrom": api_key}],
        "logConfiguration": {
            "logDriver": "awslogs",
            "options": {**awslogs, "awslogs-stream-prefix": DATADOG_AGENT},
        },
    }
    tags = {"environment": env_name, "managed-by": MANAGED_BY, "owner": service.owner, "service": name}
    task_definition = {
        "family": family(name, env_name),
        "taskRoleArn": role_arn(name, env_name, env, "task"),
        "executionRoleArn": role_arn(name, env_name, env, "execution"),
        "networkMode": "awsvpc",
        "requiresCompatibilities": ["FARGATE"],
        "runtimePlatform": {"cpuArchitecture": "X86_64", "operatingSystemFamily": "LINUX"},
        "cpu": str(resource.cpu),
        "memory": str(resource.memory),
        "containerDefinitions": [app, agent]
        if env.logs == "cloudwatch"
        else [app, agent, _log_router(awslogs, datadog)],
        "tags": [{"key": k, "value": tags[k]} for k in sorted(tags)],
    }
    return Compiled(task_definition, effective_desired_count(service, env_file), image)


def _app_logging(
    service: ServiceFile, env_name: str, env: Environment, datadog: Datadog, tag: str, api_key: str
) -> dict[str, Any]:
    """The service container's ``logConfiguration`` (and what it depends on): to CloudWatch Logs
    with the ``awslogs`` driver, streams ``<service>/<service>/<task-id>``; or to Datadog through
    the FireLens log router, which starts first."""
    name = service.name
    if env.logs == "cloudwatch":
        options = {"awslogs-group": log_group(name, env_name), "awslogs-region": env.region,
                   "awslogs-stream-prefix": name}  # fmt: skip
        return {"logConfiguration": {"logDriver": "awslogs", "options": options}}
    return {
        "dependsOn": [{"containerName": LOG_ROUTER, "condition": "START"}],
        "logConfiguration": {
            "logDriver": "awsfirelens",
            "options": {
                "Name": "datadog",
                "Host": f"http-intake.logs.{datadog.site}",
                "TLS": "on",
                "compress": "gzip",
                "dd_service": name,
                "dd_source": "ecs",
                "dd_tags": f"env:{env_name},owner:{service.owner},version:{tag}",
                "provider": "ecs",
            },
            "secretOptions": [{"name": "apikey", "valueFrom": api_key}],
        },
    }


def _log_router(awslogs: dict[str, str], datadog: Datadog) -> dict[str, Any]:
    """The FireLens sidecar that ships the service container's logs to Datadog (its own to CloudWatch)."""
    return {
        "name": LOG_ROUTER,
        "image": datadog.log_router_image,
        "essential": True,
        "firelensConfiguration": {"type": "fluentbit", "options": {"enable-ecs-log-metadata": "true"}},
        "logConfiguration": {
            "logDriver": "awslogs",
            "options": {**awslogs, "awslogs-stream-prefix": LOG_ROUTER},
        },
    }


def compile_for(config: Config, files: ServiceFiles, env_name: str, tag: str) -> Compiled:
    """Compile with lemi.yml's settings for ``env_name`` (which must exist in it)."""
    return compile_service(
        files.service,
        env_name,
        files.environment(env_name),
        config.environment(env_name),
        config.datadog,
        tag,
    )
