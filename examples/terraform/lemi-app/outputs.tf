output "lemi_queue" {
  description = "LEMI_QUEUE of every replica (set in the task definition)."
  value       = local.lemi_queue
}

output "queue_url" {
  description = "The SQS FIFO job queue."
  value       = aws_sqs_queue.jobs.url
}

output "dead_letter_queue_url" {
  description = "Its dead-letter queue: jobs that failed for good, with the reason."
  value       = aws_sqs_queue.dead.url
}

output "table_name" {
  description = "The DynamoDB table of delivery ids, locks and watched rollouts."
  value       = aws_dynamodb_table.deliveries.name
}

output "private_key_secret_arn" {
  description = "Put the App's PEM key here (aws secretsmanager put-secret-value)."
  value       = aws_secretsmanager_secret.private_key.arn
}

output "webhook_secret_arn" {
  description = "Put the App's webhook secret here."
  value       = aws_secretsmanager_secret.webhook_secret.arn
}

output "task_role_arn" {
  description = "lemi's identity: the principal to trust in each environment's deployer role (lemi.yml role_arn)."
  value       = aws_iam_role.task.arn
}

output "service_name" {
  description = "lemi's ECS service."
  value       = aws_ecs_service.this.name
}

output "target_group_arn" {
  description = "The target group behind the /webhook rule."
  value       = aws_lb_target_group.this.arn
}

output "log_group" {
  description = "lemi's logs (JSON lines)."
  value       = aws_cloudwatch_log_group.this.name
}
