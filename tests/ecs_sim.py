"""Rollouts on moto, the way ECS does them.

moto accepts UpdateService but never starts a deployment: its deployments
stay as they were. This module patches moto's in-process ECS backend (the
moto server runs in the test process) so that an update which changes the
task definition, or forces a new deployment, starts a new PRIMARY deployment
like ECS does, and then plays a *scenario* forward one step per
DescribeServices call -- deterministic, with no sleeping:

* ``complete(after)``: tasks start, rolloutState COMPLETED, old deployments drained;
* ``circuit_breaker(after)``: tasks stop with a reason, the deployment FAILS and
  ECS rolls back to the previous revision (a new PRIMARY deployment);
* ``replaced(after)``: the deployment vanishes, replaced by another PRIMARY;
* ``failed(after)``: rolloutState FAILED, no rollback;
* ``stuck()``: stays IN_PROGRESS forever (for timeouts).

``complete_in(seconds)`` plays ``complete`` by the clock instead: a rollout completes at the
first DescribeServices ``seconds`` after its UpdateService, its running tasks ramping up
meanwhile (bench/rollouts.py: rollouts that take minutes, however often lemi looks).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from moto.ec2.models import ec2_backends
from moto.ecs.models import EC2ContainerServiceBackend, Task, ecs_backends

ACCOUNT = "123456789012"
REGION = "us-east-1"

Step = Callable[["Sim", Any, dict[str, Any]], None]


def _now() -> datetime:
    return datetime.now(UTC)


def _new_id() -> str:
    return f"ecs-svc/{random.randint(10**15, 10**16 - 1)}"


@dataclass
class Scenario:
    name: str
    after: int  # DescribeServices calls before the outcome
    stop_reason: str = "Essential container in task exited"
    exit_code: int = 1
    seconds: float | None = None  # by the clock, not by describes (complete_in)


@dataclass
class Sim:
    backend: EC2ContainerServiceBackend
    scenario: Scenario = field(default_factory=lambda: Scenario("complete", 1))
    # deployment id -> describes seen since it started
    ticks: dict[str, int] = field(default_factory=dict)
    updates: int = 0
    clock: Callable[[], float] = time.monotonic
    # deployment id -> when its UpdateService started it (clock)
    started: dict[str, float] = field(default_factory=dict)

    # ---- scenario choice -------------------------------------------------------------------
    def complete(self, after: int = 1) -> None:
        self.scenario = Scenario("complete", after)

    def circuit_breaker(self, after: int = 1, reason: str = "Essential container in task exited") -> None:
        self.scenario = Scenario("circuit_breaker", after, stop_reason=reason)

    def replaced(self, after: int = 1) -> None:
        self.scenario = Scenario("replaced", after)

    def failed(self, after: int = 1) -> None:
        self.scenario = Scenario("failed", after)

    def stuck(self) -> None:
        self.scenario = Scenario("stuck", 10**9)

    def complete_in(self, seconds: float) -> None:
        """Every rollout completes ``seconds`` after its UpdateService (at the next describe)."""
        self.scenario = Scenario("complete", 0, seconds=seconds)

    # ---- helpers for tests -----------------------------------------------------------------
    def service(self, cluster: str, name: str) -> Any:
        return self.backend.services[f"{cluster}:{name}"]

    def event(self, service: Any, message: str) -> None:
        service.events.insert(0, {"id": str(random.randint(1, 10**9)), "createdAt": _now(), "message": message})

    # ---- ECS behaviour ---------------------------------------------------------------------
    def start_deployment(self, service: Any) -> dict[str, Any]:
        for deployment in service.deployments:
            deployment["status"] = "ACTIVE"
        deployment = {
            "id": _new_id(),
            "status": "PRIMARY",
            "taskDefinition": service.task_definition,
            "desiredCount": service.desired_count,
            "pendingCount": 0,
            "runningCount": 0,
            "failedTasks": 0,
            "createdAt": _now(),
            "updatedAt": _now(),
            "launchType": "FARGATE",
            "rolloutState": "IN_PROGRESS",
            "rolloutStateReason": "ECS deployment in progress.",
        }
        service.deployments.insert(0, deployment)
        service.running_count = 0
        service.pending_count = service.desired_count
        self.ticks[deployment["id"]] = 0
        self.started[deployment["id"]] = self.clock()
        self.event(service, f"(service {service.name}) has started 0 tasks: (deployment {deployment['id']}).")
        return deployment

    def advance(self, service: Any) -> None:
        primary = next((d for d in service.deployments if d.get("status") == "PRIMARY"), None)
        if primary is None or primary["id"] not in self.ticks or primary.get("rolloutState") != "IN_PROGRESS":
            return
        self.ticks[primary["id"]] += 1
        if self.scenario.seconds is not None:
            share = (self.clock() - self.started[primary["id"]]) / self.scenario.seconds if self.scenario.seconds else 1
            if share < 1:  # tasks start one by one, as the rollout goes on
                running = int(primary["desiredCount"] * share)
                primary.update(runningCount=running, pendingCount=primary["desiredCount"] - running)
                return
        elif self.ticks[primary["id"]] < self.scenario.after:
            primary["pendingCount"] = primary["desiredCount"]
            return
        getattr(self, "_" + self.scenario.name)(service, primary)

    def _complete(self, service: Any, d: dict[str, Any]) -> None:
        d.update(runningCount=d["desiredCount"], pendingCount=0, rolloutState="COMPLETED",
                 rolloutStateReason=f"ECS deployment {d['id']} completed.", updatedAt=_now())  # fmt: skip
        old = [x["id"] for x in service.deployments if x is not d]
        for task in list(self.backend.tasks.get(service.cluster_name, {}).values()):
            if task.started_by in old and task.desired_status == "RUNNING":
                self.backend.stop_task(
                    service.cluster_name, task.task_arn, "Scaling activity initiated by (deployment)"
                )
        self.add_tasks(service, d, d["desiredCount"])
        service.deployments[:] = [d]
        service.running_count, service.pending_count = d["desiredCount"], 0
        self.event(service, f"(service {service.name}) has reached a steady state.")

    def add_tasks(self, service: Any, deployment: dict[str, Any], count: int) -> list[Any]:
        """Tasks of a deployment, as ECS would start them (RUNNING)."""
        ec2 = ec2_backends[self.backend.account_id][self.backend.region_name]
        subnet = next(iter(ec2.describe_subnets()))
        group = next(iter(ec2.describe_security_groups()))
        cluster = self.backend.clusters[service.cluster_name]
        task_definition = self.backend.describe_task_definition(deployment["taskDefinition"])
        tasks = []
        for _ in range(count):
            task = Task(
                cluster, task_definition, None, {}, backend=self.backend, group=f"service:{service.name}",
                launch_type="FARGATE", started_by=deployment["id"],
                networking_configuration={"awsvpcConfiguration": {"subnets": [subnet.id], "securityGroups": [group.id]}},
            )  # fmt: skip
            task.enable_execute_command = bool(getattr(service, "enable_execute_command", False))
            for container in task.containers:
                container.runtime_id = f"{task.id}-{container.name}"
            self.backend.tasks.setdefault(cluster.name, {})[task.task_arn] = task
            tasks.append(task)
        return tasks

    def _stop_tasks(self, service: Any, d: dict[str, Any]) -> None:
        tasks = self.add_tasks(service, d, 2)
        for task in tasks:
            for container in task.containers:
                container.exitCode = self.scenario.exit_code
            self.backend.stop_task(service.cluster_name, task.task_arn, self.scenario.stop_reason)
        d["failedTasks"] = len(tasks)

    def _circuit_breaker(self, service: Any, d: dict[str, Any]) -> None:
        self._stop_tasks(service, d)
        d.update(status="ACTIVE", rolloutState="FAILED",
                 rolloutStateReason="ECS deployment circuit breaker: tasks failed to start.")  # fmt: skip
        previous = next((x for x in service.deployments if x is not d), None)
        self.event(
            service, f"(service {service.name}) (deployment {d['id']}) deployment failed: tasks failed to start."
        )
        if previous is not None:
            self.event(service, f"(service {service.name}) rolling back to deployment {previous['id']}.")
            rollback = {**previous, "id": _new_id(), "status": "PRIMARY", "rolloutState": "IN_PROGRESS",
                        "createdAt": _now()}  # fmt: skip
            service.deployments[:] = [rollback, d]
            service.task_definition = previous["taskDefinition"]

    def _replaced(self, service: Any, d: dict[str, Any]) -> None:
        previous = next((x for x in service.deployments if x is not d), d)
        other = {**previous, "id": _new_id(), "status": "PRIMARY", "rolloutState": "IN_PROGRESS", "createdAt": _now()}
        service.deployments[:] = [other]

    def _failed(self, service: Any, d: dict[str, Any]) -> None:
        self._stop_tasks(service, d)
        d.update(rolloutState="FAILED", rolloutStateReason="ECS deployment failed: tasks failed to start.")

    def _stuck(self, service: Any, d: dict[str, Any]) -> None:  # pragma: no cover - never reached
        pass


def install(monkeypatch: pytest.MonkeyPatch, account: str = ACCOUNT, region: str = REGION) -> Sim:
    backend = ecs_backends[account][region]
    sim = Sim(backend)
    original_update = EC2ContainerServiceBackend.update_service
    original_describe = EC2ContainerServiceBackend.describe_services

    def update_service(self: EC2ContainerServiceBackend, props: dict[str, Any]) -> Any:
        cluster = props.get("cluster", "default").split("/")[-1]
        name = props["service"].split("/")[-1]
        before = self.services[f"{cluster}:{name}"].task_definition if f"{cluster}:{name}" in self.services else None
        force = props.get("force_new_deployment", False)
        props = {**props, "force_new_deployment": False}  # moto's own "force" only renames a deployment
        service = original_update(self, props)
        if self is sim.backend and (service.task_definition != before or force):
            sim.updates += 1
            sim.start_deployment(service)
        return service

    def describe_services(self: EC2ContainerServiceBackend, cluster: str, names: list[str]) -> Any:
        if self is sim.backend:
            for name in names:
                key = f"{cluster.split('/')[-1]}:{name.split('/')[-1]}"
                if key in self.services:
                    sim.advance(self.services[key])
        return original_describe(self, cluster, names)

    monkeypatch.setattr(EC2ContainerServiceBackend, "update_service", update_service)
    monkeypatch.setattr(EC2ContainerServiceBackend, "describe_services", describe_services)
    return sim
