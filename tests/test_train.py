"""train.py end to end on tiny configs: the offline W&B run read back, resume, guards,
strategies."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from aslfr.data import prepare
from aslfr.experiments import compare
from aslfr.experiments.offline import read_runs
from aslfr.train.rundir import RunDir

from conftest import CTC_ONLY, DEBUG, ROOT, subprocess_env, train, train_here, typed_cfg

pytestmark = pytest.mark.slow  # train.py's runs end to end (in subprocesses where the process is tested)


def test_run_directory_is_self_contained(debug_run):
    for name in (
        "folds.csv",
        "features.json",
        "summary.json",
        "checkpoints/latest.json",
        "checkpoints/best.weights.h5",
        ".hydra/config.yaml",
        "decoding.json",
        "fallback.json",
    ):
        assert (debug_run / name).exists(), name
    assert list((debug_run / "wandb").glob("offline-run-*/run-*.wandb"))
    summary = json.loads((debug_run / "summary.json").read_text())
    for key in (
        "val/loss",
        "val/top1",
        "val/top5",
        "val/levenshtein",
        "val/score",
        "best/val/score",
        "params",
        "decode/how",
        "fallback/min_hand_frames",
        "fallback/val_clips",
        "fallback/val_gain",
    ):
        assert key in summary, key
    assert summary["epochs"] == 3
    # what the run ships, chosen from its data (model.decode=best, fallback.min_hand_frames=null)
    decoding = json.loads((debug_run / "decoding.json").read_text())
    assert decoding["decode"] == summary["decode/how"] in ("attention", "ctc", "joint")
    rule = json.loads((debug_run / "fallback.json").read_text())
    assert rule["min_hand_frames"] == summary["fallback/min_hand_frames"] >= 0
    (run,) = read_runs(debug_run)
    assert run.summary["decode/how"] == summary["decode/how"]
    assert run.summary["best/val/score"] == pytest.approx(summary["best/val/score"])


def test_the_learning_curve_shows_every_decoding(debug_run, tmp_path):
    from aslfr.experiments import plot

    out = plot.learning_curve(debug_run, tmp_path / "curve.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    (run,) = read_runs(debug_run)
    curves = plot.score_curves([row for row in run.history if "val/score" in row])
    decodings = ["attention", "ctc", "joint", "joint@0.3", "joint@0.5"]  # model.decode=best's
    assert set(curves) == {"val/score", *(f"val/score_{how}" for how in decodings)}
    # val/score is the best decoding's at each evaluation
    assert curves["val/score"] == [max(s) for s in zip(*(curves[f"val/score_{h}"] for h in decodings))]


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
    for key in ("val/loss", "val/top1", "val/top5", "val/levenshtein", "val/score", "train/samples_per_sec"):
        assert run.series(key), key
    assert [row["epoch"] for row in run.history if "val/score" in row] == [2, 3]
    last = [row for row in run.history if "val/score" in row][-1]
    assert last["val/score"] == pytest.approx(summary["val/score"])
    assert last["val/examples/_type"] == "table-file" and last["val/examples/nrows"] == 4
    assert last["val/distance_histogram/_type"] == "histogram"
    # summary: best score and parameter count; the best checkpoint and folds.csv
    assert run.summary["params"] == summary["params"] > 0
    assert run.summary["best/val/score"] == pytest.approx(summary["best/val/score"])
    # the shipped model: the best evaluation's decoding, with the fallback chosen after training
    shipped = run.summary["val/score"]["max"] + summary["fallback/val_gain"]
    assert summary["best/val/score"] == pytest.approx(shipped)
    assert "folds.csv" in run.files
    (model,) = [a for a in run.artifacts if a["type"] == "model"]
    assert "best" in model["aliases"] and model["metadata"]["params"] == summary["params"]
    # the inference budget: probed before training, measured on the export after it
    for key in (
        "infer/latency_ms",
        "infer/model_mb",
        "infer/projected_hours",
        "budget/ok",
        "infer/val_score",
    ):
        assert run.summary[key] == pytest.approx(summary[key]), key
    assert summary["budget/ok"] is True and 0 < summary["infer/model_mb"] < 40
    assert run.series("infer/latency_ms")  # logged, not only summarized


def test_unknown_key_or_option_fails_before_any_work(tmp_path):
    for bad in ("model.encoder.widht=64", "model=huge"):
        t = time.perf_counter()
        proc = train(tmp_path, bad, check=False, timeout=120)
        assert proc.returncode != 0
        assert "Could not override" in proc.stderr or "Could not find" in proc.stderr, proc.stderr
        assert not (tmp_path / "data").exists()  # no data generated, nothing trained
        assert time.perf_counter() - t < 60


def compiled(tmp_path: Path, *overrides: str):
    """The debug model compiled as a run compiles it (compile_model, 100 steps in all) and a batch
    of random frames and tokens."""
    import keras
    import tensorflow as tf

    from aslfr.data.features import FeatureSpec
    from aslfr.data.layout import CHARACTERS
    from aslfr.data.vocab import Vocab
    from aslfr.model.config import model_config
    from aslfr.model.model import build
    from aslfr.train.loop import compile_model

    cfg = typed_cfg([*DEBUG, *overrides], tmp_path)
    spec = FeatureSpec.from_config(cfg.data.features)
    mcfg = model_config(cfg.model, cfg.data, cfg.trainer.jit, spec, Vocab(CHARACTERS))
    rng = np.random.default_rng(0)
    batch = {
        "frames": tf.constant(rng.normal(size=(4, mcfg.max_frames, mcfg.n_features)), tf.float32),
        "mask": tf.ones([4, mcfg.max_frames]),
        "tokens": tf.constant(rng.integers(0, mcfg.pad, (4, mcfg.max_length)), tf.int32),
    }
    keras.utils.set_random_seed(0)
    return compile_model(build(mcfg), cfg, 10, 10), batch


def test_adversarial_weight_perturbation_changes_the_step_only_from_its_start(tmp_path):
    """optimizer.awp: from awp_from of training on, the step's gradients are taken at weights
    pushed up the loss gradient (then the push is taken back); before that, Keras' own step."""

    def trained(*overrides: str) -> list[list[np.ndarray]]:
        """The weights after each of 3 steps (of 10 epochs x 10 steps)."""
        model, batch = compiled(tmp_path, *CTC_ONLY, "optimizer.awp=0.05", *overrides)
        after = []
        for _ in range(3):
            model.train_on_batch(batch, batch["tokens"])
            after.append([w.numpy() for w in model.trainable_weights])
        return after

    plain, awp = trained("optimizer.awp=0"), trained("optimizer.awp_from=0.02")  # from step 3 of 100
    assert all(np.array_equal(a, b) for a, b in zip(plain[1], awp[1]))  # steps 1-2: Keras' own step
    assert not all(np.allclose(a, b) for a, b in zip(plain[2], awp[2]))  # step 3: perturbed
    assert all(np.isfinite(w).all() for w in awp[2])


def test_xla_trains_with_the_ctc_loss(tmp_path):
    """trainer.jit=true with the CTC loss (XLA has no kernel for TensorFlow's sparse CTC: the
    model takes the dense-label path, which XLA compiles): the model compiled as a run compiles
    it takes XLA-compiled training steps, with a finite loss."""
    model, batch = compiled(tmp_path, *CTC_ONLY, "trainer.jit=true")  # the CTC loss alone
    assert model.jit_compile
    before = [w.numpy() for w in model.trainable_weights]
    losses = [float(model.train_on_batch(batch, batch["tokens"], return_dict=True)["loss"]) for _ in range(2)]
    assert np.isfinite(losses).all()
    assert any(not np.array_equal(b, w.numpy()) for b, w in zip(before, model.trainable_weights))


RECIPE = [
    "data.augment.cutmix.p=0.5",
    "data.augment.flip.p=0.5",
    "data.augment.time_mask.p=0.5",
    "model.token_noise=0.2",
    "optimizer.ema=0.9",
    "data.length_pool=4",
    "fallback.min_hand_frames=2",
    "optimizer.awp=0.05",
    "optimizer.awp_from=0.5",
]


@pytest.mark.slow
def test_the_whole_recipe_trains_and_exports_what_it_validated(tmp_path):
    """Every trick of the recipe at once, on Kaggle-layout files: the export scores by the
    competition's rules what the run reported; the weights' moving average is what validation,
    best.weights.h5 and the export use, while training (and its checkpoint, for a resume) goes on
    from the trained weights, the average itself in the optimizer state; the fallback phrase
    chosen on the training folds is written, logged, and counted at every evaluation."""
    from aslfr.export.convert import RunFiles

    # every validation clip under the fallback's threshold: the exported graph's fallback path
    # must then score exactly what the run reported
    every = "fallback.min_hand_frames=100000"
    # (attention decoding alone: the decodings a run compares are not what this test is about)
    train_here(tmp_path, *RECIPE, every, "model.decode=attention", "trainer.epochs=1", "export.enabled=true")
    run_dir = tmp_path / "run"
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["infer/val_score"] == pytest.approx(summary["best/val/score"], abs=1e-12)
    assert summary["best/epoch"] == 1
    # EMA
    model = RunFiles.load(run_dir).model()  # best.weights.h5
    averaged = [v.numpy().copy() for v in model.trainable_variables]
    model.load_weights(run_dir / "checkpoints" / "epoch-0001" / "model.weights.h5")
    trained = [v.numpy() for v in model.trainable_variables]
    assert any(not np.array_equal(a, t) for a, t in zip(averaged, trained))
    with np.load(run_dir / "checkpoints" / "epoch-0001" / "optimizer.npz") as z:
        state = [z[k] for k in z.files]
    for a in averaged:  # every averaged variable is in the optimizer's state, exactly
        assert any(s.shape == a.shape and np.array_equal(s, a) for s in state)
    # the fallback phrase
    rule = json.loads((run_dir / "fallback.json").read_text())
    (run,) = read_runs(run_dir)
    assert rule["phrase"] and run.summary["fallback/phrase"] == rule["phrase"]
    assert summary["val/fallbacks"] == run.summary["val/sequences"] > 0
    assert [row for row in run.history if "val/score" in row][-1]["val/fallbacks"] == summary["val/fallbacks"]


@pytest.fixture(scope="module")
def one_epoch(tmp_path_factory) -> Path:
    """A debug run of one epoch; tests resume copies of it (`resumed_copy`)."""
    tmp = tmp_path_factory.mktemp("one-epoch")
    train_here(tmp, *CTC_ONLY, "trainer.epochs=1")
    return tmp / "run"


def resumed_copy(one_epoch: Path, tmp_path: Path, *overrides: str) -> dict:
    """`one_epoch` copied to tmp_path/run and resumed there with `overrides` (its data too)."""
    shutil.copytree(one_epoch, tmp_path / "run")
    return train_here(tmp_path, f"paths.data_dir={one_epoch.parent / 'data'}", *CTC_ONLY, *overrides)


def test_nan_loss_stops_with_a_message_and_keeps_the_last_good_checkpoint(tmp_path, one_epoch):
    from aslfr.errors import TrainingDiverged

    run_dir = tmp_path / "run"
    good = json.loads((one_epoch / "checkpoints" / "latest.json").read_text())
    # resumed from epoch 1 with an absurd learning rate: the loss blows up in epoch 2
    with pytest.raises(TrainingDiverged) as stopped:  # train.py prints it as one line, exit code 1
        resumed_copy(one_epoch, tmp_path, "trainer.epochs=3", "optimizer.lr=1e12")
    message = str(stopped.value)
    assert "loss became nan" in message.lower() or "loss became inf" in message.lower()
    assert "last good checkpoint (epoch 1)" in message and "\n" not in message
    assert json.loads((run_dir / "checkpoints" / "latest.json").read_text()) == good
    assert (
        not (run_dir / "summary.json").exists()
        or json.loads((run_dir / "summary.json").read_text())["epochs"] == 1
    )
    status = RunDir(run_dir).status()  # marked in the directory, with the reason
    assert status["status"] == "failed" and "loss became" in status["error"]


def test_the_exports_row_follows_the_last_epoch_when_an_earlier_epoch_was_best(tmp_path, one_epoch):
    """The export's metrics are a W&B history row after the last epoch's, also when the best
    weights (which bring back their epoch's optimizer step count) are from an earlier epoch:
    W&B drops a row logged at an earlier step than its last (seen in a default run whose best
    epoch was 20 of 24)."""
    run_dir = tmp_path / "run"
    # a second epoch at learning rate 0 changes no weight: no better score, epoch 1 stays the best
    resumed_copy(one_epoch, tmp_path, "trainer.epochs=2", "optimizer.lr=0.0", "export.enabled=true")
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["best/epoch"] == 1 and summary["epochs"] == 2
    (run,) = read_runs(run_dir)
    last_epoch = max(step for step, _ in run.series("val/score"))
    exported = run.series("infer/val_score")
    assert exported and exported[0][0] > last_epoch
    assert exported[0][1] == pytest.approx(summary["infer/val_score"])


def test_resume_after_kill_9_keeps_every_completed_epoch_in_the_wandb_record(tmp_path, caplog):
    """Killed at whatever moment after epoch 2's checkpoint (how late does not matter): the W&B
    record holds every epoch the checkpoint says is done, and after the resume read_runs gives
    one run with each epoch once. Resuming with another trainer.epochs is allowed."""
    run_dir = tmp_path / "run"
    cmd = [
        sys.executable,
        "train.py",
        *DEBUG,
        *CTC_ONLY,
        "trainer.epochs=40",
        f"paths.data_dir={tmp_path / 'data'}",
        f"hydra.run.dir={run_dir}",
    ]
    warm = typed_cfg([*DEBUG, *CTC_ONLY, f"paths.output_dir={tmp_path / 'warm'}"], tmp_path)
    prepare.setup_from_config(warm)  # the data and the feature cache ready
    proc = subprocess.Popen(
        cmd,
        cwd=ROOT,
        env=subprocess_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    latest = run_dir / "checkpoints" / "latest.json"
    deadline = time.time() + 250
    while time.time() < deadline and proc.poll() is None:
        if latest.exists() and json.loads(latest.read_text())["dir"] >= "epoch-0002":
            break
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done = int(json.loads(latest.read_text())["dir"].split("-")[1])
    assert 2 <= done < 40
    assert not (run_dir / "summary.json").exists()
    (killed,) = read_runs(run_dir)  # what the killed process left on disk
    assert (
        killed.id
        and killed.id
        == json.loads((run_dir / "checkpoints" / f"epoch-{done:04d}" / "state.json").read_text())["wandb_id"]
    )
    logged = [row["epoch"] for row in killed.history if "train/samples_per_sec" in row]
    assert logged[:done] == list(range(1, done + 1))
    assert RunDir(run_dir).status()["status"] == "interrupted"
    (row,) = compare.offline_rows([run_dir])  # listed apart, with what it reached
    assert row.status == "interrupted" and row.epochs >= done
    assert "not finished" in compare.leaderboard([row])

    end = done + 2
    caplog.set_level(logging.INFO)
    train_here(tmp_path, *CTC_ONLY, f"trainer.epochs={end}")  # the same command again (in this process)
    assert f"after epoch {done}" in caplog.text
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["epochs"] == end
    (run,) = read_runs(run_dir)  # one W&B run, continued
    assert run.id == summary["wandb/id"] == killed.id and len(run.paths) == 2
    epochs = [row["epoch"] for row in run.history if "train/samples_per_sec" in row]
    assert epochs == list(range(1, end + 1))
    steps = [s for s, _ in run.series("train/loss")]
    assert steps == sorted(steps) and len(set(steps)) == len(steps)
    assert RunDir(run_dir).status()["status"] == "finished"


def test_two_runs_started_together_write_to_their_own_directories(tmp_path, debug_run):
    """Their directories are unique; one of them trains under the mirrored strategy on two
    logical CPUs (trainer.strategy=mirrored trainer.cpu_devices=2)."""
    pattern = f"hydra.run.dir={tmp_path}/outputs/${{now:%Y-%m-%d}}/${{stamp:}}"
    data_dir = debug_run.parent / "data"  # the smoke run's: data and feature cache ready
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "train.py",
                *DEBUG,
                *CTC_ONLY,
                "trainer.epochs=1",
                f"model.encoder.width={w}",
                f"paths.data_dir={data_dir}",
                pattern,
                f"wandb.mode={mode}",
                *extra,
            ],
            cwd=ROOT,
            env=subprocess_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for w, mode, extra in (
            (64, "offline", []),
            (96, "disabled", ["trainer.strategy=mirrored", "trainer.cpu_devices=2"]),
        )
    ]
    outs = [p.communicate(timeout=280)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    dirs = sorted((tmp_path / "outputs").glob("*/*"))
    assert len(dirs) == 2
    widths = {
        yaml.safe_load((d / ".hydra" / "config.yaml").read_text())["model"]["encoder"]["width"] for d in dirs
    }
    assert widths == {64, 96}
    for d in dirs:
        summary = json.loads((d / "summary.json").read_text())
        if summary["wandb/mode"] == "offline":
            (run,) = read_runs(d)
            assert run.id == summary["wandb/id"]
    rows = compare.offline_rows([tmp_path / "outputs"])  # the W&B-disabled run too
    assert sorted(r.encoder for r in rows) == ["1x64", "1x96"]
    assert all(r.status == "finished" and r.score is not None for r in rows)
    for out in outs:  # each run says where it is, at the start and at the end
        assert sum(f"run directory: {d}" in out for d in dirs) == 1, out
    mirrored = outs[1]
    assert "Using MirroredStrategy with devices" in mirrored and "CPU:1" in mirrored
    assert "CPU:1" not in outs[0]
    (mirrored_dir,) = [d for d in dirs if f"run directory: {d}" in mirrored]
    assert np.isfinite(json.loads((mirrored_dir / "summary.json").read_text())["val/loss"])


def snapshot(directory: Path) -> dict:
    return {
        p.relative_to(directory): (p.stat().st_mtime_ns, p.read_bytes())
        for p in directory.rglob("*")
        if p.is_file()
    }


def test_resume_with_another_config_is_refused_and_touches_nothing(debug_run, tmp_path):
    before = snapshot(debug_run)
    t = time.perf_counter()
    proc = train(
        tmp_path,
        "model.encoder.width=96",
        "data.max_frames=48",
        "trainer.epochs=9",
        run_dir=debug_run,
        check=False,
    )
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    err = proc.stderr
    assert f"{debug_run} holds a run with another configuration" in err
    assert "model.encoder.width: 32 in the run, 96 now" in err
    assert "data.max_frames: 32 in the run, 48 now" in err
    assert "trainer.epochs:" not in err  # allowed to change: not a difference
    # the two ways forward: a new directory, or the run's own overrides
    assert "leave out hydra.run.dir" in err
    assert "debug=default" in err and f"hydra.run.dir={debug_run}" in err
    assert snapshot(debug_run) == before  # .hydra/ included
    assert time.perf_counter() - t < 60  # before any data or TensorFlow work


def test_a_directory_in_use_by_a_live_run_is_refused(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            (
                "import sys, time, filelock; lock = filelock.FileLock(sys.argv[1]); lock.acquire(); "
                "print('held', flush=True); time.sleep(120)"
            ),
            str(run_dir / ".lock"),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        proc = train(tmp_path, run_dir=run_dir, check=False)
        assert proc.returncode == 2 and "is in use by another process" in proc.stderr
        assert "Traceback" not in proc.stderr
    finally:
        holder.kill()
        holder.wait()


@pytest.fixture(scope="module")
def terminal_run(tmp_path_factory) -> tuple[Path, str]:
    """train.py as a user starts it on a terminal (TF_CPP_MIN_LOG_LEVEL unset, 160 columns): a
    conformer (rotary positions) CTC-only model, halving its frames, with its export -> (its run
    directory, what the terminal showed)."""
    import fcntl
    import pty
    import struct
    import termios

    tmp = tmp_path_factory.mktemp("terminal")
    # TensorFlow's start-up lines are held back without TF_CPP_MIN_LOG_LEVEL
    quiet_unless_asked = {k: v for k, v in subprocess_env().items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    master, child_end = pty.openpty()
    fcntl.ioctl(child_end, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 160, 0, 0))  # 160 columns
    proc = subprocess.Popen(
        [
            sys.executable,
            "train.py",
            *DEBUG,
            "model=conformer_small",
            "model.decoder.depth=0",  # decodes with the head it has
            "model.encoder.downsample_at=1",
            "trainer.epochs=2",
            "export.enabled=true",  # its measurement converts the model as budget.probe would
            f"paths.data_dir={tmp / 'data'}",
            f"hydra.run.dir={tmp / 'run'}",
        ],
        cwd=ROOT,
        env=quiet_unless_asked,
        stdin=subprocess.DEVNULL,
        stdout=child_end,
        stderr=child_end,
    )
    os.close(child_end)
    out = b""
    while True:
        try:
            chunk = os.read(master, 1 << 16)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        out += chunk
    os.close(master)
    assert proc.wait(timeout=60) == 0, out[-3000:]
    return tmp / "run", out.decode(errors="replace")


def test_a_progress_bar_inside_each_epoch_on_a_terminal(terminal_run):
    """On a terminal each epoch shows a bar (steps, loss, samples/s); the per-epoch log lines
    are the progress when the output is not a terminal (every other test)."""
    _, text = terminal_run
    for needle in ("epoch 1/2", "epoch 2/2", "/5 [", "step/s", "loss=", "samples/s="):
        assert needle in text, needle
    # and none of the notices a user cannot act on (the export included)
    for noise in (
        "shuffle=True",
        "Symlinked",
        "contains input name(s)",
        "Assets written to",
        "Valid config keys",
        "oneDNN custom operations",
        "cuInit",
        "cuda drivers",
        "absl::InitializeLog",
        "XNNPACK delegate",
        "retracing",  # each traced function traced once, whatever the batch's shape
    ):
        assert noise not in text, noise


def test_a_ctc_only_conformer_exports_and_scores_the_same_by_the_competitions_rules(terminal_run, tmp_path):
    """The winners' family end to end on Kaggle-layout files, CTC alone: the export scores by the
    competition's rules what the run's own val/score says; the run logs no teacher-forced token
    metrics and its learning curve plots."""
    from aslfr.experiments import plot

    run_dir, _ = terminal_run
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["infer/val_score"] == pytest.approx(summary["best/val/score"], abs=1e-12)
    (run,) = read_runs(run_dir)
    evaluated = [row for row in run.history if "val/score" in row]
    assert "val/top1" not in evaluated[-1]  # no decoder: no teacher-forced tokens
    assert plot.learning_curve(run_dir, tmp_path / "curve.png").exists()
    model = run.config["model"]
    assert model["decoder"]["depth"] == 0 and model["encoder"]["block"] == "conformer"


def test_a_conformer_with_both_heads_decodes_jointly_exports_and_scores_the_same(tmp_path, monkeypatch):
    """The winners' family end to end on Kaggle-layout files: a conformer (rotary positions) with
    both heads decoded jointly, halving its frames; the export scores by the competition's rules
    what the run's own val/score says, every decoding's score is logged, and each data set's
    decoder is traced once whatever its batches' shapes."""
    from aslfr.train import decoder, loop, shipping

    decoders = []

    class Counted(decoder.DatasetDecoder):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            decoders.append(self)

    for user in (loop, shipping):  # validation, and the shipped decoding's
        monkeypatch.setattr(user, "DatasetDecoder", Counted)
    train_here(
        tmp_path,
        "model=conformer_small",
        "model.decode=joint",
        "model.encoder.downsample_at=1",
        "trainer.epochs=1",
        "export.enabled=true",  # its measurement converts the model as budget.probe would
    )
    # each dataset decoder is traced once for every batch's size and length
    assert decoders and all(d.fn.experimental_get_tracing_count() == 1 for d in decoders)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["infer/val_score"] == pytest.approx(summary["best/val/score"], abs=1e-12)
    (run,) = read_runs(tmp_path / "run")
    evaluated = [row for row in run.history if "val/score" in row]
    for how in ("attention", "ctc", "joint"):
        assert all(f"val/score_{how}" in row for row in evaluated), how
    assert evaluated[-1]["val/score_joint"] == pytest.approx(evaluated[-1]["val/score"])
