"""W&B sweep definitions (sweeps/*.yaml) and the offline runner that executes them with no W&B
server:

    aslfr-sweep sweeps/depth_width.yaml --trials 20 [--out DIR] [--name NAME] [--gpus 0,1]
                          [--storage URL] [hydra overrides for every trial, e.g. debug=default]

A definition's `command` (e.g. `${env} python ${program} ${args_no_hyphens}`) is expanded as
`wandb agent` expands it, with W&B's own helpers: each proposed parameter becomes `key=value` (a
Hydra override; None is written "None"). The runner lets Optuna propose the parameters (bayes:
TPE, random, grid), runs each trial as that command (plus the overrides given for every trial and
the run directory), logs it offline in the sweep's W&B group, reads its result back and tells
Optuna. A line is printed at each epoch of the running trial.

The result. A trial's value is `best/METRIC` from its `summary.json` where the summary has it
(best/val/score: the shipped model's), otherwise the best of the metric's evaluations in the
goal's direction (what W&B summarizes for the metric), from the trial's W&B record and its
checkpoints: a sweep on val/levenshtein (minimize) gets each trial's lowest distance.

Storage. The study lives in Optuna's journal file `DIR/optuna.journal` (append-only, with a lock
that works over NFS), or in any database with `--storage URL` (SQLAlchemy). Several runners may
work on one sweep at once, on one machine or on several sharing DIR (or the database): a lock next
to the journal (`DIR/sweep.lock`) serializes their set-up (grid points are queued once) and the
choice of each next trial, so no point runs twice and `--trials N` means N finished trials in all.
A runner with nothing left to start waits while other runners' trials run, and ends with them.

Interrupted trials. A trial's runner renews the trial's heartbeat (a user attr) every HEARTBEAT_S
while it runs. A trial still "running" in storage whose heartbeat is older than GRACE_S is taken
as interrupted, on any host: it is recorded as failed and Optuna's RetryHeartbeatStaleTrialCallback
queues its parameters again (the retry records the trials it retries: `retry_history`), so a
killed sweep resumes where it stopped. Optuna's own heartbeat serves RDBStorage only, and only
inside `study.optimize` (optuna 5.0's JournalStorage has none); the user attr works the same in
every storage. Ctrl-C does the same at once for the running trial. An interrupted trial does not
count towards --trials; a trial that crashed on its own does (it is recorded as failed and the
sweep goes on).

The record. The study keeps the definition and the overrides it was started with (study user
attrs); a run with another definition or other overrides is refused rather than resumed, so the
runner never reports another sweep's results as its own (--name or --out start a new one).

`early_terminate: hyperband` prunes trials on the metric of each evaluation (read from the
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
GRACE_S = 120.0  # a running trial is interrupted once its heartbeat is this old (4 missed beats)
WAIT_S = 2.0  # how often a runner with nothing to start looks at the others' trials
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


def macros(params: Mapping) -> dict[str, list[str]]:
    """The argument macros of a sweep's `command` for proposed parameters, made by W&B's own
    helper, the one `wandb agent` calls: `args_no_hyphens` is one `key=value` per parameter in
    the definition's order (None written "None", True "True": what Hydra's grammar reads)."""
    from wandb.sdk.launch.sweeps import utils

    return utils.create_sweep_command_args({"args": {k: {"value": v} for k, v in params.items()}})


def agent_args(params: Mapping) -> list[str]:
    """`${args_no_hyphens}`: what W&B's agent passes train.py for these parameters."""
    return macros(params)["args_no_hyphens"]


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
def this_runner() -> dict:
    """Who runs a trial (host and pid): shown while other runners wait for it."""
    return {"host": socket.gethostname(), "pid": os.getpid()}


def why_stale(trial, now: float) -> str | None:
    """Why a trial that storage says is running has in fact been interrupted (its runner has not
    renewed its heartbeat for GRACE_S), or None while its runner may still be working on it."""
    beat = trial.user_attrs.get("heartbeat")
    if beat is None and trial.datetime_start is not None:  # asked, not yet marked
        beat = trial.datetime_start.timestamp()
    if beat is None or now - beat <= GRACE_S:
        return None
    runner = trial.user_attrs.get("runner")
    who = f"{runner.get('host')}, pid {runner.get('pid')}" if runner else "an unknown runner"
    return f"no heartbeat from its runner ({who}) for {now - beat:.0f} s"


def _retry():
    """Optuna's own re-queueing of an interrupted trial (the callback its RDB storage runs on a
    heartbeat-stale trial): a waiting trial with the same parameters, which records the trials it
    retries (`retry_history`)."""
    import optuna
    from optuna.storages import RetryHeartbeatStaleTrialCallback

    with warnings.catch_warnings():  # experimental in Optuna 5: it says so on every use
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return RetryHeartbeatStaleTrialCallback()


def retried(trial) -> list[int]:
    """The numbers of the interrupted trials whose parameters `trial` runs again."""
    import optuna
    from optuna.storages import RetryHeartbeatStaleTrialCallback

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return RetryHeartbeatStaleTrialCallback.retry_history(trial)


def requeue(study, trial) -> bool:
    """Record a running trial (a FrozenTrial) as failed and queue its parameters again. False if
    it ended meanwhile or another runner recorded it first: telling a finished trial fails, so
    only one runner queues the parameters again."""
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.trial import TrialState

    try:
        study.tell(trial.number, state=TrialState.FAIL)
    except (ValueError, UpdateFinishedTrialError):
        return False
    _retry()(study, trial)
    return True


def reclaim(study, now: float | None = None) -> list:
    """Record every running trial whose heartbeat is stale as interrupted (failed, its parameters
    queued again); returns those trials."""
    from optuna.trial import TrialState

    now, taken = time.time() if now is None else now, []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        reason = why_stale(trial, now)
        if reason and requeue(study, trial):
            log.info(
                "trial %d was interrupted (%s): recorded as failed, its parameters queued again",
                trial.number,
                reason,
            )
            taken.append(trial)
    return taken


def finished_trials(trials) -> int:
    """How many trials count towards --trials: finished ones, less the failures that were
    interruptions (their parameters were queued again)."""
    from optuna.trial import TrialState

    interrupted = {n for t in trials for n in retried(t)}
    return sum(
        t.state.is_finished() and not (t.state == TrialState.FAIL and t.number in interrupted) for t in trials
    )


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

    def sleep(self, seconds: float) -> None:
        """Sleep, less if a signal comes."""
        end = time.monotonic() + seconds
        while not self and time.monotonic() < end:
            time.sleep(min(0.2, max(0.0, end - time.monotonic())))

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
def trial_command(
    definition: Mapping, params: Mapping, run_dir: Path, out: Path, name: str, overrides: list[str]
) -> tuple[list[str], dict]:
    """The command and environment of one trial. The definition's `command` is expanded as `wandb
    agent` expands it (wandb_agent.py, Agent._command_run): W&B's own helpers for the argument
    and `${envvar:NAME}` macros, `${env}` /usr/bin/env, `${interpreter}` python, `${program}` the
    definition's program. Then come the overrides for every trial, the run directory and the
    sweep's W&B directory (out/wandb: every trial's run, for `wandb leet`). `python` is this
    environment's: its bin directory comes first on the PATH, as `make agent` puts it for W&B's
    agent. The trial logs offline (unless WANDB_MODE says otherwise) in the sweep's W&B group."""
    from wandb.sdk.launch.sweeps import utils

    expanded = {
        **macros(params),
        "env": ["/usr/bin/env"],
        "interpreter": ["python"],
        "program": [str(definition["program"])],
        "args_json_file": [str(run_dir / "args.json")],
    }
    cmd: list[str] = []
    for part in utils.create_sweep_command(list(definition["command"])):
        part = str(part)
        cmd += (expanded.get(part[2:-1]) or []) if part.startswith("${") and part.endswith("}") else [part]
    if "${args_json_file}" in definition["command"]:
        (run_dir / "args.json").write_text(expanded["args_json"][0])
    cmd += [*overrides, f"hydra.run.dir={run_dir}", f"wandb.gather_dir={out}"]
    env = {
        **os.environ,
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
        "WANDB_RUN_GROUP": name,
        "WANDB_MODE": os.environ.get("WANDB_MODE", "offline"),
    }
    return cmd, env


def _progress(run_dir: Path, metric: str) -> tuple[int, float | None] | None:
    """(epoch, last evaluation's `metric` or None) of a running trial's newest checkpoint."""
    state = Checkpoints(run_dir / names.CHECKPOINTS_DIR).latest_state()
    try:
        epoch = int(state["epoch"])
    except (KeyError, TypeError, ValueError):  # no checkpoint yet
        return None
    score = (state.get("last_eval") or {}).get(metric)
    return epoch, None if score is None else float(score)


def _planned_epochs(run_dir: Path) -> int | None:
    """trainer.epochs of a running trial, from the configuration it records (.hydra/)."""
    try:
        record = yaml.safe_load((run_dir / names.RECORD_DIR / names.CONFIG_FILE).read_text())
        return int(record["trainer"]["epochs"])  # (a file another process writes: checked here)
    except (OSError, yaml.YAMLError, KeyError, TypeError, ValueError):
        return None


def result(summary: Mapping, run_dir: Path, metric: str, goal: str, seen: list[float]) -> float | None:
    """A finished trial's value of the sweep's metric: `best/METRIC` where the summary has it
    (best/val/score: the shipped model's), otherwise the best evaluation in the goal's direction,
    as W&B summarizes the metric: every value the trial logged to W&B (its record in run_dir),
    the evaluations the runner read from its checkpoints (`seen`) and the summary's last.
    None if the trial reported none."""
    from aslfr.experiments.offline import read_runs

    if summary.get(f"best/{metric}") is not None:
        return float(summary[f"best/{metric}"])
    values = [*seen, *([summary[metric]] if summary.get(metric) is not None else [])]
    values += [
        row[metric] for run in read_runs(run_dir) for row in run.history if row.get(metric) is not None
    ]
    if not values:
        return None
    return float(min(values) if goal == "minimize" else max(values))


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


def _frozen(study, number: int):
    return next(t for t in study.get_trials(deepcopy=False) if t.number == number)


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
    """Run one proposed trial (the definition's command); tell the study how it ended. On a
    signal (`stop`) the trial is recorded as interrupted at once and its parameters queued again."""
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.trial import TrialState

    stop = stop if stop is not None else Stop()
    goal = definition.get("metric", {}).get("goal", "maximize")
    params = {k: p["value"] for k, p in definition["parameters"].items() if "value" in p}
    params = {**params, **trial.params}
    params = {k: params[k] for k in definition["parameters"]}  # the definition's order
    run_dir = out / f"trial-{trial.number:03d}"
    run_dir.mkdir(parents=True, exist_ok=True)
    cmd, env = trial_command(definition, params, run_dir, out, name, overrides)
    trial.set_user_attr("run_dir", str(run_dir))
    trial.set_user_attr("args", agent_args(params))
    t0 = time.perf_counter()
    seen: list[float] = []  # the metric at each evaluation read from the checkpoints
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
                    seen.append(score)
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
    summary_path = run_dir / names.SUMMARY_FILE
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    value = result(summary, run_dir, metric, goal, seen) if proc.poll() == 0 else None
    over = summary.get(names.BUDGET_OK) is False
    if stop and not pruned and value is None:
        if requeue(study, _frozen(study, trial.number)):
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
        if over:
            trial.set_user_attr("over_budget", float(summary[names.INFER_LATENCY_MS]))
            trial.set_constraint("over_budget", float(summary[names.INFER_LATENCY_MS]))  # infeasible
        if value is None:
            study.tell(trial, state=TrialState.FAIL)
            why = (
                f"over budget and reports no {metric}"
                if over
                else f"exit {proc.returncode}"
                if proc.returncode
                else f"no {metric} reported"
            )
            return {"state": f"failed ({why}; see {run_dir / 'trial.log'})", "seconds": seconds}
        study.tell(trial, value)
    except (ValueError, UpdateFinishedTrialError):  # tell/set_* of a finished trial
        if not _frozen(study, trial.number).state.is_finished():
            raise  # something else
        # taken over meanwhile (see above)
        return {"state": f"taken over by another runner; its result stays in {run_dir}", "seconds": seconds}
    return {"state": "over budget" if over else "complete", "value": value, "seconds": seconds, **summary}


# -- the sweep ----------------------------------------------------------------------------------
def _runners(trials) -> str:
    who = ({"host": None, "pid": None, **t.user_attrs.get("runner", {})} for t in trials)
    return "; ".join(sorted({f"{r['host']}, pid {r['pid']}" for r in who}))


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
    grid, no point left; returns the sweep directory. With nothing left to start while other
    runners' trials run, it waits for them: an interrupted one's parameters run here."""
    import filelock
    from optuna.trial import TrialState
    from wandb.sdk.launch.sweeps import utils  # noqa: F401 (W&B's, for each trial's command: loaded
    # here, before the first trial's clock, so a trial's "sweep overhead" is the sweep's own)

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
    waiting_for: set[int] = set()
    with Stop().catching() as stop:
        with holding(lock, stop, "the sweep's set-up"):
            study = set_up(definition, name, out, storage, list(overrides), seed, path)
        while True:
            trial = None
            with holding(lock, stop, "the choice of the next trial"):
                if stop:
                    stop.exit()
                reclaim(study)
                all_trials = study.get_trials(deepcopy=False)
                finished = finished_trials(all_trials)
                running = [t for t in all_trials if t.state == TrialState.RUNNING]  # elsewhere
                waiting = any(t.state == TrialState.WAITING for t in all_trials)
                if not (finished + len(running) >= trials or (is_grid and not waiting)):
                    t0 = time.perf_counter()
                    # A seed per trial: runners started together must not propose the same points.
                    study.sampler = make_sampler(definition, seed + len(all_trials))
                    trial = study.ask(dists)
                    trial.set_user_attr("runner", this_runner())
                    trial.set_user_attr("heartbeat", time.time())
            if trial is None:
                if not running:
                    break
                if {t.number for t in running} != waiting_for:
                    waiting_for = {t.number for t in running}
                    print(
                        f"[{name}] {finished} trials finished; waiting for {len(running)} running in "
                        f"other runners ({_runners(running)}): if one is interrupted, it runs again here",
                        flush=True,
                    )
                stop.sleep(WAIT_S)
                continue
            outcome = run_trial(study, trial, definition, name, out, list(overrides), metric, stop=stop)
            if outcome["state"] == "interrupted":
                stop.exit()
            overhead = time.perf_counter() - t0 - outcome["seconds"]
            value = f" {metric} {outcome['value']:.4f}" if "value" in outcome else ""
            print(
                f"[{name}] trial {trial.number} {trial.user_attrs['args']}: {outcome['state']}"
                f"{value} in {outcome['seconds']:.1f} s (+{overhead:.2f} s sweep overhead)",
                flush=True,
            )
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
