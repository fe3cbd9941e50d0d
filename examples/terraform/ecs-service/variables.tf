# ---------------------------------------------------------------------------
# The contract: exactly the attributes of the block lemi renders into the infra
# repository (templates/terraform/service.tf.j2). Every rule below mirrors the
# one lemi enforces (bot/names.py, bot/fargate.py), so a block lemi proposes is
# always accepted and a hand-written one is held to the same names.
# Terraform's regex is RE2 (no look-ahead): length limits are separate checks.
# ---------------------------------------------------------------------------

variable "name" {
  description = "Service name: the repository's name, or <repo>-<suffix> for an extra service of that repository. Names the ECS service, and with the environment the task definition family, roles, log group, target group and security group."
  type        = string
  nullable    = false

  validation {
    condition     = can(regex("^[a-z](?:[a-z0-9]|-[a-z0-9])*$", var.name)) && length(var.name) <= 32
    error_message = "name must be lowercase letters, digits and single hyphens, start with a letter, not end with a hyphen, and be at most 32 characters (lemi's service name rule)."
  }

  validation {
    condition = (
      var.name == lower(element(split("/", var.repository), 1)) ||
      startswith(var.name, "${lower(element(split("/", var.repository), 1))}-")
    )
    error_message = "name must be the repository's name or <repository>-<suffix> (lemi names a service after its repository)."
  }
}

variable "owner" {
  description = "Owning team (a slug): the owner tag of every resource."
  type        = string
  nullable    = false

  validation {
    condition     = can(regex("^[a-z0-9](?:[a-z0-9_-]{0,62}[a-z0-9])?$", var.owner))
    error_message = "owner must be a team slug: lowercase letters, digits, - and _, at most 64 characters, starting and ending with a letter or digit."
  }
}

variable "repository" {
  description = "The service's GitHub repository, owner/name (tagged on every resource; the repository whose build workflow pushes the image)."
  type        = string
  nullable    = false

  validation {
    condition     = can(regex("^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})/[A-Za-z0-9._-]{1,100}$", var.repository))
    error_message = "repository must be a GitHub repository written owner/name, e.g. acme/demo-service."
  }
}

variable "image" {
  description = "ECR repository name of the service's image (lemi deploys <account>.dkr.ecr.<region>.amazonaws.com/<image>:<commit sha>)."
  type        = string
  nullable    = false

  validation {
    condition = (
      can(regex("^(?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*$", var.image)) &&
      length(var.image) >= 2 && length(var.image) <= 256
    )
    error_message = "image must be a valid ECR repository name: lowercase letters, digits and . _ - / (2 to 256 characters), e.g. demo-service."
  }
}

variable "cpu" {
  description = "CPU units of the initial task definition (1024 = 1 vCPU). lemi sets the size of every revision it deploys."
  type        = number
  nullable    = false

  validation {
    condition     = contains([256, 512, 1024, 2048, 4096, 8192, 16384], var.cpu)
    error_message = "cpu must be a Fargate CPU size: 256, 512, 1024, 2048, 4096, 8192 or 16384 (1024 = 1 vCPU)."
  }
}

variable "memory" {
  description = "Memory (MiB) of the initial task definition; must go with cpu (Fargate task sizes)."
  type        = number
  nullable    = false

  validation {
    # the table of bot/fargate.py (the "Task size" table of the ECS developer guide)
    condition = contains(lookup({
      "256"   = [512, 1024, 2048]
      "512"   = range(1024, 4097, 1024)
      "1024"  = range(2048, 8193, 1024)
      "2048"  = range(4096, 16385, 1024)
      "4096"  = range(8192, 30721, 1024)
      "8192"  = range(16384, 61441, 4096)
      "16384" = range(32768, 122881, 8192)
    }, tostring(var.cpu), []), var.memory)
    error_message = "memory does not go with cpu on Fargate: with 256 cpu use 512-2048; 512: 1024-4096; 1024: 2048-8192; 2048: 4096-16384 (steps of 1024); 4096: 8192-30720 (1024); 8192: 16384-61440 (4096); 16384: 32768-122880 (8192)."
  }
}

variable "desired_count" {
  description = "Tasks the service starts with. After creation lemi owns it (every deploy sets the count of the service's files), so Terraform ignores later changes."
  type        = number
  nullable    = false

  validation {
    condition     = var.desired_count >= 0 && var.desired_count <= 5000 && floor(var.desired_count) == var.desired_count
    error_message = "desired_count must be a whole number from 0 to 5000."
  }
}

variable "environments" {
  description = "lemi's environment names (the keys of lemi.yml's environments), e.g. [\"staging\", \"prod\"]. The module makes one copy of the service per environment that lives in this provider's account and region (see platform)."
  type        = list(string)
  nullable    = false

  validation {
    condition     = length(var.environments) > 0 && alltrue([for env in var.environments : can(regex("^[a-z][a-z0-9]{0,9}$", env))])
    error_message = "environments must be a non-empty list of lemi environment names: 1-10 lowercase letters and digits, starting with a letter (e.g. staging)."
  }

  validation {
    condition     = length(distinct(var.environments)) == length(var.environments)
    error_message = "environments must not name an environment twice."
  }
}

variable "domain" {
  description = "lemi.yml's domain: the internal URL of the service is https://<name>-internal.<environment>.<domain>."
  type        = string
  nullable    = false

  validation {
    condition = (
      can(regex("^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$", var.domain)) &&
      length(var.domain) <= 200
    )
    error_message = "domain must be a lowercase DNS name (labels of letters, digits and hyphens, at most 200 characters), e.g. lemon or example.com."
  }
}

# ---------------------------------------------------------------------------
# The platform: what the infra team's own stacks already made for each
# environment. lemi's block does not carry it: set this default once in your
# copy of the module (so lemi's rendered blocks apply unchanged), or pass
# `platform = local.platform` in each service's block. See README.md.
# ---------------------------------------------------------------------------

variable "platform" {
  description = "Per lemi environment: the account and region it lives in (the same as lemi.yml's account_id and region), and the ECS cluster, VPC, private subnets, internal ALB's HTTPS listener and that ALB's security group. Only the environments whose account_id and region are those of this module's AWS provider are created by this apply; the others belong to another account's apply (see README.md)."
  type = map(object({
    account_id                      = string
    region                          = string
    cluster_arn                     = string
    vpc_id                          = string
    subnet_ids                      = list(string)
    listener_arn                    = string
    load_balancer_security_group_id = string
    assign_public_ip                = optional(bool, false)
  }))
  nullable = false
  default  = {}

  validation {
    condition     = alltrue([for env in var.environments : contains(keys(var.platform), env)])
    error_message = "platform has no entry for environment(s) ${join(", ", [for env in var.environments : env if !contains(keys(var.platform), env)])}: give every environment of lemi.yml its account_id, region, cluster_arn, vpc_id, subnet_ids, listener_arn and load_balancer_security_group_id (set the default of platform in this module, or pass platform in the block)."
  }

  validation {
    condition = alltrue([
      for p in values(var.platform) :
      can(regex("^\\d{12}$", p.account_id)) && can(regex("^[a-z]{2}(?:-gov|-iso[a-z]*)?-[a-z]+-\\d$", p.region)) && length(p.subnet_ids) > 0
    ])
    error_message = "every platform entry needs a twelve-digit account_id, an AWS region (e.g. us-east-1) and at least one subnet id."
  }
}

# ---------------------------------------------------------------------------
# Tunables, with defaults that suit lemi's conventions.
# ---------------------------------------------------------------------------

variable "health_check_path" {
  description = "Path the load balancer checks on port 8080. lemi's conventions fix the port (8080) and the metrics path (/metrics) but not a health path: /healthz is the default, the service must answer it with a 2xx or 3xx without authentication."
  type        = string
  default     = "/healthz"
  nullable    = false

  validation {
    condition     = can(regex("^/(?:[A-Za-z0-9_~-][A-Za-z0-9._~-]*(?:/[A-Za-z0-9_~-][A-Za-z0-9._~-]*)*)?$", var.health_check_path)) && length(var.health_check_path) <= 1024
    error_message = "health_check_path must be an absolute path of letters, digits and . _ ~ - segments, e.g. /healthz (no query string, no trailing slash)."
  }
}

variable "health_check_grace_period_seconds" {
  description = "Seconds the ECS scheduler ignores failing load balancer health checks of a new task."
  type        = number
  default     = 60
  nullable    = false
}

variable "deregistration_delay" {
  description = "Seconds the target group drains a task before deregistering it."
  type        = number
  default     = 30
  nullable    = false
}

variable "log_retention_days" {
  description = "Retention of the /ecs/<name>-<env> log group (the Datadog agent's and log router's own logs, and the service's logs where lemi.yml has logs: cloudwatch)."
  type        = number
  default     = 30
  nullable    = false
}

variable "create_ecr_repository" {
  description = "Create the ECR repository `image` in this account and region. null (the default) creates it when the service owns its image (image == name); an extra service that reuses its repository's image leaves it to that service."
  type        = bool
  default     = null
}

variable "ecr_max_images" {
  description = "Images the created ECR repository keeps (oldest expire first). Keep enough for `lemi service rollback` and `lemi deploy -t <old sha>`."
  type        = number
  default     = 500
  nullable    = false
}

variable "shared_secret_names" {
  description = "Secrets Manager secrets (names) every task of the service reads besides its own <name>/*: the Datadog API key lemi's task definitions reference (lemi.yml datadog.api_key_secret, default datadog/api-key)."
  type        = list(string)
  default     = ["datadog/api-key"]
  nullable    = false
}

variable "extra_secret_arns" {
  description = "More Secrets Manager secret or SSM parameter ARNs (wildcards allowed) the execution role may read, for environment files that reference secrets outside <name>/* and /<name>/*."
  type        = list(string)
  default     = []
  nullable    = false
}

variable "kms_key_arns" {
  description = "Customer-managed KMS keys that encrypt those secrets or parameters (kms:Decrypt for the execution role). Secrets under AWS-managed keys need none."
  type        = list(string)
  default     = []
  nullable    = false
}

variable "task_role_policy_arns" {
  description = "Managed policies attached to every environment's task role (what the application itself may do in AWS)."
  type        = list(string)
  default     = []
  nullable    = false
}

variable "bootstrap_image" {
  description = "Image of the task definition this module creates, which runs until lemi's first deploy. The default busybox answers the health check on port 8080, so the service is healthy (and a failed first deploy has something to roll back to) before the first image is built."
  type        = string
  default     = "public.ecr.aws/docker/library/busybox:stable"
  nullable    = false
}

variable "bootstrap_command" {
  description = "Command of the bootstrap container; null runs busybox's httpd answering health_check_path on port 8080. Set it when bootstrap_image is not busybox."
  type        = list(string)
  default     = null
}

variable "tags" {
  description = "More tags for every resource. lemi's own tags (service, owner, environment, repository, managed-by = lemi) win over these."
  type        = map(string)
  default     = {}
  nullable    = false
}
