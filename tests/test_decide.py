"""What a run decides from its data once trained: the decoding it ships (model.decode=best) and
the fallback threshold (fallback.min_hand_frames=null); presets whose decoding follows their heads."""

from __future__ import annotations

import numpy as np
import pytest

from aslfr.data.features import FeatureSpec
from aslfr.data.layout import CHARACTERS
from aslfr.data.vocab import Vocab
from aslfr.model.config import model_config
from aslfr.train import decide

from conftest import typed_cfg


def mcfg_of(overrides: list[str], tmp_path, **kw):
    cfg = typed_cfg(overrides, tmp_path)
    spec = FeatureSpec.from_config(cfg.data.features)
    return model_config(cfg.model, cfg.data, cfg.trainer.jit, spec, Vocab(CHARACTERS), **kw)


@pytest.mark.parametrize(
    "overrides, decodes",
    [
        ([], ("joint", "attention", "ctc", "joint@0.3", "joint@0.5")),
        (["model.decoder.depth=0"], ("ctc",)),
        (["model.encoder.block=conformer", "model.decoder.depth=0"], ("ctc",)),
        (["model.ctc_weight=0"], ("attention",)),
        (["model=large"], ("attention",)),
        (["model.decode=joint"], ("joint", "attention", "ctc")),  # explicit: as configured
        (["model.decode=auto"], ("joint", "attention", "ctc")),
    ],
)
def test_presets_decode_with_the_heads_they_have(tmp_path, overrides, decodes):
    """Every preset defaults to model.decode=best: each decoding its heads allow is scored, so
    removing the decoder (or the CTC head) needs no second override."""
    assert mcfg_of(overrides, tmp_path).decodes == decodes


def test_the_best_decoding_on_the_validation_fold_ships(tmp_path):
    mcfg = mcfg_of([], tmp_path)
    scores = {"joint": 0.90, "attention": 0.86, "ctc": 0.88, "joint@0.3": 0.91, "joint@0.5": 0.93}
    choice = decide.choose_decoding(mcfg, scores, epoch=20)
    assert choice.name == "joint@0.5" and (choice.cfg.decode, choice.cfg.joint_weight) == ("joint", 0.5)
    assert choice.metrics == {"decode/how": "joint", "decode/joint_weight": 0.5}
    # ties go to the configured decoding; attention beats them all where it scores best
    assert decide.choose_decoding(mcfg, {**scores, "joint": 0.93}, 20).name == "joint"
    chosen = decide.choose_decoding(mcfg, {**scores, "attention": 0.97}, 20)
    assert chosen.metrics == {"decode/how": "attention"}
    # an explicit decoding is kept whatever the scores
    explicit = mcfg_of(["model.decode=ctc"], tmp_path)
    assert decide.choose_decoding(explicit, scores, 20).name == "ctc"


def test_the_fallback_threshold_is_where_the_phrase_beats_the_model():
    """Clips showing the hand in 0-4 frames: the model is worse than the phrase below 3 frames,
    better from 3 on; the chosen threshold is 3 (the smallest with the largest gain)."""
    hand = np.array([0, 1, 2, 2, 3, 4, 4])
    model = np.array([9, 9, 8, 7, 2, 1, 1])
    phrase = np.array([5, 5, 5, 5, 6, 6, 6])
    gains = decide.threshold_gains(hand, model, phrase, up_to=6)
    np.testing.assert_array_equal(gains, [0, 4, 8, 13, 9, -1, -1])
    assert decide.best_threshold(gains) == 3
    never = decide.threshold_gains(hand, np.zeros_like(model), phrase, up_to=6)  # the model is always better
    assert decide.best_threshold(never) == 0  # off


def test_the_fallback_report_counts_clips_and_what_it_changed():
    truth = ["abc", "abd", "hello"]
    report = decide.fallback_report(np.array([1, 2, 9]), truth, ["", "xyz", "hello"], "ab", threshold=3)
    assert report["clips"] == 2 and report["predicted"] == ["ab", "ab", "hello"]
    # without: D = 3 + 3 + 0 of N = 11; with: 1 + 1 + 0
    assert report["gain"] == pytest.approx((11 - 2) / 11 - (11 - 6) / 11)
