"""What every entry point registers with Hydra/OmegaConf before composing conf/: the `stamp`
resolver of the run directories' names.

Run directories are unique when many runs start in the same second, on one machine or on several
sharing a filesystem: `${now:%H-%M-%S}` alone has one-second resolution, so `${stamp:}` adds
milliseconds (names still sort by time) and six random characters.
"""

from __future__ import annotations

import secrets
import string
from datetime import datetime

from omegaconf import OmegaConf


def stamp() -> str:
    """HH-MM-SS.mmm-xxxxxx: the time to the millisecond, then 6 random lowercase letters/digits."""
    now = datetime.now()
    alphabet = string.ascii_lowercase + string.digits
    suffix = "".join(secrets.choice(alphabet) for _ in range(6))
    return f"{now:%H-%M-%S}.{now.microsecond // 1000:03d}-{suffix}"


def register_resolvers() -> None:
    """`${stamp:}` for conf/config.yaml's hydra.run.dir and hydra.sweep.dir. Cached like Hydra's
    own `now`, so every read in one run (and every job of one multirun) sees the same name."""
    OmegaConf.register_new_resolver("stamp", stamp, use_cache=True, replace=True)
