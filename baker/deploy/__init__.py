"""Deploy: the Terraform handoff, a health-gated rollout by the environment's strategy, and the
automatic rollback, all under one lock (see ``run``'s docstring for the whole path).

    run.py         Deploy: the verb (gate, lock, ledger entry, interrupts, automatic rollback)
    context.py     what a strategy is handed (Context) and what it must do (Strategy)
    strategies.py  deploy.strategy name -> strategy class
    rolling.py     rolling: a launch template version and an instance refresh
    bluegreen.py   blue_green: the idle color, traffic by weights, rollback by weights, retire
    colors.py      blue/green's state as Terraform applied it (pure)
    traffic.py     the users' listener's weights, set at once (a rollback's first, before Terraform)
    test_route.py  blue/green's smoke checks through the test listener
    handoff.py     the Terraform side: variables, plan, the plan gate (baker/plan.py), apply, outputs
    records.py     the release records of a run: intent, outcome, abandoned, interrupted
    recovery.py    the automatic rollback after a failed health gate
    rollback.py    ``baker rollback``
    live.py        what the fleet runs now, in an AMI id and in words
"""

from baker.deploy.handoff import Handoff
from baker.deploy.recovery import Options
from baker.deploy.run import Deploy
from baker.health import Rollout, Watch, assess, duration
from baker.plan import applied_strategy, gate, plan_text

__all__ = [
    "Deploy",
    "Handoff",
    "Options",
    "Rollout",
    "Watch",
    "applied_strategy",
    "assess",
    "duration",
    "gate",
    "plan_text",
]
