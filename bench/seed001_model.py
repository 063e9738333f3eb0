"""Seed 001's transformer, ported to Keras 3 as it was written: the baseline of the benchmarks.

Seed 001 is the public notebook "ASLFR Transformer training + inference" by Mark Wijkhuizen
(https://www.kaggle.com/code/markwijkhuizen/aslfr-transformer-training-inference; docs/competition.md).
What makes it seed 001 (its model and TFLite inference sections):
  - attention built from one small Dense per head for Q, K and V (no fused projections), a
    Softmax layer with a mask, and tf.concat of the heads;
  - post-norm blocks; an encoder -> decoder projection;
  - the decoder runs over all N_TARGET_FRAMES = max_frames padded positions (SOS + phrase +
    PAD), with an extra causal self-attention on the position embeddings, and the output is
    sliced to the phrase length; cross-attention uses the same causal mask.
(Its inference, the whole decoder re-run for every new token, is `recompute_decode` in
bench/export_latency.py, applied to our model's weights.)

It takes the same inputs as `aslfr.model.FingerspellingModel` ({"frames", "mask", "tokens"}), has
the same depths and widths (from the same ModelConfig) and the same output [B, max_length, V],
so the two can be trained side by side on the same batches.
"""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import layers

from aslfr.model.config import ModelConfig


class SeedAttention(layers.Layer):
    """Seed 001's MultiHeadAttention: per-head Dense projections of size (width // heads) // 2."""

    def __init__(self, width: int, heads: int, dropout: float, **kw):
        super().__init__(**kw)
        depth = width // heads
        self.wq = [layers.Dense(depth // 2, use_bias=False) for _ in range(heads)]
        self.wk = [layers.Dense(depth // 2, use_bias=False) for _ in range(heads)]
        self.wv = [layers.Dense(depth // 2, use_bias=False) for _ in range(heads)]
        self.wo = layers.Dense(width, use_bias=False)
        self.softmax = layers.Softmax()
        self.drop = layers.Dropout(dropout)

    def call(self, q, k, v, attention_mask=None, training=None):
        heads = []
        for wq, wk, wv in zip(self.wq, self.wk, self.wv):
            Q, K, V = wq(q), wk(k), wv(v)
            scores = tf.matmul(Q, K, transpose_b=True) / tf.sqrt(tf.cast(Q.shape[-1], Q.dtype))
            heads.append(tf.matmul(self.softmax(scores, mask=attention_mask), V))
        return self.drop(self.wo(tf.concat(heads, axis=-1)), training=training)


def _mlp(width: int, ratio: float, dropout: float) -> keras.Sequential:
    return keras.Sequential(
        [
            layers.Dense(int(width * ratio), activation="gelu", use_bias=False),
            layers.Dropout(dropout),
            layers.Dense(width, use_bias=False),
        ]
    )


class SeedModel(keras.Model):
    def __init__(self, cfg: ModelConfig, **kw):
        super().__init__(**kw)
        self.cfg = cfg
        enc, dec, T = cfg.encoder, cfg.decoder, cfg.max_frames
        ln = lambda: layers.LayerNormalization(epsilon=1e-6)  # noqa: E731
        # Embedding: landmark MLP, "empty" embedding for missing frames, position embedding.
        self.empty = self.add_weight(shape=(enc.width,), initializer="zeros", name="empty")
        self.landmark = keras.Sequential(
            [
                layers.Dense(enc.width, activation="gelu", use_bias=False),
                layers.Dense(enc.width, use_bias=False),
            ]
        )
        self.enc_position = self.add_weight(shape=(T, enc.width), initializer="zeros", name="enc_position")
        self.enc = [
            (
                ln(),
                SeedAttention(enc.width, enc.heads, cfg.attention_dropout),
                ln(),
                _mlp(enc.width, enc.mlp_ratio, cfg.mlp_dropout),
            )
            for _ in range(enc.depth)
        ]
        self.dense_out = layers.Dense(dec.width, use_bias=False)
        # Decoder over T positions.
        self.dec_position = self.add_weight(shape=(T, dec.width), initializer="zeros", name="dec_position")
        self.char_emb = layers.Embedding(cfg.vocab_size, dec.width, embeddings_initializer="zeros")
        self.pos_emb_mha = SeedAttention(dec.width, dec.heads, cfg.attention_dropout)
        self.pos_emb_ln = ln()
        self.dec = [
            (
                ln(),
                SeedAttention(dec.width, dec.heads, cfg.attention_dropout),
                ln(),
                _mlp(dec.width, dec.mlp_ratio, cfg.mlp_dropout),
            )
            for _ in range(dec.depth)
        ]
        self.classifier = keras.Sequential(
            [layers.Dropout(cfg.classifier_dropout), layers.Dense(cfg.vocab_size, use_bias=False)]
        )

    def encode(self, frames, training=None):
        x = tf.where(tf.math.is_nan(frames), tf.zeros_like(frames), frames)  # seed 001: missing = 0
        empty = tf.reduce_sum(x, axis=2, keepdims=True) == 0
        mask = tf.cast(~empty[..., 0], x.dtype)  # attend to real frames only
        x = self.landmark(x)
        x = tf.where(empty, tf.cast(self.empty, x.dtype), x) + tf.cast(self.enc_position, x.dtype)
        mask = tf.repeat(mask[:, None, :], self.cfg.max_frames, axis=1)
        for ln1, mha, ln2, mlp in self.enc:
            x = ln1(x + mha(x, x, x, attention_mask=mask, training=training))
            x = ln2(x + mlp(x, training=training))
        return self.dense_out(x)

    def decode(self, encoded, phrase, training=None):
        """phrase [B, max_length] (SOS first) -> logits [B, max_length, V], run over T positions."""
        T, L = self.cfg.max_frames, self.cfg.max_length
        phrase = tf.pad(tf.cast(phrase, tf.int32), [[0, 0], [0, T - L]], constant_values=self.cfg.pad)
        causal = tf.cast(tf.range(T)[:, None] >= tf.range(T)[None, :], encoded.dtype)
        causal = tf.tile(causal[None], [tf.shape(encoded)[0], 1, 1])
        x = self.char_emb(phrase)
        x = x + tf.cast(self.dec_position, x.dtype)
        x = self.pos_emb_ln(x + self.pos_emb_mha(x, x, x, attention_mask=causal, training=training))
        for ln1, mha, ln2, mlp in self.dec:
            x = ln1(x + mha(x, encoded, encoded, attention_mask=causal, training=training))
            x = ln2(x + mlp(x, training=training))
        return self.classifier(x[:, :L], training=training)

    def call(self, inputs, training=None):
        tokens = tf.cast(inputs["tokens"], tf.int32)
        sos = tf.fill([tf.shape(tokens)[0], 1], self.cfg.sos)
        phrase = tf.concat([sos, tokens[:, :-1]], axis=1)
        return self.decode(self.encode(inputs["frames"], training), phrase, training)


def build(cfg: ModelConfig) -> SeedModel:
    model = SeedModel(cfg, name="seed001")
    model(
        {
            "frames": tf.zeros([1, cfg.max_frames, cfg.n_features]),
            "mask": tf.ones([1, cfg.max_frames]),
            "tokens": tf.zeros([1, cfg.max_length], tf.int32),
        }
    )
    return model
