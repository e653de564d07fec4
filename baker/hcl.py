"""The one quoting of values into HCL, for Packer templates and Terraform configuration alike.

A value from a setting (a tag, a variable, an endpoint) must never become HCL syntax: strings are
quoted and escaped, and ``${`` / ``%{`` (template sequences in any HCL string) have their sigil
doubled, so ``${jsonencode(x)}`` in a tag is those characters and nothing else.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from baker.errors import UsageError


def string(text: str) -> str:
    """``text`` as a quoted HCL string literal."""
    out = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch in "$%" and text[i + 1 : i + 2] == "{":
            # `${` and `%{` start template sequences; doubling the sigil makes them literal
            out.append(ch + ch + "{")
            i += 2
            continue
        if ch == "\\":
            out.append("\\\\")
        elif ch == '"':
            out.append('\\"')
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif not ch.isprintable():
            code = ord(ch)
            out.append(f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}")
        else:
            out.append(ch)
        i += 1
    return '"' + "".join(out) + '"'


def literal(value: Any, where: str = "an HCL file") -> str:
    """Any value as an HCL2 literal: strings quoted and escaped, containers element by element."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise UsageError(f"{value!r} cannot be written to {where}")
        return repr(value)
    if isinstance(value, str):
        return string(value)
    if isinstance(value, Mapping):
        if not value:
            return "{}"
        items = ", ".join(f"{string(str(k))} = {literal(v, where)}" for k, v in value.items())
        return "{ " + items + " }"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(literal(v, where) for v in value) + "]"
    str(value)  # a template's undefined value (jinja2's StrictUndefined) raises here, naming it
    raise UsageError(f"a {type(value).__name__} cannot be written to {where}: {value!r}")
