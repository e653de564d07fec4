# The runtime configuration reaches the instance as user data: cloud-init writes it at first boot
# (write_files runs before the app's unit starts). Each value is single-quoted, a quote written as
# '"'"', which systemd's EnvironmentFile= and a POSIX shell both read back byte for byte.
locals {
  runtime_env_text = join("", [
    for key in sort(keys(var.runtime_env)) : "${key}='${replace(var.runtime_env[key], "'", "'\"'\"'")}'\n"
  ])
  user_data = join("\n", ["#cloud-config", yamlencode({
    write_files = [{
      path        = var.runtime_env_file
      encoding    = "b64"
      content     = base64encode(local.runtime_env_text)
      owner       = "root:root"
      permissions = "0600"
    }]
  })])
}

# The launch template carries no tags of its own: every version is the image, the runtime
# configuration and the instance settings only, so a plan shows a change exactly when one changes.
# One per color with a fleet: "blue" is the rolling fleet's own (with strategy blue_green it, the
# group and the target group are the blue color, and terraform/bluegreen.tf adds green), so a
# rolling fleet becomes blue in place, launching nothing.
resource "aws_launch_template" "this" {
  for_each               = toset(local.rolling ? ["blue"] : ["blue", "green"])
  name_prefix            = each.key == "blue" ? "${var.name}-" : "${var.name}-${each.key}-"
  description            = "${var.name}: baker points image_id at the release"
  image_id               = local.rolling ? var.image_id : local.color[each.key].image_id
  instance_type          = var.instance_type
  user_data              = base64encode(local.rolling ? local.user_data : local.color_user_data[each.key])
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
    tags          = merge(local.tags, { Name = var.name })
  }
}

# where the two templates were written out one by one (state from before: moved, not replaced)
moved {
  from = aws_launch_template.this
  to   = aws_launch_template.this["blue"]
}

moved {
  from = aws_launch_template.green[0]
  to   = aws_launch_template.this["green"]
}

resource "aws_autoscaling_group" "this" {
  name                      = var.name
  min_size                  = local.rolling ? var.min_size : local.color.blue.capacity
  max_size                  = local.rolling ? var.max_size : max(var.max_size, local.color.blue.capacity)
  desired_capacity          = local.rolling ? var.desired_capacity : local.color.blue.capacity
  vpc_zone_identifier       = local.subnet_ids
  target_group_arns         = [aws_lb_target_group.this.arn]
  health_check_type         = "ELB"
  health_check_grace_period = var.health_check_grace_period

  # baker waits on the instance refresh and the target health itself; the provider returns as
  # soon as a refresh is accepted whatever this says (terraform-provider-aws #42355).
  wait_for_capacity_timeout = "0"

  launch_template {
    id = aws_launch_template.this["blue"].id
    # the explicit version, never $Latest: a new version is a visible change that starts a refresh
    version = aws_launch_template.this["blue"].latest_version
  }

  instance_refresh {
    strategy = "Rolling"
    # blue/green: a color gets a new image only while it takes no user traffic, so what still
    # runs the old one (a previous release kept at capacity) is replaced at once, new ones skipped
    preferences {
      min_healthy_percentage = local.rolling ? var.min_healthy_percentage : 0
      skip_matching          = local.rolling ? null : true
      instance_warmup        = var.instance_warmup
    }
  }

  dynamic "tag" {
    for_each = local.rolling ? local.tags : merge(local.tags, { "baker:color" = "blue" })
    content {
      key                 = tag.key
      value               = tag.value
      propagate_at_launch = true
    }
  }
}
