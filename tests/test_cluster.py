"""Cluster runs without a cluster: submitit's local executor for Hydra's launcher (a job
preempted mid-training is requeued and resumes), slurm/agents.sbatch under bash with SLURM's
variables and W&B's CLI replaced by a probe, one agent or runner per GPU with fake GPU ids, the
devices a run records, the winners' preset, and a mixed-precision model exported in float32."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import wandb
from omegaconf import OmegaConf

from aslfr.experiments import compare, sweep
from aslfr.experiments.offline import read_runs
from aslfr.train.checkpoints import Checkpoints
from aslfr.train.rundir import RunDir
from aslfr.train.wandb_log import records

from conftest import CONF, CTC_ONLY, DEBUG, ROOT, compose_cfg, subprocess_env, typed_cfg

SBATCH = ROOT / "slurm" / "agents.sbatch"


def wait_for(predicate, timeout: float, what: str, proc: subprocess.Popen | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the process ended ({proc.returncode}) before {what}")
        time.sleep(0.2)
    raise AssertionError(f"no {what} in {timeout:.0f} s")


# -- a multirun through submitit: folds as jobs, a preempted job requeued --------------------
@pytest.mark.slow
@pytest.mark.timeout(900)
def test_cross_validation_through_submitit_requeues_a_preempted_fold(tmp_path):
    """`-m hydra/launcher=local data.fold=0,1`: each fold a submitit job (in parallel), in the
    directories, W&B group and gathered W&B folder a multirun gives; aslfr-compare shows both
    folds with mean and spread. Fold 0's job gets submitit's preemption signal (USR2) after an
    epoch's checkpoint: the run stops at once (status preempted, its W&B run marked preempting),
    submitit requeues the job, and the job resumes in the same run directory from that checkpoint,
    under the same W&B id, to the end: one W&B run, every epoch once."""
    multirun, epochs = tmp_path / "cv", 4
    cmd = [
        sys.executable,
        "train.py",
        "-m",
        "hydra/launcher=local",
        *DEBUG,
        *CTC_ONLY,
        f"trainer.epochs={epochs}",
        "data.fold=0,1",
        f"paths.data_dir={tmp_path / 'data'}",
        f"hydra.sweep.dir={multirun}",
    ]
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    run_dir = multirun / "0"
    latest = run_dir / "checkpoints" / "latest.json"
    wait_for(lambda: latest.exists(), 600, "first checkpoint", proc)
    job = json.loads((run_dir / "status.json").read_text())["pid"]  # the job's process
    os.kill(job, signal.SIGUSR2)  # what SLURM sends (submitit's --signal) before preempting
    out = proc.communicate(timeout=600)[0]
    assert proc.returncode == 0, out[-3000:]
    assert "Submitit 'local' sweep output dir" in out

    # the preempted fold: requeued, resumed, one W&B run
    done = Checkpoints(run_dir / "checkpoints")
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["epochs"] == epochs and RunDir(run_dir).status()["status"] == "finished"
    logs = "".join(p.read_text() for p in (multirun / ".submitit").rglob("*_log.*"))
    assert "preempted: signal SIGUSR2" in logs and "Requeued job" in logs, logs[-3000:]
    train_log = (run_dir / "train.log").read_text()
    assert "resuming" in train_log and "(preempted)" in train_log
    (run,) = read_runs(run_dir)  # one W&B run, continued after the requeue
    assert run.id == summary["wandb/id"] == done.latest_state()["wandb_id"] and len(run.paths) == 2
    epochs_logged = [row["epoch"] for row in run.history if "train/samples_per_sec" in row]
    assert epochs_logged == list(range(1, epochs + 1))
    first = sorted(run.paths)[0]  # the part that was preempted told W&B so
    assert any(r.WhichOneof("record_type") == "preempting" for r in records(first))

    # the folds: two jobs, one W&B group, gathered as a local multirun gathers them
    assert len(list((multirun / ".submitit").glob("*/*_result.pkl"))) == 2
    runs = {r.config["data"]["fold"]: r for r in read_runs(multirun)}
    assert sorted(runs) == [0, 1]
    assert runs[0].group == runs[1].group and runs[0].name != runs[1].name
    gathered = sorted((multirun / "wandb").glob("offline-run-*"))
    assert {link.resolve().parent.parent.name for link in gathered} == {"0", "1"}
    folds = [json.loads((multirun / str(k) / "summary.json").read_text()) for k in (0, 1)]
    # the comparison: both folds, and the mean ± sd over folds the user runs it for
    rows = compare.offline_rows([multirun])
    (cv,) = compare.fold_summaries(rows)
    scores = [f["best/val/score"] for f in folds]
    assert cv.folds == [0, 1] and cv.mean == pytest.approx(np.mean(scores))
    assert cv.sd == pytest.approx(np.std(scores, ddof=1))
    table = compare.leaderboard(rows)
    assert "cross-validation" in table and f"{cv.mean:8.4f} {cv.sd:8.4f}" in table
    # debug runs are not exported: the plot shows them against their parameters, not nothing
    what, shown = compare.plotted(rows)
    assert what == "parameters" and len(shown) == 2
    # ... and the mean ± sd goes to W&B too
    png = compare.plot(rows, multirun / "pareto.png")
    compare.log_to_wandb(rows, png, multirun / ".compare", "aslfr", "cv")
    wandb.teardown()  # the service writes the offline record after finish(), complete at exit
    (logged,) = read_runs(multirun / ".compare")
    assert logged.history[0]["compare/folds/_type"] == "table-file"
    assert logged.summary[f"folds/{cv.name}/mean"] == pytest.approx(cv.mean)


# -- slurm/agents.sbatch ------------------------------------------------------------------------
PROBE = r"""#!/bin/bash
# W&B's CLI or aslfr-sweep, as the script runs them: says what it sees; with PROBE_HOLD it runs a
# "trial" child until the script stops it
{ echo "$(basename "$0") $*"; echo "gpu=${CUDA_VISIBLE_DEVICES:-}"; echo "mode=${WANDB_MODE:-}"
  echo "python=$(command -v python)"; echo "cwd=$PWD"; } >> "$PROBE_OUT"
if [ -n "${PROBE_HOLD:-}" ]; then
  bash -c 'trap "echo trial USR1 >> \"$PROBE_OUT\"; exit 138" USR1
           echo started >> "$PROBE_OUT"; while :; do sleep 0.1; done' &
  trap 'echo "worker TERM" >> "$PROBE_OUT"; exit 143' TERM
  wait
fi
"""


def sbatch_env(tmp_path: Path, **extra) -> tuple[dict, Path]:
    """A fake project environment (python, wandb and aslfr-sweep probes), `scontrol` recording
    its arguments, and the variables SLURM sets in an array task given one GPU."""
    venv, tools = tmp_path / "venv" / "bin", tmp_path / "tools"
    venv.mkdir(parents=True)
    tools.mkdir()
    (venv / "python").symlink_to(sys.executable)
    for name in ("wandb", "aslfr-sweep"):
        (venv / name).write_text(PROBE)
        (venv / name).chmod(0o755)
    (tools / "scontrol").write_text('#!/bin/sh\necho "scontrol $*" >> "$PROBE_OUT"\n')
    (tools / "scontrol").chmod(0o755)
    out = tmp_path / "probe.out"
    env = {
        "PATH": f"{tools}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "PROBE_OUT": str(out),
        "ASLFR_VENV": str(venv.parent),
        "SLURM_SUBMIT_DIR": str(ROOT),
        "SLURM_JOB_ID": "1234",
        "SLURM_ARRAY_JOB_ID": "1200",
        "SLURM_ARRAY_TASK_ID": "3",
        "SLURM_JOB_GPUS": "2",
        **extra,
    }
    return env, out


def sbatch(env: dict, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    """slurm/agents.sbatch under bash, as SLURM would start it, with `env`."""
    return subprocess.run(
        ["bash", str(SBATCH), *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=60
    )


def test_the_sbatch_script_runs_one_agent_or_runner_on_its_gpu_from_the_environment(tmp_path):
    env, out = sbatch_env(tmp_path)
    venv = env["ASLFR_VENV"]
    proc = sbatch(env, tmp_path, "me/aslfr/sw33p", "--count", "5")
    assert proc.returncode == 0, proc.stderr
    assert out.read_text().splitlines() == [
        "wandb agent me/aslfr/sw33p --count 5",
        "gpu=2",  # SLURM_JOB_GPUS, when SLURM leaves CUDA_VISIBLE_DEVICES unset
        "mode=",  # online: an agent needs W&B's server
        f"python={venv}/bin/python",  # the trials' `/usr/bin/env python`
        f"cwd={ROOT}",
    ]
    assert "task 1200_3" in proc.stdout and "GPU 2" in proc.stdout

    out.unlink()
    proc = sbatch(
        {**env, "CUDA_VISIBLE_DEVICES": "0"},  # SLURM's, within the task's cgroup: kept
        tmp_path,
        *("--runner", "sweeps/folds.yaml", "--trials", "5", "trainer.epochs=40"),
    )
    assert proc.returncode == 0, proc.stderr
    assert out.read_text().splitlines() == [
        "aslfr-sweep sweeps/folds.yaml --trials 5 trainer.epochs=40",
        "gpu=0",
        "mode=offline",  # nodes without internet: `make sync` afterwards
        f"python={venv}/bin/python",
        f"cwd={ROOT}",
    ]

    no_gpu = {k: v for k, v in env.items() if k != "SLURM_JOB_GPUS"}
    proc = sbatch(no_gpu, tmp_path, "me/aslfr/sw33p")
    assert proc.returncode == 2 and "--gres=gpu:1" in proc.stderr


def test_the_sbatch_script_passes_preemption_to_the_trial_and_requeues_the_task(tmp_path):
    env, out = sbatch_env(tmp_path, PROBE_HOLD="1")
    script = subprocess.Popen(
        ["bash", str(SBATCH), "me/aslfr/sw33p"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    wait_for(lambda: out.exists() and "started" in out.read_text(), 60, "trial", script)
    script.send_signal(signal.SIGUSR1)  # SLURM's --signal=B:USR1@120
    text = script.communicate(timeout=60)[0]
    assert script.returncode == 0, text
    seen = out.read_text().splitlines()
    assert "trial USR1" in seen and "worker TERM" in seen  # the trial marks its run preempting
    assert seen[-1] == "scontrol requeue 1234"  # after the trial and the agent have ended
    assert "preemption or time limit" in text


# -- one agent or runner per GPU ------------------------------------------------------------------
def test_make_agents_starts_one_wandb_agent_per_gpu(tmp_path):
    probe = tmp_path / "wandb"
    probe.write_text('#!/bin/sh\necho "gpu=$CUDA_VISIBLE_DEVICES $*"\n')
    probe.chmod(0o755)
    venv = Path(sys.executable).parent.parent
    proc = subprocess.run(
        [
            "make",
            "-s",
            "-o",
            f"{venv}/.installed",
            "agents",
            "ID=me/aslfr/sw33p",
            "GPUS=3,5",
            "ARGS=--count 2",
            f"VENV={venv}",
            f"WANDB={probe}",
        ],
        cwd=ROOT,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    agents = sorted(line for line in proc.stdout.splitlines() if line.startswith("gpu="))
    assert agents == ["gpu=3 agent --count 2 me/aslfr/sw33p", "gpu=5 agent --count 2 me/aslfr/sw33p"]


GRID2 = """program: train.py
method: grid
metric: {name: val/score, goal: maximize}
parameters:
  trainer.seed: {values: [0, 1]}
command:
  - ${env}
  - python
  - ${program}
  - ${args_no_hyphens}
"""


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_aslfr_sweep_runs_one_trial_per_gpu_at_once_each_pinned(tmp_path):
    """--gpus 7,9 (ids no machine here has): two runners share the sweep, each trial sees only
    its runner's GPU (CUDA_VISIBLE_DEVICES) and records it. The trials are tests/fake_train.py
    (what train.py records of its devices: the winners' preset test); the
    first holds until the second has started, so the two run at once."""
    import optuna

    assert sweep.gpu_env("7", {"A": "1"}) == {"A": "1", "CUDA_VISIBLE_DEVICES": "7"}
    definition = tmp_path / "pair.yaml"
    definition.write_text(GRID2.replace("program: train.py", "program: tests/fake_train.py"))
    out = tmp_path / "out"
    out.mkdir()
    hold = out / "hold-trial-000"
    hold.touch()
    cmd = [
        sys.executable,
        "-m",
        "aslfr.experiments.sweep",
        str(definition),
        "--gpus",
        "7,9",
        "--out",
        str(out),
        "fake.hold=true",
        "trainer.epochs=1",
    ]
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    wait_for(lambda: (out / "trial-001").exists(), 240, "second trial", proc)
    hold.unlink()
    stdout, stderr = proc.communicate(timeout=240)
    assert proc.returncode == 0, stdout[-3000:] + stderr[-3000:]
    assert "GPU 7: aslfr-sweep" in stdout and "GPU 9: aslfr-sweep" in stdout
    study = optuna.load_study(study_name="pair", storage=sweep.open_storage(out))
    assert len(study.trials) == 2 and len({t.user_attrs["runner"]["pid"] for t in study.trials}) == 2
    seen = {}
    for t in study.trials:
        summary = json.loads((out / f"trial-{t.number:03d}" / "summary.json").read_text())
        seen[t.user_attrs["runner"]["pid"]] = summary["devices/cuda_visible_devices"]
        (run,) = read_runs(out / f"trial-{t.number:03d}")
        assert run.config["devices"]["cuda_visible_devices"] == summary["devices/cuda_visible_devices"]
    assert sorted(seen.values()) == ["7", "9"]  # one trial on each GPU, at the same time


def test_gpu_memory_growth_is_set_on_every_gpu_before_use(monkeypatch, tmp_path):
    """trainer.gpu_memory_growth on fake GPUs: set on each before TensorFlow uses it, and the
    record names them with CUDA_VISIBLE_DEVICES as found."""
    import tensorflow as tf

    from aslfr.train import loop

    gpus = [tf.config.PhysicalDevice(f"/physical_device:GPU:{i}", "GPU") for i in (0, 1)]
    grown = []
    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: gpus if kind == "GPU" else [])
    monkeypatch.setattr(tf.config.experimental, "set_memory_growth", lambda d, on: grown.append((d.name, on)))
    monkeypatch.setattr(tf.config.experimental, "get_device_details", lambda d: {"device_name": "Fake X1"})
    monkeypatch.setattr(loop.keras.mixed_precision, "set_global_policy", lambda p: None)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,6")
    monkeypatch.setenv("SLURM_JOB_ID", "77")
    monkeypatch.delenv("SLURM_ARRAY_TASK_ID", raising=False)
    trainer = typed_cfg([], tmp_path).trainer
    assert trainer.gpu_memory_growth  # the default
    record = loop.configure_devices(trainer)
    assert grown == [(g.name, True) for g in gpus]
    assert record["devices/cuda_visible_devices"] == "4,6" and record["devices/gpu_count"] == 2
    assert record["devices/gpus"][0] == "/physical_device:GPU:0 (Fake X1)"
    assert record["devices/slurm_job"] == "77"
    grown.clear()
    loop.configure_devices(typed_cfg(["trainer.gpu_memory_growth=false"], tmp_path).trainer)
    assert grown == []


def test_under_a_wandb_agent_a_run_lives_in_a_directory_of_its_run_id(tmp_path, monkeypatch):
    """So that a run the sweep re-queues after a preemption finds its checkpoints again."""
    from hydra import compose, initialize_config_dir

    monkeypatch.setenv("WANDB_SWEEP_ID", "sw33p")
    monkeypatch.setenv("WANDB_RUN_ID", "r1")
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=[f"paths.sweeps_dir={tmp_path}"], return_hydra_config=True)
    assert OmegaConf.select(cfg, "hydra.run.dir") == f"{tmp_path}/sw33p/run-r1"


# -- the winners' preset ----------------------------------------------------------------------
@pytest.mark.parametrize("data", sorted(p.stem for p in (CONF / "data").glob("*.yaml") if p.stem != "common"))
def test_the_winners_preset_composes_with_every_data_source(tmp_path, data):
    extra = ["data.root=/path/to/asl-fingerspelling"] if data == "kaggle" else []
    cfg = compose_cfg([f"data={data}", *extra, "experiment=winners"], tmp_path)
    assert (
        cfg.model.encoder.block == "conformer" and cfg.model.decoder.depth == 1 and cfg.model.ctc_weight > 0
    )
    assert cfg.trainer.batch_size == 128 and cfg.trainer.epochs == 400
    assert cfg.schedule.warmup_epochs == pytest.approx(0.1 * cfg.trainer.epochs)
    assert cfg.data.use_supplemental and cfg.trainer.precision == "mixed_float16"
    assert cfg.model.decode == "best" and cfg.fallback.min_hand_frames is None
    urls = (CONF / "experiment" / "winners.yaml").read_text()
    for place in ("434485", "434588", "434393"):  # 1st, 2nd, 3rd place write-ups
        assert f"asl-fingerspelling/discussion/{place}" in urls


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_the_winners_preset_trains_with_debug_in_mixed_precision_and_exports_float32(tmp_path, monkeypatch):
    """experiment=winners debug=default: trains in seconds (mixed precision, supplemental data,
    every augmentation, AWP), and its export (switched back on) is a float32 graph. The run
    records the GPUs it was given (here a fake id) in its summary and W&B config."""
    from ai_edge_litert.interpreter import Interpreter

    from aslfr.export.convert import RunFiles

    from conftest import train_here

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "7")
    train_here(
        tmp_path,
        "experiment=winners",
        "trainer.epochs=1",
        "data.synthetic.n_supplemental=40",
        "export.enabled=true",
        "budget.probe=false",
    )
    run_dir = tmp_path / "run"
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["epochs"] == 1 and "infer/val_score" in summary
    assert OmegaConf.load(run_dir / ".hydra" / "config.yaml").trainer.precision == "mixed_float16"
    interpreter = Interpreter(model_content=(run_dir / "model.tflite").read_bytes())
    dtypes = {d["dtype"] for d in interpreter.get_tensor_details()}
    assert np.float16 not in dtypes and np.float32 in dtypes
    assert RunFiles.load(run_dir).cfg.data.use_supplemental
    assert summary["devices/cuda_visible_devices"] == "7" and summary["devices/gpu_count"] == 0
    (run,) = read_runs(run_dir)
    assert run.config["devices"]["cuda_visible_devices"] == "7"
