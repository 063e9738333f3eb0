"""What happens around Keras' own loop, one job per class:

NanGuard       stops training at the first non-finite loss
Validation     evaluates on the validation fold and chooses the decoding it reports
Checkpointing  the averaged weights in for evaluation, the best weights kept, each epoch's checkpoint
TrainingLog    W&B rows (steps and epochs), examples, histograms, a line per epoch
EpochEnd       each epoch's end: the above in the order a resume after kill -9 needs
EpochProgress  a progress bar inside each epoch on a terminal
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import keras
import numpy as np
from tqdm.auto import tqdm

from aslfr import names
from aslfr.config import Trainer
from aslfr.model.losses import edit_score
from aslfr.model.optim import current_lr
from aslfr.train.checkpoints import Checkpoints
from aslfr.train.tracking import Tracker

log = logging.getLogger(__name__)


def as_keras_xy(batch):
    """Keras' (inputs, targets) from a pipeline batch: the targets are the tokens."""
    return batch, batch["tokens"]


def _step(model) -> int:
    return int(model.optimizer.iterations.numpy())


@dataclass
class Evaluation:
    metrics: dict  # val/* of the reported decoding (and each decoding's val/score_*)
    truth: list[str]
    predicted: list[str]  # the reported decoding's phrases
    distances: np.ndarray
    scores: dict[str, float] = field(default_factory=dict)  # each decoding's val/score
    seconds: float = 0.0


class NanGuard(keras.callbacks.Callback):
    """Stops training at the first non-finite training loss; `diverged` says where."""

    def __init__(self, state: dict):
        super().__init__()
        self.state = state
        self.diverged: str | None = None

    def on_train_batch_end(self, batch, logs=None):
        loss = float(logs["loss"])
        if not math.isfinite(loss):
            epoch, step = self.state["epoch"] + 1, _step(self.model)
            self.diverged = f"the training loss became {loss} at epoch {epoch}, step {step}"
            self.model.stop_training = True


class Validation:
    """The validation fold every `eval_every` epochs (and at the last): loss and top-k
    teacher-forced, then every decoding the model can do (the dataset decoder's), each scored on
    the whole fold. It reports (val/score, val/levenshtein, the examples) the configured decoding,
    the first one, or with model.decode=best the best one."""

    def __init__(self, decoder, val_ds, eval_every: int):
        self.decoder, self.val_ds, self.eval_every = decoder, val_ds, max(1, eval_every)

    def due(self, epoch_number: int, epochs: int) -> bool:
        return self.val_ds is not None and (epoch_number % self.eval_every == 0 or epoch_number == epochs)

    def __call__(self, model) -> Evaluation:
        t = time.perf_counter()
        values = model.evaluate(self.val_ds.map(as_keras_xy), verbose=0, return_dict=True)
        metrics = {names.VAL_LOSS: float(values["loss"])}
        if "top1" in values:  # a model without an attention decoder has no token predictions
            metrics.update({names.VAL_TOP1: float(values["top1"]), names.VAL_TOP5: float(values["top5"])})
        shown, scores = None, {}
        truth, predictions = self.decoder.each(self.val_ds)
        for how, predicted in predictions.items():
            score = edit_score(truth, predicted)
            scores[how] = score.score
            if len(predictions) > 1:
                metrics[names.val_score(how)] = score.score
            # the configured decoding (or the best so far): the run's score and its examples
            if shown is None or (self.decoder.cfg.choose_decode and score.score > metrics[names.VAL_SCORE]):
                shown = Evaluation({}, truth, predicted, score.distances)
                metrics.update({names.VAL_LEVENSHTEIN: score.mean_distance, names.VAL_SCORE: score.score})
        if self.decoder.cfg.fallback_frames:
            metrics[names.VAL_FALLBACKS] = self.decoder.fallbacks
        shown.metrics, shown.scores, shown.seconds = metrics, scores, time.perf_counter() - t
        return shown


class Checkpointing:
    """The weights: the moving average (optimizer.ema) in while they are evaluated and kept as
    the best, the trained ones back for training and its checkpoint; the best so far in
    best.weights.h5 (its score, epoch and each decoding's score in `state`); each epoch's
    checkpoint with `state`."""

    def __init__(self, checkpoints: Checkpoints, state: dict):
        self.checkpoints, self.state = checkpoints, state
        self.ema = keras.callbacks.SwapEMAWeights()
        self.model = None

    def set_model(self, model) -> None:
        self.model = model
        self.ema.set_model(model)

    @contextmanager
    def averaged(self) -> Iterator[None]:
        swap = getattr(self.model.optimizer, "use_ema", False)
        if swap:
            self.ema.on_test_begin()
        yield
        if swap:
            self.ema.on_test_end()

    def keep_if_best(self, ev: Evaluation, epoch_number: int) -> None:
        score = ev.metrics[names.VAL_SCORE]
        if score > self.state.get("best_score", -math.inf):
            self.state.update(best_score=score, best_epoch=epoch_number, best_scores=ev.scores)
            self.checkpoints.save_best(self.model)

    def save(self, epoch_number: int, ev: Evaluation | None) -> None:
        """The checkpoint of this epoch: weights, optimizer and `state` (with the last evaluation)."""
        last_eval = ev.metrics if ev is not None else self.state.get("last_eval", {})
        self.state.update(epoch=epoch_number, last_eval=last_eval)
        self.checkpoints.save(self.model, self.model.optimizer, self.state)


class TrainingLog(keras.callbacks.Callback):
    """The loss, learning rate and epoch every `trainer.log_every` steps; each epoch's row
    (samples/s, the epoch's loss, its evaluation) with `trainer.examples` examples and the edit
    distances' histogram; a line per epoch in the log."""

    def __init__(
        self, trainer: Trainer, tracker: Tracker, guard: NanGuard, state: dict, steps_per_epoch: int
    ):
        super().__init__()
        self.trainer, self.tracker, self.guard, self.state = trainer, tracker, guard, state
        self.steps_per_epoch, self.log_every = steps_per_epoch, max(1, trainer.log_every)

    def on_epoch_begin(self, epoch, logs=None):
        self.t0, self.seen = time.perf_counter(), 0

    def on_train_batch_end(self, batch, logs=None):
        self.seen += self.trainer.batch_size
        step = _step(self.model)
        if self.guard.diverged or step % self.log_every:
            return
        self.tracker.log(
            {
                names.TRAIN_LOSS: float(logs["loss"]),
                names.TRAIN_LR: current_lr(self.model.optimizer),
                names.EPOCH: self.state["epoch"] + batch / self.steps_per_epoch,
            },
            step,
        )

    def epoch_row(self, epoch_number: int, loss: float) -> dict:
        """The epoch's training figures, read as it ends (before any evaluation)."""
        seconds = time.perf_counter() - self.t0
        return {
            names.TRAIN_SAMPLES_PER_SEC: self.seen / max(seconds, 1e-9),
            names.TRAIN_EPOCH_LOSS: loss,
            names.EPOCH: epoch_number,
        }

    def commit(self, row: dict, ev: Evaluation | None) -> None:
        """The epoch's row with its evaluation, in the W&B record and synced to disk."""
        step = _step(self.model)
        if ev is None:
            log.info("epoch %d: loss %.4f", row[names.EPOCH], row[names.TRAIN_EPOCH_LOSS])
        else:
            row = {**row, **ev.metrics, names.VAL_SECONDS: ev.seconds}
            # Validation runs shortest first: pick examples across the whole range of lengths.
            pick = np.unique(np.linspace(0, len(ev.truth) - 1, self.trainer.examples).astype(int))
            self.tracker.log_examples(
                [ev.truth[i] for i in pick], [ev.predicted[i] for i in pick], ev.distances[pick], step
            )
            self.tracker.log_histogram(ev.distances, step)
            log.info(
                "epoch %d: loss %.4f | %s",
                row[names.EPOCH],
                row[names.TRAIN_EPOCH_LOSS],
                describe_eval(ev.metrics),
            )
        self.tracker.log(row, step, commit=True)
        self.tracker.sync(step)


class EpochEnd(keras.callbacks.Callback):
    """Each epoch's end, in this order: its training figures; when due, validation with the
    averaged weights and the best weights kept; its row logged; then its checkpoint. What the
    checkpoint says is done must be in the W&B record first: after a kill -9 the resume continues
    from the checkpoint, and the record must not miss epochs. Nothing after the NaN guard
    stopped training."""

    def __init__(
        self, guard: NanGuard, validation: Validation, checkpointing: Checkpointing, log: TrainingLog
    ):
        super().__init__()
        self.guard, self.validation, self.checkpointing, self.log = guard, validation, checkpointing, log

    def set_model(self, model):
        super().set_model(model)
        self.checkpointing.set_model(model)

    def on_epoch_end(self, epoch, logs=None):
        if self.guard.diverged:
            return
        epoch_number, ev = epoch + 1, None
        row = self.log.epoch_row(epoch_number, float(logs["loss"]))
        if self.validation.due(epoch_number, self.params["epochs"]):
            with self.checkpointing.averaged():
                ev = self.validation(self.model)
                self.checkpointing.keep_if_best(ev, epoch_number)
        self.log.commit(row, ev)
        self.checkpointing.save(epoch_number, ev)


class EpochProgress(keras.callbacks.Callback):
    """A progress bar inside each epoch (steps, loss, samples/s) when stderr is a terminal;
    nothing otherwise (tqdm's `disable=None`), where TrainingLog's line per epoch is the progress."""

    def __init__(self, steps_per_epoch: int, batch_size: int, epochs: int):
        super().__init__()
        self.steps, self.batch_size, self.epochs = steps_per_epoch, batch_size, epochs
        self.bar = None

    def on_epoch_begin(self, epoch, logs=None):
        self.bar = tqdm(
            total=self.steps,
            desc=f"epoch {epoch + 1}/{self.epochs}",
            unit="step",
            leave=False,
            dynamic_ncols=True,
            disable=None,
        )
        self.t0 = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        seconds = max(time.perf_counter() - self.t0, 1e-9)
        self.bar.set_postfix(
            {
                "loss": f"{float(logs['loss']):.4f}",
                "samples/s": f"{(batch + 1) * self.batch_size / seconds:.0f}",
            },
            refresh=batch == 0,
        )  # at once, then at tqdm's pace
        self.bar.update()

    def on_epoch_end(self, epoch, logs=None):
        self.bar.close()

    def on_train_end(self, logs=None):  # stopped mid-epoch (the NaN guard): close it too
        if self.bar is not None:
            self.bar.close()


def describe_eval(metrics: dict) -> str:
    """One line: val loss, top-k, edit distance, the score (and each decoding's)."""
    parts = [f"val loss {metrics[names.VAL_LOSS]:.4f}"]
    if names.VAL_TOP1 in metrics:
        parts.append(f"top1 {metrics[names.VAL_TOP1]:.3f} top5 {metrics[names.VAL_TOP5]:.3f}")
    parts.append(f"levenshtein {metrics[names.VAL_LEVENSHTEIN]:.2f} score {metrics[names.VAL_SCORE]:.4f}")
    by_decode = {k.rsplit("_", 1)[1]: v for k, v in metrics.items() if k.startswith(names.VAL_SCORE + "_")}
    if by_decode:
        parts.append("(" + ", ".join(f"{how} {v:.4f}" for how, v in by_decode.items()) + ")")
    return " ".join(parts)
