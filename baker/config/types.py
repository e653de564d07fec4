"""The shapes of configuration values, written once and reused by the models."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict

ENV_VAR_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
