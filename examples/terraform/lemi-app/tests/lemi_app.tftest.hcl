# `terraform test` (Terraform >= 1.7): plans and applies the module against a
# mocked AWS provider, so it needs the provider plugin but no AWS credentials or
# network (an apply of a mocked provider makes no call).

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
  mock_resource "aws_lb_target_group" {
    defaults = { arn = "arn:aws:elasticloadbalancing:us-east-1:111111111111:targetgroup/lemi/73e2d6bc24d8a067" }
  }
  mock_resource "aws_ecs_task_definition" {
    defaults = { arn = "arn:aws:ecs:us-east-1:111111111111:task-definition/lemi:1" }
  }
  mock_resource "aws_secretsmanager_secret" {
    defaults = { arn = "arn:aws:secretsmanager:us-east-1:111111111111:secret:lemi/github-app-private-key-AbCdEf" }
  }
  mock_resource "aws_dynamodb_table" {
    defaults = { arn = "arn:aws:dynamodb:us-east-1:111111111111:table/lemi-deliveries" }
  }
  mock_resource "aws_iam_role" {
    defaults = { arn = "arn:aws:iam::111111111111:role/lemi-task" }
  }
}

override_resource {
  target = aws_sqs_queue.jobs
  values = {
    arn = "arn:aws:sqs:us-east-1:111111111111:lemi.fifo"
    url = "https://sqs.us-east-1.amazonaws.com/111111111111/lemi.fifo"
  }
}

override_resource {
  target = aws_sqs_queue.dead
  values = {
    arn = "arn:aws:sqs:us-east-1:111111111111:lemi-dead.fifo"
    url = "https://sqs.us-east-1.amazonaws.com/111111111111/lemi-dead.fifo"
  }
}

variables {
  image                           = "111111111111.dkr.ecr.us-east-1.amazonaws.com/lemi@sha256:4f53cda18c2baa0c0354bb5f9a3ecbe5ed12ab4d8e11ba873c2f11161202b945"
  github_app_id                   = "123456"
  cluster_arn                     = "arn:aws:ecs:us-east-1:111111111111:cluster/platform"
  vpc_id                          = "vpc-0lemi"
  subnet_ids                      = ["subnet-0a", "subnet-0b"]
  listener_arn                    = "arn:aws:elasticloadbalancing:us-east-1:111111111111:listener/app/public/50dc6c495c0c9188/f2f7dc8efc522ab2"
  load_balancer_security_group_id = "sg-0alb"
  host_header                     = "lemi.example.com"
  deployed_cluster_arns           = ["arn:aws:ecs:us-east-1:111111111111:cluster/lemon-ecs-cluster"]
  deployer_role_arns              = ["arn:aws:iam::222222222222:role/lemi-deployer"]
}

run "queue_table_secrets_and_service" {
  command = apply

  assert {
    condition     = aws_sqs_queue.jobs.fifo_queue && aws_sqs_queue.dead.fifo_queue && aws_sqs_queue.jobs.name == "lemi.fifo" && aws_sqs_queue.dead.name == "lemi-dead.fifo"
    error_message = "the job queue and its dead-letter queue are FIFO"
  }
  assert {
    condition     = jsondecode(aws_sqs_queue.jobs.redrive_policy).deadLetterTargetArn == "arn:aws:sqs:us-east-1:111111111111:lemi-dead.fifo" && jsondecode(aws_sqs_queue.jobs.redrive_policy).maxReceiveCount == 20
    error_message = "the job queue's RedrivePolicy names the dead-letter queue"
  }
  assert {
    condition     = aws_dynamodb_table.deliveries.hash_key == "id" && one(aws_dynamodb_table.deliveries.attribute).type == "S" && aws_dynamodb_table.deliveries.billing_mode == "PAY_PER_REQUEST"
    error_message = "the table's key is id, a string"
  }
  assert {
    condition     = one(aws_dynamodb_table.deliveries.ttl).attribute_name == "expires" && one(aws_dynamodb_table.deliveries.ttl).enabled
    error_message = "TTL on expires"
  }
  assert {
    condition     = output.lemi_queue == "sqs://https://sqs.us-east-1.amazonaws.com/111111111111/lemi.fifo?dedupe_table=lemi-deliveries"
    error_message = "LEMI_QUEUE is sqs://<queue url>?dedupe_table=<table>"
  }
  assert {
    condition     = contains([for e in jsondecode(aws_ecs_task_definition.this.container_definitions)[0].environment : "${e.name}=${e.value}"], "LEMI_QUEUE=${output.lemi_queue}")
    error_message = "the container gets LEMI_QUEUE"
  }
  assert {
    condition     = toset([for s in jsondecode(aws_ecs_task_definition.this.container_definitions)[0].secrets : s.name]) == toset(["GITHUB_APP_PRIVATE_KEY", "GITHUB_WEBHOOK_SECRET"])
    error_message = "the App's key and webhook secret come from Secrets Manager"
  }
  assert {
    condition     = alltrue([for e in jsondecode(aws_ecs_task_definition.this.container_definitions)[0].environment : !can(regex("SECRET|PRIVATE_KEY", e.name))])
    error_message = "no secret in a plain environment variable"
  }
  assert {
    condition     = aws_lb_target_group.this.port == 8080 && one(aws_lb_target_group.this.health_check).path == "/healthz"
    error_message = "the target group checks /healthz on 8080"
  }
  assert {
    condition     = toset(flatten([for c in aws_lb_listener_rule.webhook.condition : [for p in c.path_pattern : p.values]])) == toset(["/webhook"]) && toset(flatten([for c in aws_lb_listener_rule.webhook.condition : [for h in c.host_header : h.values]])) == toset(["lemi.example.com"])
    error_message = "the listener rule forwards /webhook on the App's host"
  }
  assert {
    condition     = one(aws_ecs_service.this.load_balancer).container_name == "lemi" && one(aws_ecs_service.this.load_balancer).container_port == 8080 && aws_ecs_service.this.launch_type == "FARGATE"
    error_message = "the service runs on Fargate behind the target group"
  }
  assert {
    condition     = length(aws_iam_role_policy.deployer) == 1 && strcontains(aws_iam_role_policy.deployer[0].policy, "arn:aws:ecs:us-east-1:111111111111:cluster/lemon-ecs-cluster") && strcontains(aws_iam_role_policy.deployer[0].policy, "arn:aws:iam::111111111111:role/*-execution")
    error_message = "the deployer policy, for this account and the clusters lemi deploys to"
  }
  assert {
    condition     = one(jsondecode(aws_iam_role_policy.assume_deployer_roles[0].policy).Statement).Resource == ["arn:aws:iam::222222222222:role/lemi-deployer"]
    error_message = "the task role may assume the deployer roles of other accounts"
  }
}

run "no_deployer_policy_without_clusters" {
  command = plan

  variables {
    deployed_cluster_arns = []
    deployer_role_arns    = []
    host_header           = null
  }

  assert {
    condition     = length(aws_iam_role_policy.deployer) == 0 && length(aws_iam_role_policy.assume_deployer_roles) == 0
    error_message = "no deployer permissions unless asked for"
  }
  assert {
    condition     = length(aws_lb_listener_rule.webhook.condition) == 1
    error_message = "without host_header the rule matches the path only"
  }
}

run "a_secret_in_environment_is_refused" {
  command = plan

  variables {
    environment = { GITHUB_WEBHOOK_SECRET = "x" }
  }

  expect_failures = [var.environment]
}

run "an_image_without_tag_or_digest_is_refused" {
  command = plan

  variables {
    image = "lemi"
  }

  expect_failures = [var.image]
}
