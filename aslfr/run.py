"""What `python train.py` does, stage by stage: data -> model -> training -> summary."""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig

from . import prepare, trainer

log = logging.getLogger(__name__)


def run(cfg: DictConfig) -> dict:
    trainer.configure_devices(cfg.trainer)
    split = prepare.setup_from_config(cfg)
    log.info("\n%s", prepare.summary(split, cfg.data))
    summary = trainer.train(cfg, split, Path(cfg.paths.output_dir))
    log.info("done: %s", {k: summary[k] for k in ("val/score", "best/val/score") if k in summary})
    return summary
