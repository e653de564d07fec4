"""Environment files that systemd's ``EnvironmentFile=`` and a POSIX shell read the same way.

``render`` writes each value in shell single quotes, a quote in the value as ``'"'"'`` (close,
double-quoted quote, reopen), which is what ``shlex.quote`` and Ansible's ``quote`` filter write:
- systemd (src/basic/env-file.c) takes single-quoted text literally, newlines included, and after a
  closing quote is back before a value, where the next quote opens a new quoted part; a double-quoted
  ``'`` needs no escape. (``'\\''`` would not do: after an unquoted backslash systemd's parser is in
  its plain-value state, where quotes are literal characters.)
- a shell takes single-quoted text literally too, so sourcing the file runs nothing (``$(…)``,
  backticks and ``$VAR`` stay text).
So the app gets every value byte for byte: newlines, tabs, quotes, ``$``, backslashes, unicode.

``parse`` mirrors systemd's parser, for tests and for reading such files back.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable, Mapping

NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def render(pairs: Mapping[str, str] | Iterable[tuple[str, str]], *, header: str = "") -> str:
    """``KEY='value'`` lines, one per pair, after ``header`` (each of its lines made a comment)."""
    items = pairs.items() if isinstance(pairs, Mapping) else pairs
    lines = [f"# {line}".rstrip() for line in header.splitlines()]
    for key, value in items:
        if not isinstance(key, str) or not NAME.match(key):
            raise ValueError(
                f"{key!r} is not an environment variable name (A-Z a-z 0-9 _, not a digit first)"
            )
        if not isinstance(value, str):
            raise ValueError(f"{key}: a value must be a string")
        if "\0" in value:
            raise ValueError(f"{key}: a value cannot hold a NUL byte")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError(f"{key}: a value must be valid unicode (no lone surrogates)") from None
        lines.append(f"{key}={shlex.quote(value)}")
    return "\n".join(lines) + "\n" if lines else ""


_WHITESPACE = " \t\n\r"
_NEWLINE = "\n\r"
_COMMENTS = "#;"
_SHELL_NEED_ESCAPE = '"\\`$'


def parse(text: str) -> dict[str, str]:
    """What systemd's EnvironmentFile= makes of ``text`` (its parse_env_file_internal, state by
    state; a later assignment replaces an earlier one)."""
    out: dict[str, str] = {}
    state = "pre_key"
    key: list[str] = []
    value: list[str] = []
    key_ws: int | None = None  # where trailing whitespace of the key starts
    value_ws: int | None = None  # where trailing whitespace of an unquoted value starts

    def push(chomp: bool) -> None:
        k = "".join(key[:key_ws] if key_ws is not None else key)
        v = value[:value_ws] if chomp and value_ws is not None else value
        out[k] = "".join(v)

    for c in text:
        if state == "pre_key":
            if c in _COMMENTS:
                state = "comment"
            elif c not in _WHITESPACE:
                state, key, key_ws = "key", [c], None
        elif state == "key":
            if c in _NEWLINE:
                state, key = "pre_key", []
            elif c == "=":
                state, value, value_ws = "pre_value", [], None
            else:
                if c not in _WHITESPACE:
                    key_ws = None
                elif key_ws is None:
                    key_ws = len(key)
                key.append(c)
        elif state == "pre_value":
            if c in _NEWLINE:
                push(chomp=False)
                state, key, value = "pre_key", [], []
            elif c == "'":
                state = "single"
            elif c == '"':
                state = "double"
            elif c == "\\":
                state = "value_escape"
            elif c not in _WHITESPACE:
                state = "value"
                value.append(c)
        elif state == "value":
            if c in _NEWLINE:
                push(chomp=True)
                state, key, value = "pre_key", [], []
            elif c == "\\":
                state, value_ws = "value_escape", None
            else:
                if c not in _WHITESPACE:
                    value_ws = None
                elif value_ws is None:
                    value_ws = len(value)
                value.append(c)
        elif state == "value_escape":
            state = "value"
            if c not in _NEWLINE:
                value.append(c)
        elif state == "single":
            if c == "'":
                state = "pre_value"
            else:
                value.append(c)
        elif state == "double":
            if c == '"':
                state = "pre_value"
            elif c == "\\":
                state = "double_escape"
            else:
                value.append(c)
        elif state == "double_escape":
            state = "double"
            if c in _SHELL_NEED_ESCAPE:
                value.append(c)
            elif c != "\n":
                value += ["\\", c]
        elif state == "comment":
            if c == "\\":
                state = "comment_escape"
            elif c in _NEWLINE:
                state = "pre_key"
        elif state == "comment_escape":
            state = "pre_key" if c in _NEWLINE else "comment"
    if state in ("pre_value", "value", "value_escape", "single", "double", "double_escape"):
        push(chomp=state == "value")
    return out
