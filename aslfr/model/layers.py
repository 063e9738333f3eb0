"""The model's layers (Keras 3), each a small `Layer` with its sub-layers built in `__init__`
and its math in `call`:

    FrameEmbedding  frames [B, T, F] (NaN = not detected) -> [B, T, We] (+ learned positions)
    EncoderBlock    [B, T, We] -> [B, T, We]: self-attention over real frames, depthwise conv, MLP
    DecoderBlock    [B, L, Wd] x memory [B, T, Wd] -> [B, L, Wd]: causal self-attention,
                    cross-attention over the memory, MLP (teacher-forced; the cached one-token step
                    is in aslfr.model.decoding)
"""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import layers

from aslfr.model.config import ModelConfig, StackConfig


def mlp(width: int, ratio: float, dropout: float, name: str) -> keras.Sequential:
    return keras.Sequential(
        [layers.Dense(int(width * ratio), activation="gelu"), layers.Dropout(dropout), layers.Dense(width)],
        name=name,
    )


def layer_norm(name: str) -> layers.LayerNormalization:
    return layers.LayerNormalization(epsilon=1e-6, name=name)


class FrameEmbedding(layers.Layer):
    """Landmarks of one frame -> a vector; frames where the signing hand is missing get a learned
    "missing frame" embedding; plus a learned position embedding."""

    def __init__(self, cfg: ModelConfig, **kw):
        super().__init__(**kw)
        self.hand_features = cfg.hand_features
        self.dense1 = layers.Dense(cfg.encoder.width, activation="gelu", name="dense1")
        self.dense2 = layers.Dense(cfg.encoder.width, name="dense2")
        self.missing = self.add_weight(shape=(cfg.encoder.width,), initializer="zeros", name="missing_frame")
        self.position = self.add_weight(
            shape=(cfg.max_frames, cfg.encoder.width),
            initializer=keras.initializers.RandomNormal(stddev=0.02),
            name="position",
        )

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
        self.norm1, self.norm2 = layer_norm("norm1"), layer_norm("norm2")
        self.attention = layers.MultiHeadAttention(
            cfg.heads, cfg.head_dim, dropout=attention_dropout, name="attention"
        )
        self.conv = None
        if cfg.conv_kernel:
            self.conv_norm = layer_norm("conv_norm")
            self.conv = layers.DepthwiseConv1D(cfg.conv_kernel, padding="same", name="conv")
            self.conv_out = layers.Dense(cfg.width, activation="gelu", name="conv_out")
        self.mlp = mlp(cfg.width, cfg.mlp_ratio, mlp_dropout, "mlp")
        self.drop = layers.Dropout(mlp_dropout)

    def call(self, x, frame_mask, training=None):
        h = self.norm1(x)
        x = x + self.drop(
            self.attention(h, h, attention_mask=frame_mask[:, None, :], training=training), training=training
        )
        if self.conv is not None:
            real = tf.cast(frame_mask, x.dtype)[..., None]
            h = self.conv(self.conv_norm(x) * real)  # padding frames contribute nothing
            x = x + self.drop(self.conv_out(h), training=training)
        return x + self.drop(self.mlp(self.norm2(x), training=training), training=training)


class DecoderBlock(layers.Layer):
    def __init__(self, cfg: StackConfig, attention_dropout: float, mlp_dropout: float, **kw):
        super().__init__(**kw)
        self.norm1, self.norm2, self.norm3 = layer_norm("norm1"), layer_norm("norm2"), layer_norm("norm3")
        key_dim = cfg.head_dim
        self.self_attention, self.cross_attention = (
            layers.MultiHeadAttention(cfg.heads, key_dim, dropout=attention_dropout, name=name)
            for name in ("self_attention", "cross_attention")
        )
        self.mlp = mlp(cfg.width, cfg.mlp_ratio, mlp_dropout, "mlp")
        self.drop = layers.Dropout(mlp_dropout)

    def call(self, x, memory, frame_mask, training=None):
        """Teacher-forced: every position at once, causally masked."""
        h = self.norm1(x)
        x = x + self.drop(
            self.self_attention(h, h, use_causal_mask=True, training=training), training=training
        )
        h = self.norm2(x)
        x = x + self.drop(
            self.cross_attention(h, memory, attention_mask=frame_mask[:, None, :], training=training),
            training=training,
        )
        return x + self.drop(self.mlp(self.norm3(x), training=training), training=training)
