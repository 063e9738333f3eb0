"""The model's pieces: the encoder variants, cached greedy decoding equals re-running the decoder,
CTC greedy decoding, CTC prefix scores equal brute force, loss and metrics."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import tensorflow as tf

from aslfr.errors import ConfigError
from aslfr.model.config import ModelConfig, StackConfig
from aslfr.model.decoding import NEG, CTCPrefixScore, ctc_greedy_decode, greedy_decode, transcribe
from aslfr.model.losses import SmoothedCrossEntropy, TokenTopK, ctc_loss, edit_score
from aslfr.model.model import build

from conftest import min_ctc_frames, typed_cfg


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
        decode="attention",
        joint_weight=0.3,
    )
    return ModelConfig(**{**base, **kw})


ENCODERS = {  # the default transformer, rotary positions, a conformer that halves its frames
    "transformer": StackConfig(2, 32, 4, 2, None, 5),
    "rope": StackConfig(2, 32, 4, 2, None, 5, positions="rope"),
    "conformer": StackConfig(
        2, 32, 4, 2, None, 5, block="conformer", positions="rope", drop_path=0.1, downsample_at=1
    ),
}


def test_decoder_input_noise_replaces_characters_only_and_only_in_training():
    """model.token_noise: about that fraction of the teacher-forced input characters become
    other characters; SOS, EOS and PAD stay; the targets (and evaluation) are untouched."""
    model = build(config(token_noise=0.3))
    rng = np.random.default_rng(0)
    chars = rng.integers(0, 59, (64, 11))
    tokens_in = np.concatenate([np.full((64, 1), 60), chars], axis=1)
    tokens_in[:, 8] = 61  # EOS
    tokens_in[:, 9:] = 59  # PAD
    noisy = model.noisy(tf.constant(tokens_in, tf.int32)).numpy()
    changed = noisy != tokens_in
    assert not changed[:, 0].any() and not changed[:, 8:].any()  # SOS, EOS, PAD
    assert 0.2 < changed[:, 1:8].mean() < 0.35  # 0.3 x 58/59 replaced by another character
    assert (noisy[:, 1:8] < 59).all()
    batch = {
        "frames": tf.random.normal([4, 24, 30]),
        "mask": tf.ones([4, 24], tf.bool),
        "tokens": tf.constant(tokens_in[:4, 1:], tf.int32),
    }
    # evaluation sees the true history: the decoder run on the unaltered input tokens
    encoded, real = model._encode(batch["frames"], batch["mask"], training=False)
    clean_in = np.concatenate([np.full((4, 1), 60), tokens_in[:4, 1:-1]], axis=1)
    expected = model.decoder_logits(
        model.bridge(encoded), real, tf.constant(clean_in, tf.int32), training=False
    )
    np.testing.assert_allclose(model(batch, training=False).numpy(), expected.numpy(), atol=1e-6)


def test_the_fallback_phrase_maximizes_the_expected_score_and_replaces_clips_without_a_hand():
    from aslfr.model.decoding import uses_fallback
    from aslfr.model.losses import best_constant_phrase

    phrases = ["1 main street", "2 main street", "3 main road", "zz"]
    phrase, gain = best_constant_phrase(phrases)
    expect = {c: np.mean([len(t) - edit_score([t], [c]).distances[0] for t in phrases]) for c in phrases}
    assert phrase == max(expect, key=expect.get) and gain == pytest.approx(expect[phrase])

    cfg = config(fallback_frames=3, fallback_tokens=(5, 6, 61) + (59,) * 9)
    model = build(cfg)
    frames = np.random.default_rng(0).normal(size=(3, 24, 30)).astype(np.float32)
    frames[0, 2:, : cfg.hand_features] = np.nan  # the hand in 2 frames: fallback
    frames[1, 4:, : cfg.hand_features] = np.nan  # in 4: decoded
    mask = np.ones((3, 24), bool)
    mask[2, 2:] = False  # 2 real frames: fallback
    used = uses_fallback(cfg, tf.constant(frames), tf.constant(mask)).numpy()
    assert used.tolist() == [True, False, True]
    out = transcribe(model, tf.constant(np.nan_to_num(frames, nan=0.0)), tf.constant(mask)).numpy()
    assert out.tolist()[2] == list(cfg.fallback_tokens)
    out = transcribe(model, tf.constant(frames), tf.constant(mask), how="ctc").numpy()
    assert out[0].tolist() == list(cfg.fallback_tokens) and out[1].tolist() != list(cfg.fallback_tokens)


def naive_decode(model, frames, mask, length):
    """The decoder re-run over the whole prefix for every token (seed 001's way)."""
    memory, mask = model.encode(frames, mask)
    tokens = np.full((len(frames), 1), model.cfg.sos)
    for _ in range(length):
        logits = model.decoder_logits(memory, mask, tf.constant(tokens)).numpy()
        tokens = np.concatenate([tokens, logits[:, -1].argmax(-1)[:, None]], 1)
    return tokens[:, 1:]


def varied_model(**kw):
    """A model with large random weights (the norms left as they are: random offsets after the
    conformer's final norms would swamp the input): varied, non-trivial outputs."""
    tf.keras.utils.set_random_seed(3)
    model = build(config(**kw))
    for v in model.trainable_variables:
        if not v.path.endswith(("gamma", "beta")):
            v.assign(tf.random.normal(v.shape, stddev=0.5))
    return model


def assert_same_phrases(cached, naive):
    """Cached decoding gives re-running's tokens up to and including EOS, then PAD."""
    assert len({tuple(r) for r in naive}) > 1  # not a constant output
    for c, n in zip(cached, naive):
        end = list(n).index(61) + 1 if 61 in n else len(n)
        np.testing.assert_array_equal(c[:end], n[:end])
        assert (c[end:] == 59).all()  # PAD after EOS


@pytest.mark.parametrize("encoder", sorted(ENCODERS))
def test_cached_greedy_decoding_equals_rerunning_the_decoder(encoder):
    model = varied_model(encoder=ENCODERS[encoder])
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
    # an empty batch (a replica's share of a short last batch under a mirrored strategy): loss 0,
    # from the kernel's path and the dense one, traced for any batch size as Keras traces it
    spec = [
        tf.TensorSpec([None, 24, 60]),
        tf.TensorSpec([None, 24], tf.bool),
        tf.TensorSpec([None, 12], tf.int64),
    ]
    for is_dense in (False, True):
        traced = tf.function(lambda *a, d=is_dense: ctc_loss(*a, pad=59, dense=d), input_signature=spec)
        assert float(traced(logits[:0], mask[:0], tokens[:0])) == 0.0
        assert float(traced(logits, mask, tokens)) == pytest.approx(want, rel=1e-5)


def test_the_encoder_variants_mask_padding_and_halve_the_frames():
    """Whatever follows a sequence's real frames changes nothing in them; the conformer with
    downsample_at=1 halves the frames (and the mask), rotary positions make order matter."""
    rng = np.random.default_rng(1)
    frames = rng.normal(size=(2, 24, 30)).astype(np.float32)
    mask = np.ones((2, 24), bool)
    mask[1, 9:] = False
    noisy = frames.copy()
    noisy[1, 9:] = rng.normal(size=(15, 30))  # other padding
    for name, encoder in ENCODERS.items():
        model = varied_model(encoder=encoder)
        memory, out_mask = model.encode(frames, mask)
        again, _ = model.encode(noisy, mask)
        real = out_mask.numpy()[1]
        np.testing.assert_allclose(memory.numpy()[1, real], again.numpy()[1, real], atol=1e-5, err_msg=name)
        expected = 12 if encoder.downsample_at else 24
        assert memory.shape[1] == expected and real.sum() == (5 if encoder.downsample_at else 9), name
        if encoder.positions == "rope":  # no additive position embedding: rotation carries order
            assert model.embedding.position is None
            reversed_ = model.encode(frames[:, ::-1].copy(), np.ones((2, 24), bool))[0].numpy()
            forward = model.encode(frames, np.ones((2, 24), bool))[0].numpy()
            assert not np.allclose(reversed_[:, ::-1], forward, atol=1e-3), name


def test_drop_path_is_random_in_training_only():
    model = varied_model(encoder=StackConfig(2, 32, 4, 2, None, 5, block="conformer", drop_path=0.5))
    frames = np.random.default_rng(2).normal(size=(8, 24, 30)).astype(np.float32)
    mask = np.ones((8, 24), bool)
    a, b = (model._encode(frames, mask, training=True)[0].numpy() for _ in range(2))
    c, d = (model._encode(frames, mask, training=False)[0].numpy() for _ in range(2))
    assert not np.allclose(a, b) and np.array_equal(c, d)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (
            ["model.decoder.depth=0", "model.decode=attention"],
            "model.decode=attention needs an attention decoder",
        ),
        (["model.ctc_weight=0", "model.decode=joint"], "model.decode=joint needs"),
        (["model.encoder.downsample_at=3"], "downsample_at=3"),
        (["model.encoder.block=conformer", "model.encoder.conv_kernel=0"], "needs its convolution"),
    ],
)
def test_configurations_a_model_cannot_build_or_decode_are_refused(overrides, message, tmp_path):
    with pytest.raises(ConfigError, match=message):
        typed_cfg(overrides, tmp_path)


def test_decodings_follow_the_heads():
    ctc_only = config(decoder=StackConfig(0, 32, 4, 2, None, 0), decode="ctc")
    assert ctc_only.decodes == ("ctc",) and config().decodes == ("attention", "ctc", "joint")


def collapse(path, blank):
    out = []
    for k, _ in itertools.groupby(path):
        if k != blank:
            out.append(k)
    return out


def test_ctc_greedy_decoding_collapses_repeats_and_drops_blanks():
    """Against Python on the same logits: argmax per real frame, runs collapsed, blanks dropped,
    then EOS and PAD; a phrase longer than the output keeps its first max_length - 1 characters."""
    model = varied_model(decoder=StackConfig(0, 32, 4, 2, None, 0), decode="ctc")
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(4, 24, 60)).astype(np.float32) * 3
    logits[..., 59] += 1.5  # blanks common, as after training
    mask = np.ones((4, 24), bool)
    mask[1, 5:] = False
    mask[2, 1:] = False
    model.ctc_logits = lambda frames, m, training=None: (tf.constant(logits), tf.constant(mask))
    out = ctc_greedy_decode(model, np.zeros((4, 24, 30), np.float32), mask).numpy()
    for row, (lg, m) in enumerate(zip(logits, mask)):
        chars = collapse(lg[m].argmax(-1).tolist(), 59)[:11]
        want = chars + [61] + [59] * (12 - len(chars) - 1)
        assert out[row].tolist() == want[:12], row
    assert (out[:, -1] != 59).any() or True  # shapes line up: [B, max_length]


def brute_force_prefix(y, prefix, chars):
    """log P(the frames' collapsed path starts with `prefix`) and log P(it is exactly `prefix`),
    by enumerating every path: y [T, C + 1] log probabilities, blank = chars."""
    starts, exact = 0.0, 0.0
    for path in itertools.product(range(chars + 1), repeat=len(y)):
        p = float(np.exp(sum(y[t, k] for t, k in enumerate(path))))
        spelled = collapse(path, chars)
        if spelled[: len(prefix)] == list(prefix):
            starts += p
            exact += p if spelled == list(prefix) else 0.0
    with np.errstate(divide="ignore"):  # log(0): impossible
        return np.log(starts), (np.log(exact) if exact else NEG)


def test_ctc_forward_scan_is_exact_on_long_peaked_sequences():
    """The forward recursion's scan against float64 numpy on 384 confident frames, where the
    terms span thousands of nats (a shift by one maximum would underflow the early frames)."""
    chars, frames = 5, 384
    cfg = type("Cfg", (), {"pad": chars, "eos": chars + 2, "vocab_size": chars + 3})()
    rng = np.random.default_rng(0)
    logits = (rng.normal(size=(2, frames, chars + 1)) * 12).astype(np.float32)  # peaked
    mask = np.ones((2, frames), bool)
    mask[1, 300:] = False
    scorer = CTCPrefixScore(tf.constant(logits), tf.constant(mask), cfg, frames)
    y = -np.abs(rng.normal(size=(2, frames)) * 10)  # log probabilities
    first = rng.normal(size=2) - 3
    terms = -np.abs(rng.normal(size=(2, frames)) * 20)
    b = np.concatenate([first[:, None], terms[:, :-1] + y[:, 1:]], axis=1)
    s = np.cumsum(np.concatenate([np.zeros((2, 1)), y[:, 1:]], axis=1), axis=1)
    want = s + np.logaddexp.accumulate(b - s, axis=1)
    assert np.ptp(b - s, axis=1).min() > 1000  # the terms span more than float32's exp
    got = s + scorer._scan(tf.constant(b - s, tf.float32)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-2)


def test_ctc_prefix_scores_equal_brute_force():
    """Joint decoding's CTC part: every candidate's score after every prefix, and the state after
    advancing, against all (C + 1)^T alignments of a small case (3 characters, 5 frames; one
    sequence padded after 4). Repeated characters included."""
    chars, frames = 3, 5
    cfg = type("Cfg", (), {"pad": chars, "eos": chars + 2, "vocab_size": chars + 3})()
    rng = np.random.default_rng(4)
    logits = rng.normal(size=(2, frames, chars + 1)).astype(np.float32)
    mask = np.array([[True] * 5, [True] * 4 + [False]])
    scorer = CTCPrefixScore(tf.constant(logits), tf.constant(mask), cfg, frames)
    y = tf.nn.log_softmax(logits).numpy()
    for steps in ([], [1], [1, 1], [2, 0], [0, 2, 2]):
        prefix = scorer.initial()
        for token in steps:
            _, extended = scorer.scores(prefix)
            prefix = scorer.advance(prefix, extended, tf.constant([token, token]))
        scores, _ = scorer.scores(prefix)
        for b in range(2):
            yb = y[b, mask[b]]
            base, _ = brute_force_prefix(yb, steps, chars)
            np.testing.assert_allclose(prefix[1].numpy()[b], base if steps else 0.0, atol=1e-4)
            for c in range(chars):
                want = brute_force_prefix(yb, [*steps, c], chars)[0] - base
                got = scores.numpy()[b, c]
                if np.isinf(want):  # no alignment spells it in these frames: impossible
                    assert got < -1e9, (steps, c)
                else:
                    np.testing.assert_allclose(got, want, atol=1e-4, err_msg=f"{steps}+{c}")
            eos = brute_force_prefix(yb, steps, chars)[1] - base
            np.testing.assert_allclose(scores.numpy()[b, cfg.eos], eos, atol=1e-4, err_msg=f"{steps}+EOS")
            assert scores.numpy()[b, chars] < -1e9 and scores.numpy()[b, chars + 1] < -1e9  # PAD, SOS


def test_joint_decoding_without_ctc_weight_is_the_attention_search():
    model = varied_model(decode="joint", joint_weight=0.0)
    rng = np.random.default_rng(5)
    frames = rng.normal(size=(4, 24, 30)).astype(np.float32)
    mask = np.ones((4, 24), bool)
    mask[1, 6:] = False
    joint = transcribe(model, frames, mask).numpy()
    np.testing.assert_array_equal(joint, greedy_decode(model, frames, mask).numpy())
    model.cfg = config(decode="joint", joint_weight=0.6)  # now the CTC scores steer the search
    steered = transcribe(model, frames, mask).numpy()
    assert steered.shape == joint.shape and not np.array_equal(steered, joint)


def test_joint_decoding_spells_what_attention_spells_where_ctc_cannot_align(monkeypatch):
    """Clips of 1, 3 and 8 frames, each shorter than the phrase the attention decoder spells (it
    is made never to end a phrase early): CTC cannot align that phrase, so joint decoding spells
    it as attention decoding does; without the rule the CTC prefix scores cut the phrases short
    (the joint search alone, checked below). A clip long enough keeps the joint search, steered
    by CTC."""
    import aslfr.model.decoding as decoding

    model = varied_model(decode="joint", joint_weight=0.7)
    bias = model.classifier.bias
    bias.assign(tf.tensor_scatter_nd_update(bias, [[61]], [-1e3]))  # no EOS before max_length
    rng = np.random.default_rng(6)
    frames = rng.normal(size=(4, 24, 30)).astype(np.float32)
    lengths = [1, 3, 8, 24]
    mask = np.arange(24)[None, :] < np.array(lengths)[:, None]
    attention = greedy_decode(model, frames, mask).numpy()
    joint = transcribe(model, frames, mask).numpy()
    needs = [min_ctc_frames(row) for row in attention]
    assert all(need > n for need, n in zip(needs, lengths[:3])) and needs[3] <= 24
    np.testing.assert_array_equal(joint[:3], attention[:3])
    assert not np.array_equal(joint[3], attention[3])  # CTC steers where it aligns

    # without the rule, the joint search's own phrases (what it spelled up to where it chose
    # EOS): cut short by the CTC head on the short clips, to what their frames can spell
    first = {}

    def first_pass(*args, **kw):
        spelled, stop = search(*args, **kw)
        if kw.get("done") is None:
            first.update(spelled=spelled.numpy(), stop=stop.numpy())
        return spelled, stop

    search = decoding._search
    monkeypatch.setattr(decoding, "_search", first_pass)
    decoding.greedy_decode(model, frames, mask, joint=0.7)
    for row, n in enumerate(lengths):
        own = min_ctc_frames(first["spelled"][row][: first["stop"][row]])
        assert own <= n and (row == 3 or n < min_ctc_frames(first["spelled"][row]))
    np.testing.assert_array_equal(first["spelled"][3][: first["stop"][3]], joint[3][: first["stop"][3]])
