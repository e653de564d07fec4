"""aws.py: botocore errors become baker errors at the boundary, with AWS's own code and words."""

from __future__ import annotations

import pytest
from botocore.stub import Stubber

from baker.aws import AWS, error_code
from baker.errors import AWSError


@pytest.fixture
def aws() -> AWS:
    creds = {"aws_access_key_id": "123456789012", "aws_secret_access_key": "x"}
    return AWS(region="us-east-1", credentials=creds, endpoint_url="http://127.0.0.1:9")


def test_client_error_becomes_aws_error_with_code_and_message(aws: AWS):
    ec2 = aws.client("ec2")
    with Stubber(ec2.raw) as stub:
        stub.add_client_error("describe_images", "InvalidAMIID.Malformed", "Invalid id: 'ami-zz'")
        with pytest.raises(AWSError) as exc:
            ec2.describe_images(ImageIds=["ami-zz"])
    assert exc.value.exit_code == 3
    assert "ec2.describe_images" in exc.value.message and "InvalidAMIID.Malformed" in exc.value.message
    assert "Invalid id: 'ami-zz'" in exc.value.message
    assert error_code(exc.value) == "InvalidAMIID.Malformed"


def test_paginator_errors_are_wrapped_too(aws: AWS):
    ec2 = aws.client("ec2")
    with Stubber(ec2.raw) as stub:
        stub.add_client_error("describe_images", "UnauthorizedOperation", "no")
        with pytest.raises(AWSError, match="UnauthorizedOperation"):
            list(ec2.get_paginator("describe_images").paginate(Owners=["self"]))


def test_clients_are_cached_per_service_and_region(aws: AWS):
    assert aws.client("ec2") is aws.client("ec2")
    assert aws.client("ec2", "eu-west-1") is not aws.client("ec2")
    assert aws.in_region("eu-west-1").region == "eu-west-1"


def test_child_env_points_at_the_same_aws(aws: AWS):
    env = aws.env_vars()
    assert env["AWS_ENDPOINT_URL"] == "http://127.0.0.1:9"
    assert env["AWS_REGION"] == env["AWS_DEFAULT_REGION"] == "us-east-1"
    real = AWS(region="eu-west-1", profile="prod")
    assert real.env_vars() == {
        "AWS_REGION": "eu-west-1",
        "AWS_DEFAULT_REGION": "eu-west-1",
        "AWS_PROFILE": "prod",
    }


def test_a_refused_connection_and_throttling_are_transient_with_their_cause(aws: AWS):
    """What the health wait polls through: nothing listens on 127.0.0.1:9 (loopback only)."""
    from baker.aws import endpoint_of, transient

    ec2 = aws.client("ec2", attempts=1)
    assert ec2 is not aws.client("ec2")  # its own retry settings
    assert ec2.raw.meta.config.retries["total_max_attempts"] == 1  # one call, no retry
    with pytest.raises(AWSError) as refused:
        ec2.describe_images(Owners=["self"])
    assert transient(refused.value) == "connection refused"
    assert endpoint_of(refused.value) == "http://127.0.0.1:9"
    for code, expected in (
        ("RequestLimitExceeded", "throttled: RequestLimitExceeded"),
        ("AuthFailure", None),
    ):
        with Stubber(ec2.raw) as stub:
            stub.add_client_error("describe_images", code, "no")
            with pytest.raises(AWSError) as exc:
                ec2.describe_images(Owners=["self"])
        assert transient(exc.value) == expected
