"""W&B sweep definitions (sweeps/*.yaml) and the offline runner that executes them with no W&B
server:

    python -m aslfr.sweep sweeps/depth_width.yaml --trials 20 [--out DIR] [--storage URL]
                          [hydra overrides for every trial, e.g. experiment=debug]

A definition's `command` runs `python train.py ${args_no_hyphens}`: the agent turns each proposed
parameter into `key=value` (a Hydra override; W&B writes None as the string "None"). `agent_args`
builds exactly those arguments. The runner lets Optuna propose the parameters (bayes: TPE,
random, grid), runs each trial as a train.py process with those arguments (plus the run directory
and the overrides given for every trial), logs it offline in the sweep's W&B group, reads
`summary.json` back and tells Optuna. The study lives in SQLite (`DIR/optuna.db`, or any database
URL with --storage, for agents on several machines), so a killed sweep resumes where it stopped;
a crashed trial is recorded as failed and the sweep goes on. `early_terminate: hyperband` prunes
trials on the val/score of each evaluation (read from the checkpoints as they are written). The
inference budget is a hard constraint: over-budget trials end in seconds and are infeasible for
the sampler.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import yaml

from .checkpoint import Checkpoints
from .errors import DataError, exit_on_error

log = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parents[1]

ARG_MACROS = ("${args_no_hyphens}", "${args_override_hydra}")


def load(path: Path) -> dict:
    """A sweep definition, checked against W&B's own sweep schema (the `sweeps` package)."""
    path = Path(path)
    try:
        definition = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise DataError(f"{path}: cannot read the sweep definition ({e})") from None
    from sweeps.config import fill_validate_schema  # W&B's schema: sweeps/config/schema.json

    try:
        fill_validate_schema(definition)
    except Exception as e:  # jsonschema.ValidationError and friends: the message says what
        raise DataError(f"{path}: not a valid W&B sweep definition: {e}".split("\n")[0]) from None
    if not any(m in definition.get("command", []) for m in ARG_MACROS):
        raise DataError(f"{path}: `command` must pass the parameters to train.py as Hydra "
                        f"overrides ({' or '.join(ARG_MACROS)})")
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
            out[key] = d.FloatDistribution(float(p["min"]), float(p["max"]),
                                           log=kind == "log_uniform_values")
        elif kind in ("int_uniform", None) and isinstance(p.get("min"), int):
            out[key] = d.IntDistribution(int(p["min"]), int(p["max"]))
        else:
            raise DataError(f"parameter {key}: distribution {kind!r} is not supported offline "
                            "(use values, value, uniform, log_uniform_values or int_uniform)")
    return out


def make_study(definition: Mapping, name: str, storage: str, seed: int):
    import optuna

    goal = definition.get("metric", {}).get("goal", "maximize")
    method = definition["method"]
    if method in ("grid", "random"):  # grid: every point is enqueued (see run_sweep)
        sampler = optuna.samplers.RandomSampler(seed=seed)
    else:  # bayes
        # over-budget trials carry a positive constraint (run_trial): TPE learns from them as
        # infeasible rather than as bad scores
        sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=5)
    et = definition.get("early_terminate") or {}
    pruner = (optuna.pruners.HyperbandPruner(min_resource=int(et.get("min_iter", 1)),
                                             reduction_factor=int(et.get("eta", 3)))
              if et.get("type") == "hyperband" else optuna.pruners.NopPruner())
    return optuna.create_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner,
                               direction=goal, load_if_exists=True)


def _evaluations(run_dir: Path) -> tuple[int, float] | None:
    """(epoch, val/score) of the newest complete checkpoint of a running trial."""
    state = Checkpoints(run_dir / "checkpoints").latest_state()
    try:
        return int(state["epoch"]), float(state["last_eval"]["val/score"])
    except (KeyError, TypeError):  # no checkpoint yet, or no evaluation in it yet
        return None


def run_trial(study, trial, definition: Mapping, name: str, out: Path, overrides: list[str],
              metric: str) -> dict:
    """Run one proposed trial as train.py; tell the study how it ended."""
    from optuna.trial import TrialState

    params = {k: p["value"] for k, p in definition["parameters"].items() if "value" in p}
    params = {**params, **trial.params}
    params = {k: params[k] for k in definition["parameters"]}  # the definition's order
    run_dir = out / f"trial-{trial.number:03d}"
    cmd = [sys.executable, "train.py", *agent_args(params), *overrides,
           f"hydra.run.dir={run_dir}"]
    trial.set_user_attr("run_dir", str(run_dir))
    trial.set_user_attr("args", agent_args(params))
    env = {**os.environ, "WANDB_RUN_GROUP": name, "WANDB_MODE": os.environ.get("WANDB_MODE",
                                                                                "offline")}
    run_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with open(run_dir / "trial.log", "w") as logf:
        # Same process group as the runner: Ctrl-C (or killing the sweep) stops the trial too.
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=logf, stderr=subprocess.STDOUT)
        reported, pruned = -1, False
        while proc.poll() is None:
            time.sleep(0.5)
            ev = _evaluations(run_dir)
            if ev and ev[0] > reported:
                reported = ev[0]
                trial.report(ev[1], ev[0])
                if trial.should_prune():
                    proc.terminate()
                    proc.wait()
                    pruned = True
    seconds = time.perf_counter() - t0
    summary_path = run_dir / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    if pruned:
        study.tell(trial, state=TrialState.PRUNED)
        return {"state": "pruned", "seconds": seconds, **summary}
    if proc.returncode != 0 or metric not in summary:
        study.tell(trial, state=TrialState.FAIL)
        return {"state": f"failed (exit {proc.returncode}; see {run_dir / 'trial.log'})",
                "seconds": seconds}
    if summary.get("budget/ok") is False:
        trial.set_user_attr("over_budget", float(summary["infer/latency_ms"]))
        trial.set_constraint("over_budget", float(summary["infer/latency_ms"]))  # > 0: infeasible
    value = summary.get(f"best/{metric}")
    if value is None:  # over-budget runs report only the metric itself
        value = summary[metric]
    study.tell(trial, float(value))
    return {"state": "over budget" if summary.get("budget/ok") is False else "complete",
            "value": float(value), "seconds": seconds, **summary}


def run_sweep(path: Path, trials: int, out: Path | None = None, storage: str | None = None,
              overrides: list[str] = (), seed: int = 0) -> Path:
    from optuna.trial import TrialState

    definition = load(path)
    name = Path(path).stem
    keys = {o.split("=", 1)[0].lstrip("+~") for o in overrides}
    clash = sorted(keys & set(definition["parameters"]))
    if clash:
        raise DataError(f"{path}: {', '.join(clash)} is a parameter of the sweep; leave it out of "
                        "the overrides for every trial (or change the definition)")
    out = Path(out or ROOT / "sweeps-out" / name).resolve()
    out.mkdir(parents=True, exist_ok=True)
    storage = storage or f"sqlite:///{out / 'optuna.db'}"
    study = make_study(definition, name, storage, seed)
    for stale in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        # A trial still "running" in storage was interrupted with its runner: record it as
        # failed and propose its parameters again.
        study.tell(stale.number, state=TrialState.FAIL)
        study.enqueue_trial(stale.params)
        log.info("trial %d was interrupted: recorded as failed, its parameters queued again",
                 stale.number)
    metric = definition.get("metric", {}).get("name", "val/score")
    dists = distributions(definition)
    is_grid = definition["method"] == "grid"
    if is_grid:  # Optuna's GridSampler cannot run outside study.optimize: enqueue the points
        for point in grid(definition):
            study.enqueue_trial({k: v for k, v in point.items() if k in dists},
                                skip_if_exists=True)
    while True:
        finished = study.get_trials(deepcopy=False, states=(
            TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL))
        waiting = study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
        if len(finished) >= trials or (is_grid and not waiting):
            break
        t0 = time.perf_counter()
        trial = study.ask(dists)
        result = run_trial(study, trial, definition, name, out, list(overrides), metric)
        overhead = time.perf_counter() - t0 - result["seconds"]
        value = f" {metric} {result['value']:.4f}" if "value" in result else ""
        print(f"[{name}] trial {trial.number} {trial.user_attrs['args']}: {result['state']}"
              f"{value} in {result['seconds']:.1f} s (+{overhead:.2f} s sweep overhead)",
              flush=True)
    print(f"[{name}] done: {out} (python -m aslfr.compare {out})")
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m aslfr.sweep", description=__doc__.splitlines()[0])
    ap.add_argument("definition", type=Path)
    ap.add_argument("--trials", type=int, default=10)
    ap.add_argument("--out", type=Path, help="sweep directory (default: sweeps-out/NAME)")
    ap.add_argument("--storage", help="Optuna storage URL (default: sqlite in --out)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("overrides", nargs="*", help="Hydra overrides for every trial")
    args = ap.parse_intermixed_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    exit_on_error(run_sweep)(args.definition, args.trials, args.out, args.storage,
                             args.overrides, args.seed)


if __name__ == "__main__":
    main()
