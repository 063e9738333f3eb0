"""sweeps/*.yaml: valid W&B sweep definitions whose agent arguments are valid Hydra overrides."""

from __future__ import annotations

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
