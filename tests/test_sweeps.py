"""sweeps/*.yaml: valid W&B sweep definitions whose agent arguments are valid Hydra overrides."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
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

from conftest import ROOT, agent_command, compose_cfg, subprocess_env, typed_cfg

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


def test_a_trials_command_is_the_one_wandb_agent_builds(tmp_path, monkeypatch):
    """The definition's command with every macro expanded as `wandb agent` expands it (W&B's own
    helpers, as conftest.agent_command emulates the agent), then the overrides for every trial,
    the run directory and the sweep's W&B directory; `python` is this environment's."""
    monkeypatch.setenv("WHO", "me")
    params = {"a.b": 3, "c": None, "d": True, "e": 1e-3, "f": [1, 2]}
    command = ["${env}", "${interpreter}", "${program}", "${args_no_hyphens}", "--who=${envvar:WHO}"]
    run_dir = tmp_path / "trial-000"
    run_dir.mkdir()
    cmd, env = sweep.trial_command(
        {"program": "train.py", "command": command}, params, run_dir, tmp_path, "grp", ["x=1"]
    )
    assert cmd == [
        *agent_command(command, params),
        "x=1",
        f"hydra.run.dir={run_dir}",
        f"wandb.gather_dir={tmp_path}",
    ]
    assert cmd[:9] == [
        "/usr/bin/env",
        "python",
        "train.py",
        "a.b=3",
        "c=None",
        "d=True",
        "e=0.001",
        "f=[1, 2]",
        "--who=me",
    ]
    assert Path(shutil.which("python", path=env["PATH"])).parent == Path(sys.executable).parent
    assert env["WANDB_RUN_GROUP"] == "grp" and env["WANDB_MODE"] == os.environ.get("WANDB_MODE", "offline")
    cmd, _ = sweep.trial_command(
        {"program": "p.py", "command": ["python", "${program}", "${args_json_file}"]},
        {"a": 1},
        run_dir,
        tmp_path,
        "g",
        [],
    )
    assert cmd[:3] == ["python", "p.py", str(run_dir / "args.json")]
    assert json.loads((run_dir / "args.json").read_text()) == {"a": 1}
    assert sweep.agent_args({"a.b": 3, "c": None}) == ["a.b=3", "c=None"]


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


# -- the runner with train.py itself, end to end ------------------------------------------------
TINY_SWEEP = """\
program: train.py
method: grid
metric: {name: val/score, goal: maximize}
parameters:
  model.encoder.width: {value: 16}
  budget.latency_ms: {values: [0.001, 1000]}
command:
  - ${env}
  - python
  - ${program}
  - ${args_no_hyphens}
"""


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_an_offline_sweep_of_train_py_ends_over_budget_trials_early_and_compares_its_runs(tmp_path, capsys):
    """The one sweep of real train.py trials: the agent's arguments compose, an over-budget trial
    stops after its probe and is infeasible for the sampler, the other trains; every trial is
    logged offline in the sweep's W&B group and gathered in out/wandb; aslfr-compare reads them."""
    import optuna

    from aslfr.experiments.offline import read_runs

    definition = tmp_path / "tiny.yaml"
    definition.write_text(TINY_SWEEP)
    out = tmp_path / "out"
    cmd = sweep_cmd(
        definition,
        out,
        "--trials",
        "10",
        "debug=default",
        "trainer.epochs=1",
        "model.decoder.depth=0",  # CTC alone, no fallback search: the sweep is the point, not the model
        "fallback.min_hand_frames=0",
        "budget.probe=true",
        f"paths.data_dir={tmp_path / 'data'}",
    )
    env = subprocess_env()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=540)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "trial 0 ['model.encoder.width=16', 'budget.latency_ms=0.001']: over budget" in proc.stdout
    assert "[tiny] done: 2 trials finished" in proc.stdout

    study = optuna.load_study(study_name="tiny", storage=sweep.open_storage(out))  # the journal
    over, full = sorted(study.trials, key=lambda t: t.params["budget.latency_ms"])
    assert over.value == 0.0 and over.user_attrs["over_budget"] > 0
    assert over.constraints["over_budget"] > 0 and not full.constraints  # infeasible for TPE
    assert "over_budget" not in full.user_attrs
    summary = json.loads((out / f"trial-{full.number:03d}" / "summary.json").read_text())
    assert full.value == summary["best/val/score"]  # the shipped model's score
    assert json.loads((out / f"trial-{over.number:03d}" / "summary.json").read_text())["epochs"] == 0
    # every trial logged offline, grouped by the sweep, and linked into one W&B directory
    runs = read_runs(out / f"trial-{over.number:03d}") + read_runs(out / f"trial-{full.number:03d}")
    assert {r.group for r in runs} == {"tiny"}
    assert {r.config["budget"]["latency_ms"] for r in runs} == {0.001, 1000}
    gathered = sorted((out / "wandb").glob("offline-run-*"))
    assert len(gathered) == 2 and all(link.is_symlink() for link in gathered)
    assert {link.resolve().parent.parent.name for link in gathered} == {"trial-000", "trial-001"}

    # the comparison: every trial on the leaderboard, the Pareto plot, the chart logged to W&B
    import wandb

    from aslfr.experiments import compare

    compare.main([str(out)])  # aslfr-compare OUT, in this process
    shown = capsys.readouterr().out
    assert "trial-000" in shown and "trial-001" in shown
    assert shown.count("OVER") == 1 and "Pareto front" in shown
    assert (out / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    wandb.teardown()  # the service writes the offline record after finish(), complete at exit
    (logged,) = read_runs(out / ".compare")
    row = logged.history[0]  # W&B stores media as references, flattened here
    assert row["compare/pareto/_type"] == "image-file"
    assert row["compare/leaderboard/_type"] == "table-file" and row["compare/leaderboard/nrows"] == 2


# -- the runner's own behaviour, with tests/fake_train.py as the trials' program ----------------
# fake_train.py writes what the runner reads of a run (checkpoints, summary.json, its W&B record)
# in a fraction of a second: the runner's bookkeeping is tested in seconds.
def fake_sweep(tmp_path: Path, text: str, name: str = "fake") -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(text.replace("program: train.py", "program: tests/fake_train.py"))
    return path


QUIET = ["wandb.mode=disabled"]  # no W&B record: where the runner's reading of it is not tested

LEVENSHTEIN = """\
program: train.py
method: grid
metric: {name: val/levenshtein, goal: minimize}
parameters:
  trainer.epochs: {value: 3}
  fake.levenshtein: {values: ["[3, 1, 2]", "[4, 0.5, 5]"]}
command: ["${env}", python, "${program}", "${args_no_hyphens}"]
"""


def test_a_sweep_on_val_levenshtein_minimizes_each_trials_best_evaluation(tmp_path, capsys):
    """The summary's val/levenshtein is the last evaluation's; a trial's value is its lowest, as
    W&B summarizes the metric (read from the trial's W&B record), and the study minimizes it."""
    import optuna

    from aslfr.experiments.offline import read_runs

    path = fake_sweep(tmp_path, LEVENSHTEIN, "lev")
    out = sweep.run_sweep(path, 10, tmp_path / "out")
    study = optuna.load_study(study_name="lev", storage=sweep.open_storage(out))
    assert study.direction == optuna.study.StudyDirection.MINIMIZE
    values = {t.params["fake.levenshtein"]: t.value for t in study.trials}
    assert values == {"[3, 1, 2]": 1.0, "[4, 0.5, 5]": 0.5}  # not the last: 2.0 and 5.0
    assert study.best_trial.params["fake.levenshtein"] == "[4, 0.5, 5]"
    for t in study.trials:
        (run,) = read_runs(out / f"trial-{t.number:03d}")
        assert t.value == min(v for _, v in run.series("val/levenshtein"))
        summary = json.loads((out / f"trial-{t.number:03d}" / "summary.json").read_text())
        assert summary["val/levenshtein"] > t.value  # what the summary alone would have given
    assert "complete val/levenshtein 0.5000" in capsys.readouterr().out
    # without a W&B record: the evaluations the runner read from the checkpoints, and the last
    bare = tmp_path / "bare"
    bare.mkdir()
    assert sweep.result({"val/levenshtein": 2.0}, bare, "val/levenshtein", "minimize", [3.0, 1.0]) == 1.0
    assert sweep.result({"val/top1": 0.2}, bare, "val/top1", "maximize", [0.5, 0.1]) == 0.5
    assert (
        sweep.result({"best/val/score": 0.4, "val/score": 0.3}, bare, "val/score", "maximize", [0.9]) == 0.4
    )
    assert sweep.result({}, bare, "val/levenshtein", "minimize", []) is None


PRUNE_SWEEP = """
program: train.py
method: bayes
metric: {name: val/score, goal: maximize}
early_terminate: {type: hyperband, min_iter: 2, eta: 3}
parameters:
  model.encoder.width: {values: [16, 32]}
command: ["${env}", python, "${program}", "${args_no_hyphens}"]
"""


def test_early_termination_reads_running_trials_checkpoints_and_stops_them(tmp_path, capsys, monkeypatch):
    import optuna
    from optuna.trial import TrialState

    monkeypatch.setattr(sweep, "HEARTBEAT_S", 0.0)  # renewed at every look at the checkpoints

    definition = sweep.load(fake_sweep(tmp_path, PRUNE_SWEEP, "prune"))
    hyperband = sweep.make_study(definition, "prune", f"sqlite:///{tmp_path / 'h.db'}", 0).pruner
    assert isinstance(hyperband, optuna.pruners.HyperbandPruner)
    assert (hyperband._min_resource, hyperband._reduction_factor) == (2, 3)

    # The mechanics with a pruner that stops any trial at its first reported evaluation: the
    # runner reads val/score from the running trial's checkpoints, reports it at its epoch and
    # terminates the trial when told to prune.
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.ThresholdPruner(lower=2.0))
    trial = study.ask(sweep.distributions(definition))
    overrides = [*QUIET, "trainer.epochs=40", "fake.seconds=0.3"]
    result = sweep.run_trial(study, trial, definition, "prune", tmp_path / "out", overrides, "val/score")
    assert result["state"] == "pruned"
    (done,) = study.trials
    assert done.state == TrialState.PRUNED
    ((epoch, score),) = done.intermediate_values.items()
    assert 1 <= epoch < 40 and score == 0.8  # fake_train's val/score: 1 - 2/10
    assert "val/score" not in result  # it never reached its end of training
    # the runner said how far the trial got, and kept its heartbeat while it ran
    assert re.search(r"\[prune\] trial 0: epoch \d+/40, last val/score 0\.8000\n", capsys.readouterr().out)
    assert done.user_attrs["heartbeat"] > done.datetime_start.timestamp()


# -- several runners, the record, interruptions -------------------------------------------------
GRID4 = """\
program: train.py
method: grid
metric: {name: val/score, goal: maximize}
parameters:
  trainer.seed: {values: [0, 1, 2, 3]}
command: ["${env}", python, "${program}", "${args_no_hyphens}"]
"""

# Trials that crash at once: for the runner's bookkeeping.
CRASHING = """\
program: train.py
method: random
metric: {name: val/score, goal: maximize}
parameters:
  fake.exit: {value: 1}
  trainer.seed: {values: [1, 2, 3, 4, 5, 6, 7, 8]}
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


def wait_for(path: Path, runner: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while not path.exists():
        assert runner.poll() is None, runner.stdout.read()[-3000:]
        assert time.time() < deadline, f"{path} did not appear"
        time.sleep(0.1)


@pytest.mark.slow
def test_two_runners_share_a_grid_sweep_and_run_each_point_once(tmp_path):
    import optuna
    from optuna.trial import TrialState

    definition = fake_sweep(tmp_path, GRID4, "pair")
    out = tmp_path / "out"
    out.mkdir()
    # The first trial waits until the second has started: the other runner took it.
    (out / "hold-trial-000").touch()
    cmd = sweep_cmd(definition, out, "--trials", "10", *QUIET, "fake.hold=true")
    runners = [start_runner(cmd) for _ in range(2)]  # together: both set up the same new sweep
    wait_for(out / "trial-001" / ".hydra" / "config.yaml", runners[0])
    (out / "hold-trial-000").unlink()
    outputs = [r.communicate(timeout=240)[0] for r in runners]
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
    # the runner left with nothing to start waited for the other's trial, and both say so
    assert all("[pair] done: 4 trials finished" in o for o in outputs), outputs


@pytest.mark.slow
def test_trials_counts_the_finished_trials_of_every_runner(tmp_path):
    import optuna
    from optuna.trial import TrialState

    definition = fake_sweep(tmp_path, CRASHING, "crash")
    out = tmp_path / "out"
    runners = [start_runner(sweep_cmd(definition, out, "--trials", "5")) for _ in range(2)]
    outputs = [r.communicate(timeout=240)[0] for r in runners]
    for runner, text in zip(runners, outputs):
        assert runner.returncode == 0, text[-3000:]
    study = optuna.load_study(study_name="crash", storage=sweep.open_storage(out))
    # a trial that crashed on its own counts: 5 in all, not 5 for each runner
    assert [t.state for t in study.trials] == [TrialState.FAIL] * 5
    assert sum(o.count(": failed (exit 1;") for o in outputs) == 5


def test_a_running_trial_is_interrupted_only_when_its_heartbeat_is_stale(tmp_path, capsys, monkeypatch):
    """No heartbeat for GRACE_S, on any host: recorded as failed and its parameters queued again
    by Optuna's retry callback (once, whichever runner sees it first). A trial whose runner
    renews its heartbeat runs on, however long; --trials counts it, and a runner with nothing
    left to start waits for it."""
    from optuna.trial import TrialState

    path = fake_sweep(tmp_path, CRASHING, "crash")
    definition = sweep.load(path)
    out = tmp_path / "out"
    out.mkdir()
    study = sweep.make_study(definition, "crash", sweep.open_storage(out), 0)
    dists = sweep.distributions(definition)
    now = time.time()

    def running(heartbeat: float | None) -> int:
        trial = study.ask(dists)
        trial.set_user_attr("runner", {"host": "elsewhere", "pid": 4321})
        if heartbeat is not None:
            trial.set_user_attr("heartbeat", heartbeat)
        return trial.number

    busy = running(now - sweep.GRACE_S / 2)  # renewed within the grace period
    silent = running(now - 3600)  # silent for an hour
    starting = running(None)  # asked just now, not yet marked: its start time counts
    stale = running(now - sweep.GRACE_S - 1)
    taken = sweep.reclaim(study, now)
    assert sorted(t.number for t in taken) == [silent, stale]
    assert sweep.reclaim(study, now) == []  # recorded once
    trials = study.trials
    assert {t.number for t in trials if t.state == TrialState.RUNNING} == {busy, starting}
    queued = [(sweep.retried(t), t.params) for t in trials if t.state == TrialState.WAITING]
    assert queued == [([n], trials[n].params) for n in (silent, stale)]
    assert sweep.finished_trials(trials) == 0  # the interrupted ones do not count

    # --trials 3: the two running elsewhere count, so one more trial runs (the first queued
    # point); it crashes, which counts, and the runner waits for the other two. They end.
    waits = threading.Event()
    sleep = sweep.Stop.sleep

    def waiting(stop, seconds):  # the runner sleeps only while it waits for other runners
        waits.set()
        sleep(stop, seconds)

    def others_finish():
        waits.wait(timeout=120)
        for number in (busy, starting):
            study.tell(number, 0.5)

    monkeypatch.setattr(sweep.Stop, "sleep", waiting)
    monkeypatch.setattr(sweep, "WAIT_S", 0.1)
    finisher = threading.Thread(target=others_finish, daemon=True)
    finisher.start()
    sweep.run_sweep(path, 3, out)
    finisher.join(timeout=10)
    text = capsys.readouterr().out
    assert "[crash] 1 trials finished; waiting for 2 running in other runners (elsewhere, pid 4321)" in text
    assert "[crash] done: 3 trials finished" in text
    after = study.trials
    retry = after[len(trials) - 2]
    assert [t.state for t in after[len(trials) - 2 :]] == [TrialState.FAIL, TrialState.WAITING]
    assert sweep.retried(retry) == [silent] and retry.params == trials[silent].params
    assert retry.user_attrs["runner"]["pid"] == os.getpid()


@pytest.mark.slow
def test_a_killed_sweep_resumes_and_runs_the_interrupted_trial_again(tmp_path, capsys, caplog, monkeypatch):
    """kill -9 of the runner and its trial; the same command again runs the other points and,
    once the killed trial's heartbeat is stale, that point again."""
    import optuna
    from optuna.trial import TrialState

    path = fake_sweep(tmp_path, GRID4.replace(", 3]", "]"), "grid3")
    out = tmp_path / "out"
    out.mkdir()
    (out / "hold-trial-001").touch()  # the second trial waits: the runner is killed during it
    overrides = [*QUIET, "fake.hold=true"]
    runner = start_runner(sweep_cmd(path, out, "--trials", "10", *overrides), start_new_session=True)
    wait_for(out / "trial-001" / ".hydra" / "config.yaml", runner)
    os.killpg(runner.pid, signal.SIGKILL)  # the runner and its trial
    runner.wait()
    assert "[grid3] trial 0 ['trainer.seed=0']: complete" in runner.stdout.read()

    caplog.set_level("INFO", logger=sweep.__name__)
    monkeypatch.setattr(sweep, "GRACE_S", 1.0)  # the killed runner's last heartbeat is stale at once
    monkeypatch.setattr(sweep, "WAIT_S", 0.1)
    sweep.run_sweep(path, 10, out, overrides=overrides)
    assert re.search(r"trial 1 was interrupted \(no heartbeat from its runner \(.*, pid \d+\)", caplog.text)
    assert "[grid3] done: 3 trials finished" in capsys.readouterr().out  # the interrupted one does not count

    study = optuna.load_study(study_name="grid3", storage=sweep.open_storage(out))
    assert study.trials[1].state == TrialState.FAIL
    done = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert sorted(t.params["trainer.seed"] for t in done) == [0, 1, 2]  # every point
    (again,) = [t for t in done if sweep.retried(t)]
    assert sweep.retried(again) == [1] and again.params == study.trials[1].params


def test_a_sweep_refuses_another_definition_or_other_overrides(tmp_path, capsys):
    import optuna

    path = fake_sweep(tmp_path, CRASHING, "crash")
    out, db = tmp_path / "out", f"sqlite:///{tmp_path / 'sweeps.db'}"  # --storage: a database
    sweep.run_sweep(path, 1, out, storage=db, overrides=["trainer.epochs=1"])
    assert "[crash] done: 1 trials finished" in capsys.readouterr().out

    def again(*args, out=out) -> tuple[int, str, str]:
        with pytest.raises(SystemExit) as stopped:
            sweep.main([str(path), "--out", str(out), "--storage", db, "--trials", "1", *args])
            raise SystemExit(0)
        text = capsys.readouterr()
        return stopped.value.code, text.out, text.err

    def refusal(code, stdout, stderr) -> str:
        assert code == 2 and "done" not in stdout, stdout + stderr
        (line,) = stderr.strip().splitlines()  # one line, no traceback
        assert "--name NEW" in line and "--out DIR" in line  # how to start a new sweep
        return line

    line = refusal(*again("trainer.epochs=40"))
    assert "'trainer.epochs=40' now, 'trainer.epochs=1' in the sweep" in line
    path.write_text(path.read_text().replace("7, 8]", "7, 8, 9]"))
    line = refusal(*again("trainer.epochs=1"))
    assert "parameters.trainer.seed.values [1, 2, 3, 4, 5, 6, 7, 8] -> [1" in line
    path.write_text(path.read_text().replace("7, 8, 9]", "7, 8]"))
    # a new name in the same directory would reuse its trial directories
    assert "holds trials (trial-000)" in refusal(*again("trainer.epochs=40", "--name", "long"))

    code, stdout, stderr = again("trainer.epochs=1")  # the same request resumes (nothing left)
    assert code == 0 and "[crash] done: 1 trials finished" in stdout, stderr
    code, stdout, stderr = again("trainer.epochs=40", "--name", "long", out=tmp_path / "long")
    assert code == 0 and "[long] done: 1 trials finished" in stdout, stderr
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
  trainer.seed: {values: [7]}
command: ["${env}", python, "${program}", "${args_no_hyphens}"]
"""


@pytest.mark.slow
def test_ctrl_c_records_the_running_trial_as_interrupted_and_says_it_runs_again(tmp_path):
    import optuna
    from optuna.trial import TrialState

    path = fake_sweep(tmp_path, ONE_POINT, "one")
    db = f"sqlite:///{tmp_path / 'one.db'}"
    cmd = sweep_cmd(
        path, tmp_path / "out", "--storage", db, *QUIET, "trainer.epochs=1000", "fake.seconds=0.5"
    )
    # its own process group, as a shell gives a command: Ctrl-C signals the group
    runner = start_runner(cmd, start_new_session=True)
    lines: list[str] = []

    def read():
        for line in runner.stdout:
            lines.append(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    progress = re.compile(r"\[one\] trial 0: epoch (\d+)/1000, last val/score 0\.8000\n")
    deadline = time.time() + 200
    while not any(map(progress.fullmatch, lines)) and runner.poll() is None:
        assert time.time() < deadline, "".join(lines)[-3000:]
        time.sleep(0.1)
    os.killpg(runner.pid, signal.SIGINT)  # while the trial trains
    runner.wait(timeout=120)
    reader.join(timeout=10)
    text = "".join(lines)
    assert runner.returncode == 130, text[-3000:]
    assert "Traceback" not in text and "KeyboardInterrupt" not in text
    assert (
        "[one] trial 0 ['trainer.seed=7']: interrupted by Ctrl-C; recorded as failed and its "
        "parameters queued again: it runs again when the same command is run again\n"
    ) in text

    stopped, queued = optuna.load_study(study_name="one", storage=db).trials
    assert stopped.state == TrialState.FAIL
    assert queued.state == TrialState.WAITING and queued.params == stopped.params  # asked for next
    assert sweep.retried(queued) == [0]


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
