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


def test_botocore_data_is_parsed_once_per_install_and_reads_as_botocore_reads_it(tmp_path):
    """baker's file loader (plain dicts, a marshal copy kept per file) gives botocore's own data;
    a kept copy that cannot be read is parsed from the JSON again and replaced."""
    import botocore.loaders

    from baker.aws import _JSONFiles

    own = botocore.loaders.create_loader()
    fresh = botocore.loaders.Loader(file_loader=_JSONFiles(tmp_path))
    ec2 = own.load_service_model("ec2", "service-2")
    assert fresh.load_service_model("ec2", "service-2") == ec2
    assert fresh.load_data("endpoints") == own.load_data("endpoints")
    kept = sorted(tmp_path.glob("*.marshal"))
    assert kept, "nothing kept for the next process"
    for path in kept:
        path.write_bytes(b"not marshal data")
    again = botocore.loaders.Loader(file_loader=_JSONFiles(tmp_path))  # the next process
    assert again.load_service_model("ec2", "service-2") == ec2
    assert max(p.stat().st_size for p in tmp_path.glob("*.marshal")) > 1_000_000, "replaced"
    # no cache (a read-only home): the same data, parsed every time
    assert botocore.loaders.Loader(file_loader=_JSONFiles(None)).load_data("endpoints") == own.load_data(
        "endpoints"
    )
