"""Where a project keeps its files: the names every reader agrees on.

Apart from the configuration models so that shell completion can list ``environments/`` in a few
milliseconds, without building them.
"""

from __future__ import annotations

import re

PROJECT_FILE = "baker.yml"
ENV_DIR = "environments"
DEFAULTS_FILE = "defaults.yml"
#: an environment's name: its file is environments/<name>.yml
ENV_NAME = re.compile(r"^[a-z][a-z0-9-]{0,31}$")
