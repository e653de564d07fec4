locals {
  # ALB refuses a health check whose timeout is not below its interval
  health_check_timeout = coalesce(var.health_check_timeout, min(5, var.health_check_interval - 1))
  # HTTPS with a certificate: users reach https_listener_port, listener_port answers 301 to it
  https = var.certificate_arn != null
}

resource "aws_lb" "this" {
  #checkov:skip=CKV_AWS_150:deletion protection is the input deletion_protection (on in the example's prod); off by default so a dev environment can be destroyed
  #checkov:skip=CKV2_AWS_76:the WAF ACL (Log4j rules) is the user's, given as waf_web_acl_arn
  name                       = "${local.short_name}-lb"
  load_balancer_type         = "application"
  internal                   = var.internal
  security_groups            = [aws_security_group.lb.id]
  subnets                    = local.subnet_ids
  drop_invalid_header_fields = true
  enable_deletion_protection = var.deletion_protection
  tags                       = local.tags

  dynamic "access_logs" {
    for_each = var.access_logs_bucket == null ? [] : [var.access_logs_bucket]
    content {
      bucket  = access_logs.value
      prefix  = var.access_logs_prefix
      enabled = true
    }
  }
}

resource "aws_wafv2_web_acl_association" "lb" {
  count        = var.waf_web_acl_arn == null ? 0 : 1
  resource_arn = aws_lb.this.arn
  web_acl_arn  = var.waf_web_acl_arn
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

# The users' listener: HTTP on listener_port, or HTTPS on https_listener_port with certificate_arn
resource "aws_lb_listener" "http" {
  load_balancer_arn = aws_lb.this.arn
  port              = local.https ? var.https_listener_port : var.listener_port
  protocol          = local.https ? "HTTPS" : "HTTP"
  certificate_arn   = var.certificate_arn
  ssl_policy        = local.https ? var.ssl_policy : null
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

# HTTPS: plain HTTP on listener_port answers 301 to the HTTPS listener, the path and query kept
resource "aws_lb_listener" "redirect" {
  count = local.https ? 1 : 0
  # after the users' listener has left listener_port (when HTTPS is turned on)
  depends_on        = [aws_lb_listener.http]
  load_balancer_arn = aws_lb.this.arn
  port              = var.listener_port
  protocol          = "HTTP"
  tags              = local.tags

  default_action {
    type = "redirect"
    redirect {
      protocol    = "HTTPS"
      port        = tostring(var.https_listener_port)
      status_code = "HTTP_301"
    }
  }
}
