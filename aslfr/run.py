"""What `python train.py` does, stage by stage: data -> (model -> training -> export)."""

from __future__ import annotations

import logging

from omegaconf import DictConfig

from . import pipeline, prepare

log = logging.getLogger(__name__)


def run(cfg: DictConfig) -> None:
    split = prepare.setup_from_config(cfg)
    log.info("\n%s", prepare.summary(split, cfg.data))
    tokens = split.vocab.encode(list(split.prepared.phrase), int(cfg.data.max_phrase_length) + 1)
    common = dict(spec=split.spec, stats=split.stats, max_frames=int(cfg.data.max_frames),
                  batch_size=int(cfg.trainer.batch_size), seed=int(cfg.trainer.seed))
    p = split.prepared
    train_ds = pipeline.make_dataset(p.frames, p.offsets, tokens, split.train, training=True,
                                     augment=cfg.data.augment, **common)
    batch = next(iter(train_ds))
    log.info("training batches: %s", {k: tuple(v.shape) for k, v in batch.items()})
