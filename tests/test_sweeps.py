"""sweeps/*.yaml: valid W&B sweep definitions whose agent arguments are valid Hydra overrides."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from omegaconf import OmegaConf

from aslfr import sweep
from aslfr.errors import DataError

from conftest import ROOT, compose_cfg

SWEEPS = sorted((ROOT / "sweeps").glob("*.yaml"))


def test_the_three_definitions_exist():
    assert {p.name for p in SWEEPS} >= {"depth_width.yaml", "lr_batch.yaml", "folds.yaml"}


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


def test_depth_width_searches_both_stacks_with_hyperband():
    d = sweep.load(ROOT / "sweeps" / "depth_width.yaml")
    assert d["method"] == "bayes" and d["early_terminate"]["type"] == "hyperband"
    assert {f"model.{s}.{k}" for s in ("encoder", "decoder") for k in ("depth", "width")} <= set(
        d["parameters"])


def test_folds_grid_covers_every_fold():
    d = sweep.load(ROOT / "sweeps" / "folds.yaml")
    n_folds = compose_cfg([], Path("/tmp")).data.n_folds
    assert sorted(p["data.fold"] for p in sweep.grid(d)) == list(range(n_folds))


def test_agent_arguments_match_what_wandb_writes():
    assert sweep.agent_args({"a.b": 3, "c": None, "d": True, "e": 1e-3, "f": [1, 2]}) == [
        "a.b=3", "c=None", "d=True", "e=0.001", "f=[1,2]"]


def test_an_invalid_definition_names_the_file_and_the_problem(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"program": "train.py", "method": "bayes",
                                   "metric": {"name": "val/score", "goal": "up"},
                                   "parameters": {"model.encoder.depth": {"values": [1, 2]}},
                                   "command": ["python", "train.py", "${args_no_hyphens}"]}))
    with pytest.raises(DataError, match=r"bad.yaml: not a valid W&B sweep definition.*up"):
        sweep.load(bad)
    with pytest.raises(DataError, match="model.encoder.depth is a parameter of the sweep"):
        sweep.run_sweep(ROOT / "sweeps" / "depth_width.yaml", 1, tmp_path / "out",
                        overrides=["model.encoder.depth=2"])


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


def test_offline_sweep_resumes_after_being_killed_and_ends_over_budget_trials_early(tmp_path):
    import optuna
    from optuna.trial import TrialState

    from aslfr.wandb_offline import read_runs

    definition = tmp_path / "tiny.yaml"
    definition.write_text(TINY_SWEEP)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "aslfr.sweep", str(definition), "--trials", "10", "--out",
           str(out), "experiment=debug", "trainer.epochs=1", "budget.probe=true",
           f"paths.data_dir={tmp_path / 'data'}"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "WANDB_MODE": "offline"}
    runner = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, start_new_session=True)
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

    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{out / 'optuna.db'}")
    states = {t.number: t.state for t in study.trials}
    assert states[1] == TrialState.FAIL  # the interrupted one, recorded
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
    cmp = subprocess.run([sys.executable, "-m", "aslfr.compare", str(out)], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=300)
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
    assert row["compare/leaderboard/nrows"] == len(training_runs)


PRUNE_SWEEP = """
program: train.py
method: bayes
metric: {name: val/score, goal: maximize}
early_terminate: {type: hyperband, min_iter: 2, eta: 3}
parameters:
  model.encoder.width: {values: [16, 32]}
command: ["${env}", python, "${program}", "${args_no_hyphens}"]
"""


def test_early_termination_reads_running_trials_checkpoints_and_stops_them(tmp_path):
    import optuna
    from optuna.trial import TrialState

    path = tmp_path / "prune.yaml"
    path.write_text(PRUNE_SWEEP)
    definition = sweep.load(path)
    hyperband = sweep.make_study(definition, "prune", f"sqlite:///{tmp_path / 'h.db'}", 0).pruner
    assert isinstance(hyperband, optuna.pruners.HyperbandPruner)
    assert (hyperband._min_resource, hyperband._reduction_factor) == (2, 3)

    # The mechanics with a pruner that stops any trial at its first reported evaluation: the
    # runner reads val/score from the running trial's checkpoints, reports it at its epoch and
    # terminates train.py when told to prune.
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.ThresholdPruner(
        lower=2.0))
    trial = study.ask(sweep.distributions(definition))
    overrides = ["experiment=debug", "trainer.epochs=40", "trainer.eval_every=1",
                 f"paths.data_dir={tmp_path / 'data'}"]
    result = sweep.run_trial(study, trial, definition, "prune", tmp_path / "out", overrides,
                             "val/score")
    assert result["state"] == "pruned"
    (done,) = study.trials
    assert done.state == TrialState.PRUNED
    (epoch, score), = done.intermediate_values.items()
    assert 1 <= epoch < 40 and score <= 1.0  # (N - D) / N: negative for long wrong guesses
    assert "val/score" not in result  # it never reached its end of training


def test_pareto_front_keeps_runs_no_other_beats_on_both():
    from aslfr.compare import Row, pareto_front

    def row(name, score, ms, ok=True):
        return Row(name, score, ms, 1.0, 1, "1x1", "1x1", ok, 0, 100.0)

    rows = [row("a", 0.5, 10), row("b", 0.6, 20), row("c", 0.55, 25), row("d", 0.7, 30),
            row("e", 0.9, 5, ok=False)]
    assert [r.name for r in pareto_front(rows)] == ["a", "b", "d"]


def test_online_comparison_reads_runs_through_the_wandb_api(monkeypatch, tmp_path, capsys):
    """The W&B server is not reachable here: the public API is replaced by an object shaped as
    its answers are (run.config unwrapped and nested, run.summary with the metric's max)."""
    import wandb

    from aslfr import compare

    class Run:
        def __init__(self, name, config, summary):
            self.name, self.config, self.summary = name, config, summary

    def trained(name, width, score, ms, ok):
        config = {"model": {"encoder": {"depth": 2, "width": width},
                            "decoder": {"depth": 1, "width": 64}},
                  "data": {"fold": 0}, "budget": {"latency_ms": 20.0}}
        return Run(name, config, {"val/score": {"max": score}, "infer/latency_ms": ms,
                                  "infer/model_mb": 1.5, "params": 1000, "budget/ok": ok})

    runs = [trained("narrow", 64, 0.6, 5.0, True), trained("wide", 256, 0.7, 12.0, True),
            trained("huge", 512, 0.0, 40.0, False), Run("compare", {"compare": {}}, {})]
    asked = []

    class Api:
        def runs(self, path):
            asked.append(path)
            return runs

        def sweep(self, path):
            asked.append(path)
            return type("Sweep", (), {"runs": runs[:2]})()

    monkeypatch.setattr(wandb, "Api", Api)
    compare.main(["--wandb-path", "me/aslfr", "--out", str(tmp_path / "p.png"), "--no-wandb"])
    text = capsys.readouterr().out
    assert asked == ["me/aslfr"]
    assert all(n in text for n in ("narrow", "wide", "huge")) and "compare " not in text
    assert "Pareto front (within budget): narrow, wide" in text and text.count("OVER") == 1
    assert (tmp_path / "p.png").exists()
    rows = compare.online_rows("me/aslfr", sweep="abc123")
    assert asked[-1] == "me/aslfr/abc123" and [r.name for r in rows] == ["narrow", "wide"]
    assert rows[1].score == 0.7 and rows[1].encoder == "2x256" and rows[1].fold == 0
