"""baker: bake an immutable AMI from a commit and roll it out through Terraform, health-gated."""

__version__ = "0.1.0"
