"""One environment's ECS, resolved once: the calls a rollout makes, and the names of ECS things.

:class:`Ecs` holds the environment's cluster and ECS client; every call a deploy,
restart or rollback makes goes through it (describe the service and task
definitions, find an identical revision, register, update, the stopped tasks of a
deployment). The module-level helpers are pure: ARN names, and a described task
definition in the shape of a compiled one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bot.aws.clients import AwsClients
from bot.aws.errors import OperationError
from bot.core.history import DEPLOYED_AT
from bot.core.shapes import project

if TYPE_CHECKING:  # the stubs are a development dependency
    from types_aiobotocore_ecs import ECSClient
    from types_aiobotocore_ecs.type_defs import ServiceTypeDef, TagTypeDef, TaskDefinitionTypeDef


# ---- names (pure) ----------------------------------------------------------------------------


def revision_of(task_definition_arn: str) -> str:
    """'arn:...:task-definition/demo-service-staging:7' -> 'demo-service-staging:7'."""
    return task_definition_arn.rsplit("/", 1)[-1]


def family_of(task_definition_arn: str) -> str:
    """'arn:...:task-definition/demo-service-staging:7' -> 'demo-service-staging'."""
    return revision_of(task_definition_arn).rsplit(":", 1)[0]


def revision_number(task_definition_arn: str) -> int:
    """'arn:...:task-definition/demo-service-staging:7' -> 7."""
    return int(task_definition_arn.rsplit(":", 1)[1])


def task_id(task_arn: str) -> str:
    """'arn:...:task/cluster/0123abcd' (or the id itself) -> '0123abcd'."""
    return task_arn.rsplit("/", 1)[-1]


def comparable(described: Mapping[str, Any], tags: Sequence[TagTypeDef], wanted: Mapping[str, Any]) -> dict[str, Any]:
    """A described task definition in the shape of a compiled one, for equality and diffs
    (without the ``lemi:deployed-at`` tag: history, not definition)."""
    merged = dict(described)
    tags = [t for t in tags if t["key"] != DEPLOYED_AT]
    if tags:
        merged["tags"] = sorted(tags, key=lambda t: t["key"])
    projected: dict[str, Any] = project(merged, dict(wanted))
    return projected


# ---- the calls -------------------------------------------------------------------------------

DESCRIBE_BATCH = 10  # services per DescribeServices call


@dataclass(frozen=True, slots=True)
class StoppedTask:
    task_id: str
    stopped_reason: str
    containers: list[str] = field(default_factory=list)  # "name: exit 1 (reason)"
    lines: list[str] = field(default_factory=list)  # the last lines it logged (bot/aws/logs.py), bounded


@dataclass(frozen=True, slots=True)
class Ecs:
    """The ECS of one environment of lemi.yml: its name, cluster and client.

    Open it once per operation (``await Ecs.open(aws, "staging")``) and pass it down.
    """

    environment: str
    cluster: str
    client: ECSClient
    aws: AwsClients | None = field(default=None, compare=False)  # for what a report reads beside ECS (logs)

    @classmethod
    async def open(cls, aws: AwsClients, env_name: str) -> Ecs:
        return cls(env_name, aws.environment(env_name).cluster, await aws.client(env_name, "ecs"), aws)

    async def describe_service(self, service: str) -> ServiceTypeDef:
        """The ACTIVE service ``service``; an :class:`OperationError` when there is none."""
        response = await self.client.describe_services(cluster=self.cluster, services=[service])
        for item in response.get("services", []):
            if item.get("serviceName") == service and item.get("status") == "ACTIVE":
                return item
        raise OperationError(
            f"there is no active ECS service {service!r} in cluster {self.cluster} ({self.environment})",
            "check -s and -e, or provision the service first (merge its infra pull request)",
        )

    async def describe_services(self, services: Sequence[str]) -> dict[str, ServiceTypeDef]:
        """The ACTIVE services among ``services``, by name, described 10 to a call (ECS's limit).
        A service that is gone (or not ACTIVE) is absent from the answer."""
        found: dict[str, ServiceTypeDef] = {}
        names = list(dict.fromkeys(services))
        for start in range(0, len(names), DESCRIBE_BATCH):
            response = await self.client.describe_services(
                cluster=self.cluster, services=names[start : start + DESCRIBE_BATCH]
            )
            for item in response.get("services", []):
                if item.get("status") == "ACTIVE" and item.get("serviceName"):
                    found[item["serviceName"]] = item
        return found

    async def describe_task_definition(self, arn: str) -> tuple[TaskDefinitionTypeDef, list[TagTypeDef]]:
        response = await self.client.describe_task_definition(taskDefinition=arn, include=["TAGS"])
        return response["taskDefinition"], response.get("tags", [])

    async def running_definition(self, service: ServiceTypeDef, wanted: Mapping[str, Any]) -> dict[str, Any]:
        """The task definition ``service`` runs, in the shape of ``wanted`` (see :func:`comparable`)."""
        described, tags = await self.describe_task_definition(service["taskDefinition"])
        return comparable(described, tags, wanted)

    async def identical_revision(
        self, task_definition: Mapping[str, Any], *, compared: Mapping[str, bool] | None = None
    ) -> str | None:
        """The family's newest ACTIVE revision when it is identical to ``task_definition``; None: register it.

        ``compared``: revisions the caller already compared (ARN -> identical), not described again.
        """
        family = task_definition["family"]
        listed = await self.client.list_task_definitions(
            familyPrefix=family, status="ACTIVE", sort="DESC", maxResults=1
        )
        for arn in listed.get("taskDefinitionArns", []):
            if family_of(arn) != family:
                continue
            if compared is not None and arn in compared:
                same = compared[arn]
            else:
                described, tags = await self.describe_task_definition(arn)
                same = comparable(described, tags, task_definition) == task_definition
            if same:
                return arn
        return None

    async def register(self, task_definition: Mapping[str, Any]) -> str:
        """Register a new revision; its ARN."""
        response = await self.client.register_task_definition(**dict(task_definition))
        return response["taskDefinition"]["taskDefinitionArn"]

    async def revisions(self, family_name: str) -> list[str]:
        """ACTIVE revisions of a family, newest first."""
        arns: list[str] = []
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"familyPrefix": family_name, "status": "ACTIVE", "sort": "DESC"}
            if token:
                kwargs["nextToken"] = token
            page = await self.client.list_task_definitions(**kwargs)
            arns += [a for a in page.get("taskDefinitionArns", []) if family_of(a) == family_name]
            token = page.get("nextToken")
            if not token:
                return sorted(arns, key=revision_number, reverse=True)

    async def update_service(
        self,
        service: str,
        *,
        task_definition: str | None = None,
        desired_count: int | None = None,
        force_new_deployment: bool = False,
    ) -> ServiceTypeDef:
        """UpdateService; the service as ECS answers (its deployments name the one the update started)."""
        kwargs: dict[str, Any] = {"cluster": self.cluster, "service": service}
        if task_definition is not None:
            kwargs["taskDefinition"] = task_definition
        if desired_count is not None:
            kwargs["desiredCount"] = desired_count
        if force_new_deployment:
            kwargs["forceNewDeployment"] = True
        response = await self.client.update_service(**kwargs)
        return response["service"]

    async def stopped_tasks(self, deployment_id: str, limit: int = 10) -> list[StoppedTask]:
        """Tasks of a deployment that stopped, with why."""
        listed = await self.client.list_tasks(cluster=self.cluster, startedBy=deployment_id, desiredStatus="STOPPED")
        arns = listed.get("taskArns", [])[:limit]
        if not arns:
            return []
        described = await self.client.describe_tasks(cluster=self.cluster, tasks=arns)
        result = []
        for task in described.get("tasks", []):
            containers = []
            for container in task.get("containers", []):
                bits = [container.get("name", "?") + ":"]
                if container.get("exitCode") is not None:
                    bits.append(f"exit {container['exitCode']}")
                if container.get("reason"):
                    bits.append(f"({container['reason']})")
                if len(bits) > 1:
                    containers.append(" ".join(bits))
            result.append(
                StoppedTask(task_id(task["taskArn"]), task.get("stoppedReason") or "(no reason given)", containers)
            )
        return result


async def describe_service(aws: AwsClients, env_name: str, service: str) -> ServiceTypeDef:
    """:meth:`Ecs.describe_service` for a caller that holds no :class:`Ecs`."""
    return await (await Ecs.open(aws, env_name)).describe_service(service)
