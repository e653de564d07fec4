output "asg_name" {
  description = "Name of the Auto Scaling group."
  value       = local.rolling ? aws_autoscaling_group.this[0].name : aws_autoscaling_group.color[local.live_color].name
}

output "target_group_arn" {
  description = "ARN of the target group whose health gates a release."
  value       = local.rolling ? aws_lb_target_group.this[0].arn : aws_lb_target_group.color[local.live_color].arn
}

output "launch_template_id" {
  value = local.rolling ? aws_launch_template.this[0].id : aws_launch_template.color[local.live_color].id
}

output "launch_template_version" {
  description = "The launch template version the group launches from."
  value       = local.rolling ? aws_launch_template.this[0].latest_version : aws_launch_template.color[local.live_color].latest_version
}

output "image_id" {
  description = "The AMI of that launch template version."
  value       = local.rolling ? aws_launch_template.this[0].image_id : aws_launch_template.color[local.live_color].image_id
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
    test_listener_arn  = aws_lb_listener.test[0].arn
    test_listener_port = var.test_listener_port
    colors = {
      for c in local.colors : c => {
        asg_name                = aws_autoscaling_group.color[c].name
        target_group_arn        = aws_lb_target_group.color[c].arn
        launch_template_id      = aws_launch_template.color[c].id
        launch_template_version = aws_launch_template.color[c].latest_version
        image_id                = local.color[c].image_id
        capacity                = local.color[c].capacity
        runtime_env             = local.color[c].runtime_env
      }
    }
  }
}
