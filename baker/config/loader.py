"""The one way baker reads a configuration file, and the merge rule of its layers.

The merge rule, written down once (Sceptre keeps such rules in one table):

    defaults.yml  <-  <env>.yml
    mapping + mapping  -> merged key by key, recursively
    anything else      -> the environment file's value wins (scalars, lists, null)
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from baker.errors import ConfigError


def merge(base: Any, override: Any) -> Any:
    """The merge rule: mappings merge deeply; anything else from ``override`` wins."""
    if isinstance(base, dict) and isinstance(override, dict):
        out = dict(base)
        for key, value in override.items():
            out[key] = merge(base[key], value) if key in base else value
        return out
    return override


#: limits of the YAML loader, so a bad file is refused in bounded time and memory: real configuration
#: files are a few KiB, a few levels deep, with a handful of anchors
MAX_FILE_BYTES = 256 * 1024
MAX_DEPTH = 32
#: values in the document with every alias expanded (an "alias bomb" stays small on disk only)
MAX_VALUES = 20_000
MAX_ALIASES = 100


_SURROGATE = re.compile(r"[\ud800-\udfff]")


class _Refused(Exception):
    """The loader refuses the document at ``mark`` (a yaml Mark)."""

    def __init__(self, mark: Any, message: str) -> None:
        super().__init__(message)
        self.mark = mark
        self.message = message


class _Loader(yaml.SafeLoader):
    """yaml.SafeLoader with limits, counted while composing (before anything is built):

    - nesting deeper than MAX_DEPTH levels is refused;
    - anchors and aliases (and ``<<: *base`` merges) are allowed, but at most MAX_ALIASES aliases, and
      the document with every alias expanded may hold at most MAX_VALUES values; an alias inside the
      value it names (a cycle) is refused;
    - a key twice in one mapping is refused, naming both lines.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._values = 0
        self._aliases = 0
        self._depth = 0
        self._sizes: dict[int, int] = {}
        self._open: set[str] = set()
        self._path: list[str] = []

    def _grow(self, n: int, mark: Any) -> None:
        self._values += n
        if self._values > MAX_VALUES:
            bomb = " with its aliases expanded (an alias bomb?)" if self._aliases else ""
            raise _Refused(mark, f"more than {MAX_VALUES} values{bomb}")

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            if event.anchor in self._open:
                raise _Refused(event.start_mark, f"alias *{event.anchor} is inside the value it names")
            node = super().compose_node(parent, index)
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                raise _Refused(event.start_mark, f"more than {MAX_ALIASES} aliases")
            self._grow(self._sizes.get(id(node), 1), event.start_mark)
            return node
        anchor = getattr(event, "anchor", None)
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise _Refused(event.start_mark, f"nested deeper than {MAX_DEPTH} levels")
        keyed = isinstance(parent, yaml.MappingNode) and isinstance(index, yaml.ScalarNode)
        if keyed:
            self._path.append(index.value)
        if anchor:
            self._open.add(anchor)
        before = self._values
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
            self._open.discard(anchor or "")
            if keyed:
                self._path.pop()
        self._grow(1, event.start_mark)
        self._sizes[id(node)] = self._values - before
        if isinstance(node, yaml.ScalarNode) and _SURROGATE.search(node.value):
            raise _Refused(event.start_mark, "an escape like \\ud800 makes text that is not valid unicode")
        if isinstance(node, yaml.ScalarNode) and "\0" in node.value:
            raise _Refused(event.start_mark, "a NUL character (\\0) cannot be passed on to any program")
        return node

    def compose_mapping_node(self, anchor: Any) -> Any:
        node = super().compose_mapping_node(anchor)
        seen: dict[tuple[str, str], Any] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = (key_node.tag, key_node.value)
            if key in seen:
                where = ".".join(self._path)
                raise _Refused(
                    key_node.start_mark,
                    f"{where + ': ' if where else ''}duplicate key {key_node.value!r} "
                    f"at lines {seen[key].line + 1} and {key_node.start_mark.line + 1}",
                )
            seen[key] = key_node.start_mark
        return node


def _line_of(text: str, position: int) -> str:
    line = text.count("\n", 0, position) + 1
    return f"{line}:{position - (text.rfind(chr(10), 0, position) + 1) + 1}"


def read_yaml(path: Path) -> dict[str, Any]:
    """One configuration file, refused in bounded time and memory when it is not what baker reads:
    a regular file of at most MAX_FILE_BYTES of UTF-8 YAML (see _Loader for the limits), a mapping."""
    try:
        if not path.is_file():
            raise ConfigError(f"{path}: " + ("not a regular file" if path.exists() else "file not found"))
        with path.open("rb") as f:
            raw = f.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"{path}: {exc.strerror}") from None
    if len(raw) > MAX_FILE_BYTES:
        raise ConfigError(f"{path}: larger than {MAX_FILE_BYTES // 1024} KiB; not a baker configuration file")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise ConfigError(
            f"{path}:{line}:{column}: not UTF-8 text (byte 0x{raw[exc.start]:02x}); save the file as UTF-8"
        ) from None
    loader: _Loader | None = None
    try:
        loader = _Loader(text)
        data = loader.get_single_data()
    except _Refused as exc:
        raise ConfigError(f"{path}:{exc.mark.line + 1}: {exc.message}") from None
    except yaml.reader.ReaderError as exc:
        raise ConfigError(
            f"{path}:{_line_of(text, exc.position)}: invalid YAML: character #x{exc.character:04x} "
            "is not allowed (control characters must be escaped in a double-quoted string)"
        ) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path}{where}: invalid YAML: {problem}") from None
    except (ValueError, OverflowError, RecursionError) as exc:
        # e.g. an integer of thousands of digits, or a date like 2024-02-30
        raise ConfigError(f"{path}: invalid YAML value: {str(exc).split(';')[0][:200]}") from None
    finally:
        if loader is not None:
            loader.dispose()
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping (key: value), not a {_kind(data)}")
    return data


def _kind(value: Any) -> str:
    return {list: "list", str: "string", bool: "boolean", int: "number", float: "number"}.get(
        type(value), type(value).__name__
    )
