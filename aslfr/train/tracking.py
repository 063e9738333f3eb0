"""Weights & Biases: online when the user is logged in, otherwise offline with a one-line notice.
The W&B directory is inside the run directory, so a run is self-contained.

The run's W&B record keeps up with its checkpoints: `sync(step)` waits until W&B's transaction
log on disk (`run-*.wandb`, written in offline and online mode alike) holds the history row at
`step`, and the trainer calls it before publishing each checkpoint, so whatever a checkpoint says
is done survives a `kill -9` in the W&B record too. W&B flushes that file on a timer
(`x_transaction_log_flush_interval`, 15 s by default, which lost whole epochs on a kill); it is
set to FLUSH_SECONDS here, which bounds the wait.
"""

from __future__ import annotations

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
from omegaconf import DictConfig

from aslfr import names
from aslfr.config import Config, WandbMode, as_dict
from aslfr.train.wandb_log import history_steps

log = logging.getLogger(__name__)
FLUSH_SECONDS = 0.2  # W&B writes its transaction log this often (the default 15 s loses epochs)


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
        self.run = wandb.init(
            project=cfg.wandb.project,
            entity=cfg.wandb.entity,
            mode=self.mode,
            dir=str(run_dir),
            id=run_id,
            resume="allow",
            job_type="train",
            config=as_dict(cfg),
            settings=wandb.Settings(
                console="off",
                x_disable_stats=True,
                silent=True,
                x_transaction_log_flush_interval=FLUSH_SECONDS,
            ),
            **labels,
        )
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

    def finish(self, exit_code: int = 0) -> None:
        self.run.finish(exit_code=exit_code)
