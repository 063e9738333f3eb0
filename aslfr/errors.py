"""User-facing errors: bad input gets a short message naming the file (and row) and the fix."""

from __future__ import annotations

import functools
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


class TrainingDiverged(HarnessError):
    """The loss became NaN/inf; the message names the last good checkpoint."""


def exit_on_error(fn: F) -> F:
    """Turn a HarnessError into one line on stderr and its exit status, without a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except HarnessError as e:
            print(f"error: {e}", file=sys.stderr, flush=True)
            sys.exit(e.exit_code)

    return wrapper  # type: ignore[return-value]
