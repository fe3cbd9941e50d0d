"""ECS Exec into a running task through the Session Manager plugin.

The plugin is AWS's own binary; lemi asks ECS for a session and hands it
over exactly as the AWS CLI does. Arguments are passed as a list, never
through a shell.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from typing import Any

from bot.aws.clients import AwsClients
from bot.aws.ecs import describe_service, task_id
from bot.aws.errors import OperationError
from bot.core.names import dns_suffix

PLUGIN = "session-manager-plugin"
PLUGIN_HINT = (
    "install AWS's Session Manager plugin: "
    "https://docs.aws.amazon.com/systems-manager/latest/userguide/session-manager-working-with-install-plugin.html"
)
NOT_ENABLED_HINT = (
    "enable ECS Exec on the service (enable_execute_command = true in its Terraform module), "
    "apply it, then restart the service so new tasks pick it up"
)


@dataclass
class ExecSession:
    task_id: str
    container: str
    argv: list[str]  # the plugin's command line


async def open_session(
    aws: AwsClients, env_name: str, service: str, *, command: str, task: str | None = None
) -> ExecSession:
    plugin = shutil.which(PLUGIN)
    if plugin is None:
        raise OperationError(f"the Session Manager plugin ({PLUGIN}) is not installed", PLUGIN_HINT)
    env = aws.environment(env_name)
    current = await describe_service(aws, env_name, service)
    if not current.get("enableExecuteCommand"):
        raise OperationError(f"ECS Exec is not enabled on service {service} ({env_name})", NOT_ENABLED_HINT)
    ecs = await aws.client(env_name, "ecs")
    if task is None:
        listed = await ecs.list_tasks(cluster=env.cluster, serviceName=service, desiredStatus="RUNNING")
        arns = listed.get("taskArns", [])
        if not arns:
            raise OperationError(
                f"service {service} has no running task in {env_name}", "start one: lemi service restart"
            )
        task = arns[0]
    described = await ecs.describe_tasks(cluster=env.cluster, tasks=[task])
    tasks: list[dict[str, Any]] = described.get("tasks", [])
    if not tasks or tasks[0].get("group") != f"service:{service}":
        raise OperationError(
            f"task {task} is not a task of service {service}", "list them with `lemi service list-tasks`"
        )
    found = tasks[0]
    found_id = task_id(found["taskArn"])
    if not found.get("enableExecuteCommand"):
        raise OperationError(f"task {found_id} was started without ECS Exec", NOT_ENABLED_HINT)
    container = next((c for c in found.get("containers", []) if c.get("name") == service), None)
    if container is None or not container.get("runtimeId"):
        raise OperationError(f"task {found_id} has no running {service} container", "pick another task with --task-id")
    response = await ecs.execute_command(
        cluster=env.cluster, task=found["taskArn"], container=service, interactive=True, command=command
    )
    target = {"Target": f"ecs:{env.cluster}_{found_id}_{container['runtimeId']}"}
    endpoint = f"https://ssm.{env.region}.{dns_suffix(env.region)}"
    argv = [plugin, json.dumps(response["session"]), env.region, "StartSession", "", json.dumps(target), endpoint]
    return ExecSession(found_id, service, argv)
