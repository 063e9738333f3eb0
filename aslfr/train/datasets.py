"""The data sets of a run's folds as the model reads them: the training folds (augmented,
batched by length) and the validation fold in the order the metric, the export's tests and the
benches all decode it."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from aslfr.config import Config
from aslfr.data import pipeline
from aslfr.data.prepare import DataSplit
from aslfr.model.config import ModelConfig


def validation_dataset(
    cfg: Config, split: DataSplit, mcfg: ModelConfig, batch_size: int, tokens: np.ndarray | None = None
) -> tf.data.Dataset:
    """The validation fold as the validation metric reads it: deterministic batches of
    `batch_size`, frames cut to data.length_step, phrases encoded for the model (`tokens`, if
    already encoded for every prepared sequence). The runs' own metric, the export's tests and
    the benches that re-score a run all read it here, so they decode the same batches."""
    tokens = split.vocab.encode(list(split.prepared.phrase), mcfg.max_length) if tokens is None else tokens
    return fold_dataset(cfg, split, mcfg, batch_size, tokens, split.val)


def validation_order(cfg: Config, split: DataSplit, mcfg: ModelConfig) -> np.ndarray:
    """The validation fold's sequences (rows of split.prepared) in the order
    `validation_dataset` serves them, so that decoded phrases can be matched to their clips."""
    return pipeline.evaluation_order(split.val, split.prepared.offsets, mcfg.max_frames, cfg.data.length_step)


def fold_dataset(
    cfg: Config,
    split: DataSplit,
    mcfg: ModelConfig,
    batch_size: int,
    tokens: np.ndarray,
    indices: np.ndarray,
    training: bool = False,
    **options,
) -> tf.data.Dataset:
    """The sequences `indices` as the model reads them, for training or (in order, or shortest
    first with data.length_step) for evaluation: the options every use shares here, the others
    (augmentation, batching by length, length_step=0...) as given."""
    p = split.prepared
    return pipeline.make_dataset(
        p.frames,
        p.offsets,
        tokens,
        indices,
        spec=split.spec,
        stats=split.stats,
        max_frames=mcfg.max_frames,
        batch_size=batch_size,
        seed=cfg.trainer.seed,
        training=training,
        **{"length_step": cfg.data.length_step, **options},
    )
