"""The training of one run (`Training`): devices and strategy, the model's configuration and data
sets (aslfr.train.datasets), the model built or restored, Keras `fit` with the callbacks of
aslfr.train.callbacks, then what the run ships (aslfr.train.shipping) and its summary."""

from __future__ import annotations

import logging
import math
import os
import socket
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import keras
import tensorflow as tf

from aslfr import names
from aslfr.config import Config, Strategy, Trainer
from aslfr.data.prepare import DataSplit
from aslfr.errors import ConfigError, Preempted, TrainingDiverged
from aslfr.model.config import model_config
from aslfr.model.losses import SmoothedCrossEntropy, TokenTopK
from aslfr.model.model import build as build_model
from aslfr.model.optim import make_optimizer
from aslfr.summary import Summary
from aslfr.train.callbacks import (
    Checkpointing,
    EpochEnd,
    EpochProgress,
    NanGuard,
    TrainingLog,
    Validation,
    as_keras_xy,
)
from aslfr.train.checkpoints import Checkpoints
from aslfr.train.datasets import fold_dataset, validation_dataset
from aslfr.train.decoder import DatasetDecoder
from aslfr.train.shipping import choose_fallback, ship
from aslfr.train.tracking import Tracker, new_run_id

log = logging.getLogger(__name__)


def configure_devices(trainer: Trainer) -> dict:
    """GPU memory growth, logical CPU devices, precision and graph optimization; must run before
    TensorFlow touches a device. Returns the devices the run sees (devices/*, for its summary and
    W&B config).

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
    # Grappler optimizes each function graph the first time it runs: seconds per graph (the
    # decoders' loops most), paid back only over many steps; the steps compute the same numbers.
    tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": not trainer.grappler})
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


def compile_model(model: keras.Model, cfg: Config, steps_per_epoch: int, epochs: int) -> keras.Model:
    """Optimizer, schedule, loss and metrics from the config (the benchmarks compile this way too)."""
    pad, vocab_size = model.cfg.pad, model.cfg.vocab_size
    optimizer = make_optimizer(cfg.optimizer, cfg.schedule, steps_per_epoch, epochs)
    model.awp_epsilon = cfg.optimizer.awp
    model.awp_from_step = math.floor(cfg.optimizer.awp_from * steps_per_epoch * epochs)
    if not model.cfg.has_decoder:  # CTC only: the model adds its CTC loss itself
        model.compile(optimizer=optimizer, jit_compile=cfg.trainer.jit)
    else:
        model.compile(
            optimizer=optimizer,
            loss=SmoothedCrossEntropy(vocab_size, pad, cfg.model.label_smoothing),
            metrics=[TokenTopK(1, pad), TokenTopK(5, pad)],
            jit_compile=cfg.trainer.jit,
        )
    # The optimizer's slots made now, not by the first training step: a tf.function that creates
    # variables while it traces is traced a second time, and the training step is the costliest
    # trace of a run (seconds before the first epoch starts).
    model.optimizer.build(model.trainable_variables)
    return model


class Training:
    """One run's training in its directory, step by step: `Training(...)` sets up the model's
    configuration and data sets, `build()` the model (restored from the latest checkpoint, if
    any); within `tracking()`, where the W&B run is open: `fit()`, `ship()` (the best weights, the
    decoding and the fallback the run ships), `record()` of what is measured after (the export),
    and `summarize()`."""

    def __init__(self, cfg: Config, split: DataSplit, run_dir: Path):
        self.cfg, self.split, self.run_dir = cfg, split, Path(run_dir)
        keras.utils.set_random_seed(cfg.trainer.seed)
        self.strategy = make_strategy(cfg.trainer)
        phrases = [str(t) for t in split.prepared.phrase[split.train]]
        self.fallback = choose_fallback(cfg.fallback, phrases, self.run_dir)
        self.mcfg = model_config(cfg.model, cfg.data, cfg.trainer.jit, split.spec, split.vocab, self.fallback)
        self.tokens = split.vocab.encode(list(split.prepared.phrase), self.mcfg.max_length)
        self.batch_size = cfg.trainer.batch_size
        self.steps_per_epoch = self._steps_per_epoch()
        self.train_ds = self._train_dataset()
        self.eval_batch_size, self.val_ds = self._validation()
        self.checkpoints = Checkpoints(self.run_dir / names.CHECKPOINTS_DIR)
        self.summary = Summary(self.run_dir)
        self.shipped: dict = {}
        self.after_step = 0

    def build(self) -> None:
        """The model compiled under the strategy, restored from the latest checkpoint if any."""
        with self.strategy.scope():
            self.model = compile_model(
                build_model(self.mcfg), self.cfg, self.steps_per_epoch, self.cfg.trainer.epochs
            )
        self.n_params = int(self.model.count_params())
        self.state = self._restore()

    def _steps_per_epoch(self) -> int:
        steps = len(self.split.train) // self.batch_size
        if steps == 0:
            raise ConfigError(
                f"trainer.batch_size={self.batch_size} is larger than the training set "
                f"({len(self.split.train)} sequences): lower trainer.batch_size"
            )
        return steps

    def _train_dataset(self) -> tf.data.Dataset:
        """The training folds, augmented and batched as data.* says; endless (Keras counts
        steps_per_epoch)."""
        cfg, split = self.cfg, self.split
        return fold_dataset(
            cfg,
            split,
            self.mcfg,
            self.batch_size,
            self.tokens,
            split.train,
            training=True,
            augment=cfg.data.augment,
            bucket_by_length=cfg.data.bucket_by_length,
            length_pool=cfg.data.length_pool,
            participants=split.prepared.participant_id,
            pad=split.vocab.pad,
            eos=split.vocab.eos,
        )

    def _validation(self) -> tuple[int, tf.data.Dataset | None]:
        """The evaluation batch size and the validation fold (None when empty), prepared once and
        then served from memory at every evaluation (it is deterministic)."""
        eval_batch_size, n_val = self.cfg.trainer.eval_batch_size, len(self.split.val)
        replicas = self.strategy.num_replicas_in_sync
        if replicas > 1 and n_val:
            # Keras 3 under tf.distribute fails on a first evaluation batch that does not split
            # evenly across the replicas (keras-team/keras#19246): a whole number of replicas'
            # worth, at most the fold's
            eval_batch_size = max(replicas, min(eval_batch_size, n_val) // replicas * replicas)
        if not n_val:
            return eval_batch_size, None
        return eval_batch_size, validation_dataset(
            self.cfg, self.split, self.mcfg, eval_batch_size, self.tokens
        ).cache()

    def _restore(self) -> dict:
        """The state of the latest checkpoint, loaded into the model and its optimizer; a fresh
        state (epoch 0, a new W&B run id) without one."""
        if self.checkpoints.latest_state() is None:
            return {"epoch": 0, "wandb_id": new_run_id()}
        with self.strategy.scope():
            state = self.checkpoints.restore(self.model, self.model.optimizer)
        log.info(
            "resuming %s after epoch %d (step %d, W&B run %s)",
            self.run_dir,
            state["epoch"],
            int(self.model.optimizer.iterations.numpy()),
            state["wandb_id"],
        )
        return state

    @contextmanager
    def tracking(self, known: dict | None = None, devices: dict | None = None) -> Iterator[Training]:
        """The W&B run, open within; it ends with the run's exit status (a preempted run's marked
        preempting first). `known`: metrics already measured (the budget probe), in its summary
        at once; `devices`: what configure_devices saw, in the summary and the W&B config."""
        self.tracker = Tracker(self.cfg, self.run_dir, self.state["wandb_id"])
        self.devices = devices or {}
        exit_code = 0
        try:
            self.tracker.record_devices(self.devices)
            self._describe(known or {})
            yield self
        except Preempted as e:  # a sweep re-queues the run; SLURM or submitit requeue the job
            self.tracker.preempting()
            exit_code = e.exit_code
            raise
        except BaseException:
            exit_code = 1
            raise
        finally:
            self.tracker.finish(exit_code)

    def _describe(self, known: dict) -> None:
        """The W&B run's id (the one W&B really uses), what is known before training in its
        summary, folds.csv with its files; and a line in the log."""
        # Under `wandb agent` W&B ignores `id=` and takes WANDB_RUN_ID.
        if self.tracker.run.id != self.state["wandb_id"]:
            log.info("W&B run id %s (given by W&B, e.g. a sweep agent's WANDB_RUN_ID)", self.tracker.run.id)
            self.state["wandb_id"] = self.tracker.run.id
        fallback = self.fallback
        self.tracker.summary(
            {
                names.PARAMS: self.n_params,
                names.TRAIN_SEQUENCES: len(self.split.train),
                names.VAL_SEQUENCES: len(self.split.val),
                **known,
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
        self.tracker.save_file(self.run_dir / names.FOLDS_FILE)
        log.info(
            "model %s: %s parameters; %d training / %d validation sequences; %d steps per epoch",
            self.cfg.model.name,
            f"{self.n_params:,}",
            len(self.split.train),
            len(self.split.val),
            self.steps_per_epoch,
        )

    def fit(self) -> None:
        """Keras' fit from the epoch the checkpoint says is done to trainer.epochs; raises
        TrainingDiverged when the NaN guard stopped it."""
        tcfg, state = self.cfg.trainer, self.state
        guard = NanGuard(state)
        end = EpochEnd(
            guard,
            Validation(
                DatasetDecoder(self.model, self.split.vocab, self.mcfg.decodes), self.val_ds, tcfg.eval_every
            ),
            Checkpointing(self.checkpoints, state),
            TrainingLog(tcfg, self.tracker, guard, state, self.steps_per_epoch),
        )
        if state["epoch"] < tcfg.epochs:
            progress = EpochProgress(self.steps_per_epoch, self.batch_size, tcfg.epochs)
            # shuffle=False: the pipeline reshuffles every epoch itself (Keras would only warn
            # that it ignores shuffle=True for a tf.data.Dataset)
            self.model.fit(
                self.train_ds.map(as_keras_xy),
                epochs=tcfg.epochs,
                initial_epoch=int(state["epoch"]),
                steps_per_epoch=self.steps_per_epoch,
                callbacks=[guard, end.log, end, progress],
                verbose=0,
                shuffle=False,
            )
        if guard.diverged:
            kept = (
                f"The last good checkpoint (epoch {state['epoch']}) is in {self.checkpoints.dir}"
                if state["epoch"]
                else "No epoch was completed"
            )
            raise TrainingDiverged(
                f"{guard.diverged}; training stopped. {kept}; lower optimizer.lr or "
                "optimizer.clipnorm, then re-run with the same hydra.run.dir to resume"
            )
        self.summary.update(
            {
                **state.get("last_eval", {}),
                names.PARAMS: self.n_params,
                names.EPOCHS: int(state["epoch"]),
                names.BEST_VAL_SCORE: state.get("best_score"),
                names.BEST_EPOCH: state.get("best_epoch"),
                names.WANDB_ID: state["wandb_id"],
                names.WANDB_MODE: self.tracker.mode,
                **self.devices,
            }
        )

    @property
    def best(self) -> Path:
        return self.checkpoints.dir / names.BEST_WEIGHTS_FILE

    def ship(self) -> dict:
        """The best weights loaded, and what the run ships chosen from its own data: its decoding
        and fallback rule (`ship`). In the summary, W&B's too."""
        # one step after the last epoch's row, which is already committed (and on disk); read
        # before the best weights are loaded, which also restore the optimizer's step count of
        # their epoch (W&B drops a row logged at an earlier step than its last)
        self.after_step = int(self.model.optimizer.iterations.numpy()) + 1
        if self.best.exists():
            self.model.load_weights(self.best)
        extra = ship(
            self.model,
            self.cfg,
            self.split,
            self.tokens,
            self.state,
            self.fallback,
            self.val_ds,
            self.eval_batch_size,
            self.run_dir,
        )
        self.summary.update(extra)
        self.tracker.summary({k: self.summary[k] for k in (names.BEST_VAL_SCORE, names.BEST_EPOCH, *extra)})
        self.shipped = dict(extra)
        return extra

    def record(self, metrics: dict) -> None:
        """Metrics of the shipped model measured after training (the export): in the summary."""
        self.shipped.update(metrics)
        self.summary.update(metrics)

    def summarize(self) -> dict:
        """What the run shipped logged one step after its last epoch, the best checkpoint as an
        artifact (wandb.log_checkpoint), and summary.json."""
        self.tracker.record(self.shipped, self.after_step)
        if self.cfg.wandb.log_checkpoint and self.best.exists():
            self.tracker.log_checkpoint(
                self.best,
                {
                    names.VAL_SCORE: self.state.get("best_score"),
                    names.EPOCH: self.state.get("best_epoch"),
                    names.PARAMS: self.n_params,
                },
            )
        return self.summary.write()
