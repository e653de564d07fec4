output "asg_name" {
  description = "Name of the Auto Scaling group."
  value       = local.green_live ? one(aws_autoscaling_group.green[*].name) : aws_autoscaling_group.this.name
}

output "target_group_arn" {
  description = "ARN of the target group whose health gates a release."
  value       = local.green_live ? one(aws_lb_target_group.green[*].arn) : aws_lb_target_group.this.arn
}

output "launch_template_id" {
  value = aws_launch_template.this[local.green_live ? "green" : "blue"].id
}

output "launch_template_version" {
  description = "The launch template version the group launches from."
  value       = aws_launch_template.this[local.green_live ? "green" : "blue"].latest_version
}

output "image_id" {
  description = "The AMI of that launch template version."
  value       = aws_launch_template.this[local.green_live ? "green" : "blue"].image_id
}

output "lb_dns_name" {
  value = aws_lb.this.dns_name
}

output "blue_green" {
  description = "Blue/green only (null when rolling): the live color, the weights, the test route and each color's fleet as last applied."
  value = local.rolling ? null : {
    live_color         = local.live_color
    test_color         = local.test_color
    weights            = local.weights
    load_balancer_arn  = aws_lb.this.arn
    listener_arn       = aws_lb_listener.http.arn
    test_listener_arn  = one(aws_lb_listener.test[*].arn)
    test_listener_port = var.test_listener_port
    # HTTPS: the test listener speaks TLS with the users' certificate
    test_listener_protocol = one(aws_lb_listener.test[*].protocol)
    certificate_arn        = var.certificate_arn
    colors = {
      blue = {
        asg_name                = aws_autoscaling_group.this.name
        target_group_arn        = aws_lb_target_group.this.arn
        launch_template_id      = aws_launch_template.this["blue"].id
        launch_template_version = aws_launch_template.this["blue"].latest_version
        image_id                = local.color.blue.image_id
        capacity                = local.color.blue.capacity
        runtime_env             = local.color.blue.runtime_env
      }
      green = {
        asg_name                = one(aws_autoscaling_group.green[*].name)
        target_group_arn        = one(aws_lb_target_group.green[*].arn)
        launch_template_id      = one([for c, t in aws_launch_template.this : t.id if c == "green"])
        launch_template_version = one([for c, t in aws_launch_template.this : t.latest_version if c == "green"])
        image_id                = local.color.green.image_id
        capacity                = local.color.green.capacity
        runtime_env             = local.color.green.runtime_env
      }
    }
  }
}
