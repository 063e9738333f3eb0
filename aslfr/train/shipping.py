"""What a run ships, chosen from its own data: the fallback phrase (before training, from the
training folds' phrases), then with the best weights the decoding (aslfr.train.decide) and the
fallback's threshold (on the training folds), measured on the validation fold."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np

from aslfr import names
from aslfr.atomic import write_json
from aslfr.config import Config, Fallback
from aslfr.data.prepare import DataSplit
from aslfr.model.decoding import hand_frames
from aslfr.model.losses import best_constant_phrase, edit_score
from aslfr.train import decide
from aslfr.train.datasets import fold_dataset
from aslfr.train.decoder import DatasetDecoder

log = logging.getLogger(__name__)


def choose_fallback(fallback: Fallback, train_phrases: list[str], run_dir: Path) -> dict:
    """The fallback rule of this run (`fallback`; {} when off): the configured phrase, or the one
    that maximizes the expected (N - D)/N on the training folds' phrases, and the threshold
    (None until the run has chosen it: fallback.min_hand_frames=null). Written to the run
    directory, where the export finds it."""
    threshold, phrase = fallback.min_hand_frames, fallback.phrase
    if threshold is not None and threshold <= 0:
        return {}
    if phrase is None:
        phrase, expected = best_constant_phrase(train_phrases)
    else:
        score = edit_score(train_phrases, [phrase] * len(train_phrases))
        expected = float(score.n_chars - score.distances.sum()) / max(len(train_phrases), 1)
    rule = {
        "min_hand_frames": threshold,
        "phrase": phrase,
        "expected_score": expected,
    }
    write_json(run_dir / names.FALLBACK_FILE, rule)
    below = "a number of" if threshold is None else f"fewer than {threshold}"
    log.info(
        "fallback: clips with %s frames showing the hand decode as %r (expected N - D per clip on "
        "the training folds: %.2f)%s",
        below,
        phrase,
        expected,
        "; the number is chosen on the training folds after training" if threshold is None else "",
    )
    return rule


def choose_threshold(
    decoder: DatasetDecoder, cfg: Config, split: DataSplit, tokens, phrase: str, batch_size: int
) -> dict:
    """fallback.min_hand_frames=null: the threshold (frames showing the hand) below which the
    fallback phrase beats the model's own predictions on the training folds, searched up to
    fallback.search_up_to frames; only the clips below that are decoded, by `decoder` (the
    model's decoding without the fallback)."""
    model = decoder.model
    up_to = cfg.fallback.search_up_to
    # every training clip's frames showing the hand, in split.train's order (no length sort)
    seen = [
        hand_frames(model.cfg, b["frames"], b["mask"]).numpy()
        for b in fold_dataset(cfg, split, model.cfg, batch_size, tokens, split.train, length_step=0)
    ]
    counts = np.concatenate(seen) if seen else np.zeros(0, np.int64)
    short = counts < up_to
    gains = np.zeros(up_to + 1)
    if short.any():
        ds = fold_dataset(cfg, split, model.cfg, batch_size, tokens, split.train[short], length_step=0)
        truth, predicted = decoder(ds)
        gains = decide.threshold_gains(
            counts[short],
            edit_score(truth, predicted).distances,
            edit_score(truth, [phrase] * len(truth)).distances,
            up_to,
        )
    threshold = decide.best_threshold(gains)
    n_chars = sum(len(str(t)) for t in split.prepared.phrase[split.train])
    log.info(
        "fallback: %s on the training folds (%d of %d clips show the hand in fewer than %d frames; "
        "the phrase %s there)",
        f"below {threshold} frames showing the hand" if threshold else "off",
        int(short.sum()),
        len(counts),
        up_to,
        f"saves {gains[threshold]:.0f} characters' edits" if threshold else "never beats the model",
    )
    return {
        names.FALLBACK_MIN_HAND_FRAMES: threshold,
        names.FALLBACK_TRAIN_CLIPS: int((counts < threshold).sum()),
        names.FALLBACK_TRAIN_GAIN: float(gains[threshold]) / max(n_chars, 1),
    }


def ship(
    model,
    cfg: Config,
    split: DataSplit,
    tokens,
    state: dict,
    rule: dict,
    val_ds,
    batch_size: int,
    run_dir: Path,
) -> dict:
    """With the best weights loaded: the decoding and the fallback threshold the run ships
    (aslfr.train.decide), set on model.cfg and written to the run directory. Returns what is
    logged and summarized: the choices, the fallback's clips and gain on each fold, and the
    shipped model's score on the validation fold (best/val/score)."""
    choice = decide.choose_decoding(model.cfg, state.get("best_scores", {}), state.get("best_epoch"))
    mcfg, metrics = choice.cfg, dict(choice.metrics)
    write_json(
        run_dir / names.DECODING_FILE, {"decode": mcfg.decode.value, "joint_weight": mcfg.joint_weight}
    )
    score = state.get("best_scores", {}).get(choice.name, state.get("best_score"))
    if rule:
        model.cfg = decide.fallback_off(mcfg)
        decoder = DatasetDecoder(model, split.vocab)  # one trace for the training and validation folds
        threshold = rule["min_hand_frames"]
        if threshold is None:
            metrics.update(choose_threshold(decoder, cfg, split, tokens, rule["phrase"], batch_size))
            threshold = metrics[names.FALLBACK_MIN_HAND_FRAMES]
            write_json(run_dir / names.FALLBACK_FILE, {**rule, "min_hand_frames": threshold})
        metrics[names.FALLBACK_MIN_HAND_FRAMES] = threshold
        if val_ds is not None:
            truth, predicted = decoder(val_ds)
            report = decide.fallback_report(decoder.hand_frames, truth, predicted, rule["phrase"], threshold)
            metrics.update(
                {names.FALLBACK_VAL_CLIPS: report["clips"], names.FALLBACK_VAL_GAIN: report["gain"]}
            )
            score = report["score"]
            log.info(
                "fallback: %d of %d validation clips use it, %+.4f val/score",
                report["clips"],
                len(truth),
                report["gain"],
            )
        tokens_of = tuple(int(t) for t in split.vocab.encode([rule["phrase"]], mcfg.max_length)[0])
        mcfg = dataclasses.replace(
            mcfg, fallback_frames=threshold, fallback_tokens=tokens_of if threshold else ()
        )
    model.cfg = mcfg
    if score is not None:
        metrics[names.BEST_VAL_SCORE] = score
    return metrics
