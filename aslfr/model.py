"""The encoder-decoder transformer over landmark frames (Keras 3 on TensorFlow), readable top to bottom.

frames [B, T, F] (NaN = not detected) --FrameEmbedding--> [B, T, We]
  --EncoderBlock x depth (self-attention over real frames only)--> memory [B, T, Wd]
tokens [B, L] --token + position embedding--> [B, L, Wd]
  --DecoderBlock x depth (causal self-attention, cross-attention over memory)--> logits [B, L, V]

`greedy_decode` runs the decoder one token at a time with a key/value cache: each step projects
only the new token's keys/values and attends over the cached ones (earlier positions are never
recomputed), stopping when every sequence has emitted EOS. The validation metric and the exported
TFLite graph both use it.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import NamedTuple

import keras
import tensorflow as tf
from keras import layers


@dataclass(frozen=True)
class StackConfig:
    depth: int
    width: int
    heads: int
    mlp_ratio: float = 2.0
    key_dim: int | None = None  # per-head attention size; None: width // heads
    conv_kernel: int = 0  # encoder only: a depthwise temporal convolution in each block (0: none)

    @property
    def head_dim(self) -> int:
        return self.key_dim or self.width // self.heads


@dataclass(frozen=True)
class ModelConfig:
    n_features: int  # points x axes per frame
    hand_features: int  # leading features that belong to the signing hand
    max_frames: int
    max_length: int  # decoder positions: max_phrase_length + 1 (EOS)
    vocab_size: int  # characters + PAD, SOS, EOS
    pad: int
    sos: int
    eos: int
    encoder: StackConfig
    decoder: StackConfig
    attention_dropout: float = 0.1
    mlp_dropout: float = 0.2
    classifier_dropout: float = 0.1
    ctc_weight: float = 0.0  # auxiliary CTC loss on the encoder output (0: off)
    # CTC from dense labels (TensorFlow ops, which XLA compiles: trainer.jit=true) instead of
    # TensorFlow's C++ kernel for sparse labels (faster on CPU, but XLA has no kernel for it)
    ctc_xla: bool = False

    @classmethod
    def from_config(cls, model_cfg: Mapping, **data) -> "ModelConfig":
        stack = {k: StackConfig(int(model_cfg[k]["depth"]), int(model_cfg[k]["width"]),
                                int(model_cfg[k]["heads"]), float(model_cfg[k]["mlp_ratio"]),
                                _none_or_int(model_cfg[k].get("key_dim")),
                                int(model_cfg[k].get("conv_kernel") or 0))
                 for k in ("encoder", "decoder")}
        drop = model_cfg["dropout"]
        return cls(**data, **stack, attention_dropout=float(drop["attention"]),
                   mlp_dropout=float(drop["mlp"]), classifier_dropout=float(drop["classifier"]),
                   ctc_weight=float(model_cfg.get("ctc_weight") or 0.0))


def _none_or_int(v) -> int | None:
    return None if v in (None, "None", "null") else int(v)


def _mlp(width: int, ratio: float, dropout: float, name: str) -> keras.Sequential:
    return keras.Sequential([layers.Dense(int(width * ratio), activation="gelu"),
                             layers.Dropout(dropout), layers.Dense(width)], name=name)


def _norm(name: str) -> layers.LayerNormalization:
    return layers.LayerNormalization(epsilon=1e-6, name=name)


class FrameEmbedding(layers.Layer):
    """Landmarks of one frame -> a vector; frames where the signing hand is missing get a learned
    "missing frame" embedding; plus a learned position embedding."""

    def __init__(self, cfg: ModelConfig, **kw):
        super().__init__(**kw)
        self.hand_features = cfg.hand_features
        self.dense1 = layers.Dense(cfg.encoder.width, activation="gelu", name="dense1")
        self.dense2 = layers.Dense(cfg.encoder.width, name="dense2")
        self.missing = self.add_weight(shape=(cfg.encoder.width,), initializer="zeros",
                                       name="missing_frame")
        self.position = self.add_weight(shape=(cfg.max_frames, cfg.encoder.width),
                                        initializer=keras.initializers.RandomNormal(stddev=0.02),
                                        name="position")

    def call(self, frames):
        nan = tf.math.is_nan(frames)
        missing = tf.reduce_all(nan[..., : self.hand_features], axis=-1, keepdims=True)
        x = self.dense2(self.dense1(tf.where(nan, tf.zeros_like(frames), frames)))
        x = tf.where(missing, tf.cast(self.missing, x.dtype), x)
        return x + tf.cast(self.position[: tf.shape(frames)[1]], x.dtype)


class EncoderBlock(layers.Layer):
    """Pre-norm transformer block: self-attention over the real frames only, then (optionally)
    a depthwise temporal convolution that sees neighbouring frames (motion, transitions), then
    an MLP."""

    def __init__(self, cfg: StackConfig, attention_dropout: float, mlp_dropout: float, **kw):
        super().__init__(**kw)
        self.norm1, self.norm2 = _norm("norm1"), _norm("norm2")
        self.attention = layers.MultiHeadAttention(cfg.heads, cfg.head_dim,
                                                   dropout=attention_dropout, name="attention")
        self.conv = None
        if cfg.conv_kernel:
            self.conv_norm = _norm("conv_norm")
            self.conv = layers.DepthwiseConv1D(cfg.conv_kernel, padding="same", name="conv")
            self.conv_out = layers.Dense(cfg.width, activation="gelu", name="conv_out")
        self.mlp = _mlp(cfg.width, cfg.mlp_ratio, mlp_dropout, "mlp")
        self.drop = layers.Dropout(mlp_dropout)

    def call(self, x, frame_mask, training=None):
        h = self.norm1(x)
        x = x + self.drop(self.attention(h, h, attention_mask=frame_mask[:, None, :],
                                         training=training), training=training)
        if self.conv is not None:
            real = tf.cast(frame_mask, x.dtype)[..., None]
            h = self.conv(self.conv_norm(x) * real)  # padding frames contribute nothing
            x = x + self.drop(self.conv_out(h), training=training)
        return x + self.drop(self.mlp(self.norm2(x), training=training), training=training)


class DecoderBlock(layers.Layer):
    def __init__(self, cfg: StackConfig, attention_dropout: float, mlp_dropout: float, **kw):
        super().__init__(**kw)
        self.norm1, self.norm2, self.norm3 = _norm("norm1"), _norm("norm2"), _norm("norm3")
        key_dim = cfg.head_dim
        self.self_attention, self.cross_attention = (
            layers.MultiHeadAttention(cfg.heads, key_dim, dropout=attention_dropout, name=name)
            for name in ("self_attention", "cross_attention"))
        self.mlp = _mlp(cfg.width, cfg.mlp_ratio, mlp_dropout, "mlp")
        self.drop = layers.Dropout(mlp_dropout)

    def call(self, x, memory, frame_mask, training=None):
        """Teacher-forced: every position at once, causally masked."""
        h = self.norm1(x)
        x = x + self.drop(self.self_attention(h, h, use_causal_mask=True, training=training),
                          training=training)
        h = self.norm2(x)
        x = x + self.drop(self.cross_attention(h, memory, attention_mask=frame_mask[:, None, :],
                                               training=training), training=training)
        return x + self.drop(self.mlp(self.norm3(x), training=training), training=training)

    def step(self, x, caches, write, self_bias, memory_kv, memory_bias):
        """One new position x [B, W] (2-D: no shape arithmetic in the exported loop): write its
        key and value into the caches (keys [B, H, L, D], values transposed [B, H, D, L]) at the
        position `write` marks, attend over the cached positions `self_bias` allows and over the
        pre-projected encoder memory. Inference only; each norm's scale and offset are folded
        into the matmul that follows it."""
        # The folded matrices are built here, inside the loop body, on purpose: the converter
        # turns them into constants of the body (built outside the loop, they would enter the
        # TFLite WHILE as loop inputs). In Keras they cost a few small ops per step.
        sa, ca = self.self_attention, self.cross_attention
        heads, dim = sa.num_heads, sa.key_dim
        scale = 1.0 / dim ** 0.5
        (q, qb), (k, kb), (v, vb) = (_matrix(sa.query_dense, scale), _matrix(sa.key_dense),
                                     _matrix(sa.value_dense))
        qkv = _norm_linear(x, self.norm1, tf.concat([q, k, v], 1), tf.concat([qb, kb, vb], 0))
        q, k, v = tf.split(qkv, 3, axis=1)
        q, k = tf.reshape(q, [-1, heads, 1, dim]), tf.reshape(k, [-1, heads, 1, dim])
        cache_k = caches[0] * write.keep_rows + k * write.rows  # exact: one term is 0
        cache_v = caches[1] * write.keep_cols + tf.reshape(v, [-1, heads, dim, 1]) * write.cols
        x = x + _linear(_attend(q, cache_k, cache_v, self_bias), *_matrix(sa.output_dense))
        q = tf.reshape(_norm_linear(x, self.norm2, *_matrix(ca.query_dense, scale)),
                       [-1, heads, 1, dim])
        x = x + _linear(_attend(q, *memory_kv, memory_bias), *_matrix(ca.output_dense))
        dense1, _, dense2 = self.mlp.layers
        h = dense1.activation(_norm_linear(x, self.norm3, *_matrix(dense1)))
        return x + _linear(h, *_matrix(dense2)), (cache_k, cache_v)

    def project_memory(self, memory):
        """Cross-attention keys [B, H, T, D] and transposed values [B, H, D, T] of the encoder
        memory, once per sequence."""
        ca = self.cross_attention
        return (tf.transpose(ca.key_dense(memory), [0, 2, 1, 3]),
                tf.transpose(ca.value_dense(memory), [0, 2, 3, 1]))


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
    return _linear(n, gamma[:, None] * kernel,
                   tf.linalg.matvec(kernel, beta, transpose_a=True) + bias)


def _attend(q, keys, values, bias):
    """q [B, H, 1, D] over keys [B, H, S, D] and transposed values [B, H, D, S] (+ additive
    mask bias [., ., 1, S]) -> [B, H * D]. Both matmuls contract the operands' last axes, which
    TFLite's BATCH_MATMUL does without transposing anything at run time."""
    weights = tf.nn.softmax(tf.matmul(q, keys, transpose_b=True) + bias, axis=-1)
    out = tf.matmul(weights, values, transpose_b=True)
    return tf.reshape(out, [-1, out.shape[1] * out.shape[3]])


class FingerspellingModel(keras.Model):
    """Encoder-decoder transformer. `call({"frames", "mask", "tokens"})` -> teacher-forced logits
    [B, L, V]; the decoder input is SOS followed by the target tokens shifted right."""

    def __init__(self, cfg: ModelConfig, **kw):
        super().__init__(**kw)
        self.cfg = cfg
        enc, dec = cfg.encoder, cfg.decoder
        self.embedding = FrameEmbedding(cfg, name="frame_embedding")
        self.encoder_blocks = [EncoderBlock(enc, cfg.attention_dropout, cfg.mlp_dropout,
                                            name=f"encoder_{i}") for i in range(enc.depth)]
        self.encoder_norm = _norm("encoder_norm")
        # Training aid only: a CTC head on the encoder teaches it to align frames with characters
        # early (as hybrid CTC/attention recognizers do); decoding always uses the decoder.
        self.ctc_head = (layers.Dense(cfg.pad + 1, name="ctc_head")  # characters + blank (last)
                         if cfg.ctc_weight else None)
        self.bridge = layers.Dense(dec.width, name="bridge")  # encoder width -> decoder width
        self.token_embedding = layers.Embedding(cfg.vocab_size, dec.width, name="token_embedding")
        self.token_position = self.add_weight(
            shape=(cfg.max_length, dec.width),
            initializer=keras.initializers.RandomNormal(stddev=0.02), name="token_position")
        self.decoder_blocks = [DecoderBlock(dec, cfg.attention_dropout, cfg.mlp_dropout,
                                            name=f"decoder_{i}") for i in range(dec.depth)]
        self.decoder_norm = _norm("decoder_norm")
        self.classifier_dropout = layers.Dropout(cfg.classifier_dropout)
        self.classifier = layers.Dense(cfg.vocab_size, name="classifier")

    def _encode(self, frames, mask, training=None):
        mask = tf.cast(mask, tf.bool)
        x = self.embedding(frames)
        for block in self.encoder_blocks:
            x = block(x, mask, training=training)
        return self.encoder_norm(x)

    def encode(self, frames, mask, training=None):
        return self.bridge(self._encode(frames, mask, training))

    def _embed_tokens(self, tokens, start=0):
        length = tf.shape(tokens)[1]
        pos = self.token_position[start:start + length]
        return self.token_embedding(tokens) + tf.cast(pos, self.compute_dtype)

    def _logits(self, x, training=None):
        return self.classifier(self.classifier_dropout(self.decoder_norm(x), training=training))

    def decode(self, memory, mask, tokens_in, training=None):
        mask = tf.cast(mask, tf.bool)
        x = self._embed_tokens(tokens_in)
        for block in self.decoder_blocks:
            x = block(x, memory, mask, training=training)
        return self._logits(x, training)

    def call(self, inputs, training=None):
        tokens = inputs["tokens"]
        sos = tf.fill([tf.shape(tokens)[0], 1], tf.constant(self.cfg.sos, tokens.dtype))
        tokens_in = tf.concat([sos, tokens[:, :-1]], axis=1)
        encoded = self._encode(inputs["frames"], inputs["mask"], training)
        if self.ctc_head is not None and training:
            self.add_loss(self.cfg.ctc_weight * self._ctc_loss(encoded, inputs["mask"], tokens))
        return self.decode(self.bridge(encoded), inputs["mask"], tokens_in, training)

    def _ctc_loss(self, encoded, mask, tokens):
        """CTC loss (blank: the last class) per character, averaged over the sequences whose
        frames can hold their phrase. Sparse labels select TensorFlow's C++ CTC kernel."""
        cfg = self.cfg
        tokens = tf.cast(tokens, tf.int32)
        is_char = tokens < cfg.pad
        target_len = tf.reduce_sum(tf.cast(is_char, tf.int32), axis=1)
        repeats = tf.reduce_sum(tf.cast(is_char[:, 1:] & (tokens[:, 1:] == tokens[:, :-1]),
                                        tf.int32), axis=1)
        frames_len = tf.reduce_sum(tf.cast(tf.cast(mask, tf.bool), tf.int32), axis=1)
        # An infeasible alignment would give an infinite loss, and the kernel refuses empty
        # targets: such sequences get a one-character stand-in target and are left out of the mean.
        ok = (frames_len >= target_len + repeats) & (target_len > 0)
        first = tf.range(tf.shape(tokens)[1])[None, :] == 0
        keep = (is_char & ok[:, None]) | (first & ~ok[:, None])
        values = tf.where(ok[:, None], tokens, 0)
        logits = tf.cast(self.ctc_head(encoded), tf.float32)
        if cfg.ctc_xla:  # the same labels, dense: the characters lead each row of `tokens`
            loss = tf.nn.ctc_loss(tf.where(keep, values, 0), logits, tf.where(ok, target_len, 1),
                                  tf.maximum(frames_len, 1), logits_time_major=False,
                                  blank_index=-1)
        else:
            labels = tf.SparseTensor(tf.where(keep), tf.boolean_mask(values, keep),
                                     tf.shape(tokens, out_type=tf.int64))
            loss = tf.nn.ctc_loss(labels, logits, None, tf.maximum(frames_len, 1),
                                  logits_time_major=False, blank_index=-1)
        weight = tf.cast(ok, tf.float32)
        per_char = loss / tf.cast(tf.maximum(target_len, 1), tf.float32)
        return tf.reduce_sum(per_char * weight) / tf.maximum(tf.reduce_sum(weight), 1.0)


def greedy_decode(model: FingerspellingModel, frames, mask, max_length: int | None = None,
                  early_stop: bool = True):
    """[B, T, F], [B, T] -> [B, max_length] int32 tokens, greedy, with a key/value cache and an
    early stop once every sequence has emitted EOS (positions after EOS hold PAD).
    `early_stop=False` always runs max_length steps (latency of a phrase of known length)."""
    cfg = model.cfg
    max_length = max_length or cfg.max_length
    batch = tf.shape(frames)[0]
    mask = tf.cast(mask, tf.bool)
    memory = model.encode(frames, mask, training=False)
    dtype = memory.dtype
    memory_kv = [block.project_memory(memory) for block in model.decoder_blocks]
    memory_bias = tf.cast(tf.where(mask, 0.0, _neg(dtype))[:, None, None, :], dtype)  # [B,1,1,T]
    heads, key_dim = cfg.decoder.heads, cfg.decoder.head_dim
    caches = tuple(tf.zeros(shape, dtype) for _ in model.decoder_blocks
                   for shape in ([batch, heads, max_length, key_dim],    # keys
                                 [batch, heads, key_dim, max_length]))  # values, transposed
    positions = tf.range(max_length)
    token = tf.fill([batch], tf.constant(cfg.sos, tf.int32))
    done = tf.zeros([batch], tf.bool)
    out = tf.fill([batch, max_length], tf.constant(cfg.pad, tf.int32))

    def body(t, token, done, out, caches):
        at_t = positions == t
        one_hot = tf.cast(at_t, dtype)
        write = _Write(tf.reshape(one_hot, [1, 1, -1, 1]), tf.reshape(1 - one_hot, [1, 1, -1, 1]),
                       tf.reshape(one_hot, [1, 1, 1, -1]), tf.reshape(1 - one_hot, [1, 1, 1, -1]))
        self_bias = tf.reshape(tf.where(positions <= t, tf.constant(0.0, dtype),
                                        tf.constant(_neg(dtype), dtype)), [1, 1, 1, max_length])
        x = model.token_embedding(token) + tf.cast(tf.gather(model.token_position, t), dtype)
        new = ()
        for i, block in enumerate(model.decoder_blocks):
            x, kv = block.step(x, caches[2 * i:2 * i + 2], write, self_bias, memory_kv[i],
                               memory_bias)
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


def build(cfg: ModelConfig) -> FingerspellingModel:
    """A built model (weights created) for this config."""
    model = FingerspellingModel(cfg, name="fingerspelling")
    with warnings.catch_warnings():  # Keras warns that the unused ctc_head is not built yet
        warnings.filterwarnings("ignore", message=r".*does not have a `build\(\)` method")
        model({"frames": tf.zeros([1, cfg.max_frames, cfg.n_features]),
               "mask": tf.ones([1, cfg.max_frames], tf.bool),
               "tokens": tf.zeros([1, cfg.max_length], tf.int32)})
    if model.ctc_head is not None:  # used in training only, so the call above did not build it
        model.ctc_head.build((None, None, cfg.encoder.width))
    return model
