"""How many releases and how many days of AMIs gc keeps unless told otherwise.

Apart from gc's AWS code, so that ``baker gc --help`` shows the defaults without importing it.
"""

from __future__ import annotations

DEFAULT_KEEP = 3
DEFAULT_OLDER_THAN_DAYS = 14
