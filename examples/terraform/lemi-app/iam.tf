# IAM: the execution role (ECS itself: pull the image, write logs, read the two
# secrets into the container) and the task role (lemi: its queue and table, and
# what it does in the environments it deploys to).

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
  name               = "${var.name}-execution"
  description        = "ECS task execution role of lemi (${var.name}): pulls its image, writes its logs, reads the App's two secrets."
  assume_role_policy = local.ecs_tasks_trust

  tags = local.tags
}

resource "aws_iam_role_policy_attachment" "execution" {
  role       = aws_iam_role.execution.name
  policy_arn = "arn:${local.partition}:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy"
}

resource "aws_iam_role_policy" "execution_secrets" {
  name = "lemi-app-secrets"
  role = aws_iam_role.execution.id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Sid      = "AppSecrets"
      Effect   = "Allow"
      Action   = ["secretsmanager:GetSecretValue"]
      Resource = [aws_secretsmanager_secret.private_key.arn, aws_secretsmanager_secret.webhook_secret.arn]
    }]
  })
}

resource "aws_iam_role" "task" {
  name               = "${var.name}-task"
  description        = "lemi (${var.name}): its SQS queue and DynamoDB table, and the deployer policy or the deployer roles of its environments."
  assume_role_policy = local.ecs_tasks_trust

  tags = local.tags
}

# the queue policy of docs/iam.md: the SQS and DynamoDB calls lemi makes
resource "aws_iam_role_policy" "queue" {
  name = "lemi-queue"
  role = aws_iam_role.task.id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid    = "JobQueue"
        Effect = "Allow"
        Action = [
          "sqs:ChangeMessageVisibility",
          "sqs:DeleteMessage",
          "sqs:GetQueueAttributes",
          "sqs:GetQueueUrl",
          "sqs:ReceiveMessage",
          "sqs:SendMessage",
        ]
        Resource = [aws_sqs_queue.jobs.arn, aws_sqs_queue.dead.arn]
      },
      {
        Sid    = "DeliveriesAndLocks"
        Effect = "Allow"
        Action = [
          "dynamodb:BatchGetItem",
          "dynamodb:DeleteItem",
          "dynamodb:GetItem",
          "dynamodb:PutItem",
          "dynamodb:UpdateItem",
        ]
        Resource = aws_dynamodb_table.deliveries.arn
      },
    ]
  })
}

# README.md's "Deployer IAM policy" (deployer-policy.json.tftpl is its copy, held
# to it by a test), for the clusters of this account lemi deploys to directly
resource "aws_iam_role_policy" "deployer" {
  count = length(var.deployed_cluster_arns) > 0 ? 1 : 0

  name = "lemi-deployer"
  role = aws_iam_role.task.id
  policy = templatefile("${path.module}/deployer-policy.json.tftpl", {
    account_id   = local.account_id
    cluster_arns = jsonencode(var.deployed_cluster_arns)
  })
}

# environments in other accounts: their lemi.yml role_arn, which carries the deployer policy there
resource "aws_iam_role_policy" "assume_deployer_roles" {
  count = length(var.deployer_role_arns) > 0 ? 1 : 0

  name = "lemi-assume-deployer-roles"
  role = aws_iam_role.task.id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Sid      = "AssumeDeployerRoles"
      Effect   = "Allow"
      Action   = ["sts:AssumeRole"]
      Resource = var.deployer_role_arns
    }]
  })
}
