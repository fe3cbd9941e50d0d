# lemi itself on ECS Fargate: replicas of lemi's image (`lemi serve --with-worker`)
# behind an ALB rule for /webhook, sharing one SQS FIFO job queue (with its
# dead-letter queue) and one DynamoDB table (delivery ids, environment locks,
# watched rollouts), with the App's private key and webhook secret in Secrets
# Manager. README.md in this directory says how to use it.
#
#   ECS service, task family, container   <name>, <name>, lemi (HTTP on 8080)
#   SQS                                   <name>.fifo, dead-letter <name>-dead.fifo
#   DynamoDB                              <name>-deliveries (key id, TTL on expires)
#   secrets                               <name>/github-app-private-key, <name>/github-webhook-secret
#   IAM roles                             <name>-execution, <name>-task
#   log group                             /ecs/<name>

data "aws_caller_identity" "current" {}

data "aws_region" "current" {}

data "aws_partition" "current" {}

locals {
  port       = 8080
  container  = "lemi"
  account_id = data.aws_caller_identity.current.account_id
  region     = data.aws_region.current.name
  partition  = data.aws_partition.current.partition
  tags       = merge(var.tags, { "managed-by" = "lemi", "service" = var.name })

  # what bot/store/backends.py opens: every replica on one queue and one table
  lemi_queue = "sqs://${aws_sqs_queue.jobs.url}?dedupe_table=${aws_dynamodb_table.deliveries.name}"
}

# ---------------------------------------------------------------------------
# The job queue: SQS FIFO, with a FIFO dead-letter queue as its RedrivePolicy
# ---------------------------------------------------------------------------

resource "aws_sqs_queue" "dead" {
  name                      = "${var.name}-dead.fifo"
  fifo_queue                = true
  message_retention_seconds = 1209600 # 14 days, SQS's longest: time to read what failed
  sqs_managed_sse_enabled   = true

  tags = local.tags
}

resource "aws_sqs_queue" "jobs" {
  name       = "${var.name}.fifo"
  fifo_queue = true
  # lemi sets each message's deduplication id (the delivery id) and group (the job's concurrency key)
  content_based_deduplication = false
  deduplication_scope         = "messageGroup"
  fifo_throughput_limit       = "perMessageGroupId"
  message_retention_seconds   = 1209600
  visibility_timeout_seconds  = var.lease_seconds # lemi sets it per message; this is the default
  receive_wait_time_seconds   = 20
  sqs_managed_sse_enabled     = true

  redrive_policy = jsonencode({
    deadLetterTargetArn = aws_sqs_queue.dead.arn
    maxReceiveCount     = var.max_receive_count
  })

  tags = local.tags
}

resource "aws_sqs_queue_redrive_allow_policy" "dead" {
  queue_url = aws_sqs_queue.dead.id
  redrive_allow_policy = jsonencode({
    redrivePermission = "byQueue"
    sourceQueueArns   = [aws_sqs_queue.jobs.arn]
  })
}

# ---------------------------------------------------------------------------
# The table: delivery ids (id = <delivery>, expires = TTL), locks (id = lock#<repo>#<env>)
# and watched rollouts (id = watch#<id>, the index id = watches); one string key, id
# ---------------------------------------------------------------------------

resource "aws_dynamodb_table" "deliveries" {
  name         = "${var.name}-deliveries"
  billing_mode = "PAY_PER_REQUEST"
  hash_key     = "id"

  attribute {
    name = "id"
    type = "S"
  }

  ttl {
    attribute_name = "expires"
    enabled        = true
  }

  point_in_time_recovery {
    enabled = true
  }

  server_side_encryption {
    enabled = true
  }

  deletion_protection_enabled = true

  tags = local.tags
}

# ---------------------------------------------------------------------------
# The App's credentials. Terraform creates the secrets, not their values, so the
# key never enters the state: put them once with
#   aws secretsmanager put-secret-value --secret-id <name>/github-app-private-key --secret-string file://app.pem
#   aws secretsmanager put-secret-value --secret-id <name>/github-webhook-secret --secret-string '<secret>'
# ---------------------------------------------------------------------------

resource "aws_secretsmanager_secret" "private_key" {
  name                    = "${var.name}/github-app-private-key"
  description             = "The GitHub App's private key (PEM) for ${var.name}: GITHUB_APP_PRIVATE_KEY."
  recovery_window_in_days = var.secret_recovery_window_days

  tags = local.tags
}

resource "aws_secretsmanager_secret" "webhook_secret" {
  name                    = "${var.name}/github-webhook-secret"
  description             = "The GitHub App's webhook secret for ${var.name}: GITHUB_WEBHOOK_SECRET."
  recovery_window_in_days = var.secret_recovery_window_days

  tags = local.tags
}

# ---------------------------------------------------------------------------
# Logs
# ---------------------------------------------------------------------------

resource "aws_cloudwatch_log_group" "this" {
  name              = "/ecs/${var.name}"
  retention_in_days = var.log_retention_days

  tags = local.tags
}

# ---------------------------------------------------------------------------
# The service
# ---------------------------------------------------------------------------

resource "aws_ecs_task_definition" "this" {
  family                   = var.name
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = var.cpu
  memory                   = var.memory
  execution_role_arn       = aws_iam_role.execution.arn
  task_role_arn            = aws_iam_role.task.arn

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = "X86_64"
  }

  container_definitions = jsonencode([{
    name      = local.container
    image     = var.image
    essential = true
    portMappings = [{
      containerPort = local.port
      protocol      = "tcp"
    }]
    environment = [
      for k, v in merge(var.environment, {
        GITHUB_APP_ID      = var.github_app_id
        GITHUB_API_URL     = var.github_api_url
        LEMI_CONFIG        = var.lemi_config
        LEMI_QUEUE         = local.lemi_queue
        LEMI_WORKERS       = tostring(var.workers)
        LEMI_LEASE_SECONDS = tostring(var.lease_seconds)
        AWS_REGION         = local.region
        HOST               = "0.0.0.0"
        PORT               = tostring(local.port)
      }) : { name = k, value = v }
    ]
    # ECS reads the values with the execution role and sets them in the container
    secrets = [
      { name = "GITHUB_APP_PRIVATE_KEY", valueFrom = aws_secretsmanager_secret.private_key.arn },
      { name = "GITHUB_WEBHOOK_SECRET", valueFrom = aws_secretsmanager_secret.webhook_secret.arn },
    ]
    healthCheck = {
      command     = ["CMD", "python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:${local.port}/healthz', timeout=4)"]
      interval    = 30
      timeout     = 5
      retries     = 3
      startPeriod = 30
    }
    # SIGTERM, then this long for running jobs to finish or give back their lease
    stopTimeout = 30
    logConfiguration = {
      logDriver = "awslogs"
      options = {
        awslogs-group         = aws_cloudwatch_log_group.this.name
        awslogs-region        = local.region
        awslogs-stream-prefix = local.container
      }
    }
  }])

  tags = local.tags
}

resource "aws_security_group" "this" {
  name        = var.name
  description = "lemi's tasks: the load balancer on 8080 in, GitHub and the AWS APIs out."
  vpc_id      = var.vpc_id

  tags = local.tags
}

resource "aws_vpc_security_group_ingress_rule" "from_load_balancer" {
  security_group_id            = aws_security_group.this.id
  referenced_security_group_id = var.load_balancer_security_group_id
  ip_protocol                  = "tcp"
  from_port                    = local.port
  to_port                      = local.port
  description                  = "the load balancer, to lemi's port"

  tags = local.tags
}

resource "aws_vpc_security_group_egress_rule" "https_out" {
  security_group_id = aws_security_group.this.id
  cidr_ipv4         = "0.0.0.0/0"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  description       = "GitHub's API and the AWS APIs (HTTPS)"

  tags = local.tags
}

resource "aws_lb_target_group" "this" {
  name                 = var.name
  port                 = local.port
  protocol             = "HTTP"
  target_type          = "ip"
  vpc_id               = var.vpc_id
  deregistration_delay = 30

  # liveness: 200 while the process serves (its body says whether the App is configured)
  health_check {
    path                = "/healthz"
    matcher             = "200"
    interval            = 15
    timeout             = 5
    healthy_threshold   = 2
    unhealthy_threshold = 3
  }

  tags = local.tags
}

# Only /webhook reaches lemi from the internet-facing listener: /healthz is for the
# target group's check, /metrics for a scraper inside the VPC.
resource "aws_lb_listener_rule" "webhook" {
  listener_arn = var.listener_arn
  priority     = var.listener_rule_priority

  action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.this.arn
  }

  condition {
    path_pattern {
      values = ["/webhook"]
    }
  }

  dynamic "condition" {
    for_each = var.host_header == null ? [] : [var.host_header]
    content {
      host_header {
        values = [condition.value]
      }
    }
  }

  tags = local.tags
}

resource "aws_ecs_service" "this" {
  name            = var.name
  cluster         = var.cluster_arn
  task_definition = aws_ecs_task_definition.this.arn
  desired_count   = var.desired_count
  launch_type     = "FARGATE"

  # one new replica at a time: the others keep taking webhooks and jobs
  deployment_minimum_healthy_percent = 100
  deployment_maximum_percent         = 200
  health_check_grace_period_seconds  = 30

  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }

  network_configuration {
    subnets          = var.subnet_ids
    security_groups  = [aws_security_group.this.id]
    assign_public_ip = false
  }

  load_balancer {
    target_group_arn = aws_lb_target_group.this.arn
    container_name   = local.container
    container_port   = local.port
  }

  depends_on = [aws_lb_listener_rule.webhook]

  tags = local.tags
}
