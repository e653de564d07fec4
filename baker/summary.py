"""A command's result as a short Markdown summary, for a CI job's page ($GITHUB_STEP_SUMMARY).

Someone looking at a CI run should learn what it did (which environment, which AMI and version,
how it ended, whether the bake was a cache hit, how long it took, where the run is) without
opening its log. This module only renders: it reads the result the command already prints, so a
summary can hold nothing a result does not (results carry no secrets), and it needs no clock.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any


def markdown(
    command: str,
    result: Mapping[str, Any],
    *,
    exit_code: int = 0,
    error: str | None = None,
    elapsed: float | None = None,
    ci_url: str | None = None,
) -> str:
    """The summary of one command: a heading, a two-column table, the error if there is one."""
    nested = result.get("bake")
    bake: Mapping[str, Any] = nested if isinstance(nested, Mapping) else {}
    outcome = result.get("outcome") or ("ok" if exit_code == 0 else "failed")
    if result.get("dry_run"):
        outcome = f"{outcome} (dry run)"
    mark = "✅" if exit_code == 0 else "❌"
    rows: list[tuple[str, Any]] = [
        ("command", f"`baker {command}`" if command else None),
        ("environment", _environment(result)),
        ("AMI", _first(result, bake, "ami_id")),
        ("previous AMI", result.get("previous_ami_id")),
        ("version", _first(result, bake, "version")),
        ("git sha", _first(result, bake, "git_sha")),
        ("outcome", outcome),
        ("exit code", exit_code),
        ("cache hit", _cache_hit(result, bake)),
        ("timings", _timings(result, bake, elapsed)),
        ("CI run", ci_url),
    ]
    lines = [f"### {mark} baker {command or ''}".rstrip() + f": {_cell(outcome)}", "", "| | |", "|---|---|"]
    lines += [f"| {label} | {_cell(value)} |" for label, value in rows if value not in (None, "", [])]
    if error:
        fence = "`" * max(3, _longest_backtick_run(error) + 1)
        lines += ["", f"{fence}text", error.rstrip(), fence]
    return "\n".join(lines) + "\n\n"


def _first(result: Mapping[str, Any], bake: Mapping[str, Any], key: str) -> Any:
    value = result.get(key)
    return value if value is not None else bake.get(key)


def _environment(result: Mapping[str, Any]) -> str | None:
    if result.get("from") and result.get("to"):
        return f"{result['from']} → {result['to']}"
    env = result.get("env") or result.get("to")
    return str(env) if env else None


def _cache_hit(result: Mapping[str, Any], bake: Mapping[str, Any]) -> str | None:
    for source in (result, bake):
        if "cache_hit" in source:
            return "yes" if source["cache_hit"] else "no"
        if "cached" in source:
            return "yes" if source["cached"] else "no"
    return None


def _timings(result: Mapping[str, Any], bake: Mapping[str, Any], elapsed: float | None) -> str | None:
    parts: list[str] = []
    duration = bake.get("duration", result.get("duration"))
    packer = bake.get("packer_seconds", result.get("packer_seconds"))
    if isinstance(duration, int | float):
        parts.append(f"bake {seconds(duration)}")
    if isinstance(packer, int | float):
        parts.append(f"packer {seconds(packer)}")
    deploy = result.get("seconds")
    if isinstance(deploy, Mapping):
        timed = {k: v for k, v in deploy.items() if k != "total" and isinstance(v, int | float)}
        parts += [f"{k} {seconds(v)}" for k, v in timed.items()]
    if elapsed is not None:
        parts.append(f"total {seconds(elapsed)}")
    return ", ".join(parts) or None


def seconds(value: float) -> str:
    """12.3 s, or 4m 05s past a minute."""
    if value < 60:
        return f"{value:.1f} s"
    minutes, rest = divmod(round(value), 60)
    return f"{minutes}m {rest:02d}s"


def _cell(value: Any) -> str:
    """One table cell: booleans as yes/no, no line breaks, and a '|' cannot end the cell."""
    if isinstance(value, bool):
        value = "yes" if value else "no"
    text = " ".join(str(value).split())
    return text.replace("\\", "\\\\").replace("|", "\\|")


def _longest_backtick_run(text: str) -> int:
    return max((len(m) for m in re.findall(r"`+", text)), default=0)
