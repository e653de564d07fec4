"""How many releases and how many days of AMIs gc keeps unless told otherwise.

Apart from gc's AWS code, so that ``baker gc --help`` shows the defaults without importing it.
"""

from __future__ import annotations

DEFAULT_KEEP = 3
DEFAULT_OLDER_THAN_DAYS = 14
#: an AMI launched (LastLaunchedTime) within this many days is kept
DEFAULT_LAUNCHED_WITHIN_DAYS = 14
#: gc's stages: deprecated, then disabled after this many days, then deregistered after this many
DEFAULT_DISABLE_AFTER_DAYS = 7
DEFAULT_DELETE_AFTER_DAYS = 30
