"""User-facing errors: bad input gets a short message naming the file (and row) and the fix."""

from __future__ import annotations

import functools
import signal
import sys
from collections.abc import Callable
from typing import TypeVar

F = TypeVar("F", bound=Callable)


class HarnessError(Exception):
    """An error whose message is the whole story: shown as one line, no traceback."""

    exit_code = 1


class DataError(HarnessError):
    """Input the user must fix: the message says which file/row is wrong and what to do."""

    exit_code = 2


class ConfigError(HarnessError):
    """A combination of settings the schema cannot rule out: the message names the keys."""

    exit_code = 2


class TrainingDiverged(HarnessError):
    """The loss became NaN/inf; the message names the last good checkpoint."""


class Interrupted(BaseException):
    """SIGTERM (a scheduler, `wandb agent`, the sweep runner's pruning), raised in the main
    thread so that everything unwinds as for Ctrl-C: the W&B run and the run's status close."""

    exit_code = 128 + signal.SIGTERM


def raise_interrupted(signum, frame):
    """A SIGTERM handler: `signal.signal(signal.SIGTERM, raise_interrupted)`."""
    raise Interrupted(f"stopped by signal {signal.Signals(signum).name}")


def exit_on_error(fn: F) -> F:
    """Turn a HarnessError into one line on stderr and its exit status, without a traceback;
    likewise Ctrl-C (130) and SIGTERM (143)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except HarnessError as e:
            print(f"error: {e}", file=sys.stderr, flush=True)
            sys.exit(e.exit_code)
        except KeyboardInterrupt:
            print("interrupted (Ctrl-C)", file=sys.stderr, flush=True)
            sys.exit(128 + signal.SIGINT)
        except Interrupted as e:
            print(f"interrupted ({e})", file=sys.stderr, flush=True)
            sys.exit(e.exit_code)

    return wrapper  # type: ignore[return-value]
