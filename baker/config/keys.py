"""Key paths: where a value sits in a configuration, as a tuple (pydantic's ``loc``) and as the user
writes it (``bake.tags``, ``smoke_checks[0].name``)."""

from __future__ import annotations

from typing import Any


def key_path(loc: tuple[Any, ...]) -> str:
    """A key path as the user writes it: ``bake.tags``, ``smoke_checks[0].name``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def lookup(data: Any, loc: tuple[Any, ...]) -> tuple[bool, Any]:
    """The value at ``loc`` in ``data``: (found, value)."""
    cur = data
    for part in loc:
        in_dict = isinstance(cur, dict) and part in cur
        in_list = isinstance(cur, list) and isinstance(part, int) and part < len(cur)
        if in_dict or in_list:
            cur = cur[part]
        else:
            return False, None
    return True, cur
