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
resource "aws_launch_template" "this" {
  count                  = local.rolling ? 1 : 0
  name_prefix            = "${var.name}-"
  description            = "${var.name}: baker points image_id at the release"
  image_id               = var.image_id
  instance_type          = var.instance_type
  user_data              = base64encode(local.user_data)
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

resource "aws_autoscaling_group" "this" {
  count                     = local.rolling ? 1 : 0
  name                      = var.name
  min_size                  = var.min_size
  max_size                  = var.max_size
  desired_capacity          = var.desired_capacity
  vpc_zone_identifier       = local.subnet_ids
  target_group_arns         = [aws_lb_target_group.this[0].arn]
  health_check_type         = "ELB"
  health_check_grace_period = var.health_check_grace_period

  # baker waits on the instance refresh and the target health itself; the provider returns as
  # soon as a refresh is accepted whatever this says (terraform-provider-aws #42355).
  wait_for_capacity_timeout = "0"

  launch_template {
    id = aws_launch_template.this[0].id
    # the explicit version, never $Latest: a new version is a visible change that starts a refresh
    version = aws_launch_template.this[0].latest_version
  }

  instance_refresh {
    strategy = "Rolling"
    preferences {
      min_healthy_percentage = var.min_healthy_percentage
      instance_warmup        = var.instance_warmup
    }
  }

  dynamic "tag" {
    for_each = local.tags
    content {
      key                 = tag.key
      value               = tag.value
      propagate_at_launch = true
    }
  }
}
