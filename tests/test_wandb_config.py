"""The W&B record of a run holds the resolved config whatever `wandb agent` sends: for a trial of
every sweep file, emulated in this process (the agent's environment: WANDB_SWEEP_ID, WANDB_RUN_ID,
WANDB_SWEEP_PARAM_PATH with the trial's parameters), a tiny real offline run is read back from its
`run-*.wandb` file; and `aslfr-compare --wandb-path` reads such a run as the W&B API returns it."""

from __future__ import annotations

from pathlib import Path

import pytest
import wandb
import yaml
from omegaconf import OmegaConf

from aslfr.experiments import compare
from aslfr.experiments.offline import read_runs
from aslfr.experiments.sweep import agent_args
from aslfr.train.tracking import CHOICES, CONFIGURATION

from conftest import ROOT, agent_env, train_here

SWEEP_FILES = sorted((ROOT / "sweeps").glob("*.yaml"))
# the group case: a config group's option as a sweep parameter, beside a dotted key
GROUP_CASE = {"model": "small", "data.fold": 1}
NUMBERS = ("model.encoder.depth", "model.encoder.width", "model.decoder.depth", "model.decoder.width")


def trial_params(definition: dict) -> dict:
    """One point of the sweep, as the agent would propose it (folds.yaml: the group case): the
    first of each parameter's values, its minimum for a distribution, and CTC decoding where the
    sweep offers it (greedy CTC is the quickest decoding to score; the record is the same code)."""
    params = {}
    for key, p in definition["parameters"].items():
        params[key] = p["value"] if "value" in p else p["values"][0] if "values" in p else p["min"]
        if key == "model.decode" and "ctc" in p.get("values", []):
            params[key] = "ctc"
    if set(params) == set(GROUP_CASE):  # folds.yaml: model=small on a fold other than 0
        params.update(GROUP_CASE)
    return params


def agent_trial(tmp: Path, name: str, params: dict, data_dir: Path) -> Path:
    """train.py's work for one trial, in this process, in the agent's environment: Hydra composes
    the agent's `key=value` arguments (plus a tiny debug run), W&B reads the sweep's parameter
    file at wandb.init and merges it into the config as under `wandb agent`."""
    run_id = f"trial{name.replace('_', '')}"[:16]
    env = agent_env(tmp, params, run_id, sweep_id=f"sw{name[:6]}")
    keys = ("WANDB_SWEEP_ID", "WANDB_RUN_ID", "WANDB_SWEEP_PARAM_PATH")
    return trial_in_process(tmp, params, data_dir, {k: env[k] for k in keys})


def trial_in_process(tmp: Path, params: dict, data_dir: Path, env: dict) -> Path:
    """train.py's work for the trial `params` in this process, with `env` set (an agent's or the
    offline runner's environment)."""
    run_dir = tmp / "run"
    overrides = [
        *agent_args(params),
        "trainer.epochs=1",
        # greedy CTC alone unless the trial chooses: scoring every decoding (model.decode=best)
        # costs more than the rest of the tiny run, and the record is the same code either way
        *([] if "model.decode" in params else ["model.decode=ctc"]),
        # CTC alone (no attention decoder to trace and teacher-force) unless the trial sets the
        # decoder's depth, and no fallback search (a pass over the training folds): the record
        # is of the config, whatever the model
        *([] if "model.decoder.depth" in params else ["model.decoder.depth=0"]),
        "fallback.min_hand_frames=0",
        "trainer.examples=0",
        f"paths.output_dir={run_dir}",  # literal: the test resolves the record outside Hydra
        f"paths.sweeps_dir={tmp / 'sweeps-out'}",
    ]
    train_here(tmp, *overrides, run_dir=run_dir, data_dir=data_dir, env=env)
    return run_dir


@pytest.fixture(scope="module")
def agent_run(tmp_path_factory):
    """sweep name -> (its trial's parameters, run directory): each trial run once per process,
    on one synthetic data set (the tests below share them; under xdist a worker runs what it needs)."""
    data_dir, done = tmp_path_factory.mktemp("data"), {}

    def get(name: str) -> tuple[dict, Path]:
        if name == "data":  # the synthetic data set the trials share
            return {}, data_dir
        if name not in done:
            definition = yaml.safe_load((ROOT / "sweeps" / f"{name}.yaml").read_text())
            params = trial_params(definition)
            done[name] = params, agent_trial(tmp_path_factory.mktemp(name), name, params, data_dir)
        return done[name]

    return get


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize("sweep_file", SWEEP_FILES, ids=lambda p: p.stem)
def test_an_agent_trial_of_each_sweep_logs_the_resolved_config(sweep_file, agent_run):
    params, run_dir = agent_run(sweep_file.stem)
    resolved = OmegaConf.to_container(OmegaConf.load(run_dir / ".hydra" / "config.yaml"), resolve=True)
    (run,) = read_runs(run_dir)
    assert run.id.startswith("trial")  # the agent's WANDB_RUN_ID: the agent's environment held
    config = run.config
    for key in NUMBERS:  # the nested tree, with numbers, whatever the agent sent
        value = OmegaConf.select(OmegaConf.create({k: v for k, v in config.items() if "." not in k}), key)
        assert isinstance(value, int) and value == OmegaConf.select(OmegaConf.create(resolved), key), key
    for key in ("model", "data", "optimizer", "trainer", "budget"):
        assert config[key] == resolved[key], key
    for key, value in params.items():
        if "." in key:  # the agent's own dotted keys stay beside the tree, as W&B merged them
            assert config[key] == value, key
    choices = config[CHOICES]["choices"]
    assert choices["model"] == resolved["model"]["name"] and choices["debug"] == "default"
    assert config[CONFIGURATION].startswith(f"{resolved['model']['name']}-e")


@pytest.mark.slow
def test_a_group_valued_parameter_keeps_the_model_and_its_choice(agent_run):
    """sweeps/folds.yaml's `model: {value: small}`: W&B merged the string "small" over the nested
    model; the record has the model's tree back and the option under hydra.choices."""
    folds = yaml.safe_load((ROOT / "sweeps" / "folds.yaml").read_text())["parameters"]
    assert folds["model"] == {"value": "small"}  # the case this test is about
    (run,) = read_runs(agent_run("folds")[1])
    config = run.config
    assert isinstance(config["model"], dict) and config["model"]["name"] == "small"
    assert config["model"]["encoder"]["depth"] == 1 and config["model"]["decoder"]["width"] == 32
    assert config[CHOICES]["choices"]["model"] == "small"
    assert config["data"]["fold"] == 1 and config["data.fold"] == 1


@pytest.mark.slow
def test_compare_reads_an_agent_trial_through_the_wandb_api(agent_run, monkeypatch, tmp_path, capsys):
    """`aslfr-compare --wandb-path` on the folds trial, as W&B's public API returns it (config
    unwrapped, the agent's dotted keys beside the tree; summary with the metric's max): the only
    stand-in is wandb.Api, answering with the offline record."""
    (logged,) = read_runs(agent_run("folds")[1])

    class Run:
        name, config, summary, state = logged.name, dict(logged.config), dict(logged.summary), "finished"

    class Api:
        def runs(self, path):
            assert path == "me/aslfr"
            return [Run()]

    monkeypatch.setattr(wandb, "Api", Api)
    monkeypatch.setattr(compare, "logged_in", lambda: True)
    compare.main(["--wandb-path", "me/aslfr", "--out", str(tmp_path / "p.png"), "--no-wandb"])
    text = capsys.readouterr().out
    (row,) = compare.online_rows("me/aslfr")
    assert (row.encoder, row.decoder, row.fold) == ("1x32", "0x32", 1)  # CTC alone: trial_in_process
    assert row.score is not None and logged.name in text and " 1x32 " in text


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_an_offline_trial_synced_beside_an_online_sweep_shows_with_it(agent_run, tmp_path_factory):
    """What `make sync` uploads of an offline sweep's trial (aslfr-sweep: WANDB_RUN_GROUP = the
    sweep's name) and what an online sweep's trial logs (`wandb agent`): both training runs
    (job type `train`), the online one in its sweep, the offline one in the group NAME, so the
    dashboard built with `--sweep ID --group NAME` shows both; the same configuration on two folds
    has one `configuration`, which its cross-validation view groups by, and tags say the fold."""
    from aslfr.experiments import dashboard

    _, online_dir = agent_run("folds")  # fold 1, under the agent of sweep "swfolds"
    tmp = tmp_path_factory.mktemp("offline-folds")
    offline_dir = trial_in_process(
        tmp, {"model": "small", "data.fold": 0}, agent_run("data")[1], {"WANDB_RUN_GROUP": "folds"}
    )
    (online,) = read_runs(online_dir)
    (offline,) = read_runs(offline_dir)
    assert online.job_type == offline.job_type == "train"
    assert online.sweep_id == "swfolds" and offline.sweep_id == ""
    assert offline.group == "folds" and online.group != "folds"  # online: model-shape-data
    assert online.config[CONFIGURATION] == offline.config[CONFIGURATION]
    assert {"small", "fold0"} <= set(offline.tags) and {"small", "fold1"} <= set(online.tags)
    definition = dashboard.load_definition(ROOT / "sweeps" / "folds.yaml")
    plan = dashboard.plan(definition, "me", "aslfr", sweep=online.sweep_id, group=offline.group)
    spec = dashboard.workspace(plan)._to_model().spec.model_dump(by_alias=True, exclude_none=True)
    filters = spec["section"]["runSets"][0]["filters"]["filters"]
    for run in (online, offline):  # the workspace's run filter admits both runs
        assert admits(filters, {"jobType": run.job_type, "sweep": run.sweep_id, "group": run.group})
    assert not admits(filters, {"jobType": "compare", "sweep": "", "group": "folds"})  # aslfr-compare's run


def admits(filters: list, run: dict) -> bool:
    """W&B's filterV2 list (each item a condition or a group; a group ORs its children when they
    are joined by OR) evaluated on a run's attributes; the top-level items are ANDed."""

    def holds(item) -> bool:
        if "filters" in item:
            children = [holds(child) for child in item["filters"]]
            joined_by_or = any(child.get("connector") == "OR" for child in item["filters"])
            return any(children) if joined_by_or else all(children)
        assert item["op"] == "=", item
        return run[item["key"]["name"]] == item["value"]

    return all(holds(item) for item in filters)
