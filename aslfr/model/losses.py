"""Losses and metrics: label-smoothed cross-entropy that ignores PAD, the auxiliary CTC loss on the
encoder, top-k accuracy over non-PAD target tokens (teacher-forced), and the competition's
Levenshtein score on greedy decodes."""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf
from rapidfuzz.distance import Levenshtein


class SmoothedCrossEntropy(keras.losses.Loss):
    """Mean over non-PAD target tokens of the label-smoothed cross-entropy."""

    def __init__(self, vocab_size: int, pad: int, label_smoothing: float, name="loss", **kw):
        super().__init__(name=name, **kw)
        self.vocab_size, self.pad, self.label_smoothing = vocab_size, pad, label_smoothing

    def call(self, y_true, y_pred):
        y_true = tf.cast(y_true, tf.int32)
        onehot = tf.one_hot(y_true, self.vocab_size, dtype=tf.float32)
        loss = keras.losses.categorical_crossentropy(
            onehot, tf.cast(y_pred, tf.float32), from_logits=True, label_smoothing=self.label_smoothing
        )
        real = tf.cast(y_true != self.pad, tf.float32)
        # Per sequence: summed token losses, scaled so the batch mean is the mean over tokens.
        n_batch = tf.cast(tf.shape(y_true)[0], tf.float32)
        return tf.reduce_sum(loss * real, axis=1) * n_batch / tf.maximum(tf.reduce_sum(real), 1.0)

    def get_config(self):
        return {
            **super().get_config(),
            "vocab_size": self.vocab_size,
            "pad": self.pad,
            "label_smoothing": self.label_smoothing,
        }


class TokenTopK(keras.metrics.Metric):
    """Top-k accuracy over non-PAD target tokens."""

    def __init__(self, k: int, pad: int, name: str | None = None, **kw):
        super().__init__(name=name or f"top{k}", **kw)
        self.k, self.pad = k, pad
        self.hits = self.add_variable(shape=(), initializer="zeros", name="hits")
        self.count = self.add_variable(shape=(), initializer="zeros", name="count")

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true = tf.reshape(tf.cast(y_true, tf.int32), [-1])
        y_pred = tf.reshape(tf.cast(y_pred, tf.float32), [-1, tf.shape(y_pred)[-1]])
        real = tf.cast(y_true != self.pad, tf.float32)
        hit = tf.cast(tf.math.in_top_k(y_true, y_pred, self.k), tf.float32)
        self.hits.assign_add(tf.reduce_sum(hit * real))
        self.count.assign_add(tf.reduce_sum(real))

    def result(self):
        return self.hits / tf.maximum(self.count, 1.0)

    def reset_state(self):
        self.hits.assign(0.0)
        self.count.assign(0.0)


@dataclass(frozen=True)
class EditScore:
    distances: np.ndarray  # per phrase
    n_chars: int

    @property
    def mean_distance(self) -> float:
        return float(self.distances.mean()) if len(self.distances) else 0.0

    @property
    def score(self) -> float:
        """The competition metric: (N - D) / N over the whole set (corpus level; may be < 0)."""
        return (self.n_chars - float(self.distances.sum())) / max(self.n_chars, 1)


def edit_score(truth: list[str], predicted: list[str]) -> EditScore:
    distances = np.array(
        [Levenshtein.distance(t, p) for t, p in zip(truth, predicted, strict=True)], np.int64
    )
    return EditScore(distances, sum(len(t) for t in truth))


def best_constant_phrase(phrases: list[str], candidates: int = 2000) -> tuple[str, float]:
    """The phrase that, predicted for every clip, maximizes the expected (N - D)/N over `phrases`
    (the training folds' phrases), among the `candidates` most frequent of them and the empty
    phrase; and its expected N - D per clip (the empty phrase's is 0)."""
    from rapidfuzz import process

    unique, counts = np.unique(np.asarray(phrases, dtype=object), return_counts=True)
    pool = [str(p) for p in unique[np.argsort(-counts, kind="stable")][:candidates]]
    distances = process.cdist(pool, phrases, scorer=Levenshtein.distance, dtype=np.int32, workers=-1)
    gains = (sum(len(p) for p in phrases) - distances.sum(axis=1)) / max(len(phrases), 1)
    best = int(np.argmax(gains))
    return (pool[best], float(gains[best])) if gains[best] > 0 else ("", 0.0)


def ctc_loss(logits, mask, tokens, pad: int, dense: bool = False):
    """CTC loss of frame logits [B, T, C+1] (blank: the last class) against the target tokens
    [B, L] (characters < pad, then EOS/PAD), per character, averaged over the sequences whose
    frames can hold their phrase. Sparse labels select TensorFlow's C++ CTC kernel; `dense`
    computes the same loss from dense labels with ordinary TensorFlow ops, which XLA compiles
    (trainer.jit=true: XLA has no kernel for the C++ one). An empty batch has loss 0: a replica's
    share of a short last evaluation batch under a mirrored strategy can be empty, and the kernel
    refuses batch size 0."""
    return tf.cond(
        tf.shape(tokens)[0] > 0,
        lambda: _ctc_loss(logits, mask, tokens, pad, dense),
        lambda: tf.constant(0.0, tf.float32),
    )


def _ctc_loss(logits, mask, tokens, pad: int, dense: bool):
    tokens = tf.cast(tokens, tf.int32)
    is_char = tokens < pad
    target_len = tf.reduce_sum(tf.cast(is_char, tf.int32), axis=1)
    repeats = tf.reduce_sum(tf.cast(is_char[:, 1:] & (tokens[:, 1:] == tokens[:, :-1]), tf.int32), axis=1)
    frames_len = tf.reduce_sum(tf.cast(tf.cast(mask, tf.bool), tf.int32), axis=1)
    # An infeasible alignment would give an infinite loss, and the kernel refuses empty
    # targets: such sequences get a one-character stand-in target and are left out of the mean.
    ok = (frames_len >= target_len + repeats) & (target_len > 0)
    first = tf.range(tf.shape(tokens)[1])[None, :] == 0
    keep = (is_char & ok[:, None]) | (first & ~ok[:, None])
    values = tf.where(ok[:, None], tokens, 0)
    logits = tf.cast(logits, tf.float32)
    if dense:  # the same labels, dense: the characters lead each row of `tokens`
        loss = tf.nn.ctc_loss(
            tf.where(keep, values, 0),
            logits,
            tf.where(ok, target_len, 1),
            tf.maximum(frames_len, 1),
            logits_time_major=False,
            blank_index=-1,
        )
    else:
        labels = tf.SparseTensor(
            tf.where(keep), tf.boolean_mask(values, keep), tf.shape(tokens, out_type=tf.int64)
        )
        loss = tf.nn.ctc_loss(
            labels, logits, None, tf.maximum(frames_len, 1), logits_time_major=False, blank_index=-1
        )
    weight = tf.cast(ok, tf.float32)
    per_char = loss / tf.cast(tf.maximum(target_len, 1), tf.float32)
    return tf.reduce_sum(per_char * weight) / tf.maximum(tf.reduce_sum(weight), 1.0)
