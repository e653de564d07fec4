variable "name" {
  description = "Name of the service; prefixes every resource (ALB and target group names are cut to 32 characters)."
  type        = string

  validation {
    condition     = can(regex("^[a-zA-Z][a-zA-Z0-9-]{0,27}$", var.name))
    error_message = "The name must start with a letter, use letters, digits and '-', and be at most 28 characters."
  }
}

variable "image_id" {
  description = "The AMI every instance runs. Changing it creates a new launch template version and starts an instance refresh."
  type        = string

  validation {
    condition     = can(regex("^ami-[0-9a-f]{8,17}$", var.image_id))
    error_message = "The image_id must be an AMI id (ami-...)."
  }
}

variable "strategy" {
  description = "How a release reaches the fleet: rolling (one group, instance refresh) or blue_green (two groups behind weighted forwarding). Switching replaces the groups and target groups."
  type        = string
  default     = "rolling"

  validation {
    condition     = contains(["rolling", "blue_green"], var.strategy)
    error_message = "The strategy must be rolling or blue_green."
  }
}

variable "colors" {
  description = "Blue/green: each color's image, runtime_env and capacity (a color not given runs image_id with no instances)."
  type = map(object({
    image_id    = string
    capacity    = number
    runtime_env = map(string)
  }))
  default = {}

  validation {
    condition     = alltrue([for c in keys(var.colors) : contains(["blue", "green"], c)])
    error_message = "The colors are blue and green."
  }
}

variable "live_color" {
  description = "Blue/green: the color users are served by (the weights say how much)."
  type        = string
  default     = "blue"

  validation {
    condition     = contains(["blue", "green"], var.live_color)
    error_message = "The live_color must be blue or green."
  }
}

variable "test_color" {
  description = "Blue/green: the color the test listener forwards to; null for the live color."
  type        = string
  default     = null
}

variable "weights" {
  description = "Blue/green: the users' listener's weight of each color (0-999); a color not given gets 100 when live, else 0."
  type        = map(number)
  default     = {}
}

variable "test_listener_port" {
  description = "Blue/green: port of the test listener, which forwards only to test_color."
  type        = number
  default     = 8081
}

variable "test_allowed_cidrs" {
  description = "Blue/green: who may reach the test listener; empty for the VPC's own range."
  type        = list(string)
  default     = []
}

variable "runtime_env" {
  description = "The environment's runtime configuration (runtime.env): written at first boot to runtime_env_file, never baked. A change is a new launch template version and a rolling refresh of the same AMI."
  type        = map(string)
  default     = {}
}

variable "runtime_env_file" {
  description = "Where the instance's user data writes runtime_env (the app's unit reads it after its baked defaults)."
  type        = string
  default     = "/etc/app/runtime.env"

  validation {
    condition     = can(regex("^(/[A-Za-z0-9._+-]+)+$", var.runtime_env_file))
    error_message = "The runtime_env_file must be an absolute path."
  }
}

variable "region" {
  description = "AWS region; null takes it from the environment (AWS_REGION)."
  type        = string
  default     = null
}

variable "instance_type" {
  description = "EC2 instance type of the fleet."
  type        = string
  default     = "t3.micro"
}

variable "min_size" {
  type    = number
  default = 2
}

variable "max_size" {
  type    = number
  default = 4
}

variable "desired_capacity" {
  type    = number
  default = 2
}

variable "min_healthy_percentage" {
  description = "Instance refresh: share of the desired capacity that must stay in service while instances are replaced."
  type        = number
  default     = 90

  validation {
    condition     = var.min_healthy_percentage >= 0 && var.min_healthy_percentage <= 100
    error_message = "The min_healthy_percentage must be between 0 and 100."
  }
}

variable "instance_warmup" {
  description = "Instance refresh: seconds a new instance gets before it counts as in service."
  type        = number
  default     = 60
}

variable "health_check_grace_period" {
  description = "Seconds the Auto Scaling group ignores ELB health after an instance starts."
  type        = number
  default     = 60
}

variable "app_port" {
  description = "Port the application listens on in each instance."
  type        = number
  default     = 8080
}

variable "health_check_path" {
  description = "HTTP path the target group checks; 200 means healthy."
  type        = string
  default     = "/healthz"
}

variable "health_check_interval" {
  description = "Seconds between the target groups' health checks of each target (ALB: 5 to 300)."
  type        = number
  default     = 10

  validation {
    condition     = var.health_check_interval >= 5 && var.health_check_interval <= 300
    error_message = "The health_check_interval must be between 5 and 300 seconds."
  }
}

variable "health_check_timeout" {
  description = "Seconds a health check may take before it counts as failed (2 to 120, below the interval; null: 5, or the interval minus one when that is less)."
  type        = number
  default     = null

  validation {
    condition     = var.health_check_timeout == null || (coalesce(var.health_check_timeout, 5) >= 2 && coalesce(var.health_check_timeout, 5) <= 120)
    error_message = "The health_check_timeout must be between 2 and 120 seconds."
  }
}

variable "healthy_threshold" {
  description = "Consecutive passed checks before a target is healthy (2 to 10)."
  type        = number
  default     = 2

  validation {
    condition     = var.healthy_threshold >= 2 && var.healthy_threshold <= 10
    error_message = "The healthy_threshold must be between 2 and 10."
  }
}

variable "unhealthy_threshold" {
  description = "Consecutive failed checks before a target is unhealthy (2 to 10)."
  type        = number
  default     = 2

  validation {
    condition     = var.unhealthy_threshold >= 2 && var.unhealthy_threshold <= 10
    error_message = "The unhealthy_threshold must be between 2 and 10."
  }
}

variable "deregistration_delay" {
  description = "Seconds a target leaving its group keeps getting the connections it has (draining, 0 to 3600)."
  type        = number
  default     = 30

  validation {
    condition     = var.deregistration_delay >= 0 && var.deregistration_delay <= 3600
    error_message = "The deregistration_delay must be between 0 and 3600 seconds."
  }
}

variable "listener_port" {
  description = "Port of the load balancer's HTTP listener (with certificate_arn: it redirects to HTTPS)."
  type        = number
  default     = 80
}

variable "certificate_arn" {
  description = "An ACM certificate: the users' listener speaks HTTPS on https_listener_port with it, listener_port answers 301 to it, and the blue/green test listener speaks HTTPS too. null: plain HTTP."
  type        = string
  default     = null
}

variable "ssl_policy" {
  description = "The TLS policy of the HTTPS listeners (with certificate_arn)."
  type        = string
  default     = "ELBSecurityPolicy-TLS13-1-2-2021-06"
}

variable "https_listener_port" {
  description = "Port of the HTTPS listener (with certificate_arn)."
  type        = number
  default     = 443
}

variable "deletion_protection" {
  description = "Whether AWS refuses to delete the load balancer (turn it off before a terraform destroy)."
  type        = bool
  default     = false
}

variable "access_logs_bucket" {
  description = "Opt-in: an S3 bucket for the load balancer's access logs (its policy must let the region's ELB account write). null: no access logs."
  type        = string
  default     = null
}

variable "access_logs_prefix" {
  description = "Key prefix of the access logs in access_logs_bucket."
  type        = string
  default     = null
}

variable "waf_web_acl_arn" {
  description = "Opt-in: a WAFv2 web ACL (REGIONAL scope) to associate with the load balancer. null: no WAF."
  type        = string
  default     = null
}

variable "internal" {
  description = "Whether the load balancer is internal."
  type        = bool
  default     = false
}

variable "allowed_cidrs" {
  description = "Who may reach the load balancer's listener."
  type        = list(string)
  default     = ["0.0.0.0/0"]
}

variable "vpc_id" {
  description = "VPC of the fleet; null uses the region's default VPC."
  type        = string
  default     = null
}

variable "subnet_ids" {
  description = "Subnets (at least two availability zones) for the load balancer and instances; empty uses every subnet of the VPC."
  type        = list(string)
  default     = []
}

variable "key_name" {
  description = "EC2 key pair for the instances; null for none."
  type        = string
  default     = null
}

variable "iam_instance_profile" {
  description = "Name of an IAM instance profile for the instances; null for none."
  type        = string
  default     = null
}

variable "tags" {
  description = "Extra tags on the resources and the instances."
  type        = map(string)
  default     = {}
}

# Emulator switches (the local cloud sets them to true); keep the defaults for real AWS.

variable "skip_credentials_validation" {
  type    = bool
  default = false
}

variable "skip_requesting_account_id" {
  type    = bool
  default = false
}

variable "skip_metadata_api_check" {
  type    = bool
  default = false
}

variable "skip_region_validation" {
  type    = bool
  default = false
}
