"""Shared by the bench scripts: a full-width (all 1,630 columns) synthetic set in the Kaggle layout,
and the default data config."""

from __future__ import annotations

import os
from pathlib import Path

from hydra import compose as hydra_compose
from hydra import initialize_config_dir

from aslfr.config import register, typed
from aslfr.data import synthetic  # the environment's aslfr: `make` installs this repository's

ROOT = Path(__file__).resolve().parents[1]


def data_dir() -> Path:
    return Path(os.environ.get("ASLFR_DATA_DIR", ROOT / "data"))


def full_width_root(n_sequences: int, seed: int = 1) -> Path:
    """Kaggle-layout files with every column of the real ones (face: all 468 points)."""
    spec = synthetic.SyntheticSpec(
        n_sequences=n_sequences,
        n_signers=min(30, n_sequences // 10),
        seed=seed,
        sequences_per_file=1000,
        face="full",
    )
    return synthetic.ensure(spec, data_dir() / "bench")


def compose(overrides: list[str] = ()):
    """The project's Hydra config with these overrides, typed as `python train.py` hands it on."""
    register()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return typed(hydra_compose("config", overrides=["paths.output_dir=/tmp/aslfr-bench", *overrides]))


def data_config(overrides: list[str] = ()):
    return compose(overrides).data
