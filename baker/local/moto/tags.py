"""A resource reads its own tags by its id (gap 12).

moto makes every EC2 resource find its tags by scanning every tag of the region (a regex per
call), so DescribeImages and DescribeSnapshots over N tagged resources take O(N^2): 3,000 AMIs
answer in 10 s, 10,000 outlast botocore's 60 s read timeout (gc's benchmark). AWS answers
DescribeImages with each image's tags (Amazon EC2 API Reference, "DescribeImages") at a cost
that does not grow with the square of the account's images.
"""

from __future__ import annotations

from typing import Any


def install() -> None:
    """A resource's own tags by its id, not by a scan of every tag (gap 12)."""
    from moto.ec2.models.core import TaggedEC2Resource
    from moto.ec2.utils import EC2_PREFIX_TO_RESOURCE, get_prefix

    def get_tags(self: Any) -> list[dict[str, str]]:
        resource_id = getattr(self, "id", None)
        if not resource_id:
            return []
        own = dict.get(self.ec2_backend.tags, resource_id) or {}  # a defaultdict: never add a row
        kind = EC2_PREFIX_TO_RESOURCE.get(get_prefix(resource_id), "")
        return [
            {"resource_id": resource_id, "key": k, "value": v, "resource_type": kind} for k, v in own.items()
        ]

    TaggedEC2Resource.get_tags = get_tags  # type: ignore[method-assign]
