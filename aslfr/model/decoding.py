"""Greedy decoding with a key/value cache, for the validation metric and the exported TFLite graph.

`greedy_decode` encodes once, projects the encoder memory's cross-attention keys/values once per
sequence (`project_memory`), then runs the decoder one token at a time (`decoder_step`): each step
projects only the new token's query/key/value, writes its key/value into the caches and attends
over the cached positions (earlier positions are never recomputed), stopping when every sequence
has emitted EOS.

    memory [B, T, Wd] -> keys [B, H, T, D], values transposed [B, H, D, T]   (once)
    token [B] -> x [B, Wd] -> decoder_step x depth -> logits [B, V] -> token  (per step)
    caches per block: keys [B, H, L, D], values transposed [B, H, D, L]

Each step is written for the exported loop: 2-D [B, W] tensors (no shape arithmetic), one fused
query/key/value matmul, every layer norm's scale and offset folded into the matmul after it, and
cache writes as exact arithmetic with a one-hot of the position.
"""

from __future__ import annotations

from typing import NamedTuple

import tensorflow as tf
from keras import layers

from aslfr.model.layers import DecoderBlock
from aslfr.model.model import FingerspellingModel


def decode(
    model: FingerspellingModel,
    frames,
    mask,
    max_length: int | None = None,
    early_stop: bool = True,
    how: str | None = None,
):
    """[B, T, F], [B, T] -> [B, max_length] int32 tokens (characters, EOS, then PAD), decoded as
    model.decode says (or `how`): attention, ctc or joint. `early_stop=False` runs every attention
    step (the latency of a phrase of known length)."""
    return ensemble_decode([model], [(frames, mask)], max_length, early_stop, how)


def ensemble_decode(
    models: list[FingerspellingModel],
    inputs: list[tuple],
    max_length: int | None = None,
    early_stop: bool = True,
    how: str | None = None,
):
    """`decode` for several models at once, each on its own input (frames, mask): attention
    decoding averages the members' per-step log-probabilities, CTC their frame log-probabilities
    (the members must then see as many frames: the same max_frames and time reduction), joint
    both. One model is the plain `decode`. The first member's fallback rule applies."""
    first = models[0].cfg
    how = how or first.decode
    for model in models[1:]:
        if (model.cfg.vocab_size, model.cfg.max_length) != (first.vocab_size, first.max_length):
            raise ValueError("ensemble members must share the vocabulary and data.max_phrase_length")
        if how != "attention" and (
            model.cfg.max_frames != first.max_frames
            or (model.cfg.encoder.downsample_at is None) != (first.encoder.downsample_at is None)
        ):
            raise ValueError(
                f"decode={how} averages frame log-probabilities: every member needs the same "
                "data.max_frames and the same time reduction (or decode with attention)"
            )
    if how == "ctc":
        tokens = ctc_greedy_decode_ensemble(models, inputs, max_length)
    else:
        tokens = greedy_decode_ensemble(models, inputs, max_length, early_stop, joint=how == "joint")
    if not first.fallback_frames:
        return tokens
    phrase = tf.constant(first.fallback_tokens[: tokens.shape[1]], tf.int32)[None, :]
    return tf.where(uses_fallback(first, *inputs[0])[:, None], phrase, tokens)


def uses_fallback(cfg, frames, mask):
    """[B] bool: the clips whose signing hand is seen in fewer than cfg.fallback_frames real
    frames (its features all NaN: not detected). The export graph drops the frames without a
    hand as the prepared data does, so both count alike."""
    hand = tf.reduce_any(~tf.math.is_nan(frames[..., : cfg.hand_features]), axis=-1)
    seen = tf.reduce_sum(tf.cast(hand & tf.cast(mask, tf.bool), tf.int32), axis=1)
    return seen < cfg.fallback_frames


def _ctc_scores(models, inputs):
    """The CTC head's logits (one model) or the members' mean log-probabilities, and the mask."""
    outs = [m.ctc_logits(f, tf.cast(k, tf.bool), training=False) for m, (f, k) in zip(models, inputs)]
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
    logits, mask = _ctc_scores(models, inputs)
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
    joint: bool = False,
):
    """[B, T, F], [B, T] -> [B, max_length] int32 tokens, greedy, with a key/value cache and an
    early stop once every sequence has emitted EOS (positions after EOS hold PAD).
    `early_stop=False` always runs max_length steps (latency of a phrase of known length).
    `joint`: each step's choice adds the CTC prefix score of every candidate (`CTCPrefixScore`)
    to the decoder's log-probability, weighted model.joint_weight : 1 - model.joint_weight."""
    return greedy_decode_ensemble([model], [(frames, mask)], max_length, early_stop, joint)


class _Member(NamedTuple):
    """One model's part of a decoding: its memory's keys/values (per decoder block) and mask."""

    model: FingerspellingModel
    memory_kv: list
    memory_bias: tf.Tensor
    dtype: tf.DType


def greedy_decode_ensemble(models, inputs, max_length=None, early_stop=True, joint=False):
    """`greedy_decode` over several models: each step, every member runs its cached decoder step
    and the members' log-probabilities are averaged (one model: its logits, as they are)."""
    cfg = models[0].cfg
    max_length = max_length or cfg.max_length
    batch = tf.shape(inputs[0][0])[0]
    members, caches = [], ()
    for model, (frames, mask) in zip(models, inputs):
        encoded, mask = model._encode(frames, tf.cast(mask, tf.bool), training=False)
        memory = model.bridge(encoded)
        dtype = memory.dtype
        memory_kv = [project_memory(block, memory) for block in model.decoder_blocks]
        memory_bias = tf.cast(tf.where(mask, 0.0, _neg(dtype))[:, None, None, :], dtype)  # [B,1,1,T]
        members.append(_Member(model, memory_kv, memory_bias, dtype))
        heads, key_dim = model.cfg.decoder.heads, model.cfg.decoder.head_dim
        caches += tuple(
            tf.zeros(shape, dtype)
            for _ in model.decoder_blocks
            for shape in (
                [batch, heads, max_length, key_dim],  # keys
                [batch, heads, key_dim, max_length],  # values, transposed
            )
        )
    scorer = CTCPrefixScore(*_ctc_scores(models, inputs), cfg) if joint else None
    positions = tf.range(max_length)
    token = tf.fill([batch], tf.constant(cfg.sos, tf.int32))
    done = tf.zeros([batch], tf.bool)
    out = tf.fill([batch, max_length], tf.constant(cfg.pad, tf.int32))
    prefix = scorer.initial() if joint else ()

    def body(t, token, done, out, caches, prefix):
        at_t = positions == t
        new, per_member, offset = (), [], 0
        for member in members:
            model, dtype = member.model, member.dtype
            one_hot = tf.cast(at_t, dtype)
            write = _Write(
                tf.reshape(one_hot, [1, 1, -1, 1]),
                tf.reshape(1 - one_hot, [1, 1, -1, 1]),
                tf.reshape(one_hot, [1, 1, 1, -1]),
                tf.reshape(1 - one_hot, [1, 1, 1, -1]),
            )
            self_bias = tf.reshape(
                tf.where(positions <= t, tf.constant(0.0, dtype), tf.constant(_neg(dtype), dtype)),
                [1, 1, 1, max_length],
            )
            x = model.token_embedding(token) + tf.cast(tf.gather(model.token_position, t), dtype)
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
        if joint:
            attention = tf.nn.log_softmax(tf.cast(logits, tf.float32), axis=-1)
            scores, extended = scorer.scores(prefix)
            weight = cfg.joint_weight
            token = tf.argmax((1.0 - weight) * attention + weight * scores, axis=-1, output_type=tf.int32)
            prefix = scorer.advance(prefix, extended, tf.where(done, cfg.eos, token))
        else:
            token = tf.argmax(logits, axis=-1, output_type=tf.int32)
        token = tf.where(done, cfg.pad, token)
        out = tf.where(at_t[None, :], token[:, None], out)
        return t + 1, token, done | (token == cfg.eos), out, new, prefix

    def cond(t, token, done, out, caches, prefix):
        return (t < max_length) & ~(early_stop & tf.reduce_all(done))

    loop = (tf.constant(0), token, done, out, caches, prefix)
    _, _, _, out, _, _ = tf.while_loop(cond, body, loop)
    return out


NEG = -1e10  # log of "impossible": finite, so that differences of two stay numbers (no inf - inf)
CHUNK = 16  # frames per chunk of the forward recursion's two-level scan


def _logsumexp(x, axis):
    """Stable log-sum-exp in five built-in ops (inputs finite: NEG, never -inf)."""
    top = tf.reduce_max(x, axis=axis, keepdims=True)
    return tf.squeeze(top, axis) + tf.math.log(tf.reduce_sum(tf.exp(x - top), axis=axis))


def _logaddexp(x, y):
    high = tf.maximum(x, y)
    return high + tf.math.log(1.0 + tf.exp(tf.minimum(x, y) - high))


class CTCPrefixScore:
    """CTC prefix scores for joint decoding (Watanabe et al. 2017, as 2nd place used it): for the
    prefix h decoded so far and each candidate character c, log p_ctc(h + c ...) - log p_ctc(h ...),
    the CTC probability that the frames begin with h + c, relative to h's; for EOS,
    log p_ctc(h) - log p_ctc(h ...), the probability that they spell exactly h.

    The state of a prefix, per sequence: r_n[t] and r_b[t] (log probabilities that the first t + 1
    frames spell h ending in its last character / in a blank), its prefix score and last
    character. The forward recursion over frames, r[t] = (r[t - 1] + phi[t - 1]) y[t], is solved
    without a loop over frames (built-in TFLite ops, no inner while loop): r[t] = sum over
    tau <= t of b[tau] prod_{s = tau + 1..t} y[s], a cumulative log-sum-exp (`_forward`).
    Padded frames spell a blank with probability 1, so the sums stop at each sequence's end.
    Everything in float32 (log probabilities do not fit float16).

    Exact except for one cut-off: a candidate character whose prefix probability is more than
    ~87 nats (float32's exp range) below the best candidate's scores as impossible (`scores`
    sums probabilities in one matrix product). Against the best candidate such a character
    could only win if the attention decoder preferred it by 87 x joint_weight / (1 - joint_weight)
    nats."""

    def __init__(self, ctc_logits, mask, cfg):
        self.chars, self.eos, self.vocab = cfg.pad, cfg.eos, cfg.vocab_size
        y = tf.nn.log_softmax(tf.cast(ctc_logits, tf.float32), axis=-1)  # [B, T', C + 1]
        real = tf.cast(mask, tf.bool)[..., None]
        self.y_char = tf.where(real, y[..., : self.chars], NEG)  # [B, T', C]
        self.y_blank = tf.where(real[..., 0], y[..., self.chars], 0.0)  # [B, T']
        # every frame's character probabilities relative to its likeliest character, for `scores`
        self.top_char = tf.reduce_max(self.y_char, axis=2)  # [B, T']
        self.p_char = tf.exp(self.y_char - self.top_char[..., None])  # [B, T', C], max 1 per frame
        # the scan's masks: within a chunk (frame j <= frame k) and across chunks (chunk j < n)
        self.within = tf.range(CHUNK)[None, :] <= tf.range(CHUNK)[:, None]  # [k, j]
        chunks = (tf.shape(y)[1] + CHUNK - 1) // CHUNK
        self.before = tf.range(chunks)[None, :] < tf.range(chunks)[:, None]  # [n, j]

    def initial(self):
        """The empty prefix: nothing yet; every frame so far a blank."""
        batch = tf.shape(self.y_blank)[0]
        r_n = tf.fill(tf.shape(self.y_blank), NEG)
        r_b = tf.cumsum(self.y_blank, axis=1)
        return r_n, r_b, tf.zeros([batch]), tf.fill([batch], -1)

    def _logcumsumexp(self, a):
        """[B, T'] -> [B, T']: log of the running sum of exp(a), exact at any range of a (a
        single shift would underflow the early frames when later terms are far larger). Two
        levels: within chunks of CHUNK frames a masked [CHUNK, CHUNK] log-sum-exp, across
        chunks another over the chunks' totals: T' x CHUNK terms instead of T' x T'."""
        batch, frames = tf.shape(a)[0], tf.shape(a)[1]
        a = tf.pad(a, [[0, 0], [0, (CHUNK - frames % CHUNK) % CHUNK]], constant_values=NEG)
        x = tf.reshape(a, [batch, -1, CHUNK])  # [B, N, K]
        within = _logsumexp(tf.where(self.within, tf.expand_dims(x, 2), NEG), axis=3)  # [B, N, K]
        totals = within[:, :, -1]  # [B, N]
        before = _logsumexp(tf.where(self.before, tf.expand_dims(totals, 1), NEG), axis=2)  # [B, N]
        out = _logaddexp(within, tf.expand_dims(before, 2))
        return tf.reshape(out, [batch, -1])[:, :frames]

    def _forward(self, first, terms, y):
        """r[t] = logsumexp over tau <= t of (b[tau] + sum_{s = tau + 1..t} y[s]), with b[0] =
        `first` and b[tau] = terms[tau - 1] + y[tau]: [B, T'] -> [B, T']. With s the running
        sum of y (from frame 1), r = s + logcumsumexp(b - s)."""
        b = tf.concat([first[:, None], terms[:, :-1] + y[:, 1:]], axis=1)
        s = tf.cumsum(tf.concat([tf.zeros_like(y[:, :1]), y[:, 1:]], axis=1), axis=1)
        return s + self._logcumsumexp(b - s)

    def scores(self, prefix):
        """[B, V] score of every token after the prefix (characters, EOS; others impossible),
        and the prefix scores of h + c [B, C] that `advance` reuses."""
        r_n, r_b, score, last = prefix
        empty = last < 0
        phi = _logaddexp(r_n, r_b)  # [B, T']
        # h + c starts at frame t: phi[t - 1] + y_c[t]; at frame 0 only when h is empty
        start = tf.concat([tf.where(empty, 0.0, NEG)[:, None], phi[:, :-1]], axis=1) + self.top_char
        shift = tf.reduce_max(start, axis=1, keepdims=True)  # [B, 1]
        weights = tf.expand_dims(tf.exp(start - shift), 1)  # [B, 1, T']
        total = tf.squeeze(tf.matmul(weights, self.p_char), 1)  # [B, C]
        extended = shift + tf.math.log(tf.maximum(total, 1e-38))
        extended = tf.where(total > 0, extended, NEG)
        # repeating h's last character needs a blank between: only r_b paths lead to it
        y_last = tf.gather(self.y_char, tf.maximum(last, 0), axis=2, batch_dims=1)  # [B, T']
        never = tf.fill([tf.shape(r_b)[0], 1], NEG)
        again = _logsumexp(tf.concat([never, r_b[:, :-1] + y_last[:, 1:]], axis=1), axis=1)
        is_last = tf.range(self.chars)[None, :] == last[:, None]
        extended = tf.where(is_last, again[:, None], extended)
        ended = _logaddexp(r_n[:, -1], r_b[:, -1])
        chars = extended - score[:, None]
        eos = (ended - score)[:, None]
        others = tf.fill([tf.shape(chars)[0], self.vocab - self.chars], NEG)
        eos_column = tf.range(self.vocab - self.chars)[None, :] == self.eos - self.chars
        return tf.concat([chars, tf.where(eos_column, eos, others)], axis=1), extended

    def advance(self, prefix, extended, token):
        """The state of h + token (unchanged where token is not a character: EOS, or done)."""
        r_n, r_b, score, last = prefix
        is_char = token < self.chars
        c = tf.minimum(token, self.chars - 1)
        y_c = tf.gather(self.y_char, c, axis=2, batch_dims=1)  # [B, T']
        phi = tf.where((c == last)[:, None], r_b, _logaddexp(r_n, r_b))
        first = tf.where(last < 0, y_c[:, 0], NEG)
        new_n = self._forward(first, phi, y_c)
        new_b = self._forward(tf.fill(tf.shape(first), NEG), new_n, self.y_blank)
        new_score = tf.gather(extended, c, axis=1, batch_dims=1)
        keep = is_char[:, None]
        return (
            tf.where(keep, new_n, r_n),
            tf.where(keep, new_b, r_b),
            tf.where(is_char, new_score, score),
            tf.where(is_char, c, last),
        )


def decoder_step(block: DecoderBlock, x, caches, write, self_bias, memory_kv, memory_bias):
    """One new position x [B, W] (2-D: no shape arithmetic in the exported loop): write its
    key and value into the caches (keys [B, H, L, D], values transposed [B, H, D, L]) at the
    position `write` marks, attend over the cached positions `self_bias` allows and over the
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
    q, k = tf.reshape(q, [-1, heads, 1, dim]), tf.reshape(k, [-1, heads, 1, dim])
    cache_k = caches[0] * write.keep_rows + k * write.rows  # exact: one term is 0
    cache_v = caches[1] * write.keep_cols + tf.reshape(v, [-1, heads, dim, 1]) * write.cols
    x = x + _linear(_attend(q, cache_k, cache_v, self_bias), *_matrix(sa.output_dense))
    q = tf.reshape(_norm_linear(x, block.norm2, *_matrix(ca.query_dense, scale)), [-1, heads, 1, dim])
    x = x + _linear(_attend(q, *memory_kv, memory_bias), *_matrix(ca.output_dense))
    dense1, _, dense2 = block.mlp.layers
    h = dense1.activation(_norm_linear(x, block.norm3, *_matrix(dense1)))
    return x + _linear(h, *_matrix(dense2)), (cache_k, cache_v)


def project_memory(block: DecoderBlock, memory):
    """Cross-attention keys [B, H, T, D] and transposed values [B, H, D, T] of the encoder
    memory, once per sequence."""
    ca = block.cross_attention
    return (
        tf.transpose(ca.key_dense(memory), [0, 2, 1, 3]),
        tf.transpose(ca.value_dense(memory), [0, 2, 3, 1]),
    )


class _Write(NamedTuple):
    """Where a step writes into the caches: one-hot of position t and its complement, shaped for
    the keys [B, H, L, D] (rows) and the transposed values [B, H, D, L] (cols)."""

    rows: tf.Tensor
    keep_rows: tf.Tensor
    cols: tf.Tensor
    keep_cols: tf.Tensor


def _neg(dtype) -> float:
    """An additive mask value that zeroes a softmax weight in this dtype (as Keras does)."""
    return -3e4 if dtype == tf.float16 else -1e9


def _matrix(dense, scale: float = 1.0):
    """A Dense/EinsumDense layer's kernel and bias as a [inputs, outputs] matrix and a vector."""
    bias = tf.reshape(tf.convert_to_tensor(dense.bias), [-1])
    return tf.reshape(tf.convert_to_tensor(dense.kernel), [-1, bias.shape[0]]) * scale, bias * scale


def _linear(x, kernel, bias):
    # one FULLY_CONNECTED op in TFLite; the casts are no-ops in float32
    return tf.matmul(x, tf.cast(kernel, x.dtype)) + tf.cast(bias, x.dtype)


def _norm_linear(x, norm: layers.LayerNormalization, kernel, bias):
    """norm(x) @ kernel + bias, with the norm's scale and offset folded into the matmul:
    (n * gamma + beta) @ K + c == n @ (gamma[:, None] * K) + (beta @ K + c); in the exported
    graph the folded weights are constants. Statistics in at least float32, as Keras does."""
    dtype = x.dtype
    x = tf.cast(x, tf.float32) if dtype in (tf.float16, tf.bfloat16) else x
    centered = x - tf.reduce_mean(x, axis=-1, keepdims=True)
    var = tf.reduce_mean(tf.square(centered), axis=-1, keepdims=True)
    n = tf.cast(centered * tf.math.rsqrt(var + norm.epsilon), dtype)
    gamma, beta = tf.convert_to_tensor(norm.gamma), tf.convert_to_tensor(norm.beta)
    return _linear(n, gamma[:, None] * kernel, tf.linalg.matvec(kernel, beta, transpose_a=True) + bias)


def _attend(q, keys, values, bias):
    """q [B, H, 1, D] over keys [B, H, S, D] and transposed values [B, H, D, S] (+ additive
    mask bias [., ., 1, S]) -> [B, H * D]. Both matmuls contract the operands' last axes, which
    TFLite's BATCH_MATMUL does without transposing anything at run time."""
    weights = tf.nn.softmax(tf.matmul(q, keys, transpose_b=True) + bias, axis=-1)
    out = tf.matmul(weights, values, transpose_b=True)
    return tf.reshape(out, [-1, out.shape[1] * out.shape[3]])
