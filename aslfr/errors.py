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


class Preempted(Interrupted):
    """SIGUSR1 or SIGUSR2: the scheduler's notice that the job is preempted or near its time
    limit (SLURM's `--signal`: USR2 for Hydra's submitit launcher, USR1 for slurm/agents.sbatch).
    The run unwinds as for SIGTERM, tells W&B it is being preempted (a sweep re-queues it), and
    its process ends to be requeued: the requeued job resumes from the last checkpoint."""

    def __init__(self, signum: int):
        super().__init__(f"preempted: signal {signal.Signals(signum).name}")
        self.signum = signum
        self.exit_code = 128 + signum


PREEMPTION_SIGNALS = (signal.SIGUSR1, signal.SIGUSR2)


def raise_interrupted(signum, frame):
    """A SIGTERM handler: `signal.signal(signal.SIGTERM, raise_interrupted)`."""
    raise Interrupted(f"stopped by signal {signal.Signals(signum).name}")


def raise_preempted(signum, frame):
    """A handler of PREEMPTION_SIGNALS."""
    raise Preempted(signum)


def hand_on(e: Preempted) -> None:
    """After the run has unwound from a preemption signal: pass the signal on to the handler
    that was installed before the run, if any; submitit's (Hydra's submitit launcher) then
    records the job's resubmission, requeues it and exits. Otherwise exit 128 + signal."""
    handler = signal.getsignal(e.signum)
    if callable(handler):
        handler(e.signum, None)
    sys.exit(e.exit_code)


def exit_on_error(fn: F) -> F:
    """Turn a HarnessError into one line on stderr and its exit status, without a traceback;
    likewise Ctrl-C (130) and SIGTERM (143); a preemption signal is handed on (`hand_on`)."""

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
        except Preempted as e:
            print(
                f"{e}: stopped at once to be requeued; it resumes from its last checkpoint",
                file=sys.stderr,
                flush=True,
            )
            hand_on(e)
        except Interrupted as e:
            print(f"interrupted ({e})", file=sys.stderr, flush=True)
            sys.exit(e.exit_code)

    return wrapper  # type: ignore[return-value]
