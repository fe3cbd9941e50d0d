"""Names lemi derives instead of asking for (the README, "Conventions lemi enforces").

One place for every derived name, so the compiler, the scaffolding, the
Terraform renderer and the AWS operations cannot disagree.
"""

from __future__ import annotations

from bot.core.config import Environment
from bot.core.names import dns_suffix, partition

PORT = 8080
METRICS_PATH = "/metrics"
# role the generated build workflow assumes (GitHub OIDC) to push images to ECR
ECR_PUSH_ROLE = "lemi-ecr-push"
MANAGED_BY = "lemi"


def family(service: str, env_name: str) -> str:
    """Task definition family (and ECS service name is just ``service``)."""
    return f"{service}-{env_name}"


def role_arn(service: str, env_name: str, env: Environment, kind: str) -> str:
    """``kind`` is "execution", "task" or "scheduler": ``<service>-<env>-<kind>`` in the environment's account."""
    return f"arn:{partition(env.region)}:iam::{env.account_id}:role/{service}-{env_name}-{kind}"


def schedule_group(service: str, env_name: str) -> str:
    """The EventBridge Scheduler group that holds the service's schedules in one environment."""
    return f"{service}-{env_name}"


def scheduler_role_arn(service: str, env_name: str, env: Environment) -> str:
    """The role EventBridge Scheduler assumes to run the service's scheduled tasks."""
    return role_arn(service, env_name, env, "scheduler")


def registry(env: Environment) -> str:
    return f"{env.account_id}.dkr.ecr.{env.region}.{dns_suffix(env.region)}"


def image_uri(image: str, tag: str, env: Environment) -> str:
    return f"{registry(env)}/{image}:{tag}"


def log_group(service: str, env_name: str) -> str:
    return f"/ecs/{service}-{env_name}"


def internal_url(service: str, env_name: str, domain: str) -> str:
    return f"https://{service}-internal.{env_name}.{domain}"


def ecr_push_role_arn(env: Environment) -> str:
    return f"arn:{partition(env.region)}:iam::{env.account_id}:role/{ECR_PUSH_ROLE}"
