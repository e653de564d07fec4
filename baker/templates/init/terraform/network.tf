data "aws_vpc" "selected" {
  id      = var.vpc_id
  default = var.vpc_id == null ? true : null
}

data "aws_subnets" "selected" {
  filter {
    name   = "vpc-id"
    values = [data.aws_vpc.selected.id]
  }
}

locals {
  subnet_ids = length(var.subnet_ids) > 0 ? var.subnet_ids : sort(data.aws_subnets.selected.ids)
  # ALB and target group names are limited to 32 characters
  short_name = substr(var.name, 0, 28)
  tags       = merge({ "baker:app" = var.name, "managed-by" = "baker" }, var.tags)
}

resource "aws_security_group" "lb" {
  name        = "${var.name}-lb"
  description = "Load balancer of ${var.name}"
  vpc_id      = data.aws_vpc.selected.id
  tags        = local.tags

  ingress {
    description = "HTTP listener (with HTTPS on: its redirect)"
    from_port   = var.listener_port
    to_port     = var.listener_port
    protocol    = "tcp"
    cidr_blocks = var.allowed_cidrs
  }

  dynamic "ingress" {
    for_each = local.https ? [1] : []
    content {
      description = "HTTPS listener"
      from_port   = var.https_listener_port
      to_port     = var.https_listener_port
      protocol    = "tcp"
      cidr_blocks = var.allowed_cidrs
    }
  }

  dynamic "ingress" {
    for_each = local.rolling ? [] : [1]
    content {
      description = "Blue/green test listener (not for users)"
      from_port   = var.test_listener_port
      to_port     = var.test_listener_port
      protocol    = "tcp"
      cidr_blocks = length(var.test_allowed_cidrs) > 0 ? var.test_allowed_cidrs : [data.aws_vpc.selected.cidr_block]
    }
  }

  egress {
    description = "To the instances"
    from_port   = 0
    to_port     = 0
    protocol    = "-1"
    cidr_blocks = [data.aws_vpc.selected.cidr_block]
  }
}

resource "aws_security_group" "instance" {
  #checkov:skip=CKV_AWS_382:instances reach package mirrors, AWS APIs and whatever the app calls: that is the app's to narrow (an egress proxy, NACLs), not the module's to guess
  name        = "${var.name}-instance"
  description = "Instances of ${var.name}"
  vpc_id      = data.aws_vpc.selected.id
  tags        = local.tags

  ingress {
    description     = "Application port, from the load balancer only"
    from_port       = var.app_port
    to_port         = var.app_port
    protocol        = "tcp"
    security_groups = [aws_security_group.lb.id]
  }

  egress {
    description = "Outbound (package mirrors, AWS APIs)"
    from_port   = 0
    to_port     = 0
    protocol    = "-1"
    cidr_blocks = ["0.0.0.0/0"]
  }
}
