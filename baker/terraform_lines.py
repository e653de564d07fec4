"""What Terraform prints, read: the diagnostics of its human and JSON output, the progress of an
``apply -json``, the outputs it ends with, the id of a state lock it could not take. Pure
functions over lines (tested on their own); ``baker.terraform`` runs the commands."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from baker.plan import Change

#: a ``planned_change`` line's action, as the actions of ``show -json`` (a replacement deletes first
#: unless Terraform says it creates first: both orders hold "delete", which is what the gate reads)
PLANNED_ACTIONS = {
    "create": ("create",),
    "update": ("update",),
    "delete": ("delete",),
    "remove": ("delete",),
    "replace": ("delete", "create"),
    "read": ("read",),
}
#: a ``planned_change`` line's reason, as ``show -json``'s ``action_reason``
PLANNED_REASONS = {"tainted": "replace_because_tainted", "cannot_update": "replace_because_cannot_update"}


def text_diagnostics(lines: Sequence[str]) -> list[str]:
    """The ``Error:`` blocks of human-readable (-no-color) output, one "summary: detail" each."""
    out: list[str] = []
    current: list[str] | None = None

    def close(block: list[str]) -> None:
        out.append(block[0] + (": " + " ".join(block[1:]) if len(block) > 1 else ""))

    for raw in lines:
        # a boxed diagnostic has a border in the first column; a source snippet inside it is
        # indented and drawn with the same characters (├── and │ var.x is "..."): not words
        line = (raw[1:] if raw.startswith(("│", "╷", "╵")) else raw).strip()
        if line.startswith(("├", "│")):
            continue
        if line.startswith("Error: "):
            if current:
                close(current)
            current = [line.removeprefix("Error: ")]
        elif current is not None:
            if not line and len(current) > 1:
                close(current)
                current = None
            elif line and not line.startswith(("on ", "with ")) and not line[:1].isdigit():
                current.append(line)
    if current:
        close(current)
    return out


def json_diagnostic(line: str) -> str | None:
    """The error of one ``-json`` line, or None when the line is not an error diagnostic."""
    try:
        msg = json.loads(line)
    except ValueError:
        return None
    if not isinstance(msg, dict) or msg.get("@level") != "error":
        return None
    diag = msg.get("diagnostic") or {}
    summary = diag.get("summary") or msg.get("@message", "")
    detail = " ".join(str(diag.get("detail", "")).split())
    address = diag.get("address")
    text = f"{address}: {summary}" if address else str(summary)
    return f"{text}: {detail}" if detail else text


def applied_outputs(line: str) -> dict[str, Any] | None:
    """The root module's outputs from the ``outputs`` line that ``apply -json`` ends with; None for
    any other line, or when one is sensitive (its value left out: ask ``terraform output``)."""
    try:
        msg = json.loads(line)
    except ValueError:
        return None
    if not isinstance(msg, dict) or msg.get("type") != "outputs" or not isinstance(msg.get("outputs"), dict):
        return None
    out = {}
    for name, each in msg["outputs"].items():
        if not isinstance(each, dict) or each.get("sensitive") or "value" not in each:
            return None
        out[name] = each["value"]
    return out


def planned_change(line: str) -> Change | None:
    """The change one ``plan -json`` line announces (None: another line, or a change that changes
    nothing, such as a move alone or an import of what is there)."""
    try:
        msg = json.loads(line)
    except ValueError:
        return None
    change = msg.get("change") if isinstance(msg, dict) and msg.get("type") == "planned_change" else None
    if not isinstance(change, dict):
        return None
    found = change.get("resource")
    resource: dict[str, Any] = found if isinstance(found, dict) else {}
    actions = PLANNED_ACTIONS.get(str(change.get("action")))
    if actions is None or actions == ("read",):
        return None
    reason = change.get("reason")
    return Change(
        address=str(resource.get("addr", "")),
        type=str(resource.get("resource_type", "")),
        actions=actions,
        reason=PLANNED_REASONS.get(str(reason), str(reason)) if reason else None,
    )


def ui_message(line: str) -> str:
    """A machine-readable line's human words (its ``@message``); any other line as it is."""
    try:
        msg = json.loads(line)
    except ValueError:
        return line
    return str(msg.get("@message", line)) if isinstance(msg, dict) else line


def progress_message(line: str) -> str | None:
    """The human line worth showing for one ``apply -json`` line (None: not worth showing)."""
    try:
        msg = json.loads(line)
    except ValueError:
        return line.strip() or None
    if not isinstance(msg, dict):
        return None
    if msg.get("type") in (
        "apply_start",
        "apply_progress",
        "apply_complete",
        "apply_errored",
        "change_summary",
        "diagnostic",
    ):
        return str(msg.get("@message", "")) or None
    return None


def state_lock_id(lines: Sequence[str]) -> str | None:
    """The lock id of an "Error acquiring the state lock" in Terraform's output, if that is what failed."""
    text = "\n".join(lines)
    if "state lock" not in text:
        return None
    for raw in lines:
        line = raw.strip().lstrip("│").strip()
        if line.startswith("ID:"):
            return line.removeprefix("ID:").strip() or None
    return None


def json_text(lines: Sequence[str]) -> str:
    """The JSON document in captured output; a CLI-config warning on stderr may come before it."""
    for i, line in enumerate(lines):
        if line.startswith(("{", "[")):
            return "\n".join(lines[i:])
    return ""
