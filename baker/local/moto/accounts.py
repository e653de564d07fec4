"""Several accounts, as promotion needs them (gap 11).

moto reads an access key id only when it has 20 characters and maps it to an account only when
IAM issued it, so every request lands in 123456789012 whatever the key. Here a 12-digit access key
id is the account id. AWS: an image shared with an account (ModifyImageAttribute, launch
permission) is visible to it (DescribeImages by id, ``ExecutableUsers=self``) and can be copied
by it (Amazon EC2 User Guide, "Share an AMI with specific AWS accounts"), which moto does not do
across accounts.
"""

from __future__ import annotations

import os
import re
from typing import Any

#: the access key id of a SigV4 signature when it is a 12-digit account id
_ACCOUNT_KEY = re.compile(r"Credential=(\d{12})/")


def install() -> None:
    """Several accounts, as promotion needs them (gap 11)."""
    from moto.core.responses import BaseResponse
    from moto.ec2.models.amis import AmiBackend

    original_account = BaseResponse.get_current_account

    def get_current_account(self: Any) -> str:
        signed = str(self.headers.get("Authorization", "")) if self.headers else ""
        found = _ACCOUNT_KEY.search(signed) or _ACCOUNT_KEY.search(
            str(self.querystring.get("X-Amz-Credential", ""))
        )
        if found and "MOTO_ACCOUNT_ID" not in os.environ and "x-moto-account-id" not in (self.headers or {}):
            return found.group(1)
        return original_account(self)

    BaseResponse.get_current_account = get_current_account  # type: ignore[method-assign]

    original_describe = AmiBackend.describe_images

    def describe_images(self: Any, *args: Any, **kwargs: Any) -> Any:
        shared = _shared_images(self)
        if not shared:
            return original_describe(self, *args, **kwargs)
        own = self.amis
        self.amis = {**shared, **own}  # requests run one at a time (see wsgi)
        try:
            return original_describe(self, *args, **kwargs)
        finally:
            self.amis = own

    AmiBackend.describe_images = describe_images  # type: ignore[method-assign]


def _shared_images(backend: Any) -> dict[str, Any]:
    """Images of other accounts in the same region whose launch permissions name this account."""
    from moto.ec2.models import ec2_backends

    found: dict[str, Any] = {}
    for account, regions in list(ec2_backends.items()):
        if account == backend.account_id:
            continue
        other = dict.get(regions, backend.region_name)  # only backends that exist; never create one
        if other is None:
            continue
        for ami in list(other.amis.values()):
            if {"UserId": backend.account_id} in ami.launch_permissions:
                found[ami.id] = ami
    return found
