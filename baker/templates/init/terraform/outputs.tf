output "asg_name" {
  description = "Name of the Auto Scaling group."
  value       = aws_autoscaling_group.this.name
}

output "target_group_arn" {
  description = "ARN of the target group whose health gates a release."
  value       = aws_lb_target_group.this.arn
}

output "launch_template_id" {
  value = aws_launch_template.this.id
}

output "launch_template_version" {
  description = "The launch template version the group launches from."
  value       = aws_launch_template.this.latest_version
}

output "image_id" {
  description = "The AMI of that launch template version."
  value       = aws_launch_template.this.image_id
}

output "lb_dns_name" {
  value = aws_lb.this.dns_name
}
