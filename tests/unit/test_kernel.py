from pathlib import Path

import pytest

from baker.errors import UsageError
from baker.local import kernel


def test_overlay_options_stack_the_lower_dirs_top_first_over_one_upper():
    options = kernel.overlay_options([Path("/s/app"), Path("/s/base")], Path("/s/upper"), Path("/s/work"))
    assert options == "lowerdir=/s/app:/s/base,upperdir=/s/upper,workdir=/s/work"


@pytest.mark.parametrize("bad", ["/s/a:b", "/s/a,b", "/s/a\\b"])
def test_a_path_overlayfs_options_cannot_carry_is_refused_naming_it(bad: str):
    with pytest.raises(UsageError, match="overlayfs options cannot carry") as raised:
        kernel.overlay_options([Path("/s/image")], Path(bad), Path("/s/work"))
    assert bad in raised.value.message
