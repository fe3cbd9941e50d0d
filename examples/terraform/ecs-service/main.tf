# The static infrastructure of one lemi service: what lemi's deploys need to
# exist before the first push, for every environment of lemi.yml that lives in
# this provider's account and region. Everything that changes per deploy (image,
# variables, secrets wiring, cpu/memory, desired count) is lemi's, in the task
# definition revisions it registers: this module creates the first revision and
# then never touches the task definition or the desired count again.
#
# Names follow lemi's conventions (bot/conventions.py):
#   ECS service          <name>                       in the environment's cluster
#   task def family      <name>-<env>
#   IAM roles            <name>-<env>-execution, <name>-<env>-task, <name>-<env>-scheduler
#   schedule group       <name>-<env> (lemi creates it and its schedules on deploy)
#   log group            /ecs/<name>-<env>
#   container            <name>, HTTP on 8080 (metrics on :8080/metrics)
#   internal URL         https://<name>-internal.<env>.<domain>
#   tags                 service, owner, environment, repository, managed-by = lemi

data "aws_caller_identity" "current" {
  lifecycle {
    # An apply that creates nothing is almost always a provider pointed at the
    # wrong account or region: fail instead of silently managing no environment.
    postcondition {
      condition = anytrue([
        for env in var.environments :
        try(var.platform[env].account_id == self.account_id && var.platform[env].region == data.aws_region.current.name, false)
      ])
      error_message = "None of the environments ${join(", ", var.environments)} lives in this provider's account ${self.account_id} and region ${data.aws_region.current.name} (see platform): check the provider, or the account_id and region of the platform entries."
    }
  }
}

data "aws_region" "current" {}

data "aws_partition" "current" {}

locals {
  port = 8080 # lemi's convention: HTTP (and OpenMetrics on /metrics) on 8080

  account_id = data.aws_caller_identity.current.account_id
  region     = data.aws_region.current.name
  partition  = data.aws_partition.current.partition

  # The environments this apply manages: those of lemi.yml that live in the
  # provider's account and region. One block lists every environment; an
  # organisation with an account per environment applies the same services/
  # directory once per account (README.md, "Several accounts").
  environments = {
    for env in var.environments : env => var.platform[env]
    if var.platform[env].account_id == local.account_id && var.platform[env].region == local.region
  }

  # lemi's ownership tags (as on the task definitions lemi registers), which win
  # over the caller's; environment is added per environment.
  lemi_tags = {
    "service"    = var.name
    "owner"      = var.owner
    "repository" = var.repository
    "managed-by" = "lemi"
  }
  tags = merge(var.tags, local.lemi_tags)

  create_ecr_repository = coalesce(var.create_ecr_repository, var.image == var.name) && length(local.environments) > 0

  ecr_repository_arn = "arn:${local.partition}:ecr:${local.region}:${local.account_id}:repository/${var.image}"

  # What a task's environment file may reference by convention: secrets named
  # <name>/... and parameters named /<name>/..., plus the shared ones (Datadog).
  secret_arns = concat(
    ["arn:${local.partition}:secretsmanager:${local.region}:${local.account_id}:secret:${var.name}/*"],
    [for s in var.shared_secret_names : "arn:${local.partition}:secretsmanager:${local.region}:${local.account_id}:secret:${s}-??????"],
  )
  parameter_arns = ["arn:${local.partition}:ssm:${local.region}:${local.account_id}:parameter/${var.name}/*"]

  # Target group names are at most 32 characters: <name>-<env> when it fits,
  # else a shortened name with a hash of the whole, so it stays unique.
  target_group_names = {
    for env in keys(local.environments) : env => (
      length("${var.name}-${env}") <= 32 ? "${var.name}-${env}" : "${trimsuffix(substr("${var.name}-${env}", 0, 25), "-")}-${substr(sha1("${var.name}-${env}"), 0, 6)}"
    )
  }

  bootstrap_command = var.bootstrap_command != null ? var.bootstrap_command : [
    "sh", "-c",
    join(" && ", compact([
      "mkdir -p /www",
      "echo ok > /www/index.html",
      var.health_check_path == "/" ? "" : "mkdir -p \"$(dirname '/www${var.health_check_path}')\"",
      var.health_check_path == "/" ? "" : "echo ok > '/www${var.health_check_path}'",
      "exec httpd -f -v -p ${local.port} -h /www",
    ])),
  ]
}

# ---------------------------------------------------------------------------
# Image repository (one per account and region, shared by its environments)
# ---------------------------------------------------------------------------

resource "aws_ecr_repository" "this" {
  count = local.create_ecr_repository ? 1 : 0

  name                 = var.image
  image_tag_mutability = "MUTABLE" # a re-run build of the same commit pushes the same tag again

  image_scanning_configuration {
    scan_on_push = true
  }

  # managed-by = lemi lets the account's lemi-ecr-push role push here (README.md)
  tags = local.tags
}

resource "aws_ecr_lifecycle_policy" "this" {
  count = local.create_ecr_repository ? 1 : 0

  repository = aws_ecr_repository.this[0].name
  policy = jsonencode({
    rules = [{
      rulePriority = 1
      description  = "keep the newest ${var.ecr_max_images} images"
      selection    = { tagStatus = "any", countType = "imageCountMoreThan", countNumber = var.ecr_max_images }
      action       = { type = "expire" }
    }]
  })
}

# ---------------------------------------------------------------------------
# Logs
# ---------------------------------------------------------------------------

resource "aws_cloudwatch_log_group" "this" {
  for_each = local.environments

  name              = "/ecs/${var.name}-${each.key}"
  retention_in_days = var.log_retention_days

  tags = merge(local.tags, { "environment" = each.key })
}

# ---------------------------------------------------------------------------
# IAM: the execution role (ECS itself: pull, logs, secrets) and the task role
# (the application), both named by lemi's convention and trusted only by ECS
# tasks of this account.
# ---------------------------------------------------------------------------

locals {
  ecs_tasks_trust = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { Service = "ecs-tasks.amazonaws.com" }
      Action    = "sts:AssumeRole"
      Condition = {
        StringEquals = { "aws:SourceAccount" = local.account_id }
        ArnLike      = { "aws:SourceArn" = "arn:${local.partition}:ecs:${local.region}:${local.account_id}:*" }
      }
    }]
  })
}

resource "aws_iam_role" "execution" {
  for_each = local.environments

  name                 = "${var.name}-${each.key}-execution"
  description          = "ECS task execution role of ${var.name} (${each.key}): pulls the image, writes logs, reads the service's secrets. Managed by lemi's ecs-service module."
  assume_role_policy   = local.ecs_tasks_trust
  max_session_duration = 3600

  tags = merge(local.tags, { "environment" = each.key })
}

resource "aws_iam_role_policy" "execution" {
  for_each = local.environments

  name = "lemi-execution"
  role = aws_iam_role.execution[each.key].id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = concat(
      [
        {
          Sid      = "EcrLogin"
          Effect   = "Allow"
          Action   = ["ecr:GetAuthorizationToken"]
          Resource = "*"
        },
        {
          Sid      = "PullImage"
          Effect   = "Allow"
          Action   = ["ecr:BatchCheckLayerAvailability", "ecr:GetDownloadUrlForLayer", "ecr:BatchGetImage"]
          Resource = local.ecr_repository_arn
        },
        {
          Sid      = "WriteLogs"
          Effect   = "Allow"
          Action   = ["logs:CreateLogStream", "logs:PutLogEvents"]
          Resource = "${aws_cloudwatch_log_group.this[each.key].arn}:*"
        },
        {
          Sid      = "ReadSecrets"
          Effect   = "Allow"
          Action   = ["secretsmanager:GetSecretValue"]
          Resource = concat(local.secret_arns, [for a in var.extra_secret_arns : a if can(regex(":secretsmanager:", a))])
        },
        {
          Sid      = "ReadParameters"
          Effect   = "Allow"
          Action   = ["ssm:GetParameters"]
          Resource = concat(local.parameter_arns, [for a in var.extra_secret_arns : a if can(regex(":ssm:", a))])
        },
      ],
      length(var.kms_key_arns) == 0 ? [] : [{
        Sid      = "DecryptSecrets"
        Effect   = "Allow"
        Action   = ["kms:Decrypt"]
        Resource = var.kms_key_arns
      }],
    )
  })
}

resource "aws_iam_role" "task" {
  for_each = local.environments

  name                 = "${var.name}-${each.key}-task"
  description          = "ECS task role of ${var.name} (${each.key}): what the application may do in AWS. Managed by lemi's ecs-service module."
  assume_role_policy   = local.ecs_tasks_trust
  max_session_duration = 3600

  tags = merge(local.tags, { "environment" = each.key })
}

resource "aws_iam_role_policy" "task_exec" {
  for_each = local.environments

  # ECS Exec (`lemi service exec`): the SSM agent in the task opens its channels
  # with the task role.
  name = "lemi-ecs-exec"
  role = aws_iam_role.task[each.key].id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Sid    = "EcsExec"
      Effect = "Allow"
      Action = [
        "ssmmessages:CreateControlChannel",
        "ssmmessages:CreateDataChannel",
        "ssmmessages:OpenControlChannel",
        "ssmmessages:OpenDataChannel",
      ]
      Resource = "*"
    }]
  })
}

resource "aws_iam_role_policy_attachment" "task" {
  for_each = {
    for pair in setproduct(keys(local.environments), var.task_role_policy_arns) :
    "${pair[0]} ${pair[1]}" => { env = pair[0], policy_arn = pair[1] }
  }

  role       = aws_iam_role.task[each.value.env].name
  policy_arn = each.value.policy_arn
}

# The role EventBridge Scheduler assumes to run the schedules lemi keeps in the
# group <name>-<env> (spec.schedules): it may run this service's task
# definitions in the environment's cluster, pass its two roles to ECS, and tag
# the tasks it starts (they carry the task definition's tags).
resource "aws_iam_role" "scheduler" {
  for_each = local.environments

  name        = "${var.name}-${each.key}-scheduler"
  description = "EventBridge Scheduler role of ${var.name} (${each.key}): runs the service's scheduled tasks. Managed by lemi's ecs-service module."
  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { Service = "scheduler.amazonaws.com" }
      Action    = "sts:AssumeRole"
      Condition = {
        StringEquals = { "aws:SourceAccount" = local.account_id }
        ArnLike      = { "aws:SourceArn" = "arn:${local.partition}:scheduler:${local.region}:${local.account_id}:schedule/${var.name}-${each.key}/*" }
      }
    }]
  })
  max_session_duration = 3600

  tags = merge(local.tags, { "environment" = each.key })
}

resource "aws_iam_role_policy" "scheduler" {
  for_each = local.environments

  name = "lemi-scheduler"
  role = aws_iam_role.scheduler[each.key].id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid      = "RunTasks"
        Effect   = "Allow"
        Action   = ["ecs:RunTask"]
        Resource = ["arn:${local.partition}:ecs:${local.region}:${local.account_id}:task-definition/${var.name}-${each.key}:*"]
        Condition = {
          ArnEquals = { "ecs:cluster" = each.value.cluster_arn }
        }
      },
      {
        Sid      = "TagTasks"
        Effect   = "Allow"
        Action   = ["ecs:TagResource"]
        Resource = "*"
        Condition = {
          StringEquals = { "ecs:CreateAction" = "RunTask" }
        }
      },
      {
        Sid      = "PassTaskRoles"
        Effect   = "Allow"
        Action   = ["iam:PassRole"]
        Resource = [aws_iam_role.execution[each.key].arn, aws_iam_role.task[each.key].arn]
        Condition = {
          StringEquals = { "iam:PassedToService" = "ecs-tasks.amazonaws.com" }
        }
      },
    ]
  })
}

# ---------------------------------------------------------------------------
# Network: the tasks' security group (HTTP on 8080 from the ALB only)
# ---------------------------------------------------------------------------

resource "aws_security_group" "this" {
  for_each = local.environments

  name        = "${var.name}-${each.key}"
  description = "Tasks of ${var.name} (${each.key}): HTTP on ${local.port} from the internal load balancer"
  vpc_id      = each.value.vpc_id

  tags = merge(local.tags, { "environment" = each.key, "Name" = "${var.name}-${each.key}" })
}

resource "aws_vpc_security_group_ingress_rule" "from_load_balancer" {
  for_each = local.environments

  security_group_id            = aws_security_group.this[each.key].id
  description                  = "HTTP from the internal load balancer"
  referenced_security_group_id = each.value.load_balancer_security_group_id
  ip_protocol                  = "tcp"
  from_port                    = local.port
  to_port                      = local.port

  tags = merge(local.tags, { "environment" = each.key })
}

resource "aws_vpc_security_group_egress_rule" "all" {
  for_each = local.environments

  # images, AWS APIs (secrets, ECS Exec), Datadog intake, the service's own dependencies
  security_group_id = aws_security_group.this[each.key].id
  description       = "All outbound"
  cidr_ipv4         = "0.0.0.0/0"
  ip_protocol       = "-1"

  tags = merge(local.tags, { "environment" = each.key })
}

# ---------------------------------------------------------------------------
# Load balancing: a target group and a host rule on the environment's internal
# ALB listener for <name>-internal.<env>.<domain> (the platform's wildcard DNS
# record and certificate *.<env>.<domain> point that name at the ALB).
# ---------------------------------------------------------------------------

resource "aws_lb_target_group" "this" {
  for_each = local.environments

  name                 = local.target_group_names[each.key]
  port                 = local.port
  protocol             = "HTTP"
  target_type          = "ip" # Fargate tasks (awsvpc)
  vpc_id               = each.value.vpc_id
  deregistration_delay = var.deregistration_delay

  health_check {
    enabled             = true
    path                = var.health_check_path
    port                = "traffic-port"
    protocol            = "HTTP"
    matcher             = "200-399"
    interval            = 15
    timeout             = 5
    healthy_threshold   = 2
    unhealthy_threshold = 3
  }

  tags = merge(local.tags, { "environment" = each.key })
}

resource "aws_lb_listener_rule" "this" {
  for_each = local.environments

  # no priority: the provider takes the next free one on the listener
  listener_arn = each.value.listener_arn

  action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.this[each.key].arn
  }

  condition {
    host_header {
      values = ["${var.name}-internal.${each.key}.${var.domain}"]
    }
  }

  tags = merge(local.tags, { "environment" = each.key })
}

# ---------------------------------------------------------------------------
# ECS: the first task definition revision and the service
# ---------------------------------------------------------------------------

resource "aws_ecs_task_definition" "this" {
  for_each = local.environments

  family                   = "${var.name}-${each.key}"
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = tostring(var.cpu)
  memory                   = tostring(var.memory)
  execution_role_arn       = aws_iam_role.execution[each.key].arn
  task_role_arn            = aws_iam_role.task[each.key].arn

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = "X86_64"
  }

  # A placeholder that answers the health check until lemi's first deploy
  # replaces it with <image>:<sha> (lemi compiles every later revision).
  container_definitions = jsonencode([{
    name         = var.name
    image        = var.bootstrap_image
    essential    = true
    command      = local.bootstrap_command
    portMappings = [{ containerPort = local.port, hostPort = local.port, protocol = "tcp" }]
    logConfiguration = {
      logDriver = "awslogs"
      options = {
        "awslogs-group"         = aws_cloudwatch_log_group.this[each.key].name
        "awslogs-region"        = local.region
        "awslogs-stream-prefix" = "bootstrap"
      }
    }
  }])

  # lemi registers the revisions of this family: read the newest ACTIVE one
  # instead of the one created here (so `lemi service prune` deregistering it
  # does not make Terraform register a placeholder again), and never change it.
  # skip_destroy: removing the service leaves this family's revisions
  # registered, like every revision lemi registered in it.
  track_latest = true
  skip_destroy = true

  lifecycle {
    ignore_changes = all
  }

  # No lemi:deployed-at tag here: lemi tags a revision it registered with the
  # time its rollout completed, and a rollback returns only to a revision that
  # carries one, so no rollback ever lands on this placeholder.
  tags = merge(local.tags, { "environment" = each.key })
}

resource "aws_ecs_service" "this" {
  for_each = local.environments

  name                              = var.name
  cluster                           = each.value.cluster_arn
  task_definition                   = aws_ecs_task_definition.this[each.key].arn
  desired_count                     = var.desired_count
  launch_type                       = "FARGATE"
  platform_version                  = "LATEST"
  enable_execute_command            = true
  health_check_grace_period_seconds = var.health_check_grace_period_seconds
  propagate_tags                    = "SERVICE"
  enable_ecs_managed_tags           = true
  wait_for_steady_state             = false

  deployment_minimum_healthy_percent = 100
  deployment_maximum_percent         = 200

  # A deploy whose tasks do not become healthy fails and ECS rolls back to the
  # last revision that was; lemi reports it as failed (bot/aws/deploy.py).
  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }

  network_configuration {
    subnets          = each.value.subnet_ids
    security_groups  = [aws_security_group.this[each.key].id]
    assign_public_ip = each.value.assign_public_ip
  }

  load_balancer {
    target_group_arn = aws_lb_target_group.this[each.key].arn
    container_name   = var.name
    container_port   = local.port
  }

  lifecycle {
    # lemi's deploys set these; an apply must not undo them.
    ignore_changes = [task_definition, desired_count]
  }

  tags = merge(local.tags, { "environment" = each.key })

  # ECS refuses a target group that no listener forwards to yet.
  depends_on = [aws_lb_listener_rule.this, aws_iam_role_policy.execution]
}
