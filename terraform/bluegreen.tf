# Blue/green (var.strategy = "blue_green"): two groups, each with its own launch template (image
# and runtime user data; asg.tf writes it once for both colors) and target group, behind the one
# listener, whose forward action weighs them.
# baker sets which color is live, each color's image, runtime and capacity, and the weights; the
# test listener (var.test_listener_port) forwards only to var.test_color, the color under test.
# Blue is the rolling fleet's own launch template, group and target group (asg.tf, lb.tf): an
# environment switched from rolling keeps serving from them while green is created empty.

locals {
  rolling = var.strategy == "rolling"
  green   = local.rolling ? 0 : 1
  # a color baker has not set: image_id and runtime_env, blue at desired_capacity, green empty
  color = {
    for c in ["blue", "green"] : c => try(var.colors[c], {
      image_id    = var.image_id
      capacity    = c == "blue" ? var.desired_capacity : 0
      runtime_env = var.runtime_env
    })
  }
  color_user_data = {
    for c, spec in local.color : c => join("\n", ["#cloud-config", yamlencode({
      write_files = [{
        path     = var.runtime_env_file
        encoding = "b64"
        content = base64encode(join("", [
          for key in sort(keys(spec.runtime_env)) : "${key}='${replace(spec.runtime_env[key], "'", "'\"'\"'")}'\n"
        ]))
        owner       = "root:root"
        permissions = "0600"
      }]
    })])
  }
  live_color = var.live_color
  green_live = !local.rolling && var.live_color == "green"
  weights    = { for c in ["blue", "green"] : c => lookup(var.weights, c, c == var.live_color ? 100 : 0) }
  test_color = coalesce(var.test_color, var.live_color)
}

resource "aws_autoscaling_group" "green" {
  count                     = local.green
  name                      = "${var.name}-green"
  min_size                  = local.color.green.capacity
  max_size                  = max(var.max_size, local.color.green.capacity)
  desired_capacity          = local.color.green.capacity
  vpc_zone_identifier       = local.subnet_ids
  target_group_arns         = [aws_lb_target_group.green[0].arn]
  health_check_type         = "ELB"
  health_check_grace_period = var.health_check_grace_period
  wait_for_capacity_timeout = "0"

  launch_template {
    id      = aws_launch_template.this["green"].id
    version = aws_launch_template.this["green"].latest_version
  }

  # as blue's (asg.tf): replaced at once while it takes no user traffic, new instances skipped
  instance_refresh {
    strategy = "Rolling"
    preferences {
      min_healthy_percentage = 0
      skip_matching          = true
      instance_warmup        = var.instance_warmup
    }
  }

  dynamic "tag" {
    for_each = merge(local.tags, { "baker:color" = "green" })
    content {
      key                 = tag.key
      value               = tag.value
      propagate_at_launch = true
    }
  }
}

resource "aws_lb_target_group" "green" {
  count                = local.green
  name                 = "${substr(var.name, 0, 24)}-gr-tg"
  port                 = var.app_port
  protocol             = "HTTP"
  vpc_id               = data.aws_vpc.selected.id
  target_type          = "instance"
  deregistration_delay = var.deregistration_delay
  tags                 = merge(local.tags, { "baker:color" = "green" })

  health_check {
    path                = var.health_check_path
    matcher             = "200"
    interval            = var.health_check_interval
    timeout             = local.health_check_timeout
    healthy_threshold   = var.healthy_threshold
    unhealthy_threshold = var.unhealthy_threshold
  }
}

# The test route: a second listener that forwards only to the color under test. Users reach the
# load balancer on listener_port; this port is open only to test_allowed_cidrs (the VPC by default).
resource "aws_lb_listener" "test" {
  count             = local.green
  load_balancer_arn = aws_lb.this.arn
  port              = var.test_listener_port
  protocol          = local.https ? "HTTPS" : "HTTP"
  certificate_arn   = var.certificate_arn
  ssl_policy        = local.https ? var.ssl_policy : null
  tags              = local.tags

  default_action {
    type             = "forward"
    target_group_arn = local.test_color == "blue" ? aws_lb_target_group.this.arn : one(aws_lb_target_group.green[*].arn)
  }
}
