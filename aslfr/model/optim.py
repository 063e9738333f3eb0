"""Optimizers and learning-rate schedules from the `optimizer` and `schedule` config groups."""

from __future__ import annotations

import math
from collections.abc import Mapping

import keras
import tensorflow as tf


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


def make_schedule(schedule_cfg: Mapping, lr: float, steps_per_epoch: int, epochs: int):
    """Linear warm-up over schedule.warmup_epochs, then a cosine decay to final_ratio x peak at the
    end of training. `schedule=constant` is the same with final_ratio 1 (no decay); without a
    warm-up it is a plain number."""
    warmup = int(round(float(schedule_cfg["warmup_epochs"]) * steps_per_epoch))
    final_ratio = float(schedule_cfg["final_ratio"])
    if warmup == 0 and final_ratio == 1.0:
        return lr
    return WarmupCosine(lr, warmup, steps_per_epoch * epochs, final_ratio)


def _adamw(lr: float, opt_cfg: Mapping, **common) -> keras.optimizers.Optimizer:
    # Keras' AdamW decays by weight_decay * lr(t): with weight_decay = ratio * peak LR the decay
    # follows the learning rate, as seed 001's WD = 0.05 x LR callback did.
    return keras.optimizers.AdamW(weight_decay=float(opt_cfg["weight_decay_ratio"]) * lr, **common)


def _adam(lr: float, opt_cfg: Mapping, **common) -> keras.optimizers.Optimizer:
    return keras.optimizers.Adam(**common)


OPTIMIZERS = {"adamw": _adamw, "adam": _adam}  # optimizer.name (the schema's closed choice)


def make_optimizer(opt_cfg: Mapping, schedule_cfg: Mapping, steps_per_epoch: int, epochs: int):
    lr = float(opt_cfg["lr"])
    schedule = make_schedule(schedule_cfg, lr, steps_per_epoch, epochs)
    return OPTIMIZERS[str(opt_cfg["name"])](
        lr,
        opt_cfg,
        learning_rate=schedule,
        beta_1=float(opt_cfg["beta_1"]),
        beta_2=float(opt_cfg["beta_2"]),
        epsilon=float(opt_cfg["epsilon"]),
        clipnorm=float(opt_cfg["clipnorm"]) if opt_cfg["clipnorm"] else None,
        # the weights' moving average (updated every step; the Loop swaps it in for validation,
        # the best checkpoint and the export)
        use_ema=float(opt_cfg["ema"]) > 0,
        ema_momentum=float(opt_cfg["ema"]) or 0.99,
    )


def current_lr(optimizer) -> float:
    lr = optimizer.learning_rate
    return float(lr(optimizer.iterations) if callable(lr) else lr)
