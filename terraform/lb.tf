locals {
  # ALB refuses a health check whose timeout is not below its interval
  health_check_timeout = coalesce(var.health_check_timeout, min(5, var.health_check_interval - 1))
}

resource "aws_lb" "this" {
  name               = "${local.short_name}-lb"
  load_balancer_type = "application"
  internal           = var.internal
  security_groups    = [aws_security_group.lb.id]
  subnets            = local.subnet_ids
  tags               = local.tags
}

resource "aws_lb_target_group" "this" {
  name                 = "${local.short_name}-tg"
  port                 = var.app_port
  protocol             = "HTTP"
  vpc_id               = data.aws_vpc.selected.id
  target_type          = "instance"
  deregistration_delay = var.deregistration_delay
  tags                 = local.rolling ? local.tags : merge(local.tags, { "baker:color" = "blue" })

  health_check {
    path                = var.health_check_path
    matcher             = "200"
    interval            = var.health_check_interval
    timeout             = local.health_check_timeout
    healthy_threshold   = var.healthy_threshold
    unhealthy_threshold = var.unhealthy_threshold
  }

  lifecycle {
    precondition {
      condition     = local.health_check_timeout < var.health_check_interval
      error_message = "The health_check_timeout must be less than the health_check_interval."
    }
  }
}

resource "aws_lb_listener" "http" {
  load_balancer_arn = aws_lb.this.arn
  port              = var.listener_port
  protocol          = "HTTP"
  tags              = local.tags

  default_action {
    type             = "forward"
    target_group_arn = local.rolling ? aws_lb_target_group.this.arn : null

    # blue/green: the two colors' target groups, weighed (baker moves the weights)
    dynamic "forward" {
      for_each = local.rolling ? [] : [1]
      content {
        target_group {
          arn    = aws_lb_target_group.this.arn
          weight = local.weights.blue
        }
        target_group {
          arn    = aws_lb_target_group.green[0].arn
          weight = local.weights.green
        }
        stickiness {
          enabled  = false
          duration = 1
        }
      }
    }
  }
}
