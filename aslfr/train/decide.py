"""What a run decides from its own data once trained, before it ships the model: the decoding
(model.decode=best: the one with the best score on the validation fold) and the fallback rule's
threshold (fallback.min_hand_frames=null: chosen on the training folds, as its phrase is).

The decoding is chosen on the fold the run reports, so the reported score of a best-of-N choice
is a little optimistic; the threshold is chosen on the training folds, where the model's own
predictions are better than on unseen clips, so it errs towards using the fallback less. Both
choices are logged with their reasons, written to the run directory (the export and
`aslfr-export` read them from there) and summarized; the validation fold then shows what the
fallback gained or cost."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass

import numpy as np

from aslfr import names
from aslfr.config import Decode
from aslfr.model.config import ModelConfig
from aslfr.model.losses import edit_score

log = logging.getLogger(__name__)


@dataclass
class Choice:
    name: str  # the decoding's name in ModelConfig.decodes
    cfg: ModelConfig  # the model's config decoding so
    metrics: dict  # what the run logs and summarizes about the choice


def choose_decoding(mcfg: ModelConfig, scores: dict[str, float], epoch: int | None) -> Choice:
    """model.decode=best: of the decodings scored at the best evaluation (`scores`: name ->
    val/score), the best (the configured one wins ties). Otherwise the configured one."""
    if not mcfg.choose_decode or not scores:
        return Choice(mcfg.decode, mcfg, _logged(mcfg))
    ranked = [name for name in mcfg.decodes if name in scores]
    chosen = max(ranked, key=lambda name: scores[name])  # the first of equals: the configured
    cfg = mcfg.decoding(chosen)
    others = ", ".join(f"{name} {scores[name]:.4f}" for name in ranked if name != chosen)
    log.info(
        "decoding: %s ships, the best on the validation fold at epoch %s (val/score %.4f; %s)",
        chosen,
        epoch,
        scores[chosen],
        others,
    )
    return Choice(chosen, cfg, _logged(cfg))


def _logged(cfg: ModelConfig) -> dict:
    weight = {names.DECODE_JOINT_WEIGHT: cfg.joint_weight} if cfg.decode == Decode.joint else {}
    return {names.DECODE: cfg.decode.value, **weight}


def threshold_gains(hand_frames: np.ndarray, model_distance, phrase_distance, up_to: int) -> np.ndarray:
    """gain[k], k = 0..up_to: the characters the fallback phrase saves over the model's own
    predictions on the clips showing the hand in fewer than k frames (negative: it costs)."""
    saved = np.asarray(model_distance, np.int64) - np.asarray(phrase_distance, np.int64)
    per_count = np.bincount(np.minimum(hand_frames, up_to), weights=saved, minlength=up_to + 1)
    return np.concatenate([[0.0], np.cumsum(per_count[:up_to])])


def best_threshold(gains: np.ndarray) -> int:
    """The smallest threshold with the largest gain; 0 (no fallback) unless some gain > 0."""
    k = int(np.argmax(gains))
    return k if gains[k] > 0 else 0


def fallback_report(hand_frames, truth, predicted, phrase: str, threshold: int) -> dict:
    """The fallback rule on a fold: how many clips use it, and the score with it less the score
    without (the model's own predictions)."""
    uses = np.asarray(hand_frames) < threshold
    without = edit_score(truth, predicted)
    shipped = [phrase if u else p for u, p in zip(uses, predicted)]
    with_it = edit_score(truth, shipped)
    return {
        "clips": int(uses.sum()),
        "gain": with_it.score - without.score,
        "score": with_it.score,
        "predicted": shipped,
        "distances": with_it.distances,
    }


def fallback_off(mcfg: ModelConfig) -> ModelConfig:
    return dataclasses.replace(mcfg, fallback_frames=0)
