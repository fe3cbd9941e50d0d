"""A provisioned service in moto: what the infra team's Terraform would have made."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import boto3

from bot.core.compile import compile_for
from bot.core.config import Config, parse_config
from bot.core.spec import ServiceFiles, parse_environment, parse_service

ACCOUNT = "123456789012"
REGION = "us-east-1"
CLUSTER = "lemon-ecs-cluster"
SERVICE = "demo-service"

LEMI_YML = f"""\
infra:
  repository: acme/infra
domain: lemon
environments:
  staging:
    branch: develop
    region: {REGION}
    account_id: "{ACCOUNT}"
    cluster: {CLUSTER}
  prod:
    branch: main
    region: {REGION}
    account_id: "{ACCOUNT}"
    cluster: {CLUSTER}
    protected: true
"""

SERVICE_YAML = """\
name: demo-service
owner: infra
spec:
  desiredCount: 2
  image: demo-service
  resource:
    cpu: 512
    memory: 1024
"""

STAGING_YAML = """\
variables:
  LOG_LEVEL: info
secrets:
  DB_PASSWORD: demo-service/db-password
  DB_USER: "demo-service/db:username::"
parameters:
  FEATURE_X: /demo-service/feature-x
"""


def config() -> Config:
    return parse_config(LEMI_YML)


# the service's files in a repository (the GitHub fake's commits)
SERVICE_FILES = {
    "deploy/demo-service/service.yaml": SERVICE_YAML,
    "deploy/demo-service/environment/staging.yaml": STAGING_YAML,
}


def lemi_yml(image_wait_seconds: int = 0) -> str:
    """LEMI_YML with a bounded wait for the image in every environment (0: pushed before the commit)."""
    out = []
    for line in LEMI_YML.splitlines():
        out.append(line)
        if line.startswith("    cluster:"):
            out.append(f"    image_wait_seconds: {image_wait_seconds}")
    return "\n".join(out) + "\n"


def service_files(staging: str = STAGING_YAML) -> ServiceFiles:
    return ServiceFiles(
        parse_service(SERVICE_YAML, "deploy/demo-service/service.yaml", repository="acme/demo-service"),
        {"staging": parse_environment(staging, "deploy/demo-service/environment/staging.yaml")},
    )


def client(name: str, endpoint: str) -> Any:
    return boto3.client(name, region_name=REGION, endpoint_url=endpoint)


def push_image(endpoint: str, tag: str, repository: str = SERVICE) -> None:
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                           "config": {"digest": f"sha256:{tag:0<64}"[:71]}, "layers": []})  # fmt: skip
    client("ecr", endpoint).put_image(repositoryName=repository, imageManifest=manifest, imageTag=tag)


def network(endpoint: str) -> dict[str, Any]:
    """The awsvpc configuration of a service, in moto's default VPC (as the infra's Terraform sets it)."""
    ec2 = client("ec2", endpoint)
    subnet = ec2.describe_subnets()["Subnets"][0]["SubnetId"]
    group = ec2.describe_security_groups()["SecurityGroups"][0]["GroupId"]
    return {"awsvpcConfiguration": {"subnets": [subnet], "securityGroups": [group], "assignPublicIp": "DISABLED"}}


@dataclass
class World:
    endpoint: str
    config: Config
    files: ServiceFiles
    first_revision: str

    def ecs(self) -> Any:
        return client("ecs", self.endpoint)

    def deployed(self, arn: str, at: str = "2026-01-01T00:00:00Z") -> None:
        """Tag ``arn`` as a revision lemi deployed successfully at ``at`` (an earlier deploy)."""
        self.ecs().tag_resource(resourceArn=arn, tags=[{"key": "lemi:deployed-at", "value": at}])

    def tags(self, arn: str) -> dict[str, str]:
        return {t["key"]: t["value"] for t in self.ecs().list_tags_for_resource(resourceArn=arn)["tags"]}


def build(endpoint: str, *, exec_enabled: bool = False) -> World:
    cfg, files = config(), service_files()
    ecs = client("ecs", endpoint)
    ecs.create_cluster(clusterName=CLUSTER)
    first = compile_for(cfg, files, "staging", "v1")
    arn = ecs.register_task_definition(**first.task_definition)["taskDefinition"]["taskDefinitionArn"]
    ecs.create_service(cluster=CLUSTER, serviceName=SERVICE, taskDefinition=arn, desiredCount=2,
                       launchType="FARGATE", enableExecuteCommand=exec_enabled,
                       networkConfiguration=network(endpoint))  # fmt: skip
    client("ecr", endpoint).create_repository(repositoryName=SERVICE)
    push_image(endpoint, "v1")
    sm = client("secretsmanager", endpoint)
    sm.create_secret(Name="demo-service/db-password", SecretString="hunter2")
    sm.create_secret(Name="demo-service/db", SecretString=json.dumps({"username": "app", "password": "s3cret"}))
    sm.create_secret(Name="datadog/api-key", SecretString="dd")
    client("ssm", endpoint).put_parameter(Name="/demo-service/feature-x", Value="on", Type="String")
    return World(endpoint, cfg, files, arn)
