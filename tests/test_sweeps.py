"""sweeps/*.yaml: valid W&B sweep definitions whose agent arguments are valid Hydra overrides."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from omegaconf import OmegaConf

from aslfr.errors import DataError
from aslfr.experiments import sweep

from conftest import ROOT, compose_cfg, subprocess_env, typed_cfg

SWEEPS = sorted((ROOT / "sweeps").glob("*.yaml"))


def test_the_definitions_exist():
    assert {p.name for p in SWEEPS} >= {"depth_width.yaml", "lr_batch.yaml", "folds.yaml", "decode.yaml"}


def corners(spec: dict) -> list:
    """Values of one parameter to try: every listed value, or a distribution's ends."""
    if "values" in spec:
        return list(spec["values"])
    if "value" in spec:
        return [spec["value"]]
    return [spec["min"], spec["max"]]


@pytest.mark.parametrize("path", SWEEPS, ids=lambda p: p.name)
def test_definition_is_valid_and_its_arguments_are_hydra_overrides(path, tmp_path):
    definition = sweep.load(path)
    assert definition["program"] == "train.py"
    assert definition["metric"]["name"] == "val/score"  # exactly what the trainer logs
    params = definition["parameters"]
    for key, spec in params.items():  # each value of each parameter, the others at their first
        for value in corners(spec):
            chosen = {k: corners(s)[0] for k, s in params.items()} | {key: value}
            cfg = compose_cfg(sweep.agent_args(chosen), tmp_path)
            got = OmegaConf.select(cfg, key)
            got = got.name if key in ("model", "optimizer", "schedule") else got
            assert got == value or np.isclose(got, value), (key, value, got)


def test_depth_width_searches_blocks_and_ctc_only_models_that_can_decode(tmp_path):
    """Decoder depth 0 (CTC only) and both encoder blocks are in the search; model.decode=auto
    gives every proposed shape a decoding it can do."""
    d = sweep.load(ROOT / "sweeps" / "depth_width.yaml")
    p = d["parameters"]
    assert 0 in p["model.decoder.depth"]["values"]
    assert set(p["model.encoder.block"]["values"]) == {"transformer", "conformer"}
    assert p["model.decode"]["value"] == "auto"
    from aslfr.model.config import resolve_decode

    def decoding(*overrides: str) -> str:
        return resolve_decode(typed_cfg(["model.decode=auto", *overrides], tmp_path).model)

    assert [decoding(f"model.decoder.depth={depth}") for depth in (0, 1)] == ["ctc", "joint"]
    assert decoding("model.decoder.depth=2", "model.ctc_weight=0") == "attention"


def test_depth_width_searches_both_stacks_with_hyperband():
    d = sweep.load(ROOT / "sweeps" / "depth_width.yaml")
    assert d["method"] == "bayes" and d["early_terminate"]["type"] == "hyperband"
    assert {f"model.{s}.{k}" for s in ("encoder", "decoder") for k in ("depth", "width")} <= set(
        d["parameters"]
    )


def test_folds_grid_covers_every_fold():
    d = sweep.load(ROOT / "sweeps" / "folds.yaml")
    n_folds = compose_cfg([], Path("/tmp")).data.n_folds
    assert sorted(p["data.fold"] for p in sweep.grid(d)) == list(range(n_folds))


def test_agent_arguments_match_what_wandb_writes():
    assert sweep.agent_args({"a.b": 3, "c": None, "d": True, "e": 1e-3, "f": [1, 2]}) == [
        "a.b=3",
        "c=None",
        "d=True",
        "e=0.001",
        "f=[1,2]",
    ]


def test_an_invalid_definition_names_the_file_and_the_problem(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        yaml.safe_dump(
            {
                "program": "train.py",
                "method": "bayes",
                "metric": {"name": "val/score", "goal": "up"},
                "parameters": {"model.encoder.depth": {"values": [1, 2]}},
                "command": ["python", "train.py", "${args_no_hyphens}"],
            }
        )
    )
    with pytest.raises(DataError, match=r"bad.yaml: not a valid W&B sweep definition.*up"):
        sweep.load(bad)
    with pytest.raises(DataError, match="model.encoder.depth is a parameter of the sweep"):
        sweep.run_sweep(
            ROOT / "sweeps" / "depth_width.yaml", 1, tmp_path / "out", overrides=["model.encoder.depth=2"]
        )


TINY_SWEEP = """\
program: train.py
method: grid
metric: {name: val/score, goal: maximize}
parameters:
  model.encoder.width: {value: 16}
  budget.latency_ms: {values: [0.001, 1000, 2000]}
command:
  - ${env}
  - python
  - ${program}
  - ${args_no_hyphens}
"""


@pytest.mark.slow
def test_offline_sweep_resumes_after_being_killed_and_ends_over_budget_trials_early(tmp_path):
    import optuna
    from optuna.trial import TrialState

    from aslfr.experiments.offline import read_runs

    definition = tmp_path / "tiny.yaml"
    definition.write_text(TINY_SWEEP)
    out = tmp_path / "out"
    cmd = [
        sys.executable,
        "-m",
        "aslfr.experiments.sweep",
        str(definition),
        "--trials",
        "10",
        "--out",
        str(out),
        "debug=default",
        "trainer.epochs=1",
        "budget.probe=true",
        f"paths.data_dir={tmp_path / 'data'}",
    ]
    env = subprocess_env()
    runner = subprocess.Popen(
        cmd,
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    deadline = time.time() + 300
    while time.time() < deadline and not (out / "trial-001" / "trial.log").exists():
        time.sleep(0.5)
    time.sleep(3)  # trial 1 is running: kill the runner and its train.py
    os.killpg(runner.pid, signal.SIGKILL)
    runner.wait()
    first = runner.stdout.read()
    assert "trial 0 ['model.encoder.width=16', 'budget.latency_ms=0.001']: over budget" in first

    resumed = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "trial 1 was interrupted" in resumed.stdout + resumed.stderr

    study = optuna.load_study(study_name="tiny", storage=sweep.open_storage(out))  # the journal
    states = {t.number: t.state for t in study.trials}
    assert states[1] == TrialState.FAIL  # the interrupted one, recorded
    assert "gone" in study.trials[1].user_attrs["interrupted"]  # and not counted as finished
    done = {t.params["budget.latency_ms"]: t for t in study.trials if t.state == TrialState.COMPLETE}
    assert sorted(done) == [0.001, 1000, 2000]  # every grid point, the interrupted one again
    over, full = done[0.001], done[1000]
    assert over.value == 0.0 and over.user_attrs["over_budget"] > 0
    assert over.constraints["over_budget"] > 0 and not full.constraints  # infeasible for TPE
    seconds = {p: (t.datetime_complete - t.datetime_start).total_seconds() for p, t in done.items()}
    assert seconds[0.001] < 0.8 * seconds[1000]
    # every trial logged offline, grouped by the sweep
    runs = read_runs(out)
    assert {r.group for r in runs} == {"tiny"}
    assert {r.config["budget"]["latency_ms"] for r in runs} >= {0.001, 1000, 2000}
    assert "over_budget" not in full.user_attrs

    # the comparison: every trial on the leaderboard, the Pareto plot, the chart logged to W&B
    cmp = subprocess.run(
        [sys.executable, "-m", "aslfr.experiments.compare", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert cmp.returncode == 0, cmp.stderr[-3000:]
    for t in study.trials:
        if t.state == TrialState.COMPLETE:
            assert f"trial-{t.number:03d}" in cmp.stdout
    assert cmp.stdout.count("OVER") == 1 and "Pareto front" in cmp.stdout
    assert (out / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    (logged,) = read_runs(out / ".compare")
    row = logged.history[0]  # W&B stores media as references, flattened here
    assert row["compare/pareto/_type"] == "image-file"
    training_runs = [r for r in read_runs(out) if "model" in r.config]
    assert len(training_runs) >= 3
    assert row["compare/leaderboard/_type"] == "table-file"
    # one row per run directory (one with the run's own record), the interrupted trial's too
    # when it got that far before the kill (listed apart, unfinished)
    run_dirs = [d for d in out.glob("trial-*") if (d / ".hydra" / "config.yaml").exists()]
    assert row["compare/leaderboard/nrows"] == len(run_dirs) >= len(training_runs)


PRUNE_SWEEP = """
program: train.py
method: bayes
metric: {name: val/score, goal: maximize}
early_terminate: {type: hyperband, min_iter: 2, eta: 3}
parameters:
  model.encoder.width: {values: [16, 32]}
command: ["${env}", python, "${program}", "${args_no_hyphens}"]
"""


@pytest.mark.slow
def test_early_termination_reads_running_trials_checkpoints_and_stops_them(tmp_path, capsys, monkeypatch):
    import optuna
    from optuna.trial import TrialState

    monkeypatch.setattr(sweep, "HEARTBEAT_S", 0.0)  # renewed at every look at the checkpoints

    path = tmp_path / "prune.yaml"
    path.write_text(PRUNE_SWEEP)
    definition = sweep.load(path)
    hyperband = sweep.make_study(definition, "prune", f"sqlite:///{tmp_path / 'h.db'}", 0).pruner
    assert isinstance(hyperband, optuna.pruners.HyperbandPruner)
    assert (hyperband._min_resource, hyperband._reduction_factor) == (2, 3)

    # The mechanics with a pruner that stops any trial at its first reported evaluation: the
    # runner reads val/score from the running trial's checkpoints, reports it at its epoch and
    # terminates train.py when told to prune.
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.ThresholdPruner(lower=2.0))
    trial = study.ask(sweep.distributions(definition))
    overrides = [
        "debug=default",
        "trainer.epochs=40",
        "trainer.eval_every=1",
        f"paths.data_dir={tmp_path / 'data'}",
    ]
    result = sweep.run_trial(study, trial, definition, "prune", tmp_path / "out", overrides, "val/score")
    assert result["state"] == "pruned"
    (done,) = study.trials
    assert done.state == TrialState.PRUNED
    ((epoch, score),) = done.intermediate_values.items()
    assert 1 <= epoch < 40 and score <= 1.0  # (N - D) / N: negative for long wrong guesses
    assert "val/score" not in result  # it never reached its end of training
    # the runner said how far the trial got, and kept its heartbeat while it ran
    assert re.search(
        r"\[prune\] trial 0: epoch \d+/40, last val/score -?\d+\.\d{4}\n", capsys.readouterr().out
    )
    assert done.user_attrs["heartbeat"] > done.datetime_start.timestamp()


# -- several runners, the record, interruptions -------------------------------------------------
GRID4 = """\
program: train.py
method: grid
metric: {name: val/score, goal: maximize}
parameters:
  model.encoder.width: {value: 16}
  trainer.seed: {values: [0, 1, 2, 3]}
command: ["${env}", python, "${program}", "${args_no_hyphens}"]
"""

# Trials that crash at once (Hydra refuses the key before anything is imported): for the runner's
# bookkeeping, in seconds.
CRASHING = """\
program: train.py
method: random
metric: {name: val/score, goal: maximize}
parameters:
  trainer.no_such_key: {values: [1, 2, 3, 4, 5, 6, 7, 8]}
command: ["${env}", python, "${program}", "${args_no_hyphens}"]
"""


def sweep_cmd(definition: Path, out: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "aslfr.experiments.sweep", str(definition), "--out", str(out), *args]


def start_runner(cmd: list[str], **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        cmd,
        cwd=ROOT,
        env=subprocess_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        **kwargs,
    )


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_two_runners_share_a_grid_sweep_and_run_each_point_once(tmp_path):
    import optuna
    from optuna.trial import TrialState

    definition = tmp_path / "pair.yaml"
    definition.write_text(GRID4)
    out = tmp_path / "out"
    cmd = sweep_cmd(
        definition,
        out,
        "--trials",
        "10",
        "debug=default",
        "trainer.epochs=1",
        f"paths.data_dir={tmp_path / 'data'}",
    )
    runners = [start_runner(cmd) for _ in range(2)]  # together: both set up the same new sweep
    outputs = [r.communicate(timeout=840)[0] for r in runners]
    for runner, text in zip(runners, outputs):
        assert runner.returncode == 0, text[-3000:]

    study = optuna.load_study(study_name="pair", storage=sweep.open_storage(out))
    trials = study.trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 4  # none queued twice, none lost
    assert sorted(t.params["trainer.seed"] for t in trials) == [0, 1, 2, 3]
    assert {t.user_attrs["runner"]["pid"] for t in trials} == {r.pid for r in runners}  # shared
    assert sorted(p.name for p in out.glob("trial-*")) == [f"trial-{n:03d}" for n in range(4)]
    for t in trials:
        assert (out / f"trial-{t.number:03d}" / "summary.json").exists()
        assert sum(o.count(f"[pair] trial {t.number} [") for o in outputs) == 1  # one runner ran it
    assert any("[pair] done: 4 trials finished" in o for o in outputs), outputs
    # one W&B directory for the sweep (`wandb leet out/wandb`): a link to each trial's run
    gathered = sorted((out / "wandb").glob("offline-run-*"))
    assert len(gathered) == 4 and all(link.is_symlink() for link in gathered)
    assert {link.resolve().parent.parent.name for link in gathered} == {f"trial-{n:03d}" for n in range(4)}


@pytest.mark.slow
def test_trials_counts_the_finished_trials_of_every_runner(tmp_path):
    import optuna
    from optuna.trial import TrialState

    definition = tmp_path / "crash.yaml"
    definition.write_text(CRASHING)
    out = tmp_path / "out"
    runners = [start_runner(sweep_cmd(definition, out, "--trials", "5")) for _ in range(2)]
    outputs = [r.communicate(timeout=240)[0] for r in runners]
    for runner, text in zip(runners, outputs):
        assert runner.returncode == 0, text[-3000:]
    study = optuna.load_study(study_name="crash", storage=sweep.open_storage(out))
    # a trial that crashed on its own counts: 5 in all, not 5 for each runner
    assert [t.state for t in study.trials] == [TrialState.FAIL] * 5
    assert sum(o.count(": failed (exit 1;") for o in outputs) == 5


@pytest.mark.slow
def test_a_running_trial_is_interrupted_only_when_its_runner_is_gone(tmp_path):
    from optuna.trial import TrialState

    path = tmp_path / "crash.yaml"
    path.write_text(CRASHING)
    definition = sweep.load(path)
    out = tmp_path / "out"
    out.mkdir()
    study = sweep.make_study(definition, "crash", sweep.open_storage(out), 0)
    dists = sweep.distributions(definition)
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True
    )
    here, now = socket.gethostname(), time.time()

    def running(host, pid, heartbeat, **more) -> int:
        trial = study.ask(dists)
        trial.set_user_attr("runner", {"host": host, "pid": pid, **more})
        trial.set_user_attr("heartbeat", heartbeat)
        return trial.number

    dead = running(here, int(gone.stdout), now)  # this host: its runner's process is gone
    reused = running(here, os.getpid(), now, started="1")  # its pid now names another process
    alive = running(here, os.getpid(), now - 3600)  # this host: alive, however old its heartbeat
    busy = running("elsewhere", 4321, now - 60)  # another host, heartbeat within the grace period
    silent = running("elsewhere", 4321, now - 3600)  # another host, silent for an hour
    taken = sweep.reclaim(study)
    assert sorted(t.number for t in taken) == [dead, reused, silent]
    assert sweep.reclaim(study) == []  # recorded once
    trials = study.trials
    assert {t.number for t in trials if t.state == TrialState.RUNNING} == {alive, busy}
    assert "gone" in trials[dead].user_attrs["interrupted"]
    assert "no heartbeat" in trials[silent].user_attrs["interrupted"]
    queued = [
        (t.user_attrs["retry_of"], t.system_attrs["fixed_params"])
        for t in trials
        if t.state == TrialState.WAITING
    ]  # (a queued trial's parameters until it is asked)
    assert queued == [(n, trials[n].params) for n in (dead, reused, silent)]

    # --trials 3: the interrupted trials do not count, the two running elsewhere do, so one more
    # trial runs (the first queued point); it crashes, which counts, and the runner stops.
    sweep.run_sweep(path, 3, out)
    states = [t.state for t in study.trials]
    retry = study.trials[len(trials) - 3]
    assert states[len(trials) - 3 :] == [TrialState.FAIL, TrialState.WAITING, TrialState.WAITING]
    assert retry.params == trials[dead].params and "interrupted" not in retry.user_attrs
    assert retry.user_attrs["runner"]["pid"] == os.getpid()


@pytest.mark.slow
def test_a_sweep_refuses_another_definition_or_other_overrides(tmp_path, capsys):
    import optuna

    path = tmp_path / "crash.yaml"
    path.write_text(CRASHING)
    out, db = tmp_path / "out", f"sqlite:///{tmp_path / 'sweeps.db'}"  # --storage: a database
    sweep.run_sweep(path, 1, out, storage=db, overrides=["trainer.epochs=1"])
    assert "[crash] done: 1 trials finished" in capsys.readouterr().out

    def again(*args, out=out):
        return subprocess.run(
            sweep_cmd(path, out, "--storage", db, "--trials", "1", *args),
            cwd=ROOT,
            env=subprocess_env(),
            capture_output=True,
            text=True,
            timeout=120,
        )

    def refusal(proc) -> str:
        assert proc.returncode == 2 and "done" not in proc.stdout, proc.stdout + proc.stderr
        (line,) = proc.stderr.strip().splitlines()  # one line, no traceback
        assert "--name NEW" in line and "--out DIR" in line  # how to start a new sweep
        return line

    line = refusal(again("trainer.epochs=40"))
    assert "'trainer.epochs=40' now, 'trainer.epochs=1' in the sweep" in line
    path.write_text(CRASHING.replace("7, 8]", "7, 8, 9]"))
    line = refusal(again("trainer.epochs=1"))
    assert "parameters.trainer.no_such_key.values [1, 2, 3, 4, 5, 6, 7, 8] -> [1" in line
    path.write_text(CRASHING)
    # a new name in the same directory would reuse its trial directories
    assert "holds trials (trial-000)" in refusal(again("trainer.epochs=40", "--name", "long"))

    same = again("trainer.epochs=1")  # the same request resumes (here: nothing left to run)
    assert same.returncode == 0 and "[crash] done: 1 trials finished" in same.stdout, same.stderr
    new = again("trainer.epochs=40", "--name", "long", out=tmp_path / "long")
    assert new.returncode == 0 and "[long] done: 1 trials finished" in new.stdout, new.stderr
    assert sorted(optuna.get_all_study_names(db)) == ["crash", "long"]
    recorded = optuna.load_study(study_name="crash", storage=db).user_attrs
    assert recorded["overrides"] == ["trainer.epochs=1"]
    assert recorded["definition"]["parameters"] == sweep.load(path)["parameters"]


@pytest.mark.slow
def test_a_storage_that_cannot_be_opened_stops_with_one_line(tmp_path):
    proc = subprocess.run(
        sweep_cmd(ROOT / "sweeps" / "folds.yaml", tmp_path / "out", "--storage", "mysql://user@host/db"),
        cwd=ROOT,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    (line,) = proc.stderr.strip().splitlines()  # no traceback, and no pydantic warning either
    assert line.startswith("error: cannot open --storage mysql://user@host/db: ")
    assert "No module named 'MySQLdb'" in line and "pip install" in line
    assert str(tmp_path / "out" / "optuna.journal") in line  # the alternative
    with pytest.raises(
        DataError,
        match=r"cannot open --storage sqlite:////no/such/dir/s\.db: .*"
        r"unable to open database file; check the URL",
    ):
        sweep.open_storage(tmp_path, "sqlite:////no/such/dir/s.db")


ONE_POINT = """\
program: train.py
method: grid
metric: {name: val/score, goal: maximize}
parameters:
  model.encoder.width: {value: 16}
  trainer.seed: {values: [7]}
command: ["${env}", python, "${program}", "${args_no_hyphens}"]
"""


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_ctrl_c_records_the_running_trial_as_interrupted_and_says_it_runs_again(tmp_path):
    import optuna
    from optuna.trial import TrialState

    path = tmp_path / "one.yaml"
    path.write_text(ONE_POINT)
    db = f"sqlite:///{tmp_path / 'one.db'}"
    cmd = sweep_cmd(
        path,
        tmp_path / "out",
        "--storage",
        db,
        "debug=default",
        "trainer.epochs=100",
        f"paths.data_dir={tmp_path / 'data'}",
    )
    # its own process group, as a shell gives a command: Ctrl-C signals the group
    runner = start_runner(cmd, start_new_session=True)
    lines: list[str] = []

    def read():
        for line in runner.stdout:
            lines.append(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    progress = re.compile(r"\[one\] trial 0: epoch (\d+)/100, last val/score -?\d+\.\d{4}\n")
    deadline = time.time() + 400
    while not any(map(progress.fullmatch, lines)) and runner.poll() is None:
        assert time.time() < deadline, "".join(lines)[-3000:]
        time.sleep(0.2)
    os.killpg(runner.pid, signal.SIGINT)  # while the trial trains
    runner.wait(timeout=120)
    reader.join(timeout=10)
    text = "".join(lines)
    assert runner.returncode == 130, text[-3000:]
    assert "Traceback" not in text and "KeyboardInterrupt" not in text
    assert (
        "[one] trial 0 ['model.encoder.width=16', 'trainer.seed=7']: interrupted by Ctrl-C; "
        "recorded as failed and its parameters queued again: it runs again when the same "
        "command is run again\n"
    ) in text

    stopped, queued = optuna.load_study(study_name="one", storage=db).trials
    assert stopped.state == TrialState.FAIL
    assert stopped.user_attrs["interrupted"] == "stopped by Ctrl-C"
    assert queued.state == TrialState.WAITING
    assert queued.system_attrs["fixed_params"] == stopped.params  # queued: asked for next
    assert queued.user_attrs["retry_of"] == 0


def test_pareto_front_keeps_runs_no_other_beats_on_both():
    from aslfr.experiments.compare import Row, pareto_front

    def row(name, score, ms, ok=True):
        return Row(name, score, ms, 1.0, 1, "1x1", "1x1", ok, 0, 100.0)

    rows = [
        row("a", 0.5, 10),
        row("b", 0.6, 20),
        row("c", 0.55, 25),
        row("d", 0.7, 30),
        row("e", 0.9, 5, ok=False),
    ]
    assert [r.name for r in pareto_front(rows)] == ["a", "b", "d"]


def test_the_proposed_ensemble_takes_the_best_runs_of_one_fold_that_fit_the_budget_together():
    from aslfr.experiments.compare import Row, propose_ensemble

    def row(name, score, ms, fold=0, ok=True):
        return Row(name, score, ms, 1.0, 1, "1x1", "1x1", ok, fold, 100.0, path=f"runs/{name}")

    rows = [
        row("a", 0.80, 40),
        row("b", 0.78, 70),  # would not fit beside a
        row("c", 0.75, 30),
        row("d", 0.74, 20),
        row("e", 0.90, 10, fold=1),  # the best run, alone on its fold...
        row("f", 0.95, 5, ok=False),  # over budget
    ]
    members, total = propose_ensemble(rows[:4] + rows[5:])
    assert [m.name for m in members] == ["a", "c", "d"] and total == 90
    assert [m.name for m in propose_ensemble(rows[:4], most=2)[0]] == ["a", "c"]
    assert propose_ensemble(rows[4:]) is None  # ... so nothing to ensemble with


def test_online_comparison_reads_runs_through_the_wandb_api(monkeypatch, tmp_path, capsys):
    """The W&B server is not reachable here: the public API is replaced by an object shaped as
    its answers are (run.config unwrapped and nested, run.summary with the metric's max)."""
    import wandb

    from aslfr.experiments import compare

    class Run:
        def __init__(self, name, config, summary):
            self.name, self.config, self.summary = name, config, summary

    def trained(name, width, score, ms, ok):
        config = {
            "model": {"encoder": {"depth": 2, "width": width}, "decoder": {"depth": 1, "width": 64}},
            "data": {"fold": 0},
            "budget": {"latency_ms": 20.0},
        }
        return Run(
            name,
            config,
            {
                "val/score": {"max": score},
                "infer/latency_ms": ms,
                "infer/model_mb": 1.5,
                "params": 1000,
                "budget/ok": ok,
            },
        )

    runs = [
        trained("narrow", 64, 0.6, 5.0, True),
        trained("wide", 256, 0.7, 12.0, True),
        trained("huge", 512, 0.0, 40.0, False),
        Run("compare", {"compare": {}}, {}),
    ]
    asked = []

    class Api:
        def runs(self, path):
            asked.append(path)
            return runs

        def sweep(self, path):
            asked.append(path)
            return type("Sweep", (), {"runs": runs[:2]})()

    monkeypatch.setattr(wandb, "Api", Api)
    monkeypatch.setattr(compare, "logged_in", lambda: True)  # as a logged-in user's API answers
    compare.main(["--wandb-path", "me/aslfr", "--out", str(tmp_path / "p.png"), "--no-wandb"])
    text = capsys.readouterr().out
    assert asked == ["me/aslfr"]
    assert all(n in text for n in ("narrow", "wide", "huge")) and "compare " not in text
    assert "Pareto front (within budget): narrow, wide" in text and text.count("OVER") == 1
    assert (tmp_path / "p.png").exists()
    rows = compare.online_rows("me/aslfr", sweep="abc123")
    assert asked[-1] == "me/aslfr/abc123" and [r.name for r in rows] == ["narrow", "wide"]
    assert rows[1].score == 0.7 and rows[1].encoder == "2x256" and rows[1].fold == 0
