"""The model's pieces: cached greedy decoding equals re-running the decoder, loss and metrics."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from aslfr.model.config import ModelConfig, StackConfig
from aslfr.model.decoding import greedy_decode
from aslfr.model.losses import SmoothedCrossEntropy, TokenTopK, ctc_loss, edit_score
from aslfr.model.model import build


def config(**kw) -> ModelConfig:
    base = dict(
        n_features=30,
        hand_features=10,
        max_frames=24,
        max_length=12,
        vocab_size=62,
        pad=59,
        sos=60,
        eos=61,
        encoder=StackConfig(2, 32, 4, 2, None, 5),
        decoder=StackConfig(2, 32, 4, 2, 4, 0),
        attention_dropout=0.1,
        mlp_dropout=0.1,
        classifier_dropout=0.1,
        ctc_weight=0.5,
        ctc_xla=False,
    )
    return ModelConfig(**{**base, **kw})


def naive_decode(model, frames, mask, length):
    """The decoder re-run over the whole prefix for every token (seed 001's way)."""
    memory = model.encode(frames, mask)
    tokens = np.full((len(frames), 1), model.cfg.sos)
    for _ in range(length):
        logits = model.decode(memory, mask, tf.constant(tokens)).numpy()
        tokens = np.concatenate([tokens, logits[:, -1].argmax(-1)[:, None]], 1)
    return tokens[:, 1:]


def varied_model():
    """A model with large random weights: varied, non-trivial outputs."""
    tf.keras.utils.set_random_seed(3)
    model = build(config())
    for v in model.trainable_variables:
        v.assign(tf.random.normal(v.shape, stddev=0.5))
    return model


def assert_same_phrases(cached, naive):
    """Cached decoding gives re-running's tokens up to and including EOS, then PAD."""
    assert len({tuple(r) for r in naive}) > 1  # not a constant output
    for c, n in zip(cached, naive):
        end = list(n).index(61) + 1 if 61 in n else len(n)
        np.testing.assert_array_equal(c[:end], n[:end])
        assert (c[end:] == 59).all()  # PAD after EOS


def test_cached_greedy_decoding_equals_rerunning_the_decoder():
    model = varied_model()
    rng = np.random.default_rng(0)
    frames = rng.normal(size=(5, 24, 30)).astype(np.float32)
    frames[0, :6, :10] = np.nan  # hand missing in some frames
    mask = np.ones((5, 24), bool)
    mask[1, 7:] = False
    mask[2, 1:] = False  # a one-frame sequence
    cached = greedy_decode(model, frames, mask).numpy()
    assert_same_phrases(cached, naive_decode(model, frames, mask, 12))


def test_loss_ignores_pad_and_metrics_count_real_tokens():
    y = tf.constant([[3, 61, 59, 59], [4, 5, 61, 59]])
    logits = tf.one_hot(tf.constant([[3, 61, 0, 0], [4, 6, 61, 0]]), 62) * 20.0
    loss = SmoothedCrossEntropy(62, 59, 0.0)(y, logits)
    perfect = SmoothedCrossEntropy(62, 59, 0.0)(y, tf.one_hot(y, 62) * 20.0)
    assert float(perfect) < 1e-3 and float(loss) > 1.0  # one wrong real token of five
    top1 = TokenTopK(1, 59)
    top1.update_state(y, logits)
    assert float(top1.result()) == pytest.approx(4 / 5)


def test_edit_score_is_corpus_level():
    s = edit_score(["abc", "hello"], ["abd", ""])
    np.testing.assert_array_equal(s.distances, [1, 5])
    assert s.score == pytest.approx((8 - 6) / 8) and s.mean_distance == 3.0


def test_cached_decoding_under_mixed_precision():
    """trainer.precision: the decode step casts its folded weights to the compute dtype and keeps
    the norms' statistics in float32, like Keras' layers. (With mixed_bfloat16 it runs too, but
    bfloat16's 8-bit mantissa rounds the two computations apart on near-ties.)"""
    import keras

    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = varied_model()
        frames = np.random.default_rng(0).normal(size=(4, 24, 30)).astype(np.float32)
        mask = np.ones((4, 24), bool)
        mask[1, 5:] = False
        cached = tf.function(lambda f, m: greedy_decode(model, f, m))(frames, mask).numpy()
        assert_same_phrases(cached, naive_decode(model, frames, mask, 12))
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_ctc_loss_for_xla_equals_the_cpu_kernel_and_compiles():
    """trainer.jit=true: the auxiliary CTC loss from dense labels (ops XLA compiles) is the C++
    kernel's loss, including sequences whose frames cannot hold their phrase and empty phrases."""
    rng = np.random.default_rng(1)
    logits = tf.constant(rng.normal(size=(4, 24, 60)).astype(np.float32))  # 59 characters + blank
    mask = np.ones((4, 24), bool)
    mask[1, 3:] = False  # 3 frames for a 6-character phrase: infeasible, left out of the mean
    tokens = np.full((4, 12), 59)
    for i, phrase in enumerate([[3, 3, 7, 9], [1, 2, 3, 4, 5, 6], [], [8, 8, 8, 2, 1]]):
        tokens[i, : len(phrase)] = phrase
        tokens[i, len(phrase)] = 61  # EOS
    tokens = tf.constant(tokens)
    want = float(ctc_loss(logits, mask, tokens, pad=59))
    dense = tf.function(lambda *a: ctc_loss(*a, pad=59, dense=True), jit_compile=True)
    got = float(dense(logits, mask, tokens))
    assert np.isfinite(want) and got == pytest.approx(want, rel=1e-5)
