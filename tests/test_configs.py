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
from aslfr.errors import ConfigError

from conftest import CONF, ROOT, compose_cfg, subprocess_env, typed_cfg

GROUPS = sorted(d.name for d in CONF.iterdir() if d.is_dir())
NEEDS = {"data=kaggle": ["data.root=/path/to/asl-fingerspelling"]}  # `root: ???` on purpose


def options(group: str) -> list[str]:
    """The choices of a group: data/common.yaml and model/_default.yaml are included, not chosen."""
    return sorted(
        f"{group}={p.stem}"
        for p in (CONF / group).glob("*.yaml")
        if not p.stem.startswith("_") and (group != "data" or p.stem != "common")
    )


CHOICES = [o for g in GROUPS for o in options(g)]


def test_every_group_is_in_the_schema():
    schema = OmegaConf.structured(Config)
    # experiment, debug and local (a user's own, git-ignored) are global overrides; hydra/launcher
    # configures Hydra itself
    assert set(GROUPS) - {"experiment", "debug", "local", "hydra"} <= set(schema)


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


# Each preset as it composes: every model key, and data.max_frames (conformer sets it). The presets
# state only what differs from conf/model/_default.yaml; these are the values they resolve to.
PRESETS = {
    "base": {
        "max_frames": 64,
        "model": {
            "name": "base",
            "encoder": {
                "block": "transformer",
                "conv_kernel": 15,
                "depth": 3,
                "downsample_at": None,
                "drop_path": 0.0,
                "heads": 4,
                "key_dim": None,
                "mlp_ratio": 2.0,
                "positions": "learned",
                "width": 256,
            },
            "decoder": {"depth": 2, "heads": 4, "key_dim": None, "mlp_ratio": 2.0, "width": 192},
            "dropout": {"attention": 0.1, "classifier": 0.1, "mlp": 0.2},
            "label_smoothing": 0.1,
            "ctc_weight": 0.5,
            "decode": "best",
            "joint_weight": 0.3,
            "joint_weights": [0.3, 0.5, 0.7],
            "token_noise": 0.0,
        },
    },
    "conformer": {
        "max_frames": 384,
        "model": {
            "name": "conformer",
            "encoder": {
                "block": "conformer",
                "conv_kernel": 17,
                "depth": 12,
                "downsample_at": 6,
                "drop_path": 0.1,
                "heads": 4,
                "key_dim": None,
                "mlp_ratio": 2.0,
                "positions": "rope",
                "width": 192,
            },
            "decoder": {"depth": 1, "heads": 4, "key_dim": None, "mlp_ratio": 2.0, "width": 192},
            "dropout": {"attention": 0.1, "classifier": 0.1, "mlp": 0.1},
            "label_smoothing": 0.25,
            "ctc_weight": 0.25,
            "decode": "best",
            "joint_weight": 0.3,
            "joint_weights": [0.3, 0.5, 0.7],
            "token_noise": 0.0,
        },
    },
    "conformer_small": {
        "max_frames": 64,
        "model": {
            "name": "conformer_small",
            "encoder": {
                "block": "conformer",
                "conv_kernel": 15,
                "depth": 3,
                "downsample_at": None,
                "drop_path": 0.05,
                "heads": 4,
                "key_dim": None,
                "mlp_ratio": 2.0,
                "positions": "rope",
                "width": 128,
            },
            "decoder": {"depth": 1, "heads": 4, "key_dim": None, "mlp_ratio": 2.0, "width": 96},
            "dropout": {"attention": 0.1, "classifier": 0.1, "mlp": 0.1},
            "label_smoothing": 0.1,
            "ctc_weight": 0.5,
            "decode": "best",
            "joint_weight": 0.3,
            "joint_weights": [0.3, 0.5, 0.7],
            "token_noise": 0.0,
        },
    },
    "large": {
        "max_frames": 64,
        "model": {
            "name": "large",
            "encoder": {
                "block": "transformer",
                "conv_kernel": 0,
                "depth": 3,
                "downsample_at": None,
                "drop_path": 0.0,
                "heads": 4,
                "key_dim": 48,
                "mlp_ratio": 2.0,
                "positions": "learned",
                "width": 384,
            },
            "decoder": {"depth": 2, "heads": 4, "key_dim": 32, "mlp_ratio": 2.0, "width": 256},
            "dropout": {"attention": 0.2, "classifier": 0.1, "mlp": 0.3},
            "label_smoothing": 0.25,
            "ctc_weight": 0.0,
            "decode": "best",
            "joint_weight": 0.3,
            "joint_weights": [0.3, 0.5, 0.7],
            "token_noise": 0.0,
        },
    },
    "small": {
        "max_frames": 64,
        "model": {
            "name": "small",
            "encoder": {
                "block": "transformer",
                "conv_kernel": 15,
                "depth": 2,
                "downsample_at": None,
                "drop_path": 0.0,
                "heads": 4,
                "key_dim": None,
                "mlp_ratio": 2.0,
                "positions": "learned",
                "width": 128,
            },
            "decoder": {"depth": 1, "heads": 4, "key_dim": None, "mlp_ratio": 2.0, "width": 96},
            "dropout": {"attention": 0.1, "classifier": 0.1, "mlp": 0.1},
            "label_smoothing": 0.1,
            "ctc_weight": 0.5,
            "decode": "best",
            "joint_weight": 0.7,
            "joint_weights": [0.3, 0.5, 0.7],
            "token_noise": 0.0,
        },
    },
}


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_each_model_preset_composes_to_its_values(preset, tmp_path):
    cfg = compose_cfg([f"model={preset}"], tmp_path)
    assert OmegaConf.to_container(cfg.model) == PRESETS[preset]["model"]
    assert cfg.data.max_frames == PRESETS[preset]["max_frames"]


def test_model_presets_inherit_the_default_keys():
    """Each preset names itself and states only what differs: no key repeats _default.yaml's value."""
    base = OmegaConf.load(CONF / "model" / "_default.yaml")
    for preset in options("model"):
        own = OmegaConf.load(CONF / "model" / f"{preset.split('=')[1]}.yaml")
        own = own.get("model", own)  # model=conformer is global (it also sets data.max_frames)
        flat = {k: v for k, v in _leaves(OmegaConf.to_container(own)) if not k.startswith("defaults")}
        same = {k for k, v in flat.items() if OmegaConf.select(base, k) == v and k != "name"}
        assert not same, f"{preset} restates {sorted(same)}"


def _leaves(tree: dict, prefix: str = ""):
    for k, v in tree.items():
        if isinstance(v, dict):
            yield from _leaves(v, f"{prefix}{k}.")
        else:
            yield f"{prefix}{k}", v


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


def test_the_schedule_is_the_one_named(tmp_path):
    """schedule=constant holds the peak rate (after its warm-up); schedule=cosine decays to
    final_ratio x peak; a final ratio given to the constant schedule is refused, in one line."""
    from aslfr.model.optim import current_lr, make_optimizer

    def rates(*overrides: str) -> list[float]:
        cfg = typed_cfg(["optimizer.lr=0.01", *overrides], tmp_path)
        optimizer = make_optimizer(cfg.optimizer, cfg.schedule, steps_per_epoch=10, epochs=10)
        out = []
        for step in (0, 50, 99):
            optimizer.iterations.assign(step)
            out.append(current_lr(optimizer))
        return out

    assert rates("schedule=constant") == pytest.approx([0.01, 0.01, 0.01])
    warm = rates("schedule=constant", "schedule.warmup_epochs=1")
    assert warm[0] < 0.01 and warm[1:] == pytest.approx([0.01, 0.01])
    cosine = rates("schedule=cosine", "schedule.warmup_epochs=0", "schedule.final_ratio=0")
    assert (
        cosine[0] == pytest.approx(0.01) and cosine[1] == pytest.approx(0.005, rel=0.05) and cosine[2] < 1e-4
    )
    with pytest.raises(ConfigError, match="schedule.final_ratio=0.0 is where schedule=cosine decays to"):
        typed_cfg(["schedule=constant", "schedule.final_ratio=0"], tmp_path)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["optimizer.awp=0.05", "trainer.strategy=mirrored"], "optimizer.awp perturbs the weights"),
        (["data.fold=5"], r"data.fold=5 is out of range: use 0\.\.4"),
        (["data=kaggle"], "data=kaggle needs the competition directory: data.root=DIR"),
        (["model.decoder.depth=0", "model.decode=joint"], "model.decode=joint needs"),
    ],
)
def test_rules_across_keys_fail_when_the_config_is_typed(overrides, message, tmp_path):
    with pytest.raises(ConfigError, match=message) as refused:
        typed_cfg(overrides, tmp_path)
    assert "\n" not in str(refused.value)


@pytest.mark.slow
def test_train_py_refuses_a_rule_across_keys_in_one_line_before_tensorflow(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-X",
            "importtime",
            "train.py",
            "optimizer.awp=0.05",
            "trainer.strategy=mirrored",
            f"paths.data_dir={tmp_path / 'data'}",
            f"hydra.run.dir={tmp_path / 'run'}",
        ],
        cwd=ROOT,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    said = [line for line in proc.stderr.splitlines() if not line.startswith("import time:")]
    assert said == [
        "error: optimizer.awp perturbs the weights inside each replica's step, which "
        "trainer.strategy=mirrored cannot aggregate: use optimizer.awp=0 or trainer.strategy=auto"
    ]
    imported = {
        line.split("|")[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")
    }
    assert "tensorflow" not in imported and "keras" not in imported
    # not claimed (Hydra made the directory for its log before the run began), no data made
    assert not (tmp_path / "run" / ".hydra").exists() and not (tmp_path / "data").exists()
