"""Checkpoints that survive `kill -9`: each epoch is written to its own directory, then a small
`latest.json` pointer is atomically replaced, so the pointer only ever names a complete checkpoint.

    checkpoints/epoch-0007/model.weights.h5   model weights
    checkpoints/epoch-0007/optimizer.npz      optimizer state (step counter, moments)
    checkpoints/epoch-0007/state.json         epoch, best score, W&B run id, ...
    checkpoints/latest.json                   {"dir": "epoch-0007"}
    checkpoints/best.weights.h5               weights of the best validation score so far
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from aslfr import names
from aslfr.atomic import building_dir, clean_stale_temps, replacing, write_json

LATEST = "latest.json"
BEST = names.BEST_WEIGHTS_FILE


class Checkpoints:
    # The newest two epochs stay: the latest, and the one before in case the latest is being
    # replaced when the process dies (best.weights.h5 is kept apart, whatever its epoch).
    KEEP = 2

    def __init__(self, directory: Path, keep: int = KEEP):
        self.dir = Path(directory)
        self.keep = keep

    def latest_state(self) -> dict | None:
        """The state of the newest complete checkpoint, or None."""
        try:
            pointer = json.loads((self.dir / LATEST).read_text())
            return json.loads((self.dir / pointer["dir"] / "state.json").read_text())
        except (FileNotFoundError, KeyError, ValueError):
            return None

    def save(self, model, optimizer, state: dict) -> Path:
        name = f"epoch-{int(state['epoch']):04d}"
        target = self.dir / name
        with building_dir(target, replace=True) as tmp:
            model.save_weights(tmp / "model.weights.h5")
            np.savez(tmp / "optimizer.npz", *[np.asarray(v.numpy()) for v in optimizer.variables])
            (tmp / "state.json").write_text(json.dumps({**state, "dir": name}, indent=1))
        write_json(self.dir / LATEST, {"dir": name})
        for old in sorted(self.dir.glob("epoch-*"))[: -self.keep]:
            shutil.rmtree(old, ignore_errors=True)
        clean_stale_temps(self.dir)  # what a killed process was writing
        return target

    def restore(self, model, optimizer) -> dict:
        """Load the newest checkpoint into a built model and its optimizer; returns its state."""
        state = self.latest_state()
        if state is None:
            raise FileNotFoundError(f"no complete checkpoint in {self.dir}")
        src = self.dir / state["dir"]
        model.load_weights(src / "model.weights.h5")
        if not optimizer.built:  # compile_model builds it; building twice would add slots
            optimizer.build(model.trainable_variables)
        with np.load(src / "optimizer.npz") as z:
            values = [z[f"arr_{i}"] for i in range(len(z.files))]
        if len(values) != len(optimizer.variables):
            raise ValueError(
                f"{src}: optimizer state does not match this model/optimizer (was the config changed?)"
            )
        for var, value in zip(optimizer.variables, values):
            var.assign(value)
        return state

    def save_best(self, model) -> Path:
        with replacing(self.dir / BEST, suffix=".weights.h5") as tmp:  # Keras wants the suffix
            model.save_weights(tmp)
        return self.dir / BEST
