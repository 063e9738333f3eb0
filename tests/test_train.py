"""train.py end to end on tiny configs: the offline W&B run read back, resume, guards, strategies."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from aslfr.wandb_offline import read_runs

from conftest import DEBUG, ROOT, train

def test_run_directory_is_self_contained(debug_run):
    for name in ("folds.csv", "features.json", "summary.json", "checkpoints/latest.json",
                 "checkpoints/best.weights.h5", ".hydra/config.yaml"):
        assert (debug_run / name).exists(), name
    assert list((debug_run / "wandb").glob("offline-run-*/run-*.wandb"))
    summary = json.loads((debug_run / "summary.json").read_text())
    for key in ("val/loss", "val/top1", "val/top5", "val/levenshtein", "val/score",
                "best/val/score", "params"):
        assert key in summary, key
    assert summary["epochs"] == 3


def test_offline_run_holds_every_logged_key(debug_run):
    (run,) = read_runs(debug_run)
    summary = json.loads((debug_run / "summary.json").read_text())
    assert run.id == summary["wandb/id"] and run.exit_code == 0
    # the fully resolved Hydra config
    assert run.config["model"]["encoder"]["width"] == 32
    assert run.config["data"]["fold"] == 0 and run.config["trainer"]["epochs"] == 3
    assert "${" not in json.dumps(run.config)
    # name, group and tags tell runs apart
    assert run.name == "small-e1x32-d1x32-f0" and run.group == "small-e1x32-d1x32-synthetic"
    assert {"small", "synthetic", "fold0", "smoke"} <= set(run.tags)
    # per step: train/loss and the learning rate
    steps = run.series("train/loss")
    assert len(steps) >= 3 and all(np.isfinite(v) for _, v in steps)
    assert len(run.series("train/lr")) == len(steps)
    # per eval: exactly these names, at epochs 2 and 3 (eval_every=2, and always the last)
    for key in ("val/loss", "val/top1", "val/top5", "val/levenshtein", "val/score",
                "train/samples_per_sec"):
        assert run.series(key), key
    assert [row["epoch"] for row in run.history if "val/score" in row] == [2, 3]
    last = [row for row in run.history if "val/score" in row][-1]
    assert last["val/score"] == pytest.approx(summary["val/score"])
    assert last["val/examples/_type"] == "table-file" and last["val/examples/nrows"] == 4
    assert last["val/distance_histogram/_type"] == "histogram"
    # summary: best score and parameter count; the best checkpoint and folds.csv
    assert run.summary["params"] == summary["params"] > 0
    assert run.summary["best/val/score"] == pytest.approx(summary["best/val/score"])
    assert run.summary["val/score"]["max"] == pytest.approx(summary["best/val/score"])
    assert "folds.csv" in run.files
    (model,) = [a for a in run.artifacts if a["type"] == "model"]
    assert "best" in model["aliases"] and model["metadata"]["params"] == summary["params"]
    # the inference budget: probed before training, measured on the export after it
    for key in ("infer/latency_ms", "infer/model_mb", "infer/projected_hours", "budget/ok",
                "infer/val_score"):
        assert run.summary[key] == pytest.approx(summary[key]), key
    assert summary["budget/ok"] is True and 0 < summary["infer/model_mb"] < 40
    assert run.series("infer/latency_ms")  # logged, not only summarized


def test_cross_validation_multirun(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "WANDB_MODE": "offline"}
    proc = subprocess.run(
        [sys.executable, "train.py", "-m", *DEBUG, "data.fold=0,1", "trainer.epochs=1",
         f"paths.data_dir={tmp_path / 'data'}", f"hydra.sweep.dir={tmp_path / 'cv'}"],
        capture_output=True, text=True, cwd=ROOT, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = {r.config["data"]["fold"]: r for r in read_runs(tmp_path / "cv")}
    assert sorted(runs) == [0, 1]
    assert runs[0].group == runs[1].group and runs[0].name != runs[1].name
    folds = [json.loads((tmp_path / "cv" / str(k) / "summary.json").read_text()) for k in (0, 1)]
    assert all("val/score" in f for f in folds)


def test_unknown_key_or_option_fails_before_any_work(tmp_path):
    for bad in ("model.encoder.widht=64", "model=huge"):
        t = time.perf_counter()
        proc = train(tmp_path, bad, check=False, timeout=120)
        assert proc.returncode != 0
        assert "Could not override" in proc.stderr or "Could not find" in proc.stderr, proc.stderr
        assert not (tmp_path / "data").exists()  # no data generated, nothing trained
        assert time.perf_counter() - t < 60


def test_nan_loss_stops_with_a_message_and_keeps_the_last_good_checkpoint(tmp_path):
    run_dir = tmp_path / "run"
    train(tmp_path, "trainer.epochs=1", run_dir=run_dir)
    good = json.loads((run_dir / "checkpoints" / "latest.json").read_text())
    # resumed from epoch 1 with an absurd learning rate: the loss blows up in epoch 2
    proc = train(tmp_path, "trainer.epochs=3", "optimizer.lr=1e12", run_dir=run_dir, check=False)
    assert proc.returncode != 0
    assert "loss became nan" in proc.stderr.lower() or "loss became inf" in proc.stderr.lower()
    assert "last good checkpoint (epoch 1)" in proc.stderr
    assert json.loads((run_dir / "checkpoints" / "latest.json").read_text()) == good
    assert not (run_dir / "summary.json").exists() or \
        json.loads((run_dir / "summary.json").read_text())["epochs"] == 1


def test_resume_after_kill_9(tmp_path):
    run_dir = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "WANDB_MODE": "offline"}
    cmd = [sys.executable, "train.py", *DEBUG, "trainer.epochs=6",
           f"paths.data_dir={tmp_path / 'data'}", f"hydra.run.dir={run_dir}"]
    train(tmp_path, "trainer.epochs=1", run_dir=tmp_path / "warm")  # data + cache ready
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    latest = run_dir / "checkpoints" / "latest.json"
    deadline = time.time() + 400
    while time.time() < deadline and proc.poll() is None:
        if latest.exists() and json.loads(latest.read_text())["dir"] >= "epoch-0002":
            break
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done = int(json.loads(latest.read_text())["dir"].split("-")[1])
    assert 2 <= done < 6
    assert not (run_dir / "summary.json").exists()
    resumed = train(tmp_path, "trainer.epochs=6", run_dir=run_dir)
    assert f"after epoch {done}" in resumed.stdout + resumed.stderr
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["epochs"] == 6
    (run,) = read_runs(run_dir)  # one W&B run, continued
    assert run.id == summary["wandb/id"] and len(run.paths) == 2
    epochs = [row["epoch"] for row in run.history if "train/samples_per_sec" in row]
    assert epochs[-(6 - done):] == list(range(done + 1, 7))
    steps = [s for s, _ in run.series("train/loss")]
    assert steps == sorted(steps)  # the step counter (and so the schedule) went on


def test_mirrored_strategy_on_two_logical_cpus(tmp_path):
    proc = train(tmp_path, "trainer.epochs=1", "trainer.strategy=mirrored",
                 "trainer.cpu_devices=2")
    out = proc.stdout + proc.stderr
    assert "Using MirroredStrategy with devices" in out and "CPU:1" in out
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert np.isfinite(summary["val/loss"])
