"""The deploy strategies by the name ``deploy.strategy`` gives them: chosen once per deploy.

A new strategy is one module with a class that takes a ``Context`` and implements
``baker.deploy.context.Strategy``, one line here, and its name among the choices of
``deploy.strategy`` (baker/config.py), which the schema shows users.
"""

from __future__ import annotations

from collections.abc import Callable

from baker.deploy.bluegreen import BlueGreen
from baker.deploy.context import Context, Strategy
from baker.deploy.rolling import Rolling

STRATEGIES: dict[str, Callable[[Context], Strategy]] = {
    "rolling": Rolling,
    "blue_green": BlueGreen,
}


def strategy_for(ctx: Context) -> Strategy:
    """The strategy the environment's ``deploy.strategy`` names."""
    return STRATEGIES[ctx.env.settings.deploy.strategy](ctx)
