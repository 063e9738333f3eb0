"""The encoder-decoder over landmark frames (Keras 3 on TensorFlow), readable top to bottom.

frames [B, T, F] (NaN = not detected) --FrameEmbedding--> [B, T, We]
  --EncoderBlock | ConformerBlock x depth (self-attention over real frames only; after block
    `downsample_at`, TimeReduction: T -> T' = ceil(T / 2))--> encoded [B, T', We]
  --ctc_head--> CTC logits [B, T', C + 1]   (C characters, then the blank)
  --bridge--> memory [B, T', Wd]
tokens [B, L] --token + position embedding--> [B, L, Wd]
  --DecoderBlock x depth (causal self-attention, cross-attention over memory)--> logits [B, L, V]

Two heads, either optional: the attention decoder (model.decoder.depth > 0) is trained with
label-smoothed cross-entropy; the CTC head (model.ctc_weight > 0, or always without a decoder)
with CTC. Decoding (aslfr.model.decoding) uses either or both: model.decode = attention | ctc |
joint. The pieces: aslfr.model.config (dimensions), aslfr.model.layers (the blocks),
aslfr.model.losses (cross-entropy, CTC, metrics).
"""

from __future__ import annotations

import warnings

import keras
import tensorflow as tf
from keras import layers

from aslfr.config import Block
from aslfr.model.config import ModelConfig
from aslfr.model.layers import (
    ConformerBlock,
    DecoderBlock,
    EncoderBlock,
    FrameEmbedding,
    TimeReduction,
    drop_paths,
    layer_norm,
)
from aslfr.model.losses import ctc_loss


class FingerspellingModel(keras.Model):
    """`call({"frames", "mask", "tokens"})` -> teacher-forced logits [B, L, V] (the decoder input
    is SOS followed by the target tokens shifted right); a model without a decoder returns its CTC
    logits [B, T', C + 1] and trains on the CTC loss alone."""

    def __init__(self, cfg: ModelConfig, **kw):
        super().__init__(**kw)
        self.cfg = cfg
        enc, dec = cfg.encoder, cfg.decoder
        self.embedding = FrameEmbedding(cfg, name="frame_embedding")
        block = ConformerBlock if enc.block == Block.conformer else EncoderBlock
        self.encoder_blocks = [
            block(enc, cfg.attention_dropout, cfg.mlp_dropout, drop_path=rate, name=f"encoder_{i}")
            for i, rate in enumerate(drop_paths(enc.drop_path, enc.depth))
        ]
        self.time_reduction = TimeReduction(name="time_reduction") if enc.downsample_at else None
        self.encoder_norm = layer_norm("encoder_norm")
        self.ctc_head = (
            layers.Dense(cfg.pad + 1, name="ctc_head")  # characters + blank (last)
            if cfg.has_ctc
            else None
        )
        if not cfg.has_decoder:
            return
        self.bridge = layers.Dense(dec.width, name="bridge")  # encoder width -> decoder width
        self.token_embedding = layers.Embedding(cfg.vocab_size, dec.width, name="token_embedding")
        self.token_position = self.add_weight(
            shape=(cfg.max_length, dec.width),
            initializer=keras.initializers.RandomNormal(stddev=0.02),
            name="token_position",
        )
        self.decoder_blocks = [
            DecoderBlock(dec, cfg.attention_dropout, cfg.mlp_dropout, name=f"decoder_{i}")
            for i in range(dec.depth)
        ]
        self.decoder_norm = layer_norm("decoder_norm")
        self.classifier_dropout = layers.Dropout(cfg.classifier_dropout)
        self.classifier = layers.Dense(cfg.vocab_size, name="classifier")
        # only with the noise on: a seed generator draws from the global seed at creation (the
        # weights' initialization would change with it) and adds a variable to the checkpoint
        self.noise_seed = keras.random.SeedGenerator(name="token_noise") if cfg.token_noise > 0 else None
        # Adversarial weight perturbation (set by the trainer: optimizer.awp, optimizer.awp_from)
        self.awp_epsilon, self.awp_from_step = 0.0, 0

    def _encode(self, frames, mask, training=None):
        """-> encoded [B, T', We], mask [B, T'] (T' = T, or ceil(T / 2) after the reduction)."""
        mask = tf.cast(mask, tf.bool)
        x = self.embedding(frames)
        for i, block in enumerate(self.encoder_blocks, start=1):
            x = block(x, mask, training=training)
            if i == self.cfg.encoder.downsample_at:
                x, mask = self.time_reduction(x, mask)
        return self.encoder_norm(x), mask

    def encode(self, frames, mask, training=None):
        """The decoder's memory [B, T', Wd] and its mask [B, T']."""
        encoded, mask = self._encode(frames, mask, training)
        return self.bridge(encoded), mask

    def ctc_logits(self, frames, mask, training=None):
        """CTC logits [B, T', C + 1] (blank last) and their mask [B, T']."""
        encoded, mask = self._encode(frames, mask, training)
        return self.ctc_head(encoded), mask

    def _embed_tokens(self, tokens, start=0):
        length = tf.shape(tokens)[1]
        pos = self.token_position[start : start + length]
        return self.token_embedding(tokens) + tf.cast(pos, self.compute_dtype)

    def _logits(self, x, training=None):
        return self.classifier(self.classifier_dropout(self.decoder_norm(x), training=training))

    def decoder_logits(self, memory, mask, tokens_in, training=None):
        mask = tf.cast(mask, tf.bool)
        x = self._embed_tokens(tokens_in)
        for block in self.decoder_blocks:
            x = block(x, memory, mask, training=training)
        return self._logits(x, training)

    def call(self, inputs, training=None):
        tokens = inputs["tokens"]
        encoded, mask = self._encode(inputs["frames"], inputs["mask"], training)
        if not self.cfg.has_decoder:  # CTC only: the loss is CTC, the output its logits
            logits = self.ctc_head(encoded)
            self.add_loss(ctc_loss(logits, mask, tokens, self.cfg.pad, dense=self.cfg.ctc_xla))
            return logits
        if self.ctc_head is not None and training:
            logits = self.ctc_head(encoded)
            self.add_loss(
                self.cfg.ctc_weight * ctc_loss(logits, mask, tokens, self.cfg.pad, dense=self.cfg.ctc_xla)
            )
        sos = tf.fill([tf.shape(tokens)[0], 1], tf.constant(self.cfg.sos, tokens.dtype))
        tokens_in = tf.concat([sos, tokens[:, :-1]], axis=1)
        if training and self.cfg.token_noise > 0:
            tokens_in = self.noisy(tokens_in)
        return self.decoder_logits(self.bridge(encoded), mask, tokens_in, training)

    def train_step(self, data):
        """Keras' own step, or with adversarial weight perturbation (1st place, from part way
        through training): every weight matrix is first pushed up its loss gradient by
        awp_epsilon x its norm, the step's gradients are taken there and applied, and the push is
        taken back, so the update favours weights whose loss stays low nearby (flat minima)."""
        if self.awp_epsilon <= 0:
            return super().train_step(data)
        weights = [w for w in self.trainable_weights if len(w.shape) >= 2]
        active = self.optimizer.iterations >= self.awp_from_step

        def push():
            x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
            with tf.GradientTape() as tape:
                y_pred = self(x, training=True)
                loss = self._compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=True)
                loss = self.optimizer.scale_loss(loss)
            grads = tape.gradient(loss, weights)
            deltas = []
            for w, g in zip(weights, grads):
                g = tf.zeros_like(w) if g is None else tf.cast(g, w.dtype)
                d = self.awp_epsilon * tf.norm(w) / (tf.norm(g) + 1e-12) * g
                w.assign_add(d)
                deltas.append(d)
            return deltas

        deltas = tf.cond(active, push, lambda: [tf.zeros_like(w) for w in weights])
        metrics = super().train_step(data)
        for w, d in zip(weights, deltas):
            w.assign_sub(d)
        return metrics

    def noisy(self, tokens_in):
        """Decoder-input noise (2nd place: 20%): each teacher-forced input character is replaced
        by a random character with probability model.token_noise, so the decoder learns not to
        trust its own history blindly (at inference that history holds its mistakes). SOS, EOS
        and PAD stay; the targets are unchanged."""
        shape = tf.shape(tokens_in)
        hit = keras.random.uniform(shape, seed=self.noise_seed) < self.cfg.token_noise
        chars = tf.cast(keras.random.randint(shape, 0, self.cfg.pad, seed=self.noise_seed), tokens_in.dtype)
        return tf.where(hit & (tokens_in < self.cfg.pad), chars, tokens_in)


def build(cfg: ModelConfig) -> FingerspellingModel:
    """A built model (weights created) for this config."""
    model = FingerspellingModel(cfg, name="fingerspelling")
    with warnings.catch_warnings():  # Keras warns that the unused ctc_head is not built yet
        warnings.filterwarnings("ignore", message=r".*does not have a `build\(\)` method")
        model(
            {
                "frames": tf.zeros([1, cfg.max_frames, cfg.n_features]),
                "mask": tf.ones([1, cfg.max_frames], tf.bool),
                "tokens": tf.zeros([1, cfg.max_length], tf.int32),
            }
        )
    if model.ctc_head is not None and not model.ctc_head.built:  # a training aid: not called above
        model.ctc_head.build((None, None, cfg.encoder.width))
    return model


def float32_twin(model: FingerspellingModel) -> FingerspellingModel:
    """`model` itself if it computes in float32; otherwise (trainer.precision=mixed_*: float16 or
    bfloat16 compute over float32 weights) the same model built under the float32 policy with a
    copy of its weights. The export converts the twin, so a model trained in mixed precision
    ships a float32 graph (export.quantize=fp16 halves it only where asked)."""
    if model.compute_dtype == "float32":
        return model
    policy = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("float32")
    try:
        twin = build(model.cfg)
    finally:
        keras.mixed_precision.set_global_policy(policy)
    twin.set_weights(model.get_weights())
    return twin
