"""The model's layers (Keras 3), each a small `Layer` with its sub-layers built in `__init__`
and its math in `call`:

    FrameEmbedding  frames [B, T, F] (NaN = not detected) -> [B, T, We] (+ learned positions)
    SelfAttention   [B, T, W] -> [B, T, W] over the real frames, rotary positions optional
    EncoderBlock    [B, T, We] -> [B, T, We]: self-attention over real frames, depthwise conv, MLP
    ConformerBlock  [B, T, We] -> [B, T, We]: half feed-forward, self-attention, convolution
                    module, half feed-forward, norm
    TimeReduction   [B, T, W], mask [B, T] -> [B, ceil(T/2), W], [B, ceil(T/2)]: pairs of frames
    DecoderBlock    [B, L, Wd] x memory [B, T, Wd] -> [B, L, Wd]: causal self-attention,
                    cross-attention over the memory, MLP (teacher-forced; the cached one-token step
                    is in aslfr.model.decoding)
"""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import layers

from aslfr.config import Positions
from aslfr.model.config import ModelConfig, StackConfig


def mlp(width: int, ratio: float, dropout: float, name: str, activation: str = "gelu") -> keras.Sequential:
    """Dense (width x ratio, `activation`), dropout, Dense (width): the feed-forward module."""
    hidden = layers.Dense(int(width * ratio), activation=activation)
    return keras.Sequential([hidden, layers.Dropout(dropout), layers.Dense(width)], name=name)


def layer_norm(name: str) -> layers.LayerNormalization:
    return layers.LayerNormalization(epsilon=1e-6, name=name)


def drop_paths(rate: float, depth: int) -> list[float]:
    """Stochastic depth per block: 0 for the first, `rate` for the last, linear between."""
    return [rate * i / max(depth - 1, 1) for i in range(depth)]


class FrameEmbedding(layers.Layer):
    """Landmarks of one frame -> a vector; frames where the signing hand is missing get a learned
    "missing frame" embedding; plus a learned position embedding (not with rotary positions,
    which the attention applies)."""

    def __init__(self, cfg: ModelConfig, **kw):
        super().__init__(**kw)
        self.hand_features = cfg.hand_features
        self.dense1 = layers.Dense(cfg.encoder.width, activation="gelu", name="dense1")
        self.dense2 = layers.Dense(cfg.encoder.width, name="dense2")
        self.missing = self.add_weight(shape=(cfg.encoder.width,), initializer="zeros", name="missing_frame")
        self.position = None
        if cfg.encoder.positions == Positions.learned:
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
        if self.position is None:
            return x
        return x + tf.cast(self.position[: tf.shape(frames)[1]], x.dtype)


def rotate(x, base: float = 10000.0):
    """Rotary positions (RoFormer; the half-split form of GPT-NeoX/Llama) on x [B, H, T, D]: the
    pairs (x_i, x_{i+D/2}) turn by angle t / base^(2i/D) at position t, so a query-key product
    depends on their distance. Built-in TFLite ops only (sin/cos of a range, slices, concat)."""
    dim = x.shape[-1]
    half = dim // 2
    inverse = 1.0 / base ** (tf.range(half, dtype=tf.float32) * 2.0 / dim)  # [D/2]
    angle = tf.cast(tf.range(tf.shape(x)[2]), tf.float32)[:, None] * inverse[None, :]  # [T, D/2]
    cos, sin = tf.cast(tf.cos(angle), x.dtype), tf.cast(tf.sin(angle), x.dtype)
    x1, x2 = x[..., :half], x[..., half:]
    return tf.concat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], axis=-1)


class SelfAttention(layers.Layer):
    """Multi-head self-attention over the real frames (frame_mask [B, T]), with rotary positions
    on the queries and keys when `rope`; one fused query/key/value projection."""

    def __init__(self, width: int, heads: int, head_dim: int, dropout: float, rope: bool, **kw):
        super().__init__(**kw)
        self.heads, self.head_dim, self.rope = heads, head_dim, rope
        self.qkv = layers.Dense(3 * heads * head_dim, name="qkv")
        self.out = layers.Dense(width, name="out")
        self.drop = layers.Dropout(dropout)

    def call(self, x, frame_mask, training=None):
        batch, length = tf.shape(x)[0], tf.shape(x)[1]
        qkv = tf.reshape(self.qkv(x), [batch, length, 3, self.heads, self.head_dim])
        q, k, v = (tf.transpose(qkv[:, :, i], [0, 2, 1, 3]) for i in range(3))  # [B, H, T, D]
        if self.rope:
            q, k = rotate(q), rotate(k)
        scores = tf.matmul(q, k, transpose_b=True) * tf.cast(self.head_dim**-0.5, x.dtype)
        keep = tf.cast(frame_mask, tf.bool)[:, None, None, :]  # attend to real frames only
        neg = tf.constant(-3e4 if x.dtype == tf.float16 else -1e9, x.dtype)
        weights = self.drop(tf.nn.softmax(tf.where(keep, scores, neg), axis=-1), training=training)
        out = tf.transpose(tf.matmul(weights, v), [0, 2, 1, 3])
        return self.out(tf.reshape(out, [batch, length, self.heads * self.head_dim]))


class DropPath(layers.Layer):
    """Stochastic depth: in training, a residual branch is dropped for a whole sequence with
    probability `rate` (and scaled by 1 / (1 - rate) otherwise); the identity at inference."""

    def __init__(self, rate: float, **kw):
        super().__init__(**kw)
        self.rate = rate
        self.seed = keras.random.SeedGenerator()

    def call(self, x, training=None):
        if not training or self.rate <= 0:
            return x
        keep = 1.0 - self.rate
        shape = [tf.shape(x)[0]] + [1] * (len(x.shape) - 1)
        mask = tf.floor(keep + keras.random.uniform(shape, seed=self.seed, dtype=x.dtype))
        return x * mask / keep


class TimeReduction(layers.Layer):
    """Stride-2 time reduction (as 2nd and 3rd place did, after a middle block): each pair of
    frames -> the mean of its real frames; a pair is real if either frame is. An odd last frame
    is paired with padding."""

    def call(self, x, frame_mask):
        # pairs by a reshape, not a stride-2 slice: the converter cannot lower the slice once the
        # frame count is dynamic (the export's sequences are not padded)
        # and with the batch size kept static where it is (the export's 1): with two dynamic
        # dimensions the converter cannot lower the [..., None] slices that follow either
        batch, width = x.shape[0] or tf.shape(x)[0], x.shape[-1]
        real = tf.expand_dims(tf.cast(frame_mask, x.dtype), -1)  # [B, T, 1]
        pad = tf.shape(x)[1] % 2
        x = tf.pad(x * real, [[0, 0], [0, pad], [0, 0]])
        real = tf.pad(real, [[0, 0], [0, pad], [0, 0]])
        summed = tf.reduce_sum(tf.reshape(x, [batch, -1, 2, width]), axis=2)  # [B, T/2, W]
        count = tf.reduce_sum(tf.reshape(real, [batch, -1, 2]), axis=2)  # [B, T/2]
        return summed / tf.expand_dims(tf.maximum(count, 1.0), -1), count > 0


class _ResidualBlock(layers.Layer):
    """A block of residual branches: each branch's output goes through dropout and, when the
    block has a stochastic-depth rate, DropPath, before it is added."""

    def _branch(self, h, training):
        h = self.drop(h, training=training)
        return h if self.drop_path is None else self.drop_path(h, training=training)


class EncoderBlock(_ResidualBlock):
    """Pre-norm transformer block: self-attention over the real frames only, then (optionally)
    a depthwise temporal convolution that sees neighbouring frames (motion, transitions), then
    an MLP. With rotary positions the attention is `SelfAttention`, else Keras' own."""

    def __init__(
        self, cfg: StackConfig, attention_dropout: float, mlp_dropout: float, drop_path: float = 0.0, **kw
    ):
        super().__init__(**kw)
        self.norm1, self.norm2 = layer_norm("norm1"), layer_norm("norm2")
        if cfg.positions == Positions.rope:
            self.attention = SelfAttention(
                cfg.width, cfg.heads, cfg.head_dim, attention_dropout, rope=True, name="attention"
            )
        else:
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
        self.drop_path = DropPath(drop_path) if drop_path > 0 else None

    def call(self, x, frame_mask, training=None):
        h = self.norm1(x)
        if isinstance(self.attention, SelfAttention):
            h = self.attention(h, frame_mask, training=training)
        else:
            h = self.attention(h, h, attention_mask=frame_mask[:, None, :], training=training)
        x = x + self._branch(h, training)
        if self.conv is not None:
            real = tf.cast(frame_mask, x.dtype)[..., None]
            h = self.conv(self.conv_norm(x) * real)  # padding frames contribute nothing
            x = x + self._branch(self.conv_out(h), training)
        return x + self._branch(self.mlp(self.norm2(x), training=training), training)


class ConformerBlock(_ResidualBlock):
    """Conformer block (Gulati et al. 2020): half-step feed-forward, self-attention over the real
    frames, the convolution module (pointwise + GLU, depthwise conv, norm, swish, pointwise),
    half-step feed-forward, then a norm. Each module is pre-norm and residual; stochastic depth
    drops whole modules. LayerNorm rather than BatchNorm in the convolution module: padding
    frames would otherwise enter the batch statistics."""

    def __init__(
        self, cfg: StackConfig, attention_dropout: float, mlp_dropout: float, drop_path: float = 0.0, **kw
    ):
        super().__init__(**kw)
        width, kernel = cfg.width, cfg.conv_kernel
        self.ff1_norm, self.ff2_norm = layer_norm("ff1_norm"), layer_norm("ff2_norm")
        self.ff1, self.ff2 = (mlp(width, cfg.mlp_ratio, mlp_dropout, n, "swish") for n in ("ff1", "ff2"))
        self.attention_norm = layer_norm("attention_norm")
        self.attention = SelfAttention(
            width,
            cfg.heads,
            cfg.head_dim,
            attention_dropout,
            rope=cfg.positions == Positions.rope,
            name="attention",
        )
        self.conv_norm = layer_norm("conv_norm")
        self.pointwise_in = layers.Dense(2 * width, name="pointwise_in")  # GLU halves it
        self.depthwise = layers.DepthwiseConv1D(kernel, padding="same", name="depthwise")
        self.depthwise_norm = layer_norm("depthwise_norm")
        self.pointwise_out = layers.Dense(width, name="pointwise_out")
        self.out_norm = layer_norm("out_norm")
        self.drop = layers.Dropout(mlp_dropout)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else None

    def call(self, x, frame_mask, training=None):
        real = tf.cast(frame_mask, x.dtype)[..., None]
        x = x + 0.5 * self._branch(self.ff1(self.ff1_norm(x), training=training), training)
        h = self.attention(self.attention_norm(x), frame_mask, training=training)
        x = x + self._branch(h, training)
        value, gate = tf.split(self.pointwise_in(self.conv_norm(x)), 2, axis=-1)
        h = self.depthwise(value * tf.sigmoid(gate) * real)  # padding frames contribute nothing
        h = self.pointwise_out(tf.nn.silu(self.depthwise_norm(h)))
        x = x + self._branch(h, training)
        x = x + 0.5 * self._branch(self.ff2(self.ff2_norm(x), training=training), training)
        return self.out_norm(x)


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
