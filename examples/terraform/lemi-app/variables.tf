variable "name" {
  description = "Name of lemi's ECS service, and the prefix of its queue, table, secrets, roles and log group."
  type        = string
  default     = "lemi"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,22}$", var.name))
    error_message = "name: lowercase letters, digits and '-', starting with a letter, at most 23 characters (it prefixes the target group's 32)."
  }
}

variable "image" {
  description = "lemi's image (the Dockerfile at lemi's repository root), by digest or tag: <registry>/<repository>@sha256:... or :<tag>."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9._/:-]*(@sha256:[0-9a-f]{64}|:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})$", var.image))
    error_message = "image: an image reference with a tag or an @sha256 digest, e.g. 111111111111.dkr.ecr.us-east-1.amazonaws.com/lemi@sha256:<64 hex>."
  }
}

variable "github_app_id" {
  description = "The GitHub App's id (its settings page: App ID). The private key and webhook secret are Secrets Manager secrets of this module."
  type        = string

  validation {
    condition     = can(regex("^[0-9]{1,12}$", var.github_app_id))
    error_message = "github_app_id: the App's numeric id, from its settings page."
  }
}

variable "github_api_url" {
  description = "GitHub's API URL (GitHub Enterprise Server: https://HOST/api/v3)."
  type        = string
  default     = "https://api.github.com"

  validation {
    condition     = can(regex("^https://[^\\s]+$", var.github_api_url))
    error_message = "github_api_url: an https:// URL."
  }
}

variable "lemi_config" {
  description = "LEMI_CONFIG: where lemi reads lemi.yml. The default is a file in the image's working directory (an image built FROM lemi's with lemi.yml copied in)."
  type        = string
  default     = "/var/lib/lemi/lemi.yml"
}

variable "cluster_arn" {
  description = "ARN of the ECS cluster lemi itself runs in."
  type        = string

  validation {
    condition     = can(regex("^arn:aws[a-z-]*:ecs:[a-z0-9-]+:[0-9]{12}:cluster/[A-Za-z0-9_-]{1,255}$", var.cluster_arn))
    error_message = "cluster_arn: arn:aws:ecs:<region>:<account>:cluster/<name>."
  }
}

variable "vpc_id" {
  description = "VPC of lemi's tasks and of the load balancer."
  type        = string
}

variable "subnet_ids" {
  description = "Private subnets for lemi's tasks; they need a way out to GitHub and the AWS APIs (NAT or endpoints)."
  type        = list(string)

  validation {
    condition     = length(var.subnet_ids) > 0
    error_message = "subnet_ids: at least one subnet."
  }
}

variable "listener_arn" {
  description = "HTTPS listener of the internet-facing load balancer GitHub reaches; a rule for /webhook is added to it."
  type        = string
}

variable "load_balancer_security_group_id" {
  description = "Security group of that load balancer: lemi's tasks admit it on 8080."
  type        = string
}

variable "listener_rule_priority" {
  description = "Priority of the /webhook rule on the listener (unique on that listener)."
  type        = number
  default     = 100
}

variable "host_header" {
  description = "Also match this host name in the /webhook rule (the App's webhook URL is https://<host_header>/webhook); null matches any host."
  type        = string
  default     = null
}

variable "desired_count" {
  description = "Replicas. Each takes webhooks and works jobs from the one SQS FIFO queue."
  type        = number
  default     = 2

  validation {
    condition     = var.desired_count >= 1
    error_message = "desired_count: at least 1."
  }
}

variable "cpu" {
  description = "Fargate CPU units of a replica."
  type        = number
  default     = 512
}

variable "memory" {
  description = "Fargate memory (MiB) of a replica."
  type        = number
  default     = 1024
}

variable "workers" {
  description = "LEMI_WORKERS: workers in each replica."
  type        = number
  default     = 4
}

variable "lease_seconds" {
  description = "LEMI_LEASE_SECONDS: a job's lease, its message's visibility timeout, extended while it runs. Keep it well above any pause a replica may have."
  type        = number
  default     = 120
}

variable "max_receive_count" {
  description = "Receives of one message before SQS moves it to the dead-letter queue. Above lemi's attempts (one more than LEMI_RETRY_DELAYS has delays): lemi copies a job that fails for good there itself, with the reason."
  type        = number
  default     = 20

  validation {
    condition     = var.max_receive_count >= 7
    error_message = "max_receive_count: at least 7, more than lemi's 6 attempts of a job."
  }
}

variable "deployed_cluster_arns" {
  description = "Clusters of this account that lemi deploys to directly (environments of lemi.yml without role_arn): the task role gets the deployer policy on them. Empty: no deployer policy here."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for arn in var.deployed_cluster_arns : can(regex("^arn:aws[a-z-]*:ecs:[a-z0-9*-]+:[0-9]{12}:cluster/[A-Za-z0-9_-]{1,255}$", arn))])
    error_message = "deployed_cluster_arns: cluster ARNs, arn:aws:ecs:<region>:<account>:cluster/<name>."
  }
}

variable "deployer_role_arns" {
  description = "The role_arn of each environment of lemi.yml in another account: the task role may assume them (each carries the deployer policy in its account)."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for arn in var.deployer_role_arns : can(regex("^arn:aws[a-z-]*:iam::[0-9]{12}:role/[\\w+=,.@/-]{1,512}$", arn))])
    error_message = "deployer_role_arns: IAM role ARNs, arn:aws:iam::<account>:role/<name>."
  }
}

variable "environment" {
  description = "More environment variables for lemi (docs/configuration.md), e.g. LEMI_REDELIVER_INTERVAL_SECONDS. Never a secret: those are Secrets Manager secrets."
  type        = map(string)
  default     = {}

  validation {
    condition     = alltrue([for k in keys(var.environment) : !can(regex("SECRET|PRIVATE_KEY|TOKEN|PASSWORD", k))])
    error_message = "environment: a secret does not belong in a plain environment variable; the App's key and webhook secret are this module's Secrets Manager secrets."
  }
}

variable "log_retention_days" {
  description = "Retention of lemi's log group."
  type        = number
  default     = 30
}

variable "secret_recovery_window_days" {
  description = "Days a deleted secret can still be restored (0 deletes at once)."
  type        = number
  default     = 7
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}
