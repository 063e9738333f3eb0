"""conf/: every option of every group and every experiment composes against the schema
(aslfr/config.py), and what the schema refuses fails before any work, in one message."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from aslfr.config import Config, register

from conftest import CONF, ROOT, compose_cfg, subprocess_env

GROUPS = sorted(d.name for d in CONF.iterdir() if d.is_dir())
NEEDS = {"data=kaggle": ["data.root=/path/to/asl-fingerspelling"]}  # `root: ???` on purpose


def options(group: str) -> list[str]:
    return sorted(
        f"{group}={p.stem}" for p in (CONF / group).glob("*.yaml") if group != "data" or p.stem != "common"
    )  # data/common: included, not chosen


CHOICES = [o for g in GROUPS for o in options(g)]


def test_every_group_is_in_the_schema():
    schema = OmegaConf.structured(Config)
    assert set(GROUPS) - {"experiment", "debug"} <= set(schema)  # the rest are global overrides


@pytest.mark.parametrize("choice", CHOICES)
def test_every_option_composes(choice, tmp_path):
    cfg = compose_cfg([choice, *NEEDS.get(choice, [])], tmp_path)
    resolved = OmegaConf.to_container(cfg, resolve=False, throw_on_missing=False)
    assert resolved["model"]["encoder"]["width"] > 0
    assert OmegaConf.missing_keys(cfg.trainer) == set()  # every value given by the YAML


@pytest.mark.parametrize("experiment", options("experiment"))
def test_every_experiment_combines_with_debug(experiment, tmp_path):
    cfg = compose_cfg([experiment, "debug=default"], tmp_path)
    assert cfg.trainer.epochs == 2 and cfg.model.encoder.width == 32  # debug comes last
    assert cfg.budget.probe is False and cfg.export.enabled is False


@pytest.mark.parametrize(
    "bad",
    [
        "trainer.strategy=foo",
        "export.quantize=int4",
        "data.features.hands=three",
        "trainer.epochs=many",
        "model.encoder.widht=64",
        "model=huge",
    ],
)
def test_a_bad_choice_fails_at_compose_time(bad, tmp_path):
    with pytest.raises(Exception, match="override|Could not|Invalid value|Error merging"):
        compose_cfg([bad], tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("bad", ["trainer.strategy=foo", "export.quantize=int4", "data.features.hands=three"])
def test_train_py_refuses_a_bad_choice_in_seconds_without_a_traceback(bad, tmp_path):
    t0 = time.perf_counter()
    proc = subprocess.run(
        [
            sys.executable,
            "train.py",
            bad,
            f"paths.data_dir={tmp_path / 'data'}",
            f"hydra.run.dir={tmp_path / 'run'}",
        ],
        cwd=ROOT,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr, proc.stderr
    key, value = bad.split("=")
    assert f"Error merging override {bad}" in proc.stderr
    assert "Invalid value" in proc.stderr and value in proc.stderr
    assert not (tmp_path / "data").exists() and not (tmp_path / "run").exists()  # no work
    assert time.perf_counter() - t0 < 60


def test_run_directories_are_unique_and_sorted_by_time():
    """The default hydra.run.dir and hydra.sweep.dir, resolved by many runs started in the same
    second (each compose is a new run's config): all different, in the order they started."""
    register()
    names = {"run": [], "sweep": []}
    for _ in range(12):
        with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
            cfg = compose("config", return_hydra_config=True)
        for kind in names:
            names[kind].append(OmegaConf.select(cfg, f"hydra.{kind}.dir"))
    for dirs in names.values():
        assert len(set(dirs)) == len(dirs), dirs
        assert dirs == sorted(dirs), dirs
    assert names["run"][0].startswith("outputs/") and names["sweep"][0].startswith("multirun/")
