"""Shared fixtures: tiny data sets in the real Kaggle layout, and composed Hydra configs."""

from __future__ import annotations

import itertools
import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from filelock import FileLock
from hydra import compose, initialize_config_dir

from aslfr.config import Config, register, typed
from aslfr.data import layout, synthetic
from aslfr.train.rundir import RunDir

register()  # the config schema and resolvers, as train.py registers them
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# pytest-xdist runs one worker per core: each worker's TensorFlow (and the train.py processes it
# starts, which inherit this environment) on one thread, so that workers do not contend for the
# cores (the whole suite ~7% faster on 2 cores). TensorFlow reads them when its runtime starts.
for _threads in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "OMP_NUM_THREADS"):
    os.environ.setdefault(_threads, "1")

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"


def compose_cfg(overrides: list[str], tmp_path: Path):
    """The config train.py/prepare would see, with data and outputs under tmp_path."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(
            "config",
            overrides=[
                f"paths.data_dir={tmp_path / 'data'}",
                f"paths.output_dir={tmp_path / 'run'}",
                *overrides,
            ],
            return_hydra_config=False,
        )
    return cfg


def typed_cfg(overrides: list[str], tmp_path: Path) -> Config:
    """`compose_cfg` as the stages receive it: the schema's dataclasses (aslfr.config.typed)."""
    return typed(compose_cfg(overrides, tmp_path))


TINY = ["data.n_sequences=120", "data.n_signers=8", "data.synthetic.sequences_per_file=50", "data.n_folds=4"]


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory) -> Path:
    """A small synthetic data set (120 sequences, 8 signers, 3 files) in the Kaggle layout."""
    spec = synthetic.SyntheticSpec(n_sequences=120, n_signers=8, seed=0, sequences_per_file=50)
    return synthetic.ensure(spec, tmp_path_factory.mktemp("synthetic"), progress=False)


def write_sequences(
    root: Path,
    sequences: list[dict],
    file_id: int = 1000,
    csv_name: str = layout.TRAIN_CSV,
    landmark_dir: str = layout.TRAIN_DIR,
) -> Path:
    """Hand-made Kaggle-layout files: each sequence dict has sequence_id, participant_id, phrase
    and `hands` ([T] bool: right hand visible) -- or `frames`, a full [T, 1629] array."""
    root.mkdir(parents=True, exist_ok=True)
    (root / layout.CHARACTER_MAP_JSON).write_text(json.dumps({c: i for i, c in enumerate(layout.CHARACTERS)}))
    cols = layout.landmark_columns()
    rng = np.random.default_rng(file_id)
    parts, rows = [], []
    for s in sequences:
        if "frames" in s:
            data = s["frames"]
        else:
            visible = np.asarray(s["hands"], bool)
            data = rng.uniform(0.2, 0.8, (len(visible), len(cols))).astype(np.float32)
            for side in ("left_hand", "right_hand"):
                hidden = ~visible if side == "right_hand" else np.ones_like(visible)
                idx = [k for k, c in enumerate(cols) if f"_{side}_" in c]
                data[np.ix_(hidden, idx)] = np.nan
        df = pd.DataFrame(data, columns=cols, dtype=np.float32)
        df.insert(0, "frame", np.arange(len(df), dtype=np.int16))
        df.index = pd.Index(np.full(len(df), s["sequence_id"], np.int64), name="sequence_id")
        parts.append(df)
        rows.append(
            {
                "path": f"{landmark_dir}/{file_id}.parquet",
                "file_id": file_id,
                "sequence_id": s["sequence_id"],
                "participant_id": s["participant_id"],
                "phrase": s["phrase"],
            }
        )
    (root / landmark_dir).mkdir(exist_ok=True)
    pd.concat(parts).to_parquet(root / landmark_dir / f"{file_id}.parquet")
    csv = root / csv_name
    table = pd.DataFrame(rows)
    if csv.exists():
        table = pd.concat([pd.read_csv(csv, keep_default_na=False), table])
    table.to_csv(csv, index=False)
    return root


def min_ctc_frames(tokens, eos: int = 61) -> int:
    """The fewest CTC frames that spell a decoded phrase (tokens up to EOS): a frame per
    character, one more between doubled letters (a blank)."""
    chars = list(itertools.takewhile(lambda t: t != eos, tokens))
    return len(chars) + sum(a == b for a, b in zip(chars, chars[1:]))


# -- train.py in a subprocess, as users run it ----------------------------------------------
DEBUG = ["debug=default", "wandb.mode=offline"]
# For tests of what surrounds a run (its process, directory, W&B record, launcher), not of the
# model: CTC alone and no fallback search, less than half the time of a debug run.
CTC_ONLY = ["model.decoder.depth=0", "fallback.min_hand_frames=0"]


def subprocess_env(**extra: str) -> dict:
    """The environment train.py, prepare, sweep and compare run in from the tests."""
    return {**os.environ, "PYTHONPATH": str(ROOT), "WANDB_MODE": "offline", **extra}


def agent_command(command: list[str], params: dict, program: str = "train.py") -> list[str]:
    """The command `wandb agent` runs for a proposed trial (wandb/wandb_agent.py,
    Agent._command_run): the sweep's `command` with its macros expanded by W&B's own helpers,
    `${interpreter}` always `python`, `${env}` /usr/bin/env."""
    from wandb.sdk.launch.sweeps import utils as sweep_utils

    macros = sweep_utils.create_sweep_command_args({"args": {k: {"value": v} for k, v in params.items()}})
    macros.update(interpreter=["python"], program=[program], env=["/usr/bin/env"])
    out: list[str] = []
    for part in sweep_utils.create_sweep_command(command):
        part = str(part)
        is_macro = part.startswith("${") and part.endswith("}")
        out += (macros.get(part[2:-1]) or []) if is_macro else [part]
    return out


def agent_env(tmp_path: Path, params: dict, run_id: str, sweep_id: str = "sweep0") -> dict:
    """The environment `wandb agent` gives a trial: WANDB_SWEEP_ID, WANDB_RUN_ID and
    WANDB_SWEEP_PARAM_PATH (the parameters as the agent writes them), and a PATH whose `python`
    is this environment's and no other."""
    from wandb.sdk.lib import config_util

    param_path = tmp_path / "wandb" / f"sweep-{sweep_id}" / f"config-{run_id}.yaml"
    config_util.save_config_file_from_dict(str(param_path), {k: {"value": v} for k, v in params.items()})
    return subprocess_env(
        WANDB_SWEEP_ID=sweep_id,
        WANDB_RUN_ID=run_id,
        WANDB_SWEEP_PARAM_PATH=str(param_path),
        PATH=f"{Path(sys.executable).parent}:/usr/bin:/bin",
    )


def train(
    tmp_path: Path, *overrides: str, run_dir: Path | None = None, check=True, timeout=600
) -> subprocess.CompletedProcess:
    run_dir = run_dir or tmp_path / "run"
    env = subprocess_env()
    proc = subprocess.run(
        [
            sys.executable,
            "train.py",
            *DEBUG,
            f"paths.data_dir={tmp_path / 'data'}",
            f"hydra.run.dir={run_dir}",
            *overrides,
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=timeout,
    )
    if check:
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def train_here(
    tmp_path: Path,
    *overrides: str,
    run_dir: Path | None = None,
    data_dir: Path | None = None,
    env: dict | None = None,
) -> dict:
    """What `train` runs, inside this test process: the same overrides composed as train.py's
    Hydra app composes them (its `hydra.runtime.choices` too), the directory claimed, the run;
    returns its summary and raises what the run raises. For tests of what a run does, not of the
    process around it (exit codes, signals, the terminal, launchers): TensorFlow's import and the
    conversion of the code it traces are paid once per test process instead of once per run.
    `env`: variables set for the run (an agent's or the offline runner's environment)."""
    import keras
    import tensorflow as tf
    import wandb
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    from aslfr.runtime import import_tensorflow

    run_dir = run_dir or tmp_path / "run"
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(
            "config",
            overrides=[
                *DEBUG,
                f"paths.data_dir={data_dir or tmp_path / 'data'}",
                f"hydra.run.dir={run_dir}",
                *overrides,
            ],
            return_hydra_config=True,
        )
    cfg.hydra.runtime.output_dir = str(run_dir)  # as Hydra's run_job sets it
    log_format = cfg.hydra.job_logging.formatters.simple.format  # Hydra's job logging's
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    mp = pytest.MonkeyPatch()
    for key, value in (env or {}).items():
        mp.setenv(key, value)
    wandb.teardown()  # W&B reads the environment when it sets up: a fresh set-up for this run
    # the run's log in RUN_DIR/train.log at INFO, as Hydra's job logging writes it for train.py
    root, level = logging.getLogger(), logging.getLogger().level
    run_dir.mkdir(parents=True, exist_ok=True)
    log_file = logging.FileHandler(run_dir / "train.log")
    log_file.setFormatter(logging.Formatter(log_format))
    root.addHandler(log_file)
    root.setLevel(min(level, logging.INFO))
    try:
        config = typed(cfg)
        with RunDir(run_dir).claim(cfg):
            import_tensorflow()
            from aslfr.train.run import run

            return run(config)
    finally:
        root.removeHandler(log_file)
        log_file.close()
        root.setLevel(level)
        mp.undo()
        # nothing of this run outlives it in the test process
        HydraConfig.instance().cfg = None
        keras.backend.clear_session()
        keras.mixed_precision.set_global_policy("float32")
        tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": False})
        wandb.teardown()


@pytest.fixture(scope="session")
def debug_run(tmp_path_factory) -> Path:
    """The smoke run: the debug preset with the budget probe and the export switched back on,
    run in the test process (`train_here`; the process is not what its tests look at).

    One run for the whole session: under pytest-xdist every worker has its own session, so the
    first worker to get here trains it under a file lock in the directory the workers share and
    the others wait and read it (the tests only read it, or copy it before changing anything).
    The tests that use it run first (`pytest_collection_modifyitems`): one worker trains it and
    goes on with them while the others start elsewhere, instead of waiting on the lock."""
    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent  # .../pytest-N/popen-gwK -> .../pytest-N
    tmp = shared / "debug-run"
    with FileLock(shared / "debug-run.lock"):
        if RunDir(tmp / "run").status().get("status") != "finished":
            shutil.rmtree(tmp, ignore_errors=True)  # a worker that failed half-way
            tmp.mkdir()
            train_here(
                tmp,
                "trainer.epochs=3",
                "trainer.eval_every=2",
                "wandb.tags=[smoke]",
                "budget.probe=true",
                "export.enabled=true",
            )
    return tmp / "run"


def pytest_collection_modifyitems(items):
    """The tests of the shared smoke run (`debug_run`) first, then the other slow tests, then the
    fast ones, each group in its own order. pytest-xdist (--dist worksteal) hands each worker a
    contiguous share of this list and an idle worker steals from the end of another's share: the
    smoke run's tests stay together at the front of the first share (no worker sits waiting for
    the smoke run's lock), and the last tests left to share out are short ones, so the workers
    finish together."""

    def group(item) -> tuple[bool, bool]:
        return "debug_run" not in getattr(item, "fixturenames", ()), item.get_closest_marker("slow") is None

    items.sort(key=group)
