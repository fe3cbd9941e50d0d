output "environments" {
  description = "The environments this apply manages (those whose platform entry is this provider's account and region)."
  value       = sort(keys(local.environments))
}

output "other_environments" {
  description = "The environments of the block that live in another account or region: another apply manages them."
  value       = sort([for env in var.environments : env if !contains(keys(local.environments), env)])
}

output "ecs_service_arns" {
  description = "Per environment: the ECS service <name> in the environment's cluster."
  value       = { for env, s in aws_ecs_service.this : env => s.id }
}

output "task_definition_families" {
  description = "Per environment: the task definition family lemi registers revisions in (<name>-<env>)."
  value       = { for env, t in aws_ecs_task_definition.this : env => t.family }
}

output "execution_role_arns" {
  description = "Per environment: <name>-<env>-execution."
  value       = { for env, r in aws_iam_role.execution : env => r.arn }
}

output "task_role_arns" {
  description = "Per environment: <name>-<env>-task (attach the application's own permissions to it)."
  value       = { for env, r in aws_iam_role.task : env => r.arn }
}

output "task_role_names" {
  description = "Per environment: the task role's name, for aws_iam_role_policy resources next to the module block."
  value       = { for env, r in aws_iam_role.task : env => r.name }
}

output "log_group_names" {
  description = "Per environment: /ecs/<name>-<env>."
  value       = { for env, g in aws_cloudwatch_log_group.this : env => g.name }
}

output "security_group_ids" {
  description = "Per environment: the tasks' security group (allow it into databases and caches the service uses)."
  value       = { for env, g in aws_security_group.this : env => g.id }
}

output "target_group_arns" {
  description = "Per environment: the target group behind the internal listener rule."
  value       = { for env, t in aws_lb_target_group.this : env => t.arn }
}

output "internal_urls" {
  description = "Per environment: https://<name>-internal.<env>.<domain> (what lemi reports on GitHub Deployments)."
  value       = { for env in keys(local.environments) : env => "https://${var.name}-internal.${env}.${var.domain}" }
}

output "ecr_repository_url" {
  description = "The image repository in this account and region (created here, or expected to exist when create_ecr_repository is false)."
  value       = "${local.account_id}.dkr.ecr.${local.region}.${data.aws_partition.current.dns_suffix}/${var.image}"
}

output "scheduler_role_arns" {
  description = "Per environment: <name>-<env>-scheduler, the role EventBridge Scheduler runs the service's schedules as."
  value       = { for env, r in aws_iam_role.scheduler : env => r.arn }
}
