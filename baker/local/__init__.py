"""The local cloud: an AWS emulator, a build host and Terraform, all inside a loopback-only
network namespace, so a newcomer runs the whole pipeline on one Linux machine."""
