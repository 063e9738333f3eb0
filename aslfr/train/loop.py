"""The training loop: Keras `fit` with callbacks for evaluation (loss, top-k, greedy-decoded
Levenshtein on the whole validation fold), W&B logging, checkpoints, resume and the NaN guard."""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from tqdm.auto import tqdm

from aslfr import names
from aslfr.atomic import write_json
from aslfr.config import Config, Fallback, Strategy, Trainer
from aslfr.data import pipeline
from aslfr.data.prepare import DataSplit
from aslfr.errors import ConfigError, Preempted, TrainingDiverged
from aslfr.model.config import ModelConfig, model_config
from aslfr.model.decoding import decode, hand_frames
from aslfr.model.losses import SmoothedCrossEntropy, TokenTopK, best_constant_phrase, edit_score
from aslfr.model.model import FingerspellingModel, build
from aslfr.model.optim import current_lr, make_optimizer
from aslfr.train import decide
from aslfr.train.checkpoints import Checkpoints
from aslfr.train.tracking import Tracker, new_run_id

log = logging.getLogger(__name__)


def configure_devices(trainer: Trainer) -> dict:
    """GPU memory growth, logical CPU devices and precision; must run before TensorFlow touches a
    device. Returns the devices the run sees (devices/*, for its summary and W&B config).

    trainer.gpu_memory_growth: TensorFlow otherwise maps nearly all of every visible GPU's memory
    at its first use, so a second process (another agent's trial) on the same GPU fails."""
    gpus = tf.config.list_physical_devices("GPU")
    if trainer.gpu_memory_growth:
        for gpu in gpus:
            tf.config.experimental.set_memory_growth(gpu, True)
    if trainer.cpu_devices > 1:
        cpus = tf.config.list_physical_devices("CPU")
        tf.config.set_logical_device_configuration(
            cpus[0], [tf.config.LogicalDeviceConfiguration()] * trainer.cpu_devices
        )
    keras.mixed_precision.set_global_policy(trainer.precision.value)
    return device_record(gpus)


def device_record(gpus: Sequence) -> dict:
    """devices/*: CUDA_VISIBLE_DEVICES as the run found it, the GPUs TensorFlow sees (with their
    model names), the host and the SLURM job."""
    job = os.environ.get("SLURM_JOB_ID", "")
    if job and os.environ.get("SLURM_ARRAY_TASK_ID"):
        job += "_" + os.environ["SLURM_ARRAY_TASK_ID"]

    def named(gpu) -> str:
        try:
            model = tf.config.experimental.get_device_details(gpu).get("device_name")
        except (ValueError, RuntimeError):  # a device TensorFlow cannot describe
            model = None
        return f"{gpu.name} ({model})" if model else gpu.name

    return {
        names.DEVICES_CUDA_VISIBLE: os.environ.get("CUDA_VISIBLE_DEVICES", ""),
        names.DEVICES_GPUS: [named(g) for g in gpus],
        names.DEVICES_GPU_COUNT: len(gpus),
        names.DEVICES_HOST: socket.gethostname(),
        names.DEVICES_SLURM_JOB: job,
    }


def make_strategy(trainer: Trainer) -> tf.distribute.Strategy:
    """trainer.strategy: one device, or mirrored over all GPUs (or, without GPUs, over
    trainer.cpu_devices logical CPUs). A choice among three, each needing the devices this
    process found: a name in the config (sweepable, and a key a resume may change), not a
    `_target_`."""
    gpus = tf.config.list_logical_devices("GPU")
    devices = [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]
    if trainer.strategy == Strategy.mirrored:
        return tf.distribute.MirroredStrategy(devices=devices)
    if trainer.strategy == Strategy.one_device:
        return tf.distribute.OneDeviceStrategy(devices[0])
    return tf.distribute.get_strategy()


@dataclass
class Evaluation:
    metrics: dict
    truth: list[str]
    predicted: list[str]
    distances: np.ndarray


class Decoder:
    """Batched decoding of a data set, compiled once, with one decoding or several at once:
    `how` = attention (greedy, key/value cache, early stop), ctc, joint or joint@W
    (`ModelConfig.decodes`), or a sequence of them; the model's configured decoding by default.
    Several decodings share one trace and one pass over the data."""

    def __init__(self, model: FingerspellingModel, vocab, how: str | Sequence[str] | None = None):
        self.vocab, self.cfg = vocab, model.cfg
        self.hows = (how,) if isinstance(how, str) else tuple(how or (model.cfg.decode,))

        def decoded(frames, mask):  # the tokens of each decoding, and each clip's frames showing the hand
            tokens = tuple(decode(model, frames, mask, how=how) for how in self.hows)
            return tokens, hand_frames(model.cfg, frames, mask)

        # One trace for every batch: validation batches vary in size and (cut to their longest
        # clip) in frames, which would retrace per shape and make TensorFlow warn about it.
        self.fn = tf.function(
            decoded,
            input_signature=[
                tf.TensorSpec([None, None, model.cfg.n_features], tf.float32),
                tf.TensorSpec([None, None], tf.float32),
            ],
        )
        self.hand_frames = np.zeros(0, np.int64)  # of the last call's clips, in their order

    @property
    def fallbacks(self) -> int:
        """Clips of the last call given the fallback phrase."""
        return int((self.hand_frames < self.cfg.fallback_frames).sum())

    def each(self, dataset) -> tuple[list[str], dict[str, list[str]]]:
        """The true phrases and, for each decoding, the decoded ones (in the data set's order)."""
        truth, predicted, seen = [], {how: [] for how in self.hows}, []
        for batch in dataset:
            outs, hand = self.fn(batch["frames"], batch["mask"])
            for how, out in zip(self.hows, outs):
                predicted[how] += [self.vocab.decode(row) for row in out.numpy()]
            truth += [self.vocab.decode(row) for row in batch["tokens"].numpy()]
            seen.append(hand.numpy())
        self.hand_frames = np.concatenate(seen) if seen else np.zeros(0, np.int64)
        return truth, predicted

    def __call__(self, dataset) -> tuple[list[str], list[str]]:
        """The true phrases and the first decoding's."""
        truth, predicted = self.each(dataset)
        return truth, predicted[self.hows[0]]


class Loop(keras.callbacks.Callback):
    """Everything that happens around Keras' own loop: step logging, evaluation every
    `eval_every` epochs, checkpoints, the NaN guard, and the summary."""

    def __init__(
        self,
        *,
        trainer: Trainer,
        tracker: Tracker,
        checkpoints: Checkpoints,
        decoder: Decoder,
        val_ds,
        state: dict,
        steps_per_epoch: int,
        batch_size: int,
    ):
        super().__init__()
        self.trainer, self.tracker, self.checkpoints = trainer, tracker, checkpoints
        self.decoder, self.val_ds, self.state = decoder, val_ds, state
        self.steps_per_epoch, self.batch_size = steps_per_epoch, batch_size
        self.log_every = max(1, trainer.log_every)
        self.eval_every = max(1, trainer.eval_every)
        self.diverged: str | None = None
        self.last_eval: dict = state.get("last_eval", {})
        self.scores: dict[str, float] = {}  # each decoding's val/score at the last evaluation
        self.ema = keras.callbacks.SwapEMAWeights()  # optimizer.ema: evaluate the averaged weights

    def set_model(self, model):
        super().set_model(model)
        self.ema.set_model(model)

    @property
    def step(self) -> int:
        return int(self.model.optimizer.iterations.numpy())

    def on_epoch_begin(self, epoch, logs=None):
        self.t0, self.seen = time.perf_counter(), 0

    def on_train_batch_end(self, batch, logs=None):
        loss = float(logs["loss"])
        self.seen += self.batch_size
        if not math.isfinite(loss):
            self.diverged = (
                f"the training loss became {loss} at epoch {self.state['epoch'] + 1}, step {self.step}"
            )
            self.model.stop_training = True
            return
        if self.step % self.log_every == 0:
            self.tracker.log(
                {
                    names.TRAIN_LOSS: loss,
                    names.TRAIN_LR: current_lr(self.model.optimizer),
                    names.EPOCH: self.state["epoch"] + batch / self.steps_per_epoch,
                },
                self.step,
            )

    def evaluate(self) -> Evaluation:
        """Loss (and top-k, with a decoder) teacher-forced; then every decoding the model can do,
        each scored on the whole fold: val/score is the configured one's (the first decoder),
        or with model.decode=best the best one's."""
        values = self.model.evaluate(self.val_ds.map(_xy), verbose=0, return_dict=True)
        metrics = {names.VAL_LOSS: float(values["loss"])}
        if "top1" in values:  # a model without an attention decoder has no token predictions
            metrics.update({names.VAL_TOP1: float(values["top1"]), names.VAL_TOP5: float(values["top5"])})
        shown, self.scores = None, {}
        truth, predictions = self.decoder.each(self.val_ds)
        for how, predicted in predictions.items():
            score = edit_score(truth, predicted)
            self.scores[how] = score.score
            if len(predictions) > 1:
                metrics[names.val_score(how)] = score.score
            # the configured decoding (or the best so far): the run's score and its examples
            if shown is None or (self.decoder.cfg.choose_decode and score.score > metrics[names.VAL_SCORE]):
                shown = Evaluation({}, truth, predicted, score.distances)
                metrics.update({names.VAL_LEVENSHTEIN: score.mean_distance, names.VAL_SCORE: score.score})
        if self.decoder.cfg.fallback_frames:
            metrics[names.VAL_FALLBACKS] = self.decoder.fallbacks
        shown.metrics = metrics
        return shown

    def on_epoch_end(self, epoch, logs=None):
        if self.diverged:
            return
        seconds = time.perf_counter() - self.t0
        epoch_number = epoch + 1
        metrics = {
            names.TRAIN_SAMPLES_PER_SEC: self.seen / max(seconds, 1e-9),
            names.TRAIN_EPOCH_LOSS: float(logs["loss"]),
            names.EPOCH: epoch_number,
        }
        evaluated = self.val_ds is not None and (
            epoch_number % self.eval_every == 0 or epoch_number == self.params["epochs"]
        )
        averaged = evaluated and getattr(self.model.optimizer, "use_ema", False)
        if averaged:  # the moving average in, for the metrics and the best checkpoint
            self.ema.on_test_begin()
        if evaluated:
            t = time.perf_counter()
            ev = self.evaluate()
            metrics.update(ev.metrics, **{names.VAL_SECONDS: time.perf_counter() - t})
            self.last_eval = ev.metrics
            # Validation runs shortest first: pick examples across the whole range of lengths.
            n = self.trainer.examples
            pick = np.unique(np.linspace(0, len(ev.truth) - 1, n).astype(int))
            self.tracker.log_examples(
                [ev.truth[i] for i in pick], [ev.predicted[i] for i in pick], ev.distances[pick], self.step
            )
            self.tracker.log_histogram(ev.distances, self.step)
            if ev.metrics[names.VAL_SCORE] > self.state.get("best_score", -math.inf):
                self.state.update(
                    best_score=ev.metrics[names.VAL_SCORE], best_epoch=epoch_number, best_scores=self.scores
                )
                self.checkpoints.save_best(self.model)
            log.info("epoch %d: loss %.4f | %s", epoch_number, logs["loss"], describe_eval(ev.metrics))
        if averaged:  # the trained weights back: training and its checkpoint go on from them
            self.ema.on_test_end()
        if not evaluated:
            log.info("epoch %d: loss %.4f", epoch_number, logs["loss"])
        self.tracker.log(metrics, self.step, commit=True)
        self.state.update(epoch=epoch_number, last_eval=self.last_eval)
        # What the checkpoint says is done must be in the W&B record first: after a kill -9
        # the resume continues from the checkpoint, and the record must not miss epochs.
        self.tracker.sync(self.step)
        self.checkpoints.save(self.model, self.model.optimizer, self.state)


class EpochProgress(keras.callbacks.Callback):
    """A progress bar inside each epoch (steps, loss, samples/s) when stderr is a terminal;
    nothing otherwise (tqdm's `disable=None`), where Loop's line per epoch is the progress."""

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


def _xy(batch):
    """Keras' (inputs, targets) from a pipeline batch: the targets are the tokens."""
    return batch, batch["tokens"]


def choose_fallback(fallback: Fallback, train_phrases: list[str], run_dir: Path) -> dict:
    """The fallback rule of this run (`fallback`; {} when off): the configured phrase, or the one
    that maximizes the expected (N - D)/N on the training folds' phrases, and the threshold
    (None until the run has chosen it: fallback.min_hand_frames=null). Written to the run
    directory, where the export finds it."""
    threshold, phrase = fallback.min_hand_frames, fallback.phrase
    if threshold is not None and threshold <= 0:
        return {}
    if phrase is None:
        phrase, expected = best_constant_phrase(train_phrases)
    else:
        score = edit_score(train_phrases, [phrase] * len(train_phrases))
        expected = float(score.n_chars - score.distances.sum()) / max(len(train_phrases), 1)
    rule = {
        "min_hand_frames": threshold,
        "phrase": phrase,
        "expected_score": expected,
    }
    write_json(run_dir / names.FALLBACK_FILE, rule)
    below = "a number of" if threshold is None else f"fewer than {threshold}"
    log.info(
        "fallback: clips with %s frames showing the hand decode as %r (expected N - D per clip on "
        "the training folds: %.2f)%s",
        below,
        phrase,
        expected,
        "; the number is chosen on the training folds after training" if threshold is None else "",
    )
    return rule


def compile_model(model: keras.Model, cfg: Config, steps_per_epoch: int, epochs: int) -> keras.Model:
    """Optimizer, schedule, loss and metrics from the config (the benchmarks compile this way too)."""
    pad, vocab_size = model.cfg.pad, model.cfg.vocab_size
    optimizer = make_optimizer(cfg.optimizer, cfg.schedule, steps_per_epoch, epochs)
    model.awp_epsilon = cfg.optimizer.awp
    model.awp_from_step = math.floor(cfg.optimizer.awp_from * steps_per_epoch * epochs)
    if not model.cfg.has_decoder:  # CTC only: the model adds its CTC loss itself
        model.compile(optimizer=optimizer, jit_compile=cfg.trainer.jit)
        return model
    model.compile(
        optimizer=optimizer,
        loss=SmoothedCrossEntropy(vocab_size, pad, cfg.model.label_smoothing),
        metrics=[TokenTopK(1, pad), TokenTopK(5, pad)],
        jit_compile=cfg.trainer.jit,
    )
    return model


def validation_dataset(
    cfg: Config, split: DataSplit, mcfg: ModelConfig, batch_size: int, tokens: np.ndarray | None = None
) -> tf.data.Dataset:
    """The validation fold as the validation metric reads it: deterministic batches of
    `batch_size`, frames cut to data.length_step, phrases encoded for the model (`tokens`, if
    already encoded for every prepared sequence). The runs' own metric, the export's tests and
    the benches that re-score a run all read it here, so they decode the same batches."""
    tokens = split.vocab.encode(list(split.prepared.phrase), mcfg.max_length) if tokens is None else tokens
    return _fold_dataset(cfg, split, mcfg, batch_size, tokens, split.val)


def _fold_dataset(
    cfg: Config,
    split: DataSplit,
    mcfg: ModelConfig,
    batch_size: int,
    tokens: np.ndarray,
    indices: np.ndarray,
    training: bool = False,
    **options,
) -> tf.data.Dataset:
    """The sequences `indices` as the model reads them, for training or (in order, or shortest
    first with data.length_step) for evaluation: the options every use shares here, the others
    (augmentation, batching by length, length_step=0...) as given."""
    p = split.prepared
    return pipeline.make_dataset(
        p.frames,
        p.offsets,
        tokens,
        indices,
        spec=split.spec,
        stats=split.stats,
        max_frames=mcfg.max_frames,
        batch_size=batch_size,
        seed=cfg.trainer.seed,
        training=training,
        **{"length_step": cfg.data.length_step, **options},
    )


def choose_threshold(model, cfg: Config, split: DataSplit, tokens, phrase: str, batch_size: int) -> dict:
    """fallback.min_hand_frames=null: the threshold (frames showing the hand) below which the
    fallback phrase beats the model's own predictions on the training folds, searched up to
    fallback.search_up_to frames; only the clips below that are decoded. The model decodes
    without the fallback (model.cfg's)."""
    up_to = cfg.fallback.search_up_to
    # every training clip's frames showing the hand, in split.train's order (no length sort)
    seen = [
        hand_frames(model.cfg, b["frames"], b["mask"]).numpy()
        for b in _fold_dataset(cfg, split, model.cfg, batch_size, tokens, split.train, length_step=0)
    ]
    counts = np.concatenate(seen) if seen else np.zeros(0, np.int64)
    short = counts < up_to
    gains = np.zeros(up_to + 1)
    if short.any():
        ds = _fold_dataset(cfg, split, model.cfg, batch_size, tokens, split.train[short], length_step=0)
        truth, predicted = Decoder(model, split.vocab)(ds)
        gains = decide.threshold_gains(
            counts[short],
            edit_score(truth, predicted).distances,
            edit_score(truth, [phrase] * len(truth)).distances,
            up_to,
        )
    threshold = decide.best_threshold(gains)
    n_chars = sum(len(str(t)) for t in split.prepared.phrase[split.train])
    log.info(
        "fallback: %s on the training folds (%d of %d clips show the hand in fewer than %d frames; "
        "the phrase %s there)",
        f"below {threshold} frames showing the hand" if threshold else "off",
        int(short.sum()),
        len(counts),
        up_to,
        f"saves {gains[threshold]:.0f} characters' edits" if threshold else "never beats the model",
    )
    return {
        names.FALLBACK_MIN_HAND_FRAMES: threshold,
        names.FALLBACK_TRAIN_CLIPS: int((counts < threshold).sum()),
        names.FALLBACK_TRAIN_GAIN: float(gains[threshold]) / max(n_chars, 1),
    }


def ship(
    model,
    cfg: Config,
    split: DataSplit,
    tokens,
    state: dict,
    rule: dict,
    val_ds,
    batch_size: int,
    run_dir: Path,
) -> dict:
    """With the best weights loaded: the decoding and the fallback threshold the run ships
    (aslfr.train.decide), set on model.cfg and written to the run directory. Returns what is
    logged and summarized: the choices, the fallback's clips and gain on each fold, and the
    shipped model's score on the validation fold (best/val/score)."""
    choice = decide.choose_decoding(model.cfg, state.get("best_scores", {}), state.get("best_epoch"))
    mcfg, metrics = choice.cfg, dict(choice.metrics)
    write_json(
        run_dir / names.DECODING_FILE, {"decode": mcfg.decode.value, "joint_weight": mcfg.joint_weight}
    )
    score = state.get("best_scores", {}).get(choice.name, state.get("best_score"))
    if rule:
        model.cfg = decide.fallback_off(mcfg)
        threshold = rule["min_hand_frames"]
        if threshold is None:
            metrics.update(choose_threshold(model, cfg, split, tokens, rule["phrase"], batch_size))
            threshold = metrics[names.FALLBACK_MIN_HAND_FRAMES]
            write_json(run_dir / names.FALLBACK_FILE, {**rule, "min_hand_frames": threshold})
        metrics[names.FALLBACK_MIN_HAND_FRAMES] = threshold
        if val_ds is not None:
            decoder = Decoder(model, split.vocab)
            truth, predicted = decoder(val_ds)
            report = decide.fallback_report(decoder.hand_frames, truth, predicted, rule["phrase"], threshold)
            metrics.update(
                {names.FALLBACK_VAL_CLIPS: report["clips"], names.FALLBACK_VAL_GAIN: report["gain"]}
            )
            score = report["score"]
            log.info(
                "fallback: %d of %d validation clips use it, %+.4f val/score",
                report["clips"],
                len(truth),
                report["gain"],
            )
        tokens_of = tuple(int(t) for t in split.vocab.encode([rule["phrase"]], mcfg.max_length)[0])
        mcfg = dataclasses.replace(
            mcfg, fallback_frames=threshold, fallback_tokens=tokens_of if threshold else ()
        )
    model.cfg = mcfg
    if score is not None:
        metrics[names.BEST_VAL_SCORE] = score
    return metrics


def train(
    cfg: Config,
    split: DataSplit,
    run_dir: Path,
    *,
    known: dict | None = None,
    after: Callable[[FingerspellingModel, Tracker], dict] | None = None,
    devices: dict | None = None,
) -> dict:
    """Train (or resume) in `run_dir`; returns the summary written to summary.json.
    `known`: metrics already measured (the budget probe), put in the W&B summary at once.
    `after(model, tracker)`: called with the best weights loaded once training is done (the
    export, which logs its files with the run); the metrics it returns are logged and join the
    summary. `devices`: what configure_devices saw, in the summary and the W&B config."""
    run_dir = Path(run_dir)
    tcfg = cfg.trainer
    keras.utils.set_random_seed(tcfg.seed)
    strategy = make_strategy(tcfg)
    p = split.prepared
    fallback = choose_fallback(cfg.fallback, [str(t) for t in p.phrase[split.train]], run_dir)
    mcfg = model_config(cfg.model, cfg.data, tcfg.jit, split.spec, split.vocab, fallback)
    tokens = split.vocab.encode(list(p.phrase), mcfg.max_length)
    batch_size, eval_batch_size = tcfg.batch_size, tcfg.eval_batch_size
    train_ds = _fold_dataset(
        cfg,
        split,
        mcfg,
        batch_size,
        tokens,
        split.train,
        training=True,
        augment=cfg.data.augment,
        bucket_by_length=cfg.data.bucket_by_length,
        length_pool=cfg.data.length_pool,
        participants=p.participant_id,
        pad=split.vocab.pad,
        eos=split.vocab.eos,
    )
    replicas = strategy.num_replicas_in_sync
    if replicas > 1 and len(split.val):
        # Keras 3 under tf.distribute fails on a first evaluation batch that does not split evenly
        # across the replicas (keras-team/keras#19246): a whole number of replicas' worth, at most
        # the fold's
        eval_batch_size = max(replicas, min(eval_batch_size, len(split.val)) // replicas * replicas)
    # Validation is deterministic: prepared once, then served from memory at every evaluation.
    val_ds = validation_dataset(cfg, split, mcfg, eval_batch_size, tokens).cache() if len(split.val) else None
    steps_per_epoch = len(split.train) // batch_size
    if steps_per_epoch == 0:
        raise ConfigError(
            f"trainer.batch_size={batch_size} is larger than the training set ({len(split.train)} "
            "sequences): lower trainer.batch_size"
        )
    epochs = tcfg.epochs

    with strategy.scope():
        model = compile_model(build(mcfg), cfg, steps_per_epoch, epochs)
        optimizer = model.optimizer
    n_params = int(model.count_params())

    checkpoints = Checkpoints(run_dir / "checkpoints")
    state = checkpoints.latest_state()
    if state is not None:
        with strategy.scope():
            state = checkpoints.restore(model, optimizer)
        log.info(
            "resuming %s after epoch %d (step %d, W&B run %s)",
            run_dir,
            state["epoch"],
            int(optimizer.iterations.numpy()),
            state["wandb_id"],
        )
    else:
        state = {"epoch": 0, "wandb_id": new_run_id()}

    tracker = Tracker(cfg, run_dir, state["wandb_id"])
    devices = devices or {}
    tracker.record_devices(devices)
    # The id W&B really uses: under `wandb agent` it ignores `id=` and takes WANDB_RUN_ID.
    if tracker.run.id != state["wandb_id"]:
        log.info("W&B run id %s (given by W&B, e.g. a sweep agent's WANDB_RUN_ID)", tracker.run.id)
        state["wandb_id"] = tracker.run.id
    tracker.summary(
        {
            names.PARAMS: n_params,
            names.TRAIN_SEQUENCES: len(split.train),
            names.VAL_SEQUENCES: len(split.val),
            **(known or {}),
            **(
                {
                    names.FALLBACK_PHRASE: fallback["phrase"],
                    names.FALLBACK_EXPECTED: fallback["expected_score"],
                }
                if fallback
                else {}
            ),
        }
    )
    tracker.save_file(run_dir / "folds.csv")
    log.info(
        "model %s: %s parameters; %d training / %d validation sequences; %d steps per epoch",
        cfg.model.name,
        f"{n_params:,}",
        len(split.train),
        len(split.val),
        steps_per_epoch,
    )

    loop = Loop(
        trainer=tcfg,
        tracker=tracker,
        checkpoints=checkpoints,
        decoder=Decoder(model, split.vocab, mcfg.decodes),
        val_ds=val_ds,
        state=state,
        steps_per_epoch=steps_per_epoch,
        batch_size=batch_size,
    )
    as_xy = train_ds.map(_xy)  # endless: Keras counts steps_per_epoch
    exit_code = 0
    try:
        if state["epoch"] < epochs:
            progress = EpochProgress(steps_per_epoch, batch_size, epochs)
            # shuffle=False: the pipeline reshuffles every epoch itself (Keras would only warn
            # that it ignores shuffle=True for a tf.data.Dataset)
            model.fit(
                as_xy,
                epochs=epochs,
                initial_epoch=int(state["epoch"]),
                steps_per_epoch=steps_per_epoch,
                callbacks=[loop, progress],
                verbose=0,
                shuffle=False,
            )
        if loop.diverged:
            exit_code = 1
            kept = (
                f"The last good checkpoint (epoch {state['epoch']}) is in {checkpoints.dir}"
                if state["epoch"]
                else "No epoch was completed"
            )
            raise TrainingDiverged(
                f"{loop.diverged}; training stopped. {kept}; lower optimizer.lr or "
                "optimizer.clipnorm, then re-run with the same hydra.run.dir to resume"
            )
        summary = {
            **loop.last_eval,
            names.PARAMS: n_params,
            names.EPOCHS: int(state["epoch"]),
            names.BEST_VAL_SCORE: state.get("best_score"),
            names.BEST_EPOCH: state.get("best_epoch"),
            names.WANDB_ID: state["wandb_id"],
            names.WANDB_MODE: tracker.mode,
            **devices,
        }
        best = checkpoints.dir / "best.weights.h5"
        # one step after the last epoch's row, which is already committed (and on disk); read
        # before the best weights are loaded, which also restore the optimizer's step count of
        # their epoch (W&B drops a row logged at an earlier step than its last)
        after_step = int(optimizer.iterations.numpy()) + 1
        if best.exists():
            model.load_weights(best)
        # what the run ships: its decoding and fallback rule, chosen from its own data
        extra = ship(model, cfg, split, tokens, state, fallback, val_ds, eval_batch_size, run_dir)
        summary.update(extra)
        tracker.summary({k: summary[k] for k in (names.BEST_VAL_SCORE, names.BEST_EPOCH, *extra)})
        if after is not None:
            extra.update(after(model, tracker))
            summary.update(extra)
        tracker.record(extra, after_step)
        if cfg.wandb.log_checkpoint and best.exists():
            tracker.log_checkpoint(
                best,
                {
                    names.VAL_SCORE: state.get("best_score"),
                    names.EPOCH: state.get("best_epoch"),
                    names.PARAMS: n_params,
                },
            )
        write_json(run_dir / "summary.json", summary, sort_keys=True)
        return summary
    except Preempted as e:  # a sweep re-queues the run; SLURM or submitit requeue the job
        tracker.preempting()
        exit_code = e.exit_code
        raise
    except BaseException:
        exit_code = exit_code or 1
        raise
    finally:
        tracker.finish(exit_code)
