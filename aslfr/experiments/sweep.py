"""W&B sweep definitions (sweeps/*.yaml) and the offline runner that executes them with no W&B
server:

    aslfr-sweep sweeps/depth_width.yaml --trials 20 [--out DIR] [--name NAME] [--gpus 0,1]
                          [--storage URL] [hydra overrides for every trial, e.g. debug=default]

A definition's `command` runs `python train.py ${args_no_hyphens}`: the agent turns each proposed
parameter into `key=value` (a Hydra override; W&B writes None as the string "None"). `agent_args`
builds exactly those arguments. The runner lets Optuna propose the parameters (bayes: TPE,
random, grid), runs each trial as a train.py process with those arguments (plus the run directory
and the overrides given for every trial), logs it offline in the sweep's W&B group, reads
`summary.json` back and tells Optuna. A line is printed at each epoch of the running trial.

Storage. The study lives in Optuna's journal file `DIR/optuna.journal` (append-only, with a lock
that works over NFS), or in any database with `--storage URL` (SQLAlchemy). Several runners may
work on one sweep at once, on one machine or on several sharing DIR (or the database): a lock next
to the journal (`DIR/sweep.lock`) serializes their set-up (grid points are queued once) and the
choice of each next trial, so no point runs twice and `--trials N` means N finished trials in all.

Interrupted trials. Each trial records its runner (host, pid) and a heartbeat renewed every
HEARTBEAT_S while it runs. A trial still "running" in storage is taken as interrupted only when its
runner is gone: on this host, its pid is dead; on another, its heartbeat is older than GRACE_S.
It is then recorded as failed (user attr `interrupted`) and its parameters are queued again, so a
killed sweep resumes where it stopped. Ctrl-C does the same at once for the running trial. An
interrupted trial does not count towards --trials; a trial that crashed on its own does (it is
recorded as failed and the sweep goes on).

The record. The study keeps the definition and the overrides it was started with (study user
attrs); a run with another definition or other overrides is refused rather than resumed, so the
runner never reports another sweep's results as its own (--name or --out start a new one).

`early_terminate: hyperband` prunes trials on the val/score of each evaluation (read from the
checkpoints as they are written). The inference budget is a hard constraint: over-budget trials
end in seconds and are infeasible for the sampler.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import yaml

from aslfr import names
from aslfr.errors import DataError, Interrupted, exit_on_error
from aslfr.train.checkpoints import Checkpoints

log = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parents[2]  # the repository: train.py, conf/

ARG_MACROS = ("${args_no_hyphens}", "${args_override_hydra}")

JOURNAL = "optuna.journal"  # the default storage, in the sweep directory
SETUP_LOCK = "sweep.lock"  # held while a runner sets the sweep up or picks its next trial
HEARTBEAT_S = 30.0  # a running trial's "heartbeat" user attr is renewed this often
GRACE_S = 300.0  # another host's trial is interrupted once silent this long
POLL_S = 0.5  # how often the running trial's checkpoints are read
STARTUP_TRIALS = 5  # bayes: random proposals before TPE takes over (Optuna's default 10
# is a third of a typical 20-40 trial sweep)
END_GRACE_S = 10.0  # after Ctrl-C, time the trial has to close its W&B run by itself


def load(path: Path) -> dict:
    """A sweep definition, checked against W&B's own sweep schema (the `sweeps` package)."""
    path = Path(path)
    try:
        definition = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise DataError(f"{path}: cannot read the sweep definition ({e})") from None
    with warnings.catch_warnings():
        # sweeps 0.2 declares its pydantic models with v1 config keys; pydantic 2 warns about
        # them on import, on every run, and there is nothing for the user to do about it.
        warnings.filterwarnings(
            "ignore", message="Valid config keys have changed in V2", category=UserWarning
        )
        from sweeps.config import fill_validate_schema  # W&B's schema: sweeps/config/schema.json

    try:
        fill_validate_schema(definition)
    except Exception as e:  # jsonschema.ValidationError and friends: the message says what
        raise DataError(f"{path}: not a valid W&B sweep definition: {e}".split("\n")[0]) from None
    if not any(m in definition.get("command", []) for m in ARG_MACROS):
        raise DataError(
            f"{path}: `command` must pass the parameters to train.py as Hydra "
            f"overrides ({' or '.join(ARG_MACROS)})"
        )
    return definition


def format_value(value) -> str:
    """A parameter value as the W&B agent writes it after `key=`."""
    if value is None:
        return "None"
    if isinstance(value, bool):
        return str(value)  # True / False, which Hydra's grammar reads as booleans
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(format_value(v) for v in value) + "]"
    return str(value)


def agent_args(params: Mapping) -> list[str]:
    """`${args_no_hyphens}`: one `key=value` per parameter, in the definition's order."""
    return [f"{key}={format_value(value)}" for key, value in params.items()]


def grid(definition: Mapping) -> list[dict]:
    """Every combination of a definition's `value`/`values` parameters (method: grid)."""
    params = definition["parameters"]
    choices = {k: p["values"] if "values" in p else [p["value"]] for k, p in params.items()}
    return [dict(zip(choices, combo)) for combo in itertools.product(*choices.values())]


# -- the offline runner -------------------------------------------------------------------------
def distributions(definition: Mapping) -> dict:
    """Optuna distributions for the definition's parameters (fixed `value`s are left out)."""
    import optuna.distributions as d

    out = {}
    for key, p in definition["parameters"].items():
        kind = p.get("distribution")
        if "values" in p:
            out[key] = d.CategoricalDistribution(list(p["values"]))
        elif "value" in p:
            continue
        elif kind in ("log_uniform_values", "uniform", None) and isinstance(p.get("min"), float):
            out[key] = d.FloatDistribution(float(p["min"]), float(p["max"]), log=kind == "log_uniform_values")
        elif kind in ("int_uniform", None) and isinstance(p.get("min"), int):
            out[key] = d.IntDistribution(int(p["min"]), int(p["max"]))
        else:
            raise DataError(
                f"parameter {key}: distribution {kind!r} is not supported offline "
                "(use values, value, uniform, log_uniform_values or int_uniform)"
            )
    return out


def make_sampler(definition: Mapping, seed: int):
    import optuna

    if definition["method"] in ("grid", "random"):  # grid: every point is enqueued (set_up)
        return optuna.samplers.RandomSampler(seed=seed)
    # bayes. Over-budget trials carry a positive constraint (run_trial): TPE learns from them as
    # infeasible rather than as bad scores. constant_liar: trials running in other runners count
    # as bad guesses, so runners working at once do not all propose the same region.
    # TPE models good and bad trials once it has a few: the first STARTUP_TRIALS are random
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=STARTUP_TRIALS, constant_liar=True)


def make_study(definition: Mapping, name: str, storage, seed: int):
    """The study `name` in `storage` (a URL or an Optuna storage), created if it does not exist."""
    import optuna

    goal = definition.get("metric", {}).get("goal", "maximize")
    et = definition.get("early_terminate") or {}
    pruner = (
        optuna.pruners.HyperbandPruner(
            min_resource=int(et.get("min_iter", 1)), reduction_factor=int(et.get("eta", 3))
        )
        if et.get("type") == "hyperband"
        else optuna.pruners.NopPruner()
    )
    return optuna.create_study(
        study_name=name,
        storage=storage,
        sampler=make_sampler(definition, seed),
        pruner=pruner,
        direction=goal,
        load_if_exists=True,
    )


# -- storage ------------------------------------------------------------------------------------
DRIVERS = {  # module SQLAlchemy failed to import -> how to install it
    "MySQLdb": "pip install mysqlclient, or pip install pymysql and write mysql+pymysql://...",
    "psycopg2": "pip install psycopg2-binary",
    "psycopg": "pip install 'psycopg[binary]'",
}


def shown_url(url: str) -> str:
    """The URL with its password hidden, for messages."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not even a URL: the error about it says so
        return url


def describe_storage(out: Path, url: str | None) -> str:
    return str(out / JOURNAL) if url is None else shown_url(url)


def open_storage(out: Path, url: str | None = None):
    """The storage of the sweep in `out`: the journal file `out/optuna.journal`, or the database
    at `url` (any SQLAlchemy URL). One line (DataError) if it cannot be opened."""
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalFileSymlinkLock

    if url is None:
        path = out / JOURNAL
        try:
            # The symlink lock: link(2) is atomic on every NFS version, where the O_EXCL open of
            # JournalFileOpenLock needs NFSv3 or later. Runners on several machines may share DIR.
            return optuna.storages.JournalStorage(
                JournalFileBackend(str(path), lock_obj=JournalFileSymlinkLock(str(path)))
            )
        except OSError as e:
            raise DataError(
                f"cannot open the sweep's journal {path}: {e.strerror or e}; give a "
                "writable sweep directory with --out DIR"
            ) from None
    try:
        storage = optuna.storages.RDBStorage(url)
        optuna.get_all_study_names(storage)  # reached at all?
        return storage
    except Exception as e:  # ImportError (driver), sqlalchemy errors (URL, connection), ...
        cause = e.__cause__ if isinstance(e, ImportError) and e.__cause__ else e
        why = (str(cause).splitlines() or [type(cause).__name__])[0]
        if isinstance(cause, ImportError):
            module = cause.name or "the database driver"
            fix = f"install its driver ({DRIVERS.get(module, f'pip install {module}')})"
        else:
            fix = (
                "check the URL (SQLAlchemy's form, e.g. mysql+pymysql://user:password@host/db)"
                " and that the database is reachable"
            )
        raise DataError(
            f"cannot open --storage {shown_url(url)}: {why}; {fix}, or leave out "
            f"--storage to keep the study in the journal file {out / JOURNAL} (it "
            "works for several runners sharing that directory)"
        ) from None


# -- runners and interrupted trials -------------------------------------------------------------
def _proc_stat(pid: int) -> tuple[str, str] | None:
    """(state, start time in clock ticks after boot) of a process, from Linux's /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return fields[0], fields[19]
    except (OSError, IndexError):
        return None


def this_runner() -> dict:
    """Who runs a trial: host and pid, and the process's start time where /proc has it (a pid
    is reused sooner or later; the pair is not)."""
    pid = os.getpid()
    stat = _proc_stat(pid)
    return {"host": socket.gethostname(), "pid": pid, **({"started": stat[1]} if stat else {})}


def runner_alive(runner: Mapping) -> bool:
    """Whether a runner of this host still runs."""
    pid = int(runner["pid"])
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process: it exists
    stat = _proc_stat(pid)
    if stat is None:
        return True  # no /proc here: the pid is all there is to go by
    return stat[0] != "Z" and runner.get("started", stat[1]) == stat[1]


def why_interrupted(trial, now: float, host: str) -> str | None:
    """Why a trial that storage says is running has in fact been interrupted, or None while its
    runner may still be working on it. A runner of this host is asked directly (its pid); one of
    another host can only be judged by its heartbeat, renewed every HEARTBEAT_S while it runs."""
    runner = trial.user_attrs.get("runner")
    if runner and runner.get("host") == host:
        return None if runner_alive(runner) else f"its runner (pid {runner['pid']}) is gone"
    beat = trial.user_attrs.get("heartbeat")
    if beat is None and trial.datetime_start is not None:  # a runner from before heartbeats
        beat = trial.datetime_start.timestamp()
    if beat is None or now - beat <= GRACE_S:
        return None
    who = f"{runner.get('host')}, pid {runner.get('pid')}" if runner else "an unknown runner"
    return f"no heartbeat from its runner ({who}) for {now - beat:.0f} s"


def interrupt(study, trial, reason: str) -> bool:
    """Record a running trial (a FrozenTrial) as interrupted: user attr `interrupted`, failed, its
    parameters queued again. False if it ended meanwhile (or another runner recorded it first:
    telling a finished trial fails, so only one runner queues the parameters again)."""
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.trial import TrialState

    try:
        # Optuna has no public call to set an attribute of a trial this process did not ask for.
        study._storage.set_trial_user_attr(trial._trial_id, "interrupted", reason)
        study.tell(trial.number, state=TrialState.FAIL)
    except (ValueError, UpdateFinishedTrialError):
        return False
    study.enqueue_trial(dict(trial.params), user_attrs={"retry_of": trial.number})
    return True


def reclaim(study, now: float | None = None) -> list:
    """Record every running trial whose runner is gone as interrupted (see `why_interrupted`);
    returns those trials."""
    from optuna.trial import TrialState

    now, host, taken = time.time() if now is None else now, socket.gethostname(), []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        reason = why_interrupted(trial, now, host)
        if reason and interrupt(study, trial, reason):
            log.info(
                "trial %d was interrupted (%s): recorded as failed, its parameters queued again",
                trial.number,
                reason,
            )
            taken.append(trial)
    return taken


def counted(trial) -> bool:
    """Whether a trial counts towards --trials: finished, and not failed by an interruption (its
    parameters were queued again)."""
    from optuna.trial import TrialState

    if trial.state == TrialState.FAIL:
        return not trial.user_attrs.get("interrupted")
    return trial.state.is_finished()


class Stop:
    """SIGINT (Ctrl-C) and SIGTERM while the runner works: noted here and acted on where it is
    safe. A KeyboardInterrupt raised inside a storage write could leave a trial half-recorded, or
    worse: Optuna's journal lock, interrupted while it waits, removes the lock file even when
    another runner holds it."""

    def __init__(self):
        self.signum: int | None = None

    def __bool__(self) -> bool:
        return self.signum is not None

    def note(self, signum, frame) -> None:
        if self.signum is None:
            self.signum = signum

    @contextmanager
    def catching(self) -> Iterator[Stop]:
        if threading.current_thread() is not threading.main_thread():  # signals: main only
            yield self
            return
        previous = {s: signal.signal(s, self.note) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield self
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)

    def exit(self):
        """Leave the runner as the signal asks: KeyboardInterrupt (130), Interrupted (143)."""
        if self.signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise Interrupted(f"stopped by signal {signal.Signals(self.signum).name}")

    @property
    def what(self) -> str:
        return "Ctrl-C" if self.signum == signal.SIGINT else signal.Signals(self.signum).name


@contextmanager
def holding(lock, stop: Stop, what: str) -> Iterator[None]:
    """Hold the file lock for the block; a signal while waiting for it stops the runner."""
    import filelock

    waited = time.monotonic()
    while True:
        try:
            lock.acquire(timeout=1)
            break
        except filelock.Timeout:
            if stop:
                stop.exit()
            if time.monotonic() - waited > 30:
                log.info("waiting for %s (another runner holds %s)", what, lock.lock_file)
                waited = time.monotonic()
    try:
        yield
    finally:
        lock.release()


# -- set-up: the study and its record -----------------------------------------------------------
def _flat(tree, prefix: str = "") -> dict:
    if isinstance(tree, Mapping) and tree:
        return {k: v for key, sub in tree.items() for k, v in _flat(sub, f"{prefix}{key}.").items()}
    return {prefix.rstrip("."): tree}


def _changes(old: Mapping, new: Mapping) -> list[str]:
    a, b = _flat(old), _flat(new)
    return [
        f"{k} {json.dumps(a.get(k))} -> {json.dumps(b.get(k))}"
        for k in sorted(set(a) | set(b))
        if a.get(k) != b.get(k)
    ]


def _shown(overrides) -> str:
    return repr(" ".join(overrides)) if overrides else "none"


def set_up(
    definition: Mapping,
    name: str,
    out: Path,
    storage_url: str | None,
    overrides: list[str],
    seed: int,
    path: Path,
):
    """Open (or create) the study, check it was asked what it is asked now, and queue a grid's
    points. Called with the set-up lock held."""
    import optuna

    storage = open_storage(out, storage_url)
    where = describe_storage(out, storage_url)
    new = "start a new sweep: --name NEW (directory sweeps-out/NEW) or another --out DIR"
    studies = optuna.get_all_study_names(storage)
    others = sorted(set(studies) - {name})
    if storage_url is None and others:  # trial-NNN directories would be shared
        raise DataError(
            f"{out} holds sweep {others[0]!r} ({where}), not {name!r}: run "
            f"{name!r} in another directory (--out DIR)"
        )
    trial_dirs = sorted(p.name for p in out.glob("trial-*"))
    if name not in studies and trial_dirs:
        old_db = out / "optuna.db"
        hint = (
            f"resume that sweep with --storage sqlite:///{old_db} (its study, kept there "
            "before the journal file), or "
            if old_db.exists()
            else ""
        )
        raise DataError(
            f"{out} holds trials ({', '.join(trial_dirs[:3])}"
            f"{', ...' if len(trial_dirs) > 3 else ''}) of a sweep that is not in "
            f"{where}, so sweep {name!r} was not started there (it would reuse their "
            f"directories): {hint}{new}"
        )
    study = make_study(definition, name, storage, seed)

    asked = {
        "definition": json.loads(json.dumps(definition, default=str)),  # as stored
        "overrides": sorted(overrides),
    }
    recorded = study.user_attrs
    if "definition" not in recorded:  # a new study (or one from before the record)
        for key, value in asked.items():
            study.set_user_attr(key, value)
        study.set_user_attr("definition_file", str(Path(path).resolve()))
    else:
        diffs = []
        if recorded.get("overrides") != asked["overrides"]:
            diffs.append(
                f"the overrides for every trial are {_shown(asked['overrides'])} now, "
                f"{_shown(recorded.get('overrides'))} in the sweep"
            )
        changed = _changes(recorded["definition"], asked["definition"])
        if changed:
            diffs.append(
                f"the definition differs ({'; '.join(changed[:3])}{'; ...' if len(changed) > 3 else ''})"
            )
        if diffs:
            raise DataError(
                f"sweep {name!r} ({where}) was started with another request, so it was not "
                f"resumed: {' and '.join(diffs)}. Resume it with its own definition "
                f"({recorded.get('definition_file', 'recorded in the study')}) and overrides, "
                f"or {new}"
            )

    if definition["method"] == "grid":  # Optuna's GridSampler cannot run outside study.optimize
        dists = distributions(definition)
        for point in grid(definition):  # under the set-up lock: two runners cannot both add one
            study.enqueue_trial({k: v for k, v in point.items() if k in dists}, skip_if_exists=True)
    return study


# -- one trial ----------------------------------------------------------------------------------
def _progress(run_dir: Path, metric: str) -> tuple[int, float | None] | None:
    """(epoch, last evaluation's `metric` or None) of a running trial's newest checkpoint."""
    state = Checkpoints(run_dir / "checkpoints").latest_state()
    try:
        epoch = int(state["epoch"])
    except (KeyError, TypeError, ValueError):  # no checkpoint yet
        return None
    score = (state.get("last_eval") or {}).get(metric)
    return epoch, None if score is None else float(score)


def _planned_epochs(run_dir: Path) -> int | None:
    """trainer.epochs of a running trial, from the configuration it records (.hydra/)."""
    try:
        record = yaml.safe_load((run_dir / ".hydra" / "config.yaml").read_text())
        return int(record["trainer"]["epochs"])  # (a file another process writes: checked here)
    except (OSError, yaml.YAMLError, KeyError, TypeError, ValueError):
        return None


def _end(proc: subprocess.Popen, signum: int | None) -> None:
    """Let a trial's process end. After Ctrl-C it has the signal too (same process group) and
    closes its W&B run: it gets END_GRACE_S for that, then SIGTERM (which it also unwinds from),
    then SIGKILL."""
    if signum == signal.SIGINT:
        try:
            proc.wait(timeout=END_GRACE_S)
            return
        except subprocess.TimeoutExpired:
            pass
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def run_trial(
    study,
    trial,
    definition: Mapping,
    name: str,
    out: Path,
    overrides: list[str],
    metric: str,
    *,
    stop: Stop | None = None,
) -> dict:
    """Run one proposed trial as train.py; tell the study how it ended. On a signal (`stop`) the
    trial is recorded as interrupted at once and its parameters queued again."""
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.trial import TrialState

    stop = stop if stop is not None else Stop()
    params = {k: p["value"] for k, p in definition["parameters"].items() if "value" in p}
    params = {**params, **trial.params}
    params = {k: params[k] for k in definition["parameters"]}  # the definition's order
    run_dir = out / f"trial-{trial.number:03d}"
    cmd = [
        sys.executable,
        "train.py",
        *agent_args(params),
        *overrides,
        f"hydra.run.dir={run_dir}",
        f"wandb.gather_dir={out}",  # out/wandb: every trial's W&B run, for `wandb leet`
    ]
    trial.set_user_attr("run_dir", str(run_dir))
    trial.set_user_attr("args", agent_args(params))
    env = {**os.environ, "WANDB_RUN_GROUP": name, "WANDB_MODE": os.environ.get("WANDB_MODE", "offline")}
    run_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with open(run_dir / "trial.log", "w") as logf:
        # Same process group as the runner: Ctrl-C (or killing the sweep) stops the trial too.
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=logf, stderr=subprocess.STDOUT)
        shown, planned, pruned = 0, None, False
        beat = time.monotonic()
        try:
            while proc.poll() is None and not stop:
                time.sleep(POLL_S)
                if time.monotonic() - beat >= HEARTBEAT_S:
                    trial.set_user_attr("heartbeat", time.time())
                    beat = time.monotonic()
                progress = _progress(run_dir, metric)
                if progress is None or progress[0] <= shown:
                    continue
                shown, score = progress
                planned = planned or _planned_epochs(run_dir)
                last = f", last {metric} {score:.4f}" if score is not None else ""
                print(f"[{name}] trial {trial.number}: epoch {shown}/{planned or '?'}{last}", flush=True)
                if score is not None:  # the pruner sees the last evaluation at each epoch
                    trial.report(score, shown)
                    if trial.should_prune():
                        proc.terminate()
                        proc.wait()
                        pruned = True
        except UpdateFinishedTrialError:
            # Another runner took this trial for interrupted (no heartbeat for GRACE_S: a stalled
            # machine or filesystem) and queued its parameters again: they run there.
            _end(proc, None)
            return {
                "state": "taken over by another runner (recorded there as interrupted)",
                "seconds": time.perf_counter() - t0,
            }
    seconds = time.perf_counter() - t0
    summary_path = run_dir / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    succeeded = proc.poll() == 0 and metric in summary
    if stop and not pruned and not succeeded:
        if interrupt(study, study._storage.get_trial(trial._trial_id), f"stopped by {stop.what}"):
            print(
                f"[{name}] trial {trial.number} {agent_args(params)}: interrupted by "
                f"{stop.what}; recorded as failed and its parameters queued again: it runs "
                "again when the same command is run again",
                flush=True,
            )
        _end(proc, stop.signum)
        return {"state": "interrupted", "seconds": seconds}
    try:
        if pruned:
            study.tell(trial, state=TrialState.PRUNED)
            return {"state": "pruned", "seconds": seconds, **summary}
        if not succeeded:
            study.tell(trial, state=TrialState.FAIL)
            return {
                "state": f"failed (exit {proc.returncode}; see {run_dir / 'trial.log'})",
                "seconds": seconds,
            }
        if summary.get(names.BUDGET_OK) is False:
            trial.set_user_attr("over_budget", float(summary[names.INFER_LATENCY_MS]))
            trial.set_constraint("over_budget", float(summary[names.INFER_LATENCY_MS]))  # infeasible
        value = summary.get(f"best/{metric}")
        if value is None:  # over-budget runs report only the metric itself
            value = summary[metric]
        study.tell(trial, float(value))
    except (ValueError, UpdateFinishedTrialError):  # tell/set_* of a finished trial
        if not study._storage.get_trial(trial._trial_id).state.is_finished():
            raise  # something else
        # taken over meanwhile (see above)
        return {"state": f"taken over by another runner; its result stays in {run_dir}", "seconds": seconds}
    return {
        "state": "over budget" if summary.get(names.BUDGET_OK) is False else "complete",
        "value": float(value),
        "seconds": seconds,
        **summary,
    }


# -- the sweep ----------------------------------------------------------------------------------
def run_sweep(
    path: Path,
    trials: int,
    out: Path | None = None,
    storage: str | None = None,
    overrides: list[str] = (),
    seed: int = 0,
    name: str | None = None,
) -> Path:
    """Run the sweep `path` until it has `trials` finished trials (all runners together) or, for a
    grid, no point left; returns the sweep directory."""
    import filelock
    from optuna.trial import TrialState

    definition = load(path)
    name = name or Path(path).stem
    keys = {o.split("=", 1)[0].lstrip("+~") for o in overrides}
    clash = sorted(keys & set(definition["parameters"]))
    if clash:
        raise DataError(
            f"{path}: {', '.join(clash)} is a parameter of the sweep; leave it out of "
            "the overrides for every trial (or change the definition)"
        )
    out = Path(out or ROOT / "sweeps-out" / name).resolve()
    out.mkdir(parents=True, exist_ok=True)
    metric = definition.get("metric", {}).get("name", names.VAL_SCORE)
    dists = distributions(definition)
    is_grid = definition["method"] == "grid"
    lock = filelock.FileLock(out / SETUP_LOCK)  # an OS lock: it dies with a killed runner
    with Stop().catching() as stop:
        with holding(lock, stop, "the sweep's set-up"):
            study = set_up(definition, name, out, storage, list(overrides), seed, path)
        while True:
            with holding(lock, stop, "the choice of the next trial"):
                if stop:
                    stop.exit()
                reclaim(study)
                all_trials = study.get_trials(deepcopy=False)
                finished = sum(counted(t) for t in all_trials)
                running = [t for t in all_trials if t.state == TrialState.RUNNING]  # elsewhere
                waiting = any(t.state == TrialState.WAITING for t in all_trials)
                if finished + len(running) >= trials or (is_grid and not waiting):
                    break
                t0 = time.perf_counter()
                # A seed per trial: runners started together must not propose the same points.
                study.sampler = make_sampler(definition, seed + len(all_trials))
                trial = study.ask(dists)
                trial.set_user_attr("runner", this_runner())
                trial.set_user_attr("heartbeat", time.time())
            result = run_trial(study, trial, definition, name, out, list(overrides), metric, stop=stop)
            if result["state"] == "interrupted":
                stop.exit()
            overhead = time.perf_counter() - t0 - result["seconds"]
            value = f" {metric} {result['value']:.4f}" if "value" in result else ""
            print(
                f"[{name}] trial {trial.number} {trial.user_attrs['args']}: {result['state']}"
                f"{value} in {result['seconds']:.1f} s (+{overhead:.2f} s sweep overhead)",
                flush=True,
            )
    if running:
        where = sorted(
            {
                f"{t.user_attrs.get('runner', {}).get('host')}, pid "
                f"{t.user_attrs.get('runner', {}).get('pid')}"
                for t in running
            }
        )
        print(
            f"[{name}] nothing left for this runner: {finished} trials finished, "
            f"{len(running)} still running in other runners ({'; '.join(where)}): {out}",
            flush=True,
        )
    else:
        print(f"[{name}] done: {finished} trials finished: {out} (aslfr-compare {out})", flush=True)
    return out


def gpu_env(gpu: str, base: Mapping[str, str] | None = None) -> dict:
    """The environment of a runner pinned to one GPU: its trials see only that one."""
    return {**(os.environ if base is None else base), "CUDA_VISIBLE_DEVICES": str(gpu)}


def per_gpu(argv: list[str], gpus: list[str]) -> int:
    """`--gpus 0,1`: one runner of this sweep per GPU (`argv` less --gpus), each in gpu_env, so
    that as many trials run at once, each on its own GPU. They share the sweep as any runners
    do. Ctrl-C reaches them all (one process group); returns the worst exit status."""
    cmd = [sys.executable, "-m", "aslfr.experiments.sweep", *argv]
    runners = []
    for gpu in gpus:
        print(f"GPU {gpu}: aslfr-sweep {' '.join(argv)}", flush=True)
        runners.append(subprocess.Popen(cmd, env=gpu_env(gpu)))
    status = 0
    for runner in runners:
        while True:
            try:
                status = max(status, runner.wait())
                break
            except KeyboardInterrupt:  # the runners have it too: wait for them to stop
                continue
    return status


def _without_gpus(argv: list[str]) -> list[str]:
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--gpus":
            skip = True
        elif not arg.startswith("--gpus="):
            out.append(arg)
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="aslfr-sweep", description=__doc__.splitlines()[0])
    ap.add_argument("definition", type=Path)
    ap.add_argument(
        "--trials",
        type=int,
        default=10,
        help="finished trials in all, across every runner of the sweep (default 10)",
    )
    ap.add_argument("--out", type=Path, help="sweep directory (default: sweeps-out/NAME)")
    ap.add_argument(
        "--name",
        help="the sweep's study name and W&B group (default: the "
        "definition's file name); a new name starts a new sweep",
    )
    ap.add_argument(
        "--storage",
        help="a database URL (SQLAlchemy) for the study (default: the journal file optuna.journal in --out)",
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--gpus",
        help="comma-separated GPU ids (e.g. 0,1): one runner per GPU, each trial seeing only its own",
    )
    ap.add_argument("overrides", nargs="*", help="Hydra overrides for every trial")
    argv = sys.argv[1:] if argv is None else list(argv)
    args = ap.parse_intermixed_args(argv)
    if args.gpus:
        gpus = [g.strip() for g in args.gpus.split(",") if g.strip()]
        if not gpus:
            ap.error("--gpus: give GPU ids, e.g. --gpus 0,1")
        sys.exit(per_gpu(_without_gpus(argv), gpus))
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # the runner prints its own lines
    exit_on_error(run_sweep)(
        args.definition, args.trials, args.out, args.storage, args.overrides, args.seed, args.name
    )


if __name__ == "__main__":
    main()
