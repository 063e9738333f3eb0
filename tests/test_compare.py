"""aslfr-compare: what it refuses in one line (the comparisons themselves are tested on
real runs in test_train.py, test_export.py and test_sweeps.py)."""

from __future__ import annotations

import pytest
import wandb

from aslfr.experiments import compare


def test_online_comparison_when_not_logged_in_is_one_line(monkeypatch, tmp_path, capsys):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    netrc = tmp_path / "netrc"
    netrc.write_text("")
    monkeypatch.setenv("NETRC", str(netrc))
    with pytest.raises(SystemExit) as stop:
        compare.main(["--wandb-path", "me/aslfr", "--no-wandb"])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not logged in" in err and "wandb login" in err


def test_a_directory_without_runs_is_one_line(tmp_path, capsys):
    for args in ([str(tmp_path / "missing")], [str(tmp_path)]):
        with pytest.raises(SystemExit) as stop:
            compare.main([*args, "--no-wandb"])
        assert stop.value.code == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1, err


SIX = """\
program: train.py
method: random
metric: {name: val/score, goal: maximize}
parameters:
  model.encoder.depth: {values: [1, 2, 3]}
  model.encoder.width: {values: [32, 64, 128]}
  model.decode: {value: ctc}
command: ["${env}", python, "${program}", "${args_no_hyphens}"]
"""


def six_trial_sweep(tmp_path, trials: int = 6):
    """An offline sweep of 6 finished trials as aslfr-sweep leaves it: the Optuna study in the
    journal (the runner's own storage and study), and a run directory per trial with its config,
    summary and status. The score follows the width, hardly the depth."""
    import json

    import optuna
    import yaml

    from aslfr.experiments import sweep

    definition_path = tmp_path / "six.yaml"
    definition_path.write_text(SIX)
    definition = sweep.load(definition_path)
    out = tmp_path / "sweeps-out" / "six"
    out.mkdir(parents=True)
    study = sweep.make_study(definition, "six", sweep.open_storage(out), 0)
    points = [(1, 32), (2, 64), (3, 128), (1, 128), (3, 32), (2, 128)]
    for n, (depth, width) in enumerate(points[:trials]):
        score = 0.5 + width / 400 + depth / 1000
        run_dir = out / f"trial-{n:03d}"
        (run_dir / ".hydra").mkdir(parents=True)
        config = {
            "model": {
                "name": "small",
                "encoder": {"depth": depth, "width": width},
                "decoder": {"depth": 1, "width": 32},
            },
            "data": {"fold": 0, "source": "synthetic"},
            "budget": {"latency_ms": 375.0},
        }
        (run_dir / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
        (run_dir / "summary.json").write_text(
            json.dumps({"best/val/score": score, "val/score": score, "params": 1000 * width, "epochs": 2})
        )
        (run_dir / "status.json").write_text(json.dumps({"status": "finished"}))
        params = {"model.encoder.depth": depth, "model.encoder.width": width}
        study.add_trial(
            optuna.trial.create_trial(
                params=params,
                distributions=sweep.distributions(definition),
                value=score,
                user_attrs={"run_dir": str(run_dir), "args": sweep.agent_args(params)},
            )
        )
    return out


def test_compare_prints_and_logs_the_parameter_importances_of_an_offline_sweep(tmp_path, capsys):
    from aslfr.experiments.offline import read_runs

    out = six_trial_sweep(tmp_path)
    compare.main([str(out)])
    text = capsys.readouterr().out
    head = "parameter importances for val/score (six, fANOVA over 6 complete trials):"
    assert head in text
    lines = text.split(head)[1].strip().splitlines()[:2]
    (first, a), (second, b) = (line.split() for line in lines)
    assert (first, second) == ("model.encoder.width", "model.encoder.depth") and float(a) > float(b)
    assert abs(float(a) + float(b) - 1) < 0.01
    # logged with the leaderboard (offline here): the table and a summary value per parameter.
    # W&B's service writes the offline record after finish() returns; at exit (teardown) it is
    # complete, as when aslfr-compare's own process ends.
    wandb.teardown()
    (logged,) = read_runs(out / ".compare")
    assert logged.summary["importance/six/model.encoder.width"] == pytest.approx(float(a), abs=1e-3)
    assert logged.summary["compare/importance/_type"] == "table-file"


def test_too_few_trials_for_importances_says_how_many_are_needed(tmp_path):
    out = six_trial_sweep(tmp_path, trials=3)
    (found,) = compare.importances(out)
    assert found.trials == 3 and not found.values
    assert "3 complete trial(s)" in compare.importance_table(
        [found]
    ) and "at least 4" in compare.importance_table([found])


@pytest.mark.slow
def test_make_optuna_dashboard_serves_the_sweeps_journal(tmp_path):
    """`make optuna-dashboard SWEEP=DIR` starts optuna-dashboard on DIR/optuna.journal, and
    optuna-dashboard reads the study the runner's storage wrote (its API lists it, with its
    trials); a directory without a journal is one line."""
    import json
    import socket
    import subprocess
    import sys
    import time
    import urllib.request
    from pathlib import Path

    from conftest import ROOT, subprocess_env

    out = six_trial_sweep(tmp_path)
    venv = Path(sys.executable).parent.parent
    make = ["make", "-s", "-o", f"{venv}/.installed", "optuna-dashboard", f"VENV={venv}"]
    refused = subprocess.run(
        [*make, f"SWEEP={tmp_path}"],
        cwd=ROOT,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode != 0 and f"no {tmp_path}/optuna.journal" in refused.stdout
    with socket.socket() as s:  # a free port
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [*make, f"SWEEP={out}", f"ARGS=--host 127.0.0.1 --port {port}"],
        cwd=ROOT,
        env=subprocess_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # make and the server it starts: one group to end
    )
    try:
        studies, deadline = None, time.monotonic() + 120
        while studies is None and time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=5) as answer:
                    studies = json.load(answer)["study_summaries"]
            except OSError:
                time.sleep(0.5)
        assert studies is not None, proc.stdout.read() if proc.poll() is not None else "no answer"
        (study,) = studies
        assert study["study_name"] == "six"
        detail = f"http://127.0.0.1:{port}/api/studies/{study['study_id']}"
        with urllib.request.urlopen(detail, timeout=30) as answer:
            trials = json.load(answer)["trials"]
        assert len(trials) == 6 and all(t["state"] == "Complete" for t in trials)
    finally:
        import os
        import signal

        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
