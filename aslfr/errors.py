"""User-facing errors: bad input gets a short message naming the file (and row) and the fix."""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable
from typing import TypeVar

log = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable)


class DataError(Exception):
    """Input the user must fix: the message says which file/row is wrong and what to do."""


def exit_on_data_error(fn: F) -> F:
    """Turn a DataError into one line on stderr and exit status 2, without a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except DataError as e:
            print(f"error: {e}", file=sys.stderr, flush=True)
            sys.exit(2)

    return wrapper  # type: ignore[return-value]
