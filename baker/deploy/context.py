"""What a deploy strategy is handed: the environment, the Terraform handoff, the release records,
a watch factory and the clock — never the Deploy that runs it.

A strategy (baker/deploy/rolling.py, baker/deploy/bluegreen.py) decides how one release reaches
the fleet and how a failed one is undone; ``Deploy`` (baker/deploy/run.py) owns the verb around
it: the policy gate, the lock, the ledger entry, interrupts and the automatic rollback.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from baker.aws import AWS
from baker.clock import Clock
from baker.config import Environment, Project
from baker.health import Rollout, Watch
from baker.ledger import Ledger, Lock, Release

if TYPE_CHECKING:
    from baker.deploy.handoff import Handoff
    from baker.deploy.records import Records

#: a blue/green test route: (base URL of the test listener, or None and why nothing answers there),
#: given the colors as Terraform applied them. The CLI hands in the local cloud's.
TestRoute = Callable[[Any], tuple[str | None, str]]


@dataclass
class Progress:
    """One run's moments (monotonic) and the watch under way (its refresh is cancelled on Ctrl-C)."""

    started: float = 0.0
    applied_at: float = 0.0
    healthy_at: float | None = None
    watching: Watch | None = None
    #: called with each look at the rollout (benchmarks and tests follow a rollout with it)
    on_poll: Callable[[Rollout], None] | None = None


@dataclass
class Context:
    """The environment and the shared parts of one deploy, as every strategy receives them."""

    project: Project
    env: Environment
    aws: AWS
    handoff: Handoff
    records: Records
    lock: Callable[[str], Lock]
    progress: Progress = field(default_factory=Progress)
    clock: Clock = field(default_factory=Clock)
    poll_min: float = 2.0
    poll_max: float = 15.0
    test_route: TestRoute | None = None

    @property
    def ledger(self) -> Ledger:
        return self.records.ledger

    def watch(self, asg_name: str, target_group_arn: str, known: frozenset[str] = frozenset()) -> Watch:
        """A health watch of one group and its target group, with this environment's rules."""
        return Watch(
            self.aws,
            asg_name,
            target_group_arn,
            poll_min=self.poll_min,
            poll_max=self.poll_max,
            known_refreshes=known,
            on_poll=self.progress.on_poll,
            unhealthy_timeout=self.env.settings.deploy.unhealthy_timeout,
            clock=self.clock,
        )


class Strategy(Protocol):
    """How a release reaches the fleet (``deploy.strategy``). One module per strategy, one line in
    ``baker.deploy.strategies.STRATEGIES``."""

    def planned(
        self, ami_id: str, runtime: Mapping[str, str], result: dict[str, Any]
    ) -> dict[str, Any] | None:
        """--dry-run: the strategy's own Terraform variables of the first apply (None: none)."""

    def traffic_first(self, release: Release, result: dict[str, Any]) -> bool:
        """Move the users to ``release`` now, when the fleet already runs it and nothing needs
        Terraform for that (blue/green: a rollback to the previous color); ``roll`` then records
        it. Whether the users were moved."""

    def roll(
        self, release: Release, allow_replace: bool, health_timeout: int, result: dict[str, Any]
    ) -> tuple[Rollout, str | None]:
        """Plan, gate, apply and wait: the last look at the fleet and the failure (None: healthy)."""

    def roll_back(
        self, back: Release, failed: Release, allow_replace: bool, health_timeout: int
    ) -> tuple[Rollout | None, str | None]:
        """After ``failed`` did not get healthy, put ``back`` live again; the look and the failure."""

    def rollback_details(self) -> dict[str, Any]:
        """What the rollback's result says of how it went (blue/green: whether by weights alone)."""

    def retire(self, *, force: bool = False) -> dict[str, Any]:
        """``baker retire``: give up what the strategy keeps for a rollback."""
