"""Greedy decoding with a key/value cache, for the validation metric and the exported TFLite graph.

`greedy_decode` encodes once, projects the encoder memory's cross-attention keys/values once per
sequence (`project_memory`), then runs the decoder one token at a time (`decoder_step`): each step
projects only the new token's query/key/value, writes its key/value into the caches and attends
over the cached positions (earlier positions are never recomputed), stopping when every sequence
has emitted EOS.

    memory [B, T, Wd] -> keys, values [B, H, D, T]                            (once)
    token [B] -> x [B, Wd] -> decoder_step x depth -> logits [B, V] -> token  (per step)
    caches per block: keys, values [B, L, H, D]

Each step is written for the exported loop: 2-D [B, W] tensors (no shape arithmetic), one fused
query/key/value matmul, every layer norm's scale and offset folded into the matmul after it, a
mean-zero residual stream (so a layer norm needs no mean: `_centered`), and cache writes as exact
arithmetic: the new key/value times a one-hot of the position, added where the cache still holds
0. The layouts serve LiteRT's CPU kernels (XNNPACK), which run an element-wise product that
broadcasts one operand as one call per row: rows few and long, as the memory's [H, D] rows of T
frames and the caches' L rows of H x D, cost least (`bench/export_latency.py`).
"""

from __future__ import annotations

from typing import NamedTuple

import tensorflow as tf
from keras import layers

from aslfr.config import Decode
from aslfr.model.layers import DecoderBlock
from aslfr.model.model import FingerspellingModel


def transcribe(
    model: FingerspellingModel,
    frames,
    mask,
    max_length: int | None = None,
    early_stop: bool = True,
    how: str | None = None,
):
    """[B, T, F], [B, T] -> [B, max_length] int32 tokens (characters, EOS, then PAD), decoded as
    model.decode says (or `how`): attention, ctc, joint or joint@W (at CTC weight W).
    `early_stop=False` runs every attention step (the latency of a phrase of known length)."""
    return transcribe_ensemble([model], [(frames, mask)], max_length, early_stop, how)


def transcribe_ensemble(
    models: list[FingerspellingModel],
    inputs: list[tuple],
    max_length: int | None = None,
    early_stop: bool = True,
    how: str | None = None,
):
    """`transcribe` for several models at once, each on its own input (frames, mask): attention
    decoding averages the members' per-step log-probabilities, CTC their frame log-probabilities
    (the members must then see as many frames: the same max_frames and time reduction), joint
    both. One model is the plain `transcribe`. The first member's fallback rule applies."""
    first = models[0].cfg
    chosen = first.decoding(how) if how else first
    how = chosen.decode
    for model in models[1:]:
        if (model.cfg.vocab_size, model.cfg.max_length) != (first.vocab_size, first.max_length):
            raise ValueError("ensemble members must share the vocabulary and data.max_phrase_length")
        if how != Decode.attention and (
            model.cfg.max_frames != first.max_frames
            or (model.cfg.encoder.downsample_at is None) != (first.encoder.downsample_at is None)
        ):
            raise ValueError(
                f"decode={how} averages frame log-probabilities: every member needs the same "
                "data.max_frames and the same time reduction (or decode with attention)"
            )
    if how == Decode.ctc:
        tokens = ctc_greedy_decode_ensemble(models, inputs, max_length)
    else:
        joint = chosen.joint_weight if how == Decode.joint else None
        tokens = greedy_decode_ensemble(models, inputs, max_length, early_stop, joint)
    if not first.fallback_frames:
        return tokens
    phrase = tf.constant(first.fallback_tokens[: tokens.shape[1]], tf.int32)[None, :]
    return tf.where(uses_fallback(first, *inputs[0])[:, None], phrase, tokens)


def uses_fallback(cfg, frames, mask):
    """[B] bool: the clips whose signing hand is seen in fewer than cfg.fallback_frames real
    frames."""
    return hand_frames(cfg, frames, mask) < cfg.fallback_frames


def hand_frames(cfg, frames, mask):
    """[B] int32: each clip's real frames that show the signing hand (its features not all NaN:
    detected). The export graph drops the frames without a hand as the prepared data does, so
    both count alike."""
    hand = tf.reduce_any(~tf.math.is_nan(frames[..., : cfg.hand_features]), axis=-1)
    return tf.reduce_sum(tf.cast(hand & tf.cast(mask, tf.bool), tf.int32), axis=1)


def _ctc_scores(outs):
    """The CTC head's logits and mask (one model, as given) or the members' mean
    log-probabilities and the first's mask, from each member's (CTC logits, mask)."""
    if len(outs) == 1:
        return outs[0]
    logp = [tf.nn.log_softmax(tf.cast(logits, tf.float32), axis=-1) for logits, _ in outs]
    return tf.add_n(logp) / len(logp), outs[0][1]


def ctc_greedy_decode(model: FingerspellingModel, frames, mask, max_length: int | None = None):
    """CTC greedy decoding: the most likely class of every real frame, repeats collapsed, blanks
    dropped; then EOS and PAD, as the attention decoder writes them. No loop: the kept characters
    are moved to their places with a comparison of running counts (built-in ops)."""
    return ctc_greedy_decode_ensemble([model], [(frames, mask)], max_length)


def ctc_greedy_decode_ensemble(models, inputs, max_length: int | None = None):
    cfg = models[0].cfg
    length = max_length or cfg.max_length
    outs = [m.ctc_logits(f, tf.cast(k, tf.bool), training=False) for m, (f, k) in zip(models, inputs)]
    logits, mask = _ctc_scores(outs)
    blank = cfg.pad  # the CTC head's last class: characters are 0 .. pad - 1
    best = tf.where(mask, tf.argmax(logits, axis=-1, output_type=tf.int32), blank)  # [B, T']
    previous = tf.concat([tf.fill([tf.shape(best)[0], 1], blank), best[:, :-1]], axis=1)
    keep = (best != blank) & (best != previous)
    place = tf.cumsum(tf.cast(keep, tf.int32), axis=1) - 1  # where each kept character goes
    slots = tf.range(length)
    # [B, L, T']: expand_dims rather than [:, None, :], which the converter leaves unlowered here
    hit = tf.expand_dims(keep, 1) & (tf.expand_dims(place, 1) == slots[:, None])
    chars = tf.reduce_sum(tf.where(hit, tf.expand_dims(best, 1), 0), axis=2)  # [B, L]
    n = tf.minimum(tf.reduce_sum(tf.cast(keep, tf.int32), axis=1), length - 1)[:, None]
    return tf.where(slots[None, :] < n, chars, tf.where(slots[None, :] == n, cfg.eos, cfg.pad))


def greedy_decode(
    model: FingerspellingModel,
    frames,
    mask,
    max_length: int | None = None,
    early_stop: bool = True,
    joint: float | None = None,
):
    """[B, T, F], [B, T] -> [B, max_length] int32 tokens, greedy, with a key/value cache and an
    early stop once every sequence has emitted EOS (positions after EOS hold PAD).
    `early_stop=False` always runs max_length steps (latency of a phrase of known length).
    `joint` (a CTC weight w): each step's choice adds the CTC prefix score of every candidate
    (`CTCPrefixScore`) to the decoder's log-probability, weighted w : 1 - w."""
    return greedy_decode_ensemble([model], [(frames, mask)], max_length, early_stop, joint)


class _Member(NamedTuple):
    """One model's part of a decoding: its memory's keys/values (per decoder block) and mask."""

    model: FingerspellingModel
    memory_kv: list
    memory_bias: tf.Tensor
    dtype: tf.DType


def greedy_decode_ensemble(models, inputs, max_length=None, early_stop=True, joint: float | None = None):
    """`greedy_decode` over several models: each step, every member runs its cached decoder step
    and the members' log-probabilities are averaged (one model: its logits, as they are).

    Joint decoding never lets the CTC head end, for want of frames, the phrase the attention
    decoder is spelling. Where the joint search ends the phrase (EOS), the search goes on with the
    attention decoder's choices. If the clip's CTC frames can spell what it then spelled (n
    characters with r doubled letters need n + r frames), the joint phrase stands, ended where the
    joint search ended it: plain joint decoding. If they cannot, the clip is too short for CTC to
    judge it, and the attention decoder's own phrase is the answer: a second search, the attention
    decoder alone over the same encoder output, for those clips only (inside a conditional: with
    none, it does not run)."""
    cfg = models[0].cfg
    max_length = max_length or cfg.max_length
    members, ctc_outs = [], []
    for model, (frames, mask) in zip(models, inputs):
        encoded, mask = model._encode(frames, tf.cast(mask, tf.bool), training=False)
        if joint is not None:  # the CTC head reads the same encoder pass
            ctc_outs.append((model.ctc_head(encoded), mask))
        memory = model.bridge(encoded)
        dtype = memory.dtype
        memory_kv = [project_memory(block, memory) for block in model.decoder_blocks]
        memory_bias = tf.cast(tf.where(mask, 0.0, _neg(dtype))[:, None, :], dtype)  # [B, 1, T]
        members.append(_Member(model, memory_kv, memory_bias, dtype))
    batch = tf.shape(inputs[0][0])[0]
    if joint is None:
        return _search(members, cfg, batch, max_length, early_stop)[0]
    scorer = CTCPrefixScore(*_ctc_scores(ctc_outs), cfg, cfg.ctc_frames, joint)
    spelled, stop = _search(members, cfg, batch, max_length, early_stop, scorer)
    # the joint search's own phrase: what it spelled up to where it ended it
    positions = tf.range(max_length)[None, :]
    phrase = tf.where(
        positions < _column(stop), spelled, tf.where(positions == _column(stop), cfg.eos, cfg.pad)
    )
    too_short = ctc_min_frames(spelled, cfg.pad) > scorer.length
    return tf.cond(
        tf.reduce_any(too_short),
        lambda: tf.where(
            _column(too_short), _search(members, cfg, batch, max_length, True, done=~too_short)[0], phrase
        ),
        lambda: phrase,
    )


def ctc_min_frames(tokens, chars: int):
    """[B, L] decoded tokens (characters below `chars`, then EOS and PAD) -> [B] the fewest frames
    whose CTC alignment spells them: one per character, one more between doubled letters."""
    is_char = tokens < chars
    doubled = (tokens[:, 1:] == tokens[:, :-1]) & is_char[:, 1:]
    return tf.reduce_sum(tf.cast(is_char, tf.int32), axis=1) + tf.reduce_sum(
        tf.cast(doubled, tf.int32), axis=1
    )


def _search(members, cfg, batch, max_length, early_stop, scorer=None, done=None):
    """The cached greedy search over the members' decoders, jointly with `scorer`'s CTC prefix
    scores when given. `done` [B]: clips not to decode (they get PAD). Returns the tokens
    [B, max_length] and, with a scorer, the step at which the joint search chose EOS [B]
    (max_length: never), after which the tokens are the attention decoder's choices."""
    caches = tuple(
        tf.zeros([batch, max_length, m.model.cfg.decoder.heads, m.model.cfg.decoder.head_dim], m.dtype)
        for m in members
        for _ in m.model.decoder_blocks
        for _ in range(2)  # keys, values
    )
    positions = tf.range(max_length)[None, :]  # [1, L]: no expansion in the loop
    token = tf.fill([batch], tf.constant(cfg.sos, tf.int32))
    if done is None:
        done = tf.zeros([batch], tf.bool)
    else:  # its static size as the loop's own tensors have it
        done = tf.zeros([batch], tf.bool) | done
    out = tf.fill([batch, max_length], tf.constant(cfg.pad, tf.int32))
    joint = scorer is not None
    # with a scorer: the CTC state of the prefix, and the step from which the search follows the
    # attention decoder (max_length: not yet); no loop variables without one
    state = (scorer.initial(), tf.fill([batch], max_length)) if joint else ()

    def body(t, token, done, out, caches, state):
        at_t = positions == t
        new, per_member, offset = (), [], 0
        for member in members:
            model, dtype = member.model, member.dtype
            write = tf.reshape(tf.cast(at_t, dtype), [1, -1, 1, 1])
            self_bias = tf.expand_dims(
                tf.where(positions <= t, tf.constant(0.0, dtype), tf.constant(_neg(dtype), dtype)), 1
            )
            x = _embed(model, token, t, dtype)
            for i, block in enumerate(model.decoder_blocks):
                cache = caches[offset + 2 * i : offset + 2 * i + 2]
                x, kv = decoder_step(
                    block, x, cache, write, self_bias, member.memory_kv[i], member.memory_bias
                )
                new += kv
            offset += 2 * len(model.decoder_blocks)
            per_member.append(_norm_linear(x, model.decoder_norm, *_matrix(model.classifier)))
        if len(per_member) == 1:
            logits = per_member[0]
        else:
            logp = [tf.nn.log_softmax(tf.cast(m, tf.float32), axis=-1) for m in per_member]
            logits = tf.add_n(logp) / len(logp)
        token = tf.argmax(logits, axis=-1, output_type=tf.int32)  # the attention decoder's choice
        if joint:
            prefix, stop = state
            # the attention decoder's log-probabilities are its logits less one normalizer per
            # sequence, which cannot change the argmax: no log-softmax
            scores, chars = scorer.scores(prefix)
            weight = scorer.weight
            joint_scores = (1.0 - weight) * tf.cast(logits, tf.float32) + weight * scores
            choice = tf.argmax(joint_scores, axis=-1, output_type=tf.int32)
            # where the joint search ends the phrase, the attention decoder's choices from then on
            stop = tf.minimum(stop, tf.where(choice == cfg.eos, t, max_length))
            token = tf.where(stop <= t, token, choice)
            state = (scorer.advance(prefix, chars, tf.where(done, cfg.eos, token)), stop)
        token = tf.where(done, cfg.pad, token)
        out = tf.where(at_t, _column(token), out)
        return t + 1, token, done | (token == cfg.eos), out, new, state

    def cond(t, token, done, out, caches, state):
        return (t < max_length) & ~(early_stop & tf.reduce_all(done))

    _, _, _, out, _, state = tf.while_loop(cond, body, (tf.constant(0), token, done, out, caches, state))
    return out, (state[1] if joint else None)


NEG = -1e10  # log of "impossible": finite, so that differences of two stay numbers (no inf - inf)


def _logaddexp(x, y):
    high = tf.maximum(x, y)
    return high + tf.math.log(1.0 + tf.exp(tf.minimum(x, y) - high))


class CTCPrefixScore:
    """CTC prefix scores for joint decoding (Watanabe et al. 2017, as 2nd place used it): for the
    prefix h decoded so far and each candidate character c, log p_ctc(h + c ...) - log p_ctc(h ...),
    the CTC probability that the frames begin with h + c, relative to h's; for EOS,
    log p_ctc(h) - log p_ctc(h ...), the probability that they spell exactly h.

    The state of a prefix, per sequence: `before` [B, T + 1], where before[t] = phi[t - 1] is the
    log probability that the frames before frame t spell exactly h (before[0]: 0 for the empty
    prefix, impossible otherwise); its prefix score; its last character. Ending in a blank is
    r_b[t] = phi[t - 1] + y_blank[t], one addition. h + c then follows the forward recursion
    over frames r_n[t] = (r_n[t - 1] + in[t - 1]) y_c[t] and phi[t] = phi[t - 1] y_blank[t] +
    r_n[t] (`advance`), solved without a loop over frames (built-in TFLite ops, no inner while
    loop) as cumulative log-sum-exps (`_scan`). Padded frames spell a blank with probability 1,
    so the sums stop at each sequence's end. Everything in float32 (log probabilities do not
    fit float16).

    Exact except for one cut-off: a candidate whose prefix probability is more than ~87 nats
    (float32's exp range) below h's scores as impossible (`scores` sums probabilities relative
    to h's); the best candidate is never more than log(V) below h, so such a candidate could
    only win if the attention decoder preferred it by about 83 x joint_weight /
    (1 - joint_weight) nats.

    Written for the exported loop: whatever does not depend on the prefix (every class's frame
    log-probabilities and their running sums) is computed once per sequence, and every tensor
    of the loop has a static shape, so a step is two log-step scans, two products over the
    frames and a few gathers (about 165 TFLite ops, each on at most [C, T])."""

    def __init__(self, ctc_logits, mask, cfg, frames: int, weight: float = 0.0):
        """`frames`: the most frames the CTC head can put out (T' <= frames). The frames are
        padded to it once, so that every tensor of the loop has a static shape and the
        converter folds all shape arithmetic away. `weight`: the scores' weight in a joint
        search (the attention decoder's: 1 - weight)."""
        self.chars, self.eos, self.vocab, self.weight = cfg.pad, cfg.eos, cfg.vocab_size, weight
        logits = tf.cast(ctc_logits, tf.float32)  # [B, T', C + 1]
        batch, extra = _dim(logits, 0), frames - tf.shape(logits)[1]
        logits = tf.reshape(tf.pad(logits, [[0, 0], [0, extra], [0, 0]]), [batch, frames, self.chars + 1])
        real = tf.reshape(tf.pad(tf.cast(mask, tf.bool), [[0, 0], [0, extra]]), [batch, frames])
        self.length = tf.reduce_sum(tf.cast(real, tf.int32), axis=1)  # [B]: each clip's frames
        # every frame's character probabilities relative to its likeliest character (max 1 per
        # frame), for `scores`, as [B, C, T]: its matrix product then contracts both operands'
        # last axes, which TFLite's BATCH_MATMUL does without a transpose at run time; with the
        # blank, the log-softmax's normalizer: one exp over [T, C] (a blank far likelier than
        # every character cannot overflow it)
        char_logits = tf.transpose(logits[..., : self.chars], [0, 2, 1])  # [B, C, T]
        top = tf.reduce_max(char_logits, axis=1)  # [B, T]
        self.p_char = tf.exp(char_logits - tf.expand_dims(top, 1))  # [B, C, T]
        blank = logits[..., self.chars]
        norm = _logaddexp(top + tf.math.log(tf.reduce_sum(self.p_char, axis=1)), blank)  # [B, T]
        self.top_char = tf.where(real, top - norm, NEG)  # the likeliest character's log-prob
        y_blank = tf.where(real, blank - norm, 0.0)  # [B, T]
        self.blank_head = y_blank[:, :-1]  # [B, T - 1]: r_b[t] = phi[t - 1] + y_blank[t]
        # running sums of log-probabilities from frame 1: the scans' s (`_scan`)
        self.s_blank = tf.cumsum(_from_frame_1(y_blank), axis=1)  # [B, T]
        y_char = tf.where(tf.expand_dims(real, 1), char_logits - tf.expand_dims(norm, 1), NEG)
        s_char = tf.cumsum(_from_frame_1(y_char), axis=2)  # [B, C, T]
        # per character: what its r_n scan adds to `before` (b - s: y_c[t] - s_c[t]), and what
        # turns r_n - s_c into the phi scan's input r_n - s_blank
        self.char_in = y_char - s_char
        self.char_to_blank = s_char - tf.expand_dims(self.s_blank, 1)
        # the empty prefix: before frame 0 certain; then every frame a blank
        self.empty = tf.concat([tf.zeros([batch, 1]), tf.cumsum(y_blank, axis=1)], axis=1)

    def initial(self):
        """The empty prefix: nothing yet; every frame so far a blank."""
        batch = _dim(self.empty, 0)
        return self.empty, tf.zeros([batch]), tf.fill([batch], -1)

    @staticmethod
    def _scan(a):
        """The recursion r[t] = r[t - 1] y[t] + b[t] solved for all t at once: r[t] = sum over
        tau <= t of b[tau] prod_{s = tau + 1..t} y[s]; in logs, with s the running sum of
        log y from frame 1, r = s + logcumsumexp(b - s). Given a = b - s [B, T]; returns r - s,
        the log of the running sum of exp(a), exact at any range of a (a single shift would
        underflow the early frames when later terms are far larger). A log-step scan (Hillis and
        Steele): round k adds to every frame the running sum that ends 2^k frames earlier, with a
        stable log-add-exp; ceil(log2 T) rounds of a few ops on [B, T], which TFLite runs about
        twice as fast as a masked log-sum-exp over chunks of frames (its reductions over short
        axes are slow)."""
        frames, shift = a.shape[1], 1
        while shift < frames:
            a = _logaddexp(a, _later(_frames(a, 0, -shift), shift))
            shift *= 2
        return a

    def _after_blank(self, before):
        """[B, T]: r_b[t - 1], h ending in a blank at the frame before t (nothing at frame 0)."""
        head = _frames(before, 0, -2) + self.blank_head  # phi[t - 2] + y_blank[t - 1], t >= 1
        return _later(head, 1)

    def scores(self, prefix):
        """[B, V] score of every token after the prefix (characters, EOS; others impossible),
        and the characters' part [B, C] that `advance` reuses."""
        before, score, last = prefix
        frames = _dim(self.top_char, 1)
        # h + c starts at frame t after h by frame t - 1: before[t] y_c[t]; when c repeats h's
        # last character, only r_b[t - 1] y_c[t] (a blank between). Each for every c as
        # element-wise products summed over the frames: with y_c[t] = top_char[t] p_char[c, t],
        # sum_t exp(start[t]) p_char[c, t], start = ... + top_char[t]. No term exceeds h's own
        # prefix probability (`score`), so relative to it none overflows. (A [2, T] x [T, C]
        # BATCH_MATMUL made LiteRT's XNNPACK repack p_char at every step; the choice between the
        # two comes before the log, which then runs once.)
        offset = self.top_char - _column(score)

        def reach(start):  # [B, T] -> [B, C]: sum_t exp(start[t]) y_c[t], relative to h
            weights = tf.expand_dims(tf.exp(start + offset), 1)  # each <= 1
            return tf.reduce_sum(weights * self.p_char, axis=-1)

        repeat = tf.one_hot(last, self.chars, on_value=True, off_value=False)  # none for -1
        total = tf.where(repeat, reach(self._after_blank(before)), reach(_frames(before, 0, frames)))
        chars = tf.where(total > 0, tf.math.log(tf.maximum(total, 1e-38)), NEG)  # [B, C]
        eos = _frames(before, frames, frames + 1) - _column(score)  # the frames spell exactly h
        others = tf.fill([_dim(before, 0), self.vocab - self.chars], NEG)
        eos_column = tf.range(self.vocab - self.chars)[None, :] == self.eos - self.chars
        return tf.concat([chars, tf.where(eos_column, eos, others)], axis=1), chars

    def advance(self, prefix, chars, token):
        """The state of h + token; `chars`: what `scores` gave for the characters. A token that
        is no character (EOS, or PAD once done) ends the sequence: its state after that is
        never read, so it is advanced as if by the last character rather than kept."""
        before, score, last = prefix
        c = tf.minimum(token, self.chars - 1)
        # r_n: h + c after h by frame t - 1, or after a blank when c repeats h's last character
        into = tf.where(_column(c == last), self._after_blank(before), _frames(before, 0, -1))
        n_less_s = self._scan(into + tf.gather(self.char_in, c, axis=1, batch_dims=1))
        # phi[t] = phi[t - 1] y_blank[t] + r_n[t]: the blank's scan over r_n
        phi = self.s_blank + self._scan(n_less_s + tf.gather(self.char_to_blank, c, axis=1, batch_dims=1))
        new = _later(phi, 1)
        return new, score + tf.gather(chars, c, batch_dims=1), c


def _later(a, frames: int):
    """a [B, T] moved `frames` frames later: that many impossible (NEG) frames in front."""
    return tf.concat([tf.fill([_dim(a, 0), frames], NEG), a], axis=1)


def _frames(a, start: int, stop: int):
    """a[:, start:stop] of a [B, T] (stop < 0 counts from the end), as a slice with a static
    begin and size where the shape is known."""
    stop = stop if stop >= 0 else _dim(a, 1) + stop
    return tf.slice(a, [0, start], [_dim(a, 0), stop - start])


def _from_frame_1(y):
    """y [B, T] or [B, C, T] with its first frame zeroed: a running sum then starts at frame 1.
    (Multiplied by a mask: one op, where slicing needs a slice, zeros and a concatenation.)"""
    return y * tf.cast(tf.range(_dim(y, len(y.shape) - 1)) > 0, y.dtype)


def _dim(x, axis: int):
    """x's size along `axis`: a Python int where the graph knows it (the export's shapes are
    static, and static sizes let the converter fold the shape arithmetic), else a tensor."""
    return x.shape[axis] if x.shape[axis] is not None else tf.shape(x)[axis]


def _column(x):
    """[B] -> [B, 1] (expand_dims: x[:, None] costs the export a RESHAPE and a STRIDED_SLICE)."""
    return tf.expand_dims(x, 1)


def decoder_step(block: DecoderBlock, x, caches, write, self_bias, memory_kv, memory_bias):
    """One new position x [B, W] (2-D: no shape arithmetic in the exported loop), mean-zero
    (`_centered`): write its key and value into the caches ([B, L, H, D]) at the position
    `write` [1, L, 1, 1] marks, attend over the cached positions `self_bias` allows and over the
    pre-projected encoder memory. Inference only; each norm's scale and offset are folded
    into the matmul that follows it."""
    # The folded matrices are built here, inside the loop body, on purpose: the converter
    # turns them into constants of the body (built outside the loop, they would enter the
    # TFLite WHILE as loop inputs). In Keras they cost a few small ops per step.
    sa, ca = block.self_attention, block.cross_attention
    heads, dim = sa.num_heads, sa.key_dim
    scale = 1.0 / dim**0.5
    (q, qb), (k, kb), (v, vb) = (
        _matrix(sa.query_dense, scale),
        _matrix(sa.key_dense),
        _matrix(sa.value_dense),
    )
    qkv = _norm_linear(x, block.norm1, tf.concat([q, k, v], 1), tf.concat([qb, kb, vb], 0))
    q, k, v = tf.split(qkv, 3, axis=1)
    q, k, v = (tf.reshape(a, [-1, 1, heads, dim]) for a in (q, k, v))
    # position t of the caches is still 0 (each position is written once, at its own step), so
    # adding the new key/value there is exact: no multiplication of the whole cache to clear it
    cache_k, cache_v = caches[0] + k * write, caches[1] + v * write
    x = x + _linear(_attend_cache(q, cache_k, cache_v, self_bias), *_centered(sa.output_dense))
    q = tf.reshape(_norm_linear(x, block.norm2, *_matrix(ca.query_dense, scale)), [-1, heads, dim, 1])
    x = x + _linear(_attend_memory(q, *memory_kv, memory_bias), *_centered(ca.output_dense))
    dense1, _, dense2 = block.mlp.layers
    h = dense1.activation(_norm_linear(x, block.norm3, *_matrix(dense1)))
    return x + _linear(h, *_centered(dense2)), (cache_k, cache_v)


def project_memory(block: DecoderBlock, memory):
    """Cross-attention keys and values [B, H, D, T] of the encoder memory, once per sequence."""
    ca = block.cross_attention
    return tuple(tf.transpose(dense(memory), [0, 2, 3, 1]) for dense in (ca.key_dense, ca.value_dense))


def _neg(dtype) -> float:
    """An additive mask value that zeroes a softmax weight in this dtype (as Keras does)."""
    return -3e4 if dtype == tf.float16 else -1e9


def _matrix(dense, scale: float = 1.0):
    """A Dense/EinsumDense layer's kernel and bias as a [inputs, outputs] matrix and a vector."""
    bias = tf.reshape(tf.convert_to_tensor(dense.bias), [-1])
    return tf.reshape(tf.convert_to_tensor(dense.kernel), [-1, bias.shape[0]]) * scale, bias * scale


def _centered(dense):
    """`_matrix` with every output's mean over the outputs taken out: a residual branch that
    adds mean-zero vectors keeps the decoder's stream mean-zero (`_embed` starts it so), and
    each layer norm then needs no mean."""
    kernel, bias = _matrix(dense)
    return kernel - tf.reduce_mean(kernel, axis=1, keepdims=True), bias - tf.reduce_mean(bias)


def _embed(model, token, t, dtype):
    """The decoder's input at step t: token and position embedding, each with its mean taken
    out (layer norms ignore a vector's mean; see `_centered`)."""
    table = model.token_embedding.embeddings
    rows = tf.gather(table - tf.reduce_mean(table, axis=1, keepdims=True), token)
    positions = model.token_position
    position = tf.gather(positions - tf.reduce_mean(positions, axis=1, keepdims=True), t)
    return tf.cast(rows + position, dtype)


def _linear(x, kernel, bias):
    # one FULLY_CONNECTED op in TFLite; the casts are no-ops in float32
    return tf.matmul(x, tf.cast(kernel, x.dtype)) + tf.cast(bias, x.dtype)


def _norm_linear(x, norm: layers.LayerNormalization, kernel, bias):
    """norm(x) @ kernel + bias, with the norm's scale and offset folded into the matmul:
    (n * gamma + beta) @ K + c == n @ (gamma[:, None] * K) + (beta @ K + c); in the exported
    graph the folded weights are constants. Statistics in at least float32, as Keras does."""
    dtype = x.dtype
    x = tf.cast(x, tf.float32) if dtype in (tf.float16, tf.bfloat16) else x
    var = tf.reduce_mean(tf.square(x), axis=-1, keepdims=True)  # x is mean-zero (`_centered`)
    n = tf.cast(x * tf.math.rsqrt(var + norm.epsilon), dtype)
    gamma, beta = tf.convert_to_tensor(norm.gamma), tf.convert_to_tensor(norm.beta)
    return _linear(n, gamma[:, None] * kernel, tf.linalg.matvec(kernel, beta, transpose_a=True) + bias)


def _attend_memory(q, keys, values, bias):
    """q [B, H, D, 1] over the memory's keys and values [B, H, D, T] (+ additive mask bias
    [B, 1, T]) -> [B, H * D]. Element-wise products summed rather than two matrix products: for
    one query TFLite's BATCH_MATMUL runs a separate matrix-vector product per head and was
    slower (`bench/export_latency.py`, model=large). Both products run along rows of T frames."""
    weights = tf.nn.softmax(tf.reduce_sum(q * keys, axis=2) + bias, axis=-1)  # [B, H, T]
    out = tf.reduce_sum(tf.expand_dims(weights, 2) * values, axis=-1)  # [B, H, D]
    return tf.reshape(out, [-1, out.shape[1] * out.shape[2]])


def _attend_cache(q, keys, values, bias):
    """q [B, 1, H, D] over the cached keys and values [B, L, H, D] (+ additive mask bias
    [1, 1, L]) -> [B, H * D]. The products run along rows of H x D; the two transposes of the
    [H, L] weights (the softmax takes the last axis) are tiny."""
    scores = tf.transpose(tf.reduce_sum(q * keys, axis=-1), [0, 2, 1])  # [B, H, L]
    weights = tf.transpose(tf.nn.softmax(scores + bias, axis=-1), [0, 2, 1])  # [B, L, H]
    out = tf.reduce_sum(tf.expand_dims(weights, -1) * values, axis=1)  # [B, H, D]
    return tf.reshape(out, [-1, out.shape[1] * out.shape[2]])
