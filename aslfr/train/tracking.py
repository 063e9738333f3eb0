"""Weights & Biases: online when the user is logged in, otherwise offline with a one-line notice.
The W&B directory is inside the run directory, so a run is self-contained.

The run's W&B record keeps up with its checkpoints: `sync(step)` waits until W&B's transaction
log on disk (`run-*.wandb`, written in offline and online mode alike) holds the history row at
`step`, and the trainer calls it before publishing each checkpoint, so whatever a checkpoint says
is done survives a `kill -9` in the W&B record too. W&B flushes that file on a timer
(`x_transaction_log_flush_interval`, 15 s by default, which lost whole epochs on a kill); it is
set to FLUSH_SECONDS here, which bounds the wait.

The run's W&B config is the resolved config whatever starts the run. Under `wandb agent`, W&B
merges the sweep's parameters into the config after `wandb.init(config=...)` and locks them; a
config group's choice (`model: small`) would replace the nested dict under `model`. The tracker
puts the resolved tree back over such keys (the agent's dotted keys, `model.encoder.width`, stay
beside it), records which option each config group took under `hydra.choices`, and names the
configuration (`configuration`: every key but the fold and where the run goes), so the
dashboard groups, filters and plots by any of them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import netrc
import os
import secrets
import shutil
import socket
import string
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import wandb
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from aslfr import names
from aslfr.config import Config, WandbMode, as_dict
from aslfr.train.rundir import flatten
from aslfr.train.wandb_log import history_steps

log = logging.getLogger(__name__)
FLUSH_SECONDS = 0.2  # W&B writes its transaction log this often (the default 15 s loses epochs)
# Keys that do not make two runs different configurations: the fold is what cross-validation
# varies; paths and W&B settings say where a run went, not what it was.
NOT_CONFIGURATION = ("data.fold", "paths", "wandb", "resume")
CHOICES = "hydra"  # W&B config key: {"choices": {group: option}} (Hydra's runtime.choices)
CONFIGURATION = "configuration"  # W&B config key: the configuration's name (folds share it)


def new_run_id() -> str:
    """A fresh W&B run id (8 lowercase letters and digits, like W&B's own)."""
    alphabet = string.ascii_lowercase + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(8))


def logged_in() -> bool:
    """Whether wandb has credentials: WANDB_API_KEY or a netrc entry for the W&B host."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname
    try:
        return netrc.netrc(os.environ.get("NETRC")).authenticators(host) is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


def resolve_mode(mode: WandbMode) -> str:
    if mode != WandbMode.auto:
        return WandbMode(mode).value
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    if logged_in():
        return "online"
    print(
        "wandb: not logged in, logging offline to the run directory "
        "(`wandb login` to go online; `make sync DIR=<run dir>` or `aslfr-sync <run dir>` uploads later)",
        flush=True,
    )
    return "offline"


def describe(cfg: Config | DictConfig) -> dict:
    """Run name, group and tags that tell runs apart and group them in the dashboard (of a run's
    config, or of a W&B run's config read back)."""
    m = cfg.model
    shape = f"e{m.encoder.depth}x{m.encoder.width}-d{m.decoder.depth}x{m.decoder.width}"
    fold = cfg.data.fold
    return {
        "name": cfg.wandb.name or f"{m.name}-{shape}-f{fold}",
        # WANDB_RUN_GROUP: set by the offline sweep runner, so a sweep's runs group together
        "group": (
            cfg.wandb.group or os.environ.get("WANDB_RUN_GROUP") or f"{m.name}-{shape}-{cfg.data.source}"
        ),
        "tags": [m.name, cfg.data.source, f"fold{fold}", shape, *cfg.wandb.tags],
    }


def configuration(cfg: Config | DictConfig) -> str:
    """A name shared by the runs of one configuration on different folds and by no other: the
    run group's default name (model, shape, data) and a hash of every key but NOT_CONFIGURATION."""
    m = cfg.model
    shape = f"e{m.encoder.depth}x{m.encoder.width}-d{m.decoder.depth}x{m.decoder.width}"
    kept = {
        k: v
        for k, v in flatten(as_dict(cfg) if isinstance(cfg, Config) else OmegaConf.to_container(cfg)).items()
        if not any(k == p or k.startswith(p + ".") for p in NOT_CONFIGURATION)
    }
    digest = hashlib.sha1(json.dumps(kept, sort_keys=True, default=str).encode()).hexdigest()[:6]
    return f"{m.name}-{shape}-{cfg.data.source}-{digest}"


def group_choices() -> dict:
    """The option each config group took (`model: small`, `debug: default`, ...), from Hydra;
    Hydra's own groups (hydra/...) left out. Empty outside a Hydra app."""
    if not HydraConfig.initialized():
        return {}
    choices = HydraConfig.get().runtime.choices
    return {k: v for k, v in choices.items() if not k.startswith("hydra/")}


def keep_resolved(run, resolved: Mapping, cfg: Config) -> None:
    """Put the resolved config back over whatever W&B merged into `run.config` after
    `wandb.init(config=resolved)` (a sweep agent's parameters, locked by W&B: `update_locked` is
    the one update they do not refuse), and add the group choices and the configuration's name."""
    clobbered = {k: v for k, v in resolved.items() if run.config.get(k) != v}
    if clobbered:
        run.config.update_locked(clobbered, user="aslfr", _allow_val_change=True)
    run.config.update(
        {CHOICES: {"choices": group_choices()}, CONFIGURATION: configuration(cfg)}, allow_val_change=True
    )


def gather(folder: Path, into: Path) -> Path:
    """Link the W&B run folder `folder` into `into`/wandb/, beside the other runs of its sweep or
    multirun, so that W&B's own tools see them together: `wandb leet INTO/wandb` lists them,
    `wandb sync INTO/wandb/offline-run-*` uploads them. The link is relative (the tree can move)
    and made under a temporary name, then renamed: a reader never sees half of one."""
    target = into / "wandb"
    target.mkdir(parents=True, exist_ok=True)
    link = target / folder.name
    if not os.path.lexists(link):
        tmp = target / f".{folder.name}.{socket.gethostname()}.{os.getpid()}"
        tmp.unlink(missing_ok=True)
        os.symlink(os.path.relpath(folder.resolve(), target.resolve()), tmp)
        os.replace(tmp, link)
    return link


class Tracker:
    def __init__(self, cfg: Config, run_dir: Path, run_id: str):
        self.mode = resolve_mode(cfg.wandb.mode)
        labels = describe(cfg)  # name, group, tags
        resolved = as_dict(cfg)
        self.run = wandb.init(
            project=cfg.wandb.project,
            entity=cfg.wandb.entity,
            mode=self.mode,
            dir=str(run_dir),
            id=run_id,
            resume="allow",
            job_type="train",
            config=resolved,
            settings=wandb.Settings(
                console="off",
                x_disable_stats=True,
                silent=True,
                x_transaction_log_flush_interval=FLUSH_SECONDS,
            ),
            **labels,
        )
        if self.mode != "disabled":
            keep_resolved(self.run, resolved, cfg)
        for key, goal in (
            (names.VAL_SCORE, "max"),
            (names.VAL_LEVENSHTEIN, "min"),
            (names.VAL_LOSS, "min"),
            (names.VAL_TOP1, "max"),
            (names.VAL_TOP5, "max"),
        ):
            self.run.define_metric(key, summary=goal)
        self.run_dir = Path(run_dir)
        gather_dir = cfg.wandb.gather_dir
        if gather_dir and self.mode != "disabled":
            try:
                link = gather(Path(self.run.dir).parent, Path(gather_dir))
                log.info("W&B run folder gathered in %s", link.parent)
            except OSError as e:  # a shared filesystem without links, say: the run goes on
                log.warning("could not link the W&B run folder into %s/wandb: %s", gather_dir, e)

    def log(self, metrics: Mapping, step: int, commit: bool | None = None) -> None:
        """`commit=True` closes the history row at `step` now instead of at the next step."""
        self.run.log(dict(metrics), step=int(step), commit=commit)

    def sync(self, step: int, timeout: float = 60.0) -> bool:
        """Wait until W&B's transaction log on disk holds the history row at `step` (committed),
        and so every row before it. False (with a warning) if W&B has not written it in
        `timeout` seconds: training goes on rather than hang on a broken W&B."""
        if self.mode == "disabled":
            return True
        path = Path(self.run.settings.sync_file)
        deadline, size = time.monotonic() + timeout, -1
        while True:
            now = path.stat().st_size if path.exists() else 0
            if now != size:  # parse again only when W&B has written something
                size = now
                if size and any(s >= step for s in history_steps(path)):
                    return True
            if time.monotonic() > deadline:
                log.warning(
                    "W&B has not written step %d to %s in %.0f s; going on without it", step, path, timeout
                )
                return False
            time.sleep(FLUSH_SECONDS / 4)

    def log_examples(self, truth, predicted, distances, step: int) -> None:
        table = wandb.Table(
            columns=["true", "predicted", "distance"],
            data=[[t, p, int(d)] for t, p, d in zip(truth, predicted, distances)],
        )
        self.run.log({names.VAL_EXAMPLES: table}, step=int(step), commit=False)

    def log_histogram(self, distances: np.ndarray, step: int) -> None:
        self.run.log(
            {names.VAL_DISTANCE_HISTOGRAM: wandb.Histogram(np.asarray(distances))},
            step=int(step),
            commit=False,
        )

    def save_file(self, path: Path) -> None:
        """Upload a copy of `path` with the run (a copy: W&B would symlink it and warn that
        later changes need another save)."""
        if self.mode == "disabled":  # no run directory to copy into
            return
        copy = Path(self.run.dir) / Path(path).name
        shutil.copyfile(path, copy)
        self.run.save(str(copy), base_path=self.run.dir, policy="now")

    def log_checkpoint(self, path: Path, metadata: Mapping) -> None:
        artifact = wandb.Artifact(f"model-{self.run.id}", type="model", metadata=dict(metadata))
        artifact.add_file(str(path))
        self.run.log_artifact(artifact, aliases=["best", "latest"])

    def log_submission(self, files: Sequence[Path], metadata: Mapping) -> None:
        """The export as an artifact of type `submission` with its score, latency, size and
        quantization as metadata, so that what to submit is chosen in W&B by its numbers and
        downloaded from there (a resumed run that exports again adds a version)."""
        artifact = wandb.Artifact(f"submission-{self.run.id}", type=names.SUBMISSION, metadata=dict(metadata))
        for path in files:
            artifact.add_file(str(path))
        self.run.log_artifact(artifact, aliases=["latest"])

    def record(self, values: Mapping, step: int) -> None:
        """Log the numeric values at `step` as a row of their own (committed now: a row left open
        until the next call was lost when the run finished right after) and put all of them
        (text too) in the summary."""
        self.log({k: v for k, v in values.items() if not isinstance(v, str)}, step, commit=True)
        self.summary(values)

    def summary(self, values: Mapping) -> None:
        for k, v in values.items():
            self.run.summary[k] = v

    def record_devices(self, devices: Mapping) -> None:
        """devices/* in the summary and, nested, in the config ({"devices": {...}}), where the
        dashboard can filter and group runs by them (a resumed run may run elsewhere)."""
        if not devices or self.mode == "disabled":
            return
        self.summary(devices)
        nested = {k.split("/", 1)[1]: v for k, v in devices.items()}
        self.run.config.update({"devices": nested}, allow_val_change=True)

    def preempting(self) -> None:
        """Tell W&B the run is being preempted (before it ends with a non-zero exit code): under
        `wandb agent` the sweep then re-queues it, and its next start resumes it."""
        if self.mode != "disabled":
            self.run.mark_preempting()

    def finish(self, exit_code: int = 0) -> None:
        self.run.finish(exit_code=exit_code)
