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


def greedy_decode(
    model: FingerspellingModel, frames, mask, max_length: int | None = None, early_stop: bool = True
):
    """[B, T, F], [B, T] -> [B, max_length] int32 tokens, greedy, with a key/value cache and an
    early stop once every sequence has emitted EOS (positions after EOS hold PAD).
    `early_stop=False` always runs max_length steps (latency of a phrase of known length)."""
    cfg = model.cfg
    max_length = max_length or cfg.max_length
    batch = tf.shape(frames)[0]
    mask = tf.cast(mask, tf.bool)
    memory = model.encode(frames, mask, training=False)
    dtype = memory.dtype
    memory_kv = [project_memory(block, memory) for block in model.decoder_blocks]
    memory_bias = tf.cast(tf.where(mask, 0.0, _neg(dtype))[:, None, None, :], dtype)  # [B,1,1,T]
    heads, key_dim = cfg.decoder.heads, cfg.decoder.head_dim
    caches = tuple(
        tf.zeros(shape, dtype)
        for _ in model.decoder_blocks
        for shape in (
            [batch, heads, max_length, key_dim],  # keys
            [batch, heads, key_dim, max_length],
        )
    )  # values, transposed
    positions = tf.range(max_length)
    token = tf.fill([batch], tf.constant(cfg.sos, tf.int32))
    done = tf.zeros([batch], tf.bool)
    out = tf.fill([batch, max_length], tf.constant(cfg.pad, tf.int32))

    def body(t, token, done, out, caches):
        at_t = positions == t
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
        new = ()
        for i, block in enumerate(model.decoder_blocks):
            x, kv = decoder_step(
                block, x, caches[2 * i : 2 * i + 2], write, self_bias, memory_kv[i], memory_bias
            )
            new += kv
        logits = _norm_linear(x, model.decoder_norm, *_matrix(model.classifier))
        token = tf.argmax(logits, axis=-1, output_type=tf.int32)
        token = tf.where(done, cfg.pad, token)
        out = tf.where(at_t[None, :], token[:, None], out)
        return t + 1, token, done | (token == cfg.eos), out, new

    def cond(t, token, done, out, caches):
        return (t < max_length) & ~(early_stop & tf.reduce_all(done))

    _, _, _, out, _ = tf.while_loop(cond, body, (tf.constant(0), token, done, out, caches))
    return out


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
