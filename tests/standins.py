"""Stand-ins shared by unit tests that run a bake's Packer part without AWS (named as such:
they are not the real AWS, only what the bake reads of it)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any


class PackerMadeEC2:
    """Stands in for EC2 after Packer made the AMI: DescribeImages finds it, CreateTags is accepted."""

    def describe_images(self, **_: Any) -> dict[str, Any]:
        image = {"ImageId": "ami-0123456789abcdef0", "State": "available", "Name": "x", "Tags": []}
        return {"Images": [{**image, "BlockDeviceMappings": [], "CreationDate": "2026-01-01T00:00:00Z"}]}

    def create_tags(self, **_: Any) -> None:
        pass


class NoCredentialsAWS:
    """Stands in for baker.aws.AWS: no credentials, EC2 answers as if Packer made the AMI."""

    credentials = None
    role_arn = None
    endpoint_url = None

    @contextlib.contextmanager
    def child_env(self) -> Iterator[dict[str, str]]:
        yield {}

    def client(self, service: str, region: str | None = None) -> PackerMadeEC2:
        return PackerMadeEC2()
