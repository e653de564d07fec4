"""The shapes of configuration values, each written once as a type the models reuse.

A type here is ``Annotated[base, validator]``: pydantic checks the base type first (its message,
e.g. "must be a string"), then the shape, whose ValueError becomes the message under the key path.
The JSON schema stays the base type's: no $defs, no titles of their own.
A list type checks its items itself, so the message names the list (``bake.copy_to_regions``) as
it always has, not one item of it.
"""

from __future__ import annotations

import difflib
import functools
import math
import re
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict

ENV_VAR_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def plain_data(value: Any, where: str = "") -> Any:
    """``value`` when JSON can carry it to Ansible or Terraform as written: strings, finite numbers,
    booleans, null, lists and mappings with string keys. A YAML date, set or binary is refused here,
    at load, not halfway through a bake or a deploy."""
    at = f" at {where}" if where else ""
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{value} is not a number JSON can carry{at}")
        return value
    if isinstance(value, list):
        return [plain_data(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                raise ValueError(f"the key {k!r}{at} must be a string (quote it)")
            plain_data(v, f"{where}.{k}" if where else k)
        return value
    kind = {"date": "a date", "datetime": "a timestamp", "set": "a set", "bytes": "binary data"}
    what = kind.get(type(value).__name__, f"a {type(value).__name__}")
    raise ValueError(f"{what}{at} cannot be passed on as written; quote it to make it a string")


@functools.cache
def aws_regions() -> frozenset[str]:
    """Every region of every AWS partition in the endpoint data of the botocore baker runs with: the
    regions baker can talk to (a region newer than that botocore needs a newer botocore anyway)."""
    from baker.aws import known_regions

    return known_regions()


def check_region(name: Any) -> str:
    if not isinstance(name, str) or name not in aws_regions():
        import botocore

        close = difflib.get_close_matches(str(name), sorted(aws_regions()), n=1)
        hint = f"; did you mean {close[0]}?" if close else ""
        raise ValueError(
            f"{name!r} is not an AWS region (botocore {botocore.__version__} knows "
            f"{len(aws_regions())}){hint}"
        )
    return name


#: AWS allows 50 tags per AMI or snapshot. baker sets up to 10 provenance tags when it bakes
#: (baker:app … baker:builder, baker:ci-url), baker:layer, baker:base-ami and baker:base-recipe on a
#: layered image, baker:verified after verify, baker:promoted-from / baker:promoted-to on promotion,
#: baker:revoked and baker:gc-stage: 18 (provenance.ALL) stay reserved for baker.
AWS_MAX_TAGS = 50
BAKER_RESERVED_TAGS = 18
AWS_TAG_KEY_MAX = 128
AWS_TAG_VALUE_MAX = 256
KMS_KEY = re.compile(
    r"^([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|mrk-[0-9a-f]{32}|alias/[A-Za-z0-9/_-]+"
    r"|arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:(key|alias)/\S+)$"
)
#: an AMI id: ami- and 8 or 17 hex digits
AMI_ID = re.compile(r"^ami-[0-9a-f]{8,17}$")
#: EC2 instance types are family.size: t3.micro, m7i-flex.large, u-6tb1.metal
INSTANCE_TYPE = re.compile(r"^[a-z][a-z0-9-]*\.[a-z0-9-]+$")


def check_tags(tags: dict[str, str]) -> dict[str, str]:
    """AWS's limits on tags, checked at load rather than by AWS after a ten-minute bake."""
    room = AWS_MAX_TAGS - BAKER_RESERVED_TAGS
    if len(tags) > room:
        raise ValueError(
            f"{len(tags)} tags; at most {room} (AWS allows {AWS_MAX_TAGS} per AMI and baker reserves "
            f"{BAKER_RESERVED_TAGS} for its own baker:* tags)"
        )
    for key, value in tags.items():
        shown = repr(key) if len(key) <= 40 else repr(key[:40]) + "..."
        if not key.strip():
            raise ValueError("a tag key cannot be empty")
        if len(key) > AWS_TAG_KEY_MAX:
            raise ValueError(f"tag key {shown} has {len(key)} characters; AWS allows {AWS_TAG_KEY_MAX}")
        if len(value) > AWS_TAG_VALUE_MAX:
            raise ValueError(
                f"the value of tag {shown} has {len(value)} characters; AWS allows {AWS_TAG_VALUE_MAX}"
            )
        if key.lower().startswith("aws:"):
            raise ValueError(f"tag key {shown}: the aws: prefix is reserved by AWS")
        if key.startswith("baker:"):
            raise ValueError(f"tag key {shown}: the baker: prefix is reserved for baker's provenance tags")
    return tags


_DURATION = re.compile(r"^(\d+)\s*([smhd]?)$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def seconds(value: Any) -> Any:
    """A duration as seconds: an integer, or a string like ``90s``, ``30m``, ``2h``, ``1d``."""
    if isinstance(value, bool):
        raise ValueError("a duration must be seconds or a string like 30m, 2h, 1d")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and (m := _DURATION.match(value.strip())):
        return int(m.group(1)) * _UNIT_SECONDS[m.group(2)]
    raise ValueError(f"{value!r} is not a duration (seconds, or like 30m, 2h, 1d)")


def check_account_id(value: Any) -> Any:
    """A 12-digit AWS account id; a YAML number is padded (``123456789012`` unquoted)."""
    if isinstance(value, int):
        value = f"{value:012d}"
    if not isinstance(value, str) or not re.match(r"^\d{12}$", value):
        raise ValueError(f"{value!r} is not a 12-digit AWS account id")
    return value


def check_account_ids(values: list[str]) -> list[str]:
    for a in values:
        if not re.match(r"^\d{12}$", str(a)):
            raise ValueError(f"{a!r} is not a 12-digit AWS account id")
    return values


def check_regions(values: list[str]) -> list[str]:
    for region in values:
        check_region(region)
    return values


def check_kms_key(value: str) -> str:
    if not KMS_KEY.match(value):
        raise ValueError(f"{value!r} is not a KMS key id, alias (alias/NAME) or ARN")
    return value


def check_instance_type(value: str) -> str:
    if not INSTANCE_TYPE.match(value):
        raise ValueError(f"{value!r} is not an EC2 instance type (family.size, e.g. t3.micro)")
    return value


def aws_id(prefix: str) -> AfterValidator:
    """An id of an EC2 resource: ``vpc-0123456789abcdef0``."""

    def check(value: str) -> str:
        if not re.match(rf"^{prefix}-[0-9a-f]+$", value):
            raise ValueError(f"{value!r} is not a {prefix} id ({prefix}-0123456789abcdef0)")
        return value

    return AfterValidator(check)


def env_values(value: Any) -> Any:
    """An environment file's variables: names as a shell reads them, values as text (a YAML
    boolean or number written as YAML writes it, ``true``, ``2.5``)."""
    if not isinstance(value, dict):
        return value
    out = {}
    for key, item in value.items():
        if not isinstance(key, str) or not ENV_VAR_NAME.match(key):
            raise ValueError(
                f"{key!r} is not an environment variable name (A-Z a-z 0-9 _, not a digit first)"
            )
        if isinstance(item, bool):
            item = "true" if item else "false"
        elif isinstance(item, int | float):
            item = str(item)
        if not isinstance(item, str):
            raise ValueError(f"{key}: a value must be a string, number or boolean")
        if "\0" in item:
            raise ValueError(f"{key}: a value cannot hold a NUL byte")
        out[key] = item
    return out


#: an AWS region botocore knows
Region = Annotated[str, AfterValidator(check_region)]
Regions = Annotated[list[str], AfterValidator(check_regions)]
#: a 12-digit AWS account id (an unquoted YAML number is taken and padded)
AccountId = Annotated[str, BeforeValidator(check_account_id)]
#: account ids, each quoted (a list of numbers is refused: YAML may have dropped leading zeros)
AccountIds = Annotated[list[str], AfterValidator(check_account_ids)]
KmsKey = Annotated[str, AfterValidator(check_kms_key)]
InstanceType = Annotated[str, AfterValidator(check_instance_type)]
VpcId = Annotated[str, aws_id("vpc")]
SubnetId = Annotated[str, aws_id("subnet")]
#: tags within AWS's limits, none in the aws: or baker: namespace
Tags = Annotated[dict[str, str], AfterValidator(check_tags)]
#: seconds: an integer, or a string like 90s, 30m, 2h, 1d
Duration = Annotated[int, BeforeValidator(seconds)]
#: data passed on to Ansible or Terraform as JSON, as written
PlainData = Annotated[dict[str, Any], AfterValidator(plain_data)]
#: the variables of an environment file
EnvValues = Annotated[dict[str, str], BeforeValidator(env_values)]
