"""baker's errors carry their exit code, so the CLI's one handler can map any of them.

Library code raises; only ``baker.cli`` turns an error into a message and an exit status.
"""

from __future__ import annotations


class BakerError(Exception):
    """Base of every error baker expects. ``exit_code`` is the contract of DESIGN.md."""

    exit_code = 1

    def __init__(self, message: str, *, details: dict | None = None) -> None:
        super().__init__(message)
        self.message = message
        #: machine-readable extras that go into the JSON error object
        self.details = details or {}


class UsageError(BakerError):
    """Bad usage, invalid configuration or input. Raised before anything is changed."""

    exit_code = 2


class ConfigError(UsageError):
    """The configuration files are invalid; the message names the file, key path and value."""


class ToolError(BakerError):
    """An external program (dpkg-deb, packer, ansible, terraform) failed; carries its own words."""

    exit_code = 3

    def __init__(
        self,
        message: str,
        *,
        tool: str = "",
        output_tail: list[str] | None = None,
        returncode: int | None = None,
        details: dict | None = None,
    ) -> None:
        self.tool = tool
        self.output_tail = output_tail or []
        self.returncode = returncode
        text = message
        if self.output_tail:
            text += "\n" + "\n".join(f"  {tool or 'tool'}: {line}" for line in self.output_tail)
        merged = {"tool": tool, "returncode": returncode, "output_tail": self.output_tail}
        merged.update(details or {})
        super().__init__(text, details=merged)


class AWSError(ToolError):
    """An AWS API call failed (wrapped at the aws.py boundary)."""


class RolledBack(BakerError):
    """The deploy failed its health gate and the previous release is live again."""

    exit_code = 4


class RollbackFailed(BakerError):
    """The deploy failed and so did the rollback: a human is needed. The message states what is live."""

    exit_code = 5


class Refused(BakerError):
    """Refused by policy: pinned, lock held, gate not met, AMI not verified, unsafe plan."""

    exit_code = 6


class Interrupted(BakerError):
    """SIGINT/SIGTERM: locks were released and state recorded before this was raised."""

    exit_code = 130


class VerifyFailed(BakerError):
    """A smoke check did not pass on a booted instance of the AMI; nothing was deployed."""

    exit_code = 7
