"""pydantic's validation errors as baker's messages: one line per problem, naming the file that set
the key (or should), the key path as the user writes it, and the value, unless it is secret."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from baker.config.keys import key_path, lookup
from baker.config.secrets import REDACTED, redact, secret_bearing, secret_values

_MAPPING = "must be a mapping (key: value)"
_MESSAGES = {
    "missing": "required key is missing",
    "extra_forbidden": "unknown key",
    "model_type": _MAPPING,
    "model_attributes_type": _MAPPING,
    "dict_type": _MAPPING,
    "list_type": "must be a list",
    "tuple_type": "must be a list",
    "set_type": "must be a list",
    "string_type": "must be a string (quote it)",
    "int_type": "must be a whole number",
    "int_parsing": "must be a whole number",
    "int_from_float": "must be a whole number",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "none_required": "must be null",
}


def message(err: Any) -> str:
    """pydantic's message in the user's words: never a model's class name."""
    kind = err["type"]
    ctx = err.get("ctx") or {}
    if kind in _MESSAGES:
        return _MESSAGES[kind]
    if kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        bound = next(iter(ctx.values()), "?")
        word = {"greater_than_equal": "at least", "greater_than": "more than", "less_than_equal": "at most"}
        return f"must be {word.get(kind, 'less than')} {bound}"
    if kind == "literal_error":
        return f"must be one of {ctx.get('expected', '?')}"
    msg = str(err["msg"]).removeprefix("Value error, ").removeprefix("Assertion failed, ")
    msg = re.sub(r"\s*or instance of \w+", "", msg)
    return msg.replace("Input should be", "must be")


def origin_of(
    loc: tuple[Any, ...], sources: list[tuple[Path, dict[str, Any]]], missing: bool
) -> tuple[Path, str]:
    """The file to blame for ``loc``, and a hint: the most specific file that sets the key; for a
    missing key, the least specific file that has its parent (where shared settings live)."""
    if not missing:
        for file, data in reversed(sources):
            if lookup(data, loc)[0]:
                return file, ""
    for file, data in sources:
        if lookup(data, loc[:-1])[0]:
            others = [str(f) for f, _ in sources if f != file]
            return file, f" (add it here{', or in ' + others[-1] if others else ''})" if missing else ""
    return sources[0][0], ""


def describe(exc: ValidationError, sources: list[tuple[Path, dict[str, Any]]], merged: Any) -> str:
    """One line per problem: ``file: key.path: message (got value)``; the file is the one that set it
    (or should). Values under secret-bearing keys are never shown."""
    lines = []
    for err in exc.errors():
        # drop pydantic's internal location parts (validator names, union members, "[key]")
        loc = tuple(
            p for p in err["loc"] if not (isinstance(p, str) and (p.startswith("function-") or p == "[key]"))
        )
        kind = err["type"]
        origin, hint = origin_of(loc, sources, kind == "missing")
        msg = message(err)
        found, value = lookup(merged, loc)
        if not found:
            found, value = "input" in err and kind != "missing", err.get("input")
        secret = secret_bearing(loc)
        if secret:
            for text in {str(value), *secret_values(value, loc)} if found else ():
                if len(text) >= 4:
                    msg = msg.replace(text, REDACTED)
        if kind == "missing" or not found:
            shown = hint
        elif isinstance(value, dict | list) and kind not in _MESSAGES:
            shown = ""  # the message names what is wrong inside; the whole mapping would only be noise
        elif secret:
            shown = f" (value not shown: {key_path(loc)} is secret-bearing)"
        else:
            text = json.dumps(redact(value, loc), default=str, ensure_ascii=False)
            shown = f" (got {text if len(text) <= 120 else text[:117] + '...'})"
        lines.append(f"{origin}: {key_path(loc)}: {msg}{shown}")
    return "invalid configuration:\n  " + "\n  ".join(lines) if len(lines) > 1 else lines[0]
