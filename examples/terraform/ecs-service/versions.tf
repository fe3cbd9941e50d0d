terraform {
  # 1.9: input validations that refer to other variables (the Fargate cpu/memory
  # pair, the service name against its repository, a platform entry per environment).
  required_version = ">= 1.9.0"

  required_providers {
    aws = {
      source = "hashicorp/aws"
      # 5.37: aws_ecs_task_definition.track_latest, so the task definitions lemi
      # registers are never replaced or undone by `terraform apply`.
      version = ">= 5.37"
    }
  }
}
