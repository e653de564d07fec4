"""One quoting of values into HCL (baker/hcl.py), used by the Packer template and by Terraform's
backend and CLI configuration alike: a template sequence in a value stays text."""

from __future__ import annotations

import pytest

from baker import hcl
from baker.config import BackendSettings
from baker.errors import UsageError
from baker.terraform import backend_config, cli_config


@pytest.mark.parametrize(
    ("value", "quoted"),
    [
        ("plain", '"plain"'),
        ("${jsonencode(x)}", '"$${jsonencode(x)}"'),
        ("%{ if true }", '"%%{ if true }"'),
        ('say "hi"\n', '"say \\"hi\\"\\n"'),
        ("\\", '"\\\\"'),
        ("$5 and 100%", '"$5 and 100%"'),
    ],
)
def test_a_string_is_quoted_and_its_template_sequences_made_literal(value, quoted):
    assert hcl.string(value) == quoted


def test_literals_of_containers_and_the_bad_ones():
    assert hcl.literal({"a": [1, True, None], "b": "${x}"}) == '{ "a" = [1, true, null], "b" = "$${x}" }'
    with pytest.raises(UsageError, match="cannot be written to a Packer template"):
        hcl.literal(float("nan"), "a Packer template")


def test_terraform_configuration_quotes_through_the_same_function(tmp_path):
    backend = BackendSettings(bucket="b", key="k")
    endpoint = "http://127.0.0.1:5000/${path}"
    assert backend_config(backend, region="us-east-1", endpoint=endpoint)["endpoints"] == (
        "{s3=" + hcl.string(endpoint) + "}"
    )
    odd = tmp_path / "mirror ${x}"
    assert f"path    = {hcl.string(str(odd))}" in cli_config(odd, ["registry.terraform.io/hashicorp/aws"])
