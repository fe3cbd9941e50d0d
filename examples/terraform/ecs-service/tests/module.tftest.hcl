# `terraform test` (Terraform >= 1.7): plans the module against a mocked AWS
# provider, so it needs the provider plugin but no AWS credentials or network.
# The variables are the block lemi renders (templates/terraform/service.tf.j2)
# plus the platform inputs of README.md.

mock_provider "aws" {
  mock_data "aws_caller_identity" {
    defaults = { account_id = "111111111111" }
  }
  mock_data "aws_region" {
    defaults = { name = "us-east-1" }
  }
  mock_data "aws_partition" {
    defaults = { partition = "aws", dns_suffix = "amazonaws.com" }
  }
}

variables {
  name          = "demo-service"
  owner         = "infra"
  repository    = "acme/demo-service"
  image         = "demo-service"
  cpu           = 512
  memory        = 1024
  desired_count = 3
  environments  = ["staging", "prod"]
  domain        = "lemon"

  platform = {
    staging = {
      account_id                      = "111111111111"
      region                          = "us-east-1"
      cluster_arn                     = "arn:aws:ecs:us-east-1:111111111111:cluster/lemon-ecs-cluster"
      vpc_id                          = "vpc-0staging"
      subnet_ids                      = ["subnet-0a", "subnet-0b"]
      listener_arn                    = "arn:aws:elasticloadbalancing:us-east-1:111111111111:listener/app/internal-staging/50dc6c495c0c9188/f2f7dc8efc522ab2"
      load_balancer_security_group_id = "sg-0albstaging"
    }
    prod = {
      account_id                      = "111111111111"
      region                          = "us-east-1"
      cluster_arn                     = "arn:aws:ecs:us-east-1:111111111111:cluster/lemon-ecs-cluster-prod"
      vpc_id                          = "vpc-0prod"
      subnet_ids                      = ["subnet-0c"]
      listener_arn                    = "arn:aws:elasticloadbalancing:us-east-1:111111111111:listener/app/internal-prod/60dc6c495c0c9188/e2f7dc8efc522ab2"
      load_balancer_security_group_id = "sg-0albprod"
    }
  }
}

run "one_account_gets_every_environment" {
  command = plan

  assert {
    condition     = output.environments == tolist(["prod", "staging"]) && length(output.other_environments) == 0
    error_message = "both environments live in the provider's account"
  }
  assert {
    condition     = aws_ecs_service.this["staging"].name == "demo-service" && aws_ecs_service.this["staging"].cluster == var.platform.staging.cluster_arn
    error_message = "the ECS service is <name> in the environment's cluster"
  }
  assert {
    condition     = aws_ecs_service.this["prod"].enable_execute_command && aws_ecs_service.this["prod"].deployment_circuit_breaker[0].enable && aws_ecs_service.this["prod"].deployment_circuit_breaker[0].rollback
    error_message = "ECS Exec and the circuit breaker with rollback are on"
  }
  assert {
    condition     = aws_ecs_service.this["prod"].desired_count == 3 && aws_ecs_service.this["prod"].launch_type == "FARGATE"
    error_message = "the service starts with the block's desired_count on Fargate"
  }
  assert {
    condition     = one(aws_ecs_service.this["staging"].load_balancer).container_name == "demo-service" && one(aws_ecs_service.this["staging"].load_balancer).container_port == 8080
    error_message = "the load balancer sends traffic to container <name> on 8080, as lemi compiles it"
  }
  assert {
    condition     = aws_ecs_task_definition.this["staging"].family == "demo-service-staging" && aws_ecs_task_definition.this["prod"].family == "demo-service-prod"
    error_message = "task definition family <name>-<env>"
  }
  assert {
    condition     = jsondecode(aws_ecs_task_definition.this["staging"].container_definitions)[0].name == "demo-service" && jsondecode(aws_ecs_task_definition.this["staging"].container_definitions)[0].portMappings[0].containerPort == 8080
    error_message = "the bootstrap container is <name> on 8080"
  }
  assert {
    condition     = aws_iam_role.execution["staging"].name == "demo-service-staging-execution" && aws_iam_role.task["prod"].name == "demo-service-prod-task"
    error_message = "roles <name>-<env>-execution and <name>-<env>-task"
  }
  assert {
    condition     = jsondecode(aws_iam_role.task["prod"].assume_role_policy).Statement[0].Principal.Service == "ecs-tasks.amazonaws.com"
    error_message = "roles are trusted by ECS tasks"
  }
  assert {
    condition     = aws_iam_role.scheduler["staging"].name == "demo-service-staging-scheduler" && jsondecode(aws_iam_role.scheduler["staging"].assume_role_policy).Statement[0].Principal.Service == "scheduler.amazonaws.com"
    error_message = "the scheduler role <name>-<env>-scheduler is trusted by EventBridge Scheduler"
  }
  assert {
    condition     = aws_cloudwatch_log_group.this["prod"].name == "/ecs/demo-service-prod"
    error_message = "log group /ecs/<name>-<env>"
  }
  assert {
    condition     = one(one(aws_lb_listener_rule.this["staging"].condition).host_header).values == toset(["demo-service-internal.staging.lemon"])
    error_message = "host rule <name>-internal.<env>.<domain>"
  }
  assert {
    condition     = aws_lb_listener_rule.this["prod"].listener_arn == var.platform.prod.listener_arn
    error_message = "the rule is on the environment's listener"
  }
  assert {
    condition     = aws_lb_target_group.this["staging"].port == 8080 && aws_lb_target_group.this["staging"].target_type == "ip" && one(aws_lb_target_group.this["staging"].health_check).path == "/healthz"
    error_message = "target group: ip targets on 8080, health check /healthz"
  }
  assert {
    condition     = aws_security_group.this["prod"].vpc_id == "vpc-0prod" && aws_vpc_security_group_ingress_rule.from_load_balancer["prod"].referenced_security_group_id == "sg-0albprod"
    error_message = "the tasks' security group admits the environment's ALB"
  }
  assert {
    condition = alltrue([
      aws_ecs_service.this["prod"].tags["managed-by"] == "lemi",
      aws_ecs_service.this["prod"].tags["environment"] == "prod",
      aws_ecs_service.this["prod"].tags["service"] == "demo-service",
      aws_ecs_service.this["prod"].tags["owner"] == "infra",
      aws_iam_role.execution["staging"].tags["environment"] == "staging",
    ])
    error_message = "ownership tags service, owner, environment, managed-by = lemi"
  }
  assert {
    condition     = length(aws_ecr_repository.this) == 1 && aws_ecr_repository.this[0].name == "demo-service"
    error_message = "the service owns its image: one ECR repository for the account"
  }
  assert {
    condition     = output.internal_urls == { prod = "https://demo-service-internal.prod.lemon", staging = "https://demo-service-internal.staging.lemon" }
    error_message = "internal URLs as lemi reports them"
  }
}

run "an_environment_in_another_account_is_left_to_its_apply" {
  command = plan

  variables {
    platform = {
      staging = merge(var.platform.staging, {})
      prod    = merge(var.platform.prod, { account_id = "222222222222" })
    }
  }

  assert {
    condition     = output.environments == tolist(["staging"]) && output.other_environments == tolist(["prod"])
    error_message = "prod lives in another account"
  }
  assert {
    condition     = join(",", keys(aws_ecs_service.this)) == "staging" && join(",", keys(aws_iam_role.execution)) == "staging" && join(",", keys(aws_lb_listener_rule.this)) == "staging"
    error_message = "only staging's resources are planned here"
  }
}

run "an_extra_service_reuses_its_repository_image" {
  command = plan

  variables {
    name  = "demo-service-worker"
    image = "demo-service"
  }

  assert {
    condition     = length(aws_ecr_repository.this) == 0
    error_message = "the ECR repository belongs to the service named like the image"
  }
  assert {
    condition     = alltrue([for n in values(aws_lb_target_group.this)[*].name : length(n) <= 32])
    error_message = "target group names fit in 32 characters"
  }
}

run "long_names_fit_the_target_group_limit" {
  command = plan

  variables {
    name       = "a-very-long-service-name-of-32ch"
    repository = "acme/a-very-long-service-name-of-32ch"
    image      = "a-very-long-service-name-of-32ch"
  }

  assert {
    condition     = alltrue([for n in values(aws_lb_target_group.this)[*].name : length(n) <= 32 && can(regex("^[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?$", n))])
    error_message = "target group names fit in 32 characters and do not end with a hyphen"
  }
  assert {
    condition     = aws_lb_target_group.this["staging"].name != aws_lb_target_group.this["prod"].name
    error_message = "shortened target group names stay distinct"
  }
}

run "edge_values_lemi_accepts_are_accepted" {
  command = plan

  variables {
    cpu               = 16384
    memory            = 122880
    desired_count     = 0
    health_check_path = "/"
  }

  assert {
    condition     = aws_ecs_task_definition.this["prod"].cpu == "16384" && aws_ecs_task_definition.this["prod"].memory == "122880"
    error_message = "the largest Fargate size is accepted"
  }
  assert {
    condition     = one(aws_lb_target_group.this["prod"].health_check).path == "/" && !strcontains(jsondecode(aws_ecs_task_definition.this["prod"].container_definitions)[0].command[2], "dirname")
    error_message = "a health check on / needs no extra file in the bootstrap container"
  }
}

run "the_bootstrap_container_answers_the_health_check" {
  command = plan

  variables {
    health_check_path = "/internal/health"
  }

  assert {
    condition     = strcontains(jsondecode(aws_ecs_task_definition.this["staging"].container_definitions)[0].command[2], "echo ok > '/www/internal/health'")
    error_message = "busybox httpd serves the health check path"
  }
}

run "a_name_lemi_would_refuse_is_refused" {
  command = plan

  variables {
    name = "Demo--service"
  }

  expect_failures = [var.name]
}

run "a_service_not_named_after_its_repository_is_refused" {
  command = plan

  variables {
    name = "other-service"
  }

  expect_failures = [var.name]
}

run "cpu_and_memory_must_be_a_fargate_pair" {
  command = plan

  variables {
    cpu    = 256
    memory = 4096
  }

  expect_failures = [var.memory]
}

run "every_environment_needs_a_platform_entry" {
  command = plan

  variables {
    platform = { staging = var.platform.staging }
  }

  expect_failures = [var.platform]
}

run "a_provider_that_hosts_no_environment_is_an_error" {
  command = plan

  variables {
    platform = {
      staging = merge(var.platform.staging, { account_id = "333333333333" })
      prod    = merge(var.platform.prod, { region = "eu-west-1" })
    }
  }

  expect_failures = [data.aws_caller_identity.current]
}
