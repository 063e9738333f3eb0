"""The encoder-decoder transformer over landmark frames (Keras 3 on TensorFlow), readable top to bottom.

frames [B, T, F] (NaN = not detected) --FrameEmbedding--> [B, T, We]
  --EncoderBlock x depth (self-attention over real frames only)--> memory [B, T, Wd]
tokens [B, L] --token + position embedding--> [B, L, Wd]
  --DecoderBlock x depth (causal self-attention, cross-attention over memory)--> logits [B, L, V]

Training adds (model.ctc_weight) a CTC loss on the encoder output: ctc_head [B, T, C+1].
The pieces: aslfr.model.config (dimensions), aslfr.model.layers (the blocks), aslfr.model.losses
(cross-entropy, CTC, metrics); greedy decoding with a key/value cache, for the validation metric
and the export, is aslfr.model.decoding.
"""

from __future__ import annotations

import warnings

import keras
import tensorflow as tf
from keras import layers

from aslfr.model.config import ModelConfig
from aslfr.model.layers import DecoderBlock, EncoderBlock, FrameEmbedding, layer_norm
from aslfr.model.losses import ctc_loss


class FingerspellingModel(keras.Model):
    """Encoder-decoder transformer. `call({"frames", "mask", "tokens"})` -> teacher-forced logits
    [B, L, V]; the decoder input is SOS followed by the target tokens shifted right."""

    def __init__(self, cfg: ModelConfig, **kw):
        super().__init__(**kw)
        self.cfg = cfg
        enc, dec = cfg.encoder, cfg.decoder
        self.embedding = FrameEmbedding(cfg, name="frame_embedding")
        self.encoder_blocks = [
            EncoderBlock(enc, cfg.attention_dropout, cfg.mlp_dropout, name=f"encoder_{i}")
            for i in range(enc.depth)
        ]
        self.encoder_norm = layer_norm("encoder_norm")
        # Training aid only: a CTC head on the encoder teaches it to align frames with characters
        # early (as hybrid CTC/attention recognizers do); decoding always uses the decoder.
        self.ctc_head = (
            layers.Dense(cfg.pad + 1, name="ctc_head")  # characters + blank (last)
            if cfg.ctc_weight
            else None
        )
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
        pos = self.token_position[start : start + length]
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
            logits = self.ctc_head(encoded)
            self.add_loss(
                self.cfg.ctc_weight
                * ctc_loss(logits, inputs["mask"], tokens, self.cfg.pad, dense=self.cfg.ctc_xla)
            )
        return self.decode(self.bridge(encoded), inputs["mask"], tokens_in, training)


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
    if model.ctc_head is not None:  # used in training only, so the call above did not build it
        model.ctc_head.build((None, None, cfg.encoder.width))
    return model
