"""Optimizers and learning-rate schedules: the factories that the `optimizer` and `schedule` config
groups name (`_target_`)."""

from __future__ import annotations

import math

import keras
import tensorflow as tf

from aslfr.config import Optimizer, Schedule


@keras.saving.register_keras_serializable("aslfr")
class WarmupCosine(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up over `warmup_steps`, then cosine decay from `peak` to `final_ratio * peak`
    at `total_steps` (seed 001's schedule, per step). A function of the optimizer's step counter,
    so a resumed run continues where it stopped."""

    def __init__(self, peak: float, warmup_steps: int, total_steps: int, final_ratio: float = 0.0):
        self.peak, self.warmup_steps = float(peak), int(warmup_steps)
        self.total_steps, self.final_ratio = max(int(total_steps), 1), float(final_ratio)

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        warm = self.peak * (step + 1.0) / max(self.warmup_steps, 1)
        span = max(self.total_steps - self.warmup_steps, 1)
        progress = tf.clip_by_value((step - self.warmup_steps) / span, 0.0, 1.0)
        cosine = 0.5 * (1.0 + tf.cos(math.pi * progress))
        decayed = self.peak * (self.final_ratio + (1.0 - self.final_ratio) * cosine)
        return tf.where(step < self.warmup_steps, warm, decayed)

    def get_config(self):
        return {
            "peak": self.peak,
            "warmup_steps": self.warmup_steps,
            "total_steps": self.total_steps,
            "final_ratio": self.final_ratio,
        }


def cosine(peak: float, steps_per_epoch: int, epochs: int, *, warmup_epochs: float, final_ratio: float):
    """schedule=cosine: linear warm-up over warmup_epochs, then a cosine decay to final_ratio x
    peak at the end of training."""
    warmup = round(warmup_epochs * steps_per_epoch)
    return WarmupCosine(peak, warmup, steps_per_epoch * epochs, final_ratio)


def constant(peak: float, steps_per_epoch: int, epochs: int, *, warmup_epochs: float):
    """schedule=constant: the peak rate throughout, after an optional linear warm-up (a plain
    number without one)."""
    warmup = round(warmup_epochs * steps_per_epoch)
    return peak if warmup == 0 else WarmupCosine(peak, warmup, steps_per_epoch * epochs, final_ratio=1.0)


def adamw(learning_rate, *, lr: float, weight_decay_ratio: float, **common) -> keras.optimizers.Optimizer:
    """optimizer=adamw. Keras' AdamW decays by weight_decay x lr(t): with weight_decay = ratio x
    peak LR the decay follows the learning rate, as seed 001's WD = 0.05 x LR callback did."""
    return keras.optimizers.AdamW(learning_rate, weight_decay=weight_decay_ratio * lr, **_keras(**common))


def adam(learning_rate, *, lr: float, weight_decay_ratio: float, **common) -> keras.optimizers.Optimizer:
    """optimizer=adam (no weight decay: weight_decay_ratio is AdamW's)."""
    return keras.optimizers.Adam(learning_rate, **_keras(**common))


def _keras(*, beta_1: float, beta_2: float, epsilon: float, clipnorm: float | None, ema: float) -> dict:
    """The arguments both optimizers share: clipnorm null or 0 is off; ema > 0 keeps the
    weights' moving average at that momentum (updated every step; swapped in for validation, the
    best checkpoint and the export)."""
    return {
        "beta_1": beta_1,
        "beta_2": beta_2,
        "epsilon": epsilon,
        "clipnorm": clipnorm or None,
        "use_ema": ema > 0,
        "ema_momentum": ema or 0.99,
    }


def make_optimizer(optimizer: Optimizer, schedule: Schedule, steps_per_epoch: int, epochs: int):
    """The `optimizer` and `schedule` groups' factories (their `_target_`, partial): the schedule
    given the peak rate and the run's length, the optimizer given the schedule."""
    return optimizer.factory()(schedule.factory()(optimizer.lr, steps_per_epoch, epochs))


def current_lr(optimizer) -> float:
    lr = optimizer.learning_rate
    return float(lr(optimizer.iterations) if callable(lr) else lr)
