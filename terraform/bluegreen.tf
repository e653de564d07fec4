# Blue/green (var.strategy = "blue_green"): two groups, each with its own launch template (image and
# runtime user data) and target group, behind the one listener, whose forward action weighs them.
# baker sets which color is live, each color's image, runtime and capacity, and the weights; the
# test listener (var.test_listener_port) forwards only to var.test_color, the color under test.
# Blue carries the names the rolling resources had (group, target group, template prefix), so an
# environment moves from rolling to blue/green by moving state, without downtime (README).

locals {
  rolling = var.strategy == "rolling"
  colors  = local.rolling ? toset([]) : toset(["blue", "green"])
  # a color baker has not set yet: the live image, no instances
  color = {
    for c in ["blue", "green"] : c => try(var.colors[c], {
      image_id    = var.image_id
      capacity    = 0
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
  color_names = {
    blue  = { group = var.name, template = "${var.name}-", target_group = "${local.short_name}-tg" }
    green = { group = "${var.name}-green", template = "${var.name}-green-", target_group = "${substr(var.name, 0, 24)}-gr-tg" }
  }
  live_color = var.live_color
  weights    = { for c in ["blue", "green"] : c => lookup(var.weights, c, c == var.live_color ? 100 : 0) }
  test_color = coalesce(var.test_color, var.live_color)
}

moved {
  from = aws_launch_template.this
  to   = aws_launch_template.this[0]
}

moved {
  from = aws_autoscaling_group.this
  to   = aws_autoscaling_group.this[0]
}

moved {
  from = aws_lb_target_group.this
  to   = aws_lb_target_group.this[0]
}

resource "aws_launch_template" "color" {
  for_each               = local.colors
  name_prefix            = local.color_names[each.key].template
  description            = "${var.name}: baker points image_id at the release"
  image_id               = local.color[each.key].image_id
  instance_type          = var.instance_type
  user_data              = base64encode(local.color_user_data[each.key])
  key_name               = var.key_name
  vpc_security_group_ids = [aws_security_group.instance.id]
  update_default_version = true

  dynamic "iam_instance_profile" {
    for_each = var.iam_instance_profile == null ? [] : [var.iam_instance_profile]
    content {
      name = iam_instance_profile.value
    }
  }

  metadata_options {
    http_tokens   = "required"
    http_endpoint = "enabled"
  }

  tag_specifications {
    resource_type = "instance"
    # the color reaches the instances through the group's tags: the template stays what a
    # rolling one was, so a state move from rolling changes no template (README: migrating)
    tags = merge(local.tags, { Name = var.name })
  }
}

resource "aws_autoscaling_group" "color" {
  for_each                  = local.colors
  name                      = local.color_names[each.key].group
  min_size                  = local.color[each.key].capacity
  max_size                  = max(var.max_size, local.color[each.key].capacity)
  desired_capacity          = local.color[each.key].capacity
  vpc_zone_identifier       = local.subnet_ids
  target_group_arns         = [aws_lb_target_group.color[each.key].arn]
  health_check_type         = "ELB"
  health_check_grace_period = var.health_check_grace_period
  wait_for_capacity_timeout = "0"

  launch_template {
    id      = aws_launch_template.color[each.key].id
    version = aws_launch_template.color[each.key].latest_version
  }

  # baker gives a color a new image only while it takes no user traffic: what still runs the old
  # one (a previous release kept at capacity) is replaced all at once, new instances are skipped
  instance_refresh {
    strategy = "Rolling"
    preferences {
      min_healthy_percentage = 0
      skip_matching          = true
      instance_warmup        = var.instance_warmup
    }
  }

  dynamic "tag" {
    for_each = merge(local.tags, { "baker:color" = each.key })
    content {
      key                 = tag.key
      value               = tag.value
      propagate_at_launch = true
    }
  }
}

resource "aws_lb_target_group" "color" {
  for_each             = local.colors
  name                 = local.color_names[each.key].target_group
  port                 = var.app_port
  protocol             = "HTTP"
  vpc_id               = data.aws_vpc.selected.id
  target_type          = "instance"
  deregistration_delay = 30
  tags                 = merge(local.tags, { "baker:color" = each.key })

  health_check {
    path                = var.health_check_path
    matcher             = "200"
    interval            = 10
    timeout             = 5
    healthy_threshold   = 2
    unhealthy_threshold = 2
  }
}

# The test route: a second listener that forwards only to the color under test. Users reach the
# load balancer on listener_port; this port is open only to test_allowed_cidrs (the VPC by default).
resource "aws_lb_listener" "test" {
  count             = local.rolling ? 0 : 1
  load_balancer_arn = aws_lb.this.arn
  port              = var.test_listener_port
  protocol          = "HTTP"
  tags              = local.tags

  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.color[local.test_color].arn
  }
}
