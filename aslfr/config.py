"""The configuration's schema and what every entry point registers with Hydra before composing conf/.

The YAML files under conf/ hold every value, and only they do; `Config` below is their schema
(registered in Hydra's ConfigStore as `schema`, the first entry of conf/config.yaml's defaults).
Hydra checks every composed config against it: a key that does not exist, a value of the wrong
type, or an option outside a closed set (`trainer.strategy=foo`, `export.quantize=int4`,
`data.features.hands=three`) fails at compose time with Hydra's message, before any work. The
closed sets are `StrEnum`s, so the code reads and compares them as plain strings.

Run directories are unique when many runs start in the same second, on one machine or on several
sharing a filesystem: `${now:%H-%M-%S}` alone has one-second resolution, so `${stamp:}` adds
milliseconds (names still sort by time) and six random characters.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import string
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import Path

from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

from aslfr.errors import ConfigError


# -- closed choices ------------------------------------------------------------------------------
class DataSource(StrEnum):
    synthetic = "synthetic"
    kaggle = "kaggle"


class OnBadSequence(StrEnum):
    skip = "skip"
    error = "error"


class Hands(StrEnum):
    dominant = "dominant"
    both = "both"


class HandlessFrames(StrEnum):
    drop = "drop"
    keep = "keep"


class Face(StrEnum):
    lips = "lips"
    full = "full"


class Block(StrEnum):
    transformer = "transformer"
    conformer = "conformer"


class Positions(StrEnum):
    learned = "learned"
    rope = "rope"


class Decode(StrEnum):
    attention = "attention"
    ctc = "ctc"
    joint = "joint"
    auto = "auto"  # joint with both heads, else the one the model has
    best = "best"  # every decoding the model can do scored; the best on the validation fold ships


class Precision(StrEnum):
    float32 = "float32"
    mixed_float16 = "mixed_float16"
    mixed_bfloat16 = "mixed_bfloat16"


class Strategy(StrEnum):
    auto = "auto"
    mirrored = "mirrored"
    one_device = "one_device"


class WandbMode(StrEnum):
    auto = "auto"
    online = "online"
    offline = "offline"
    disabled = "disabled"


class Quantize(StrEnum):
    none = "none"
    fp16 = "fp16"
    int8_dynamic = "int8_dynamic"


# -- the groups (values: conf/<group>/*.yaml) --------------------------------------------------
@dataclass
class Paths:  # (strings: the run's record, .hydra/config.yaml, stays plain YAML)
    data_dir: str = MISSING
    cache_dir: str = MISSING
    output_dir: str = MISSING
    sweeps_dir: str = MISSING


@dataclass
class Features:
    hands: Hands = MISSING
    lips: bool = MISSING
    lip_points: list[int] = MISSING
    pose: bool = MISSING
    pose_points: list[int] = MISSING
    z: bool = MISSING
    mirror: bool = MISSING
    handless_frames: HandlessFrames = MISSING
    hand_relative: bool = MISSING


@dataclass
class Resample:
    p: float = MISSING
    low: float = MISSING
    high: float = MISSING


@dataclass
class Affine:
    p: float = MISSING
    scale: float = MISSING
    rotate_deg: float = MISSING
    shift: float = MISSING
    shear: float = MISSING


@dataclass
class FingerDropout:
    p: float = MISSING
    max_fingers: int = MISSING


@dataclass
class HandDropout:
    p: float = MISSING
    rate: float = MISSING


@dataclass
class PartDropout:
    p: float = MISSING


@dataclass
class Flip:
    p: float = MISSING


@dataclass
class CutMix:
    p: float = MISSING


@dataclass
class TimeMask:
    p: float = MISSING
    max_fraction: float = MISSING


@dataclass
class Augment:
    enabled: bool = MISSING
    resample: Resample = MISSING
    affine: Affine = MISSING
    finger_dropout: FingerDropout = MISSING
    hand_dropout: HandDropout = MISSING
    part_dropout: PartDropout = MISSING
    time_mask: TimeMask = MISSING
    flip: Flip = MISSING
    cutmix: CutMix = MISSING


@dataclass
class Cache:
    verify: bool = MISSING


@dataclass
class Synthetic:
    seed: int = MISSING
    sequences_per_file: int = MISSING
    face: Face = MISSING
    n_supplemental: int = MISSING


@dataclass
class Data:
    source: DataSource = MISSING
    root: str | None = MISSING
    use_supplemental: bool = MISSING
    on_bad_sequence: OnBadSequence = MISSING
    max_phrase_length: int = MISSING
    max_frames: int = MISSING
    length_step: int = MISSING
    bucket_by_length: bool = MISSING
    length_pool: int = MISSING
    num_workers: int = MISSING
    features: Features = MISSING
    n_folds: int = MISSING
    fold: int = MISSING
    split_seed: int = MISSING
    cache: Cache = MISSING
    augment: Augment = MISSING
    # data=synthetic only
    n_sequences: int | None = None
    n_signers: int | None = None
    synthetic: Synthetic | None = None

    def __post_init__(self):
        if self.source == DataSource.kaggle and self.root in (None, "", MISSING):
            raise ConfigError("data=kaggle needs the competition directory: data.root=DIR")
        if not -1 <= self.fold < self.n_folds:
            raise ConfigError(
                f"data.fold={self.fold} is out of range: use 0..{self.n_folds - 1}, "
                "or -1 to train on all folds"
            )
        if (
            self.source == DataSource.synthetic
            and self.use_supplemental
            and not self.synthetic.n_supplemental
        ):
            raise ConfigError(
                "data.use_supplemental=true on synthetic data needs supplemental "
                "sequences: set data.synthetic.n_supplemental (e.g. 1000)"
            )


@dataclass
class Stack:
    depth: int = MISSING
    width: int = MISSING
    heads: int = MISSING
    mlp_ratio: float = MISSING
    key_dim: int | None = MISSING  # null: width / heads


@dataclass
class EncoderStack(Stack):
    block: Block = MISSING
    positions: Positions = MISSING
    conv_kernel: int = MISSING  # transformer: 0 = no depthwise convolution
    drop_path: float = MISSING  # stochastic depth of the last block (0: none)
    downsample_at: int | None = MISSING  # halve the frames after this block (null: never)


@dataclass
class Dropout:
    attention: float = MISSING
    mlp: float = MISSING
    classifier: float = MISSING


@dataclass
class Model:
    name: str = MISSING
    encoder: EncoderStack = MISSING
    decoder: Stack = MISSING
    dropout: Dropout = MISSING
    label_smoothing: float = MISSING
    ctc_weight: float = MISSING
    decode: Decode = MISSING
    joint_weight: float = MISSING
    joint_weights: list[float] = MISSING  # decode=best: joint decoding is also tried at these
    token_noise: float = MISSING

    @property
    def heads(self) -> tuple[Decode, ...]:
        """The decodings this model's heads can do: attention needs the decoder, CTC its head
        (trained with ctc_weight > 0, or alone without a decoder), joint both."""
        attention, ctc = self.decoder.depth > 0, self.ctc_weight > 0 or self.decoder.depth == 0
        able = {Decode.attention: attention, Decode.ctc: ctc, Decode.joint: attention and ctc}
        return tuple(how for how, ok in able.items() if ok)

    def __post_init__(self):
        if self.decode not in (Decode.auto, Decode.best, *self.heads):
            need = {
                Decode.attention: "an attention decoder (model.decoder.depth > 0)",
                Decode.ctc: "a CTC head (model.ctc_weight > 0)",
                Decode.joint: "an attention decoder and a CTC head "
                "(model.decoder.depth > 0 and model.ctc_weight > 0)",
            }[self.decode]
            can = " or ".join(self.heads) or "nothing"
            raise ConfigError(f"model.decode={self.decode} needs {need}; this model decodes with {can}")
        if self.encoder.block == Block.conformer and self.encoder.conv_kernel < 1:
            raise ConfigError(
                "model.encoder.block=conformer needs its convolution: set model.encoder.conv_kernel (e.g. 15)"
            )
        at = self.encoder.downsample_at
        if at is not None and not 1 <= at <= self.encoder.depth:
            raise ConfigError(
                f"model.encoder.downsample_at={at}: use a block number from 1 to "
                f"{self.encoder.depth}, or null"
            )


@dataclass
class Optimizer:
    # the factory (conf/optimizer/*.yaml: aslfr.model.optim.adamw | adam), partial: called with
    # the learning rate (the schedule) once the run's length is known
    _target_: str = MISSING
    _partial_: bool = MISSING
    lr: float = MISSING
    weight_decay_ratio: float = MISSING
    beta_1: float = MISSING
    beta_2: float = MISSING
    epsilon: float = MISSING
    clipnorm: float | None = MISSING
    ema: float = MISSING
    awp: float = MISSING  # adversarial weight perturbation: the train step's, not the optimizer's
    awp_from: float = MISSING

    def factory(self) -> Callable:
        """The optimizer's factory with this group's values: `factory(learning_rate)`."""
        keras_args = {k: v for k, v in dataclasses.asdict(self).items() if k not in ("awp", "awp_from")}
        return instantiate(keras_args)


@dataclass
class Schedule:
    # the factory (conf/schedule/*.yaml: aslfr.model.optim.cosine | constant), partial: called
    # with the peak rate, the steps per epoch and the epochs
    _target_: str = MISSING
    _partial_: bool = MISSING
    warmup_epochs: float = MISSING
    final_ratio: float | None = None  # schedule=cosine: where the rate ends, x the peak

    def __post_init__(self):
        if self.final_ratio is not None and self._target_ != COSINE:
            raise ConfigError(
                f"schedule.final_ratio={self.final_ratio} is where schedule=cosine decays to; this "
                "schedule holds the peak rate: use schedule=cosine schedule.final_ratio=..."
            )

    def factory(self) -> Callable:
        """`factory(peak, steps_per_epoch, epochs)`: the learning rate, a number or a schedule."""
        return instantiate({k: v for k, v in dataclasses.asdict(self).items() if v is not None})


COSINE = "aslfr.model.optim.cosine"


@dataclass
class Trainer:
    epochs: int = MISSING
    batch_size: int = MISSING
    seed: int = MISSING
    eval_every: int = MISSING
    log_every: int = MISSING
    precision: Precision = MISSING
    jit: bool = MISSING
    grappler: bool = MISSING
    strategy: Strategy = MISSING
    cpu_devices: int = MISSING
    gpu_memory_growth: bool = MISSING
    examples: int = MISSING
    eval_batch_size: int = MISSING


@dataclass
class Wandb:
    mode: WandbMode = MISSING
    project: str = MISSING
    entity: str | None = MISSING
    group: str | None = MISSING
    tags: list[str] = MISSING
    name: str | None = MISSING
    log_checkpoint: bool = MISSING
    gather_dir: str | None = MISSING


@dataclass
class Benchmark:
    sequences: int = MISSING
    frames: int = MISSING
    hand_frames: int = MISSING
    characters: int = MISSING
    seed: int = MISSING
    passes: int = MISSING


@dataclass
class Reference:
    scale: bool = MISSING
    ms: float = MISSING
    cache_dir: str = MISSING


@dataclass
class Budget:
    latency_ms: float = MISSING
    model_mb: float = MISSING
    probe: bool = MISSING
    threads: int = MISSING
    test_sequences: int = MISSING
    worst_score: float = MISSING
    benchmark: Benchmark = MISSING
    reference: Reference = MISSING


@dataclass
class Export:
    enabled: bool = MISSING
    quantize: Quantize = MISSING
    zip: bool = MISSING
    evaluate: bool = MISSING


@dataclass
class Resume:
    may_change: list[str] = MISSING


@dataclass
class Fallback:
    min_hand_frames: int | None = MISSING  # null: chosen on the training folds; 0: off
    phrase: str | None = MISSING  # null: chosen on the training folds
    search_up_to: int = MISSING  # min_hand_frames=null: the largest threshold considered


@dataclass
class Config:
    data: Data = MISSING
    model: Model = MISSING
    optimizer: Optimizer = MISSING
    schedule: Schedule = MISSING
    trainer: Trainer = MISSING
    wandb: Wandb = MISSING
    budget: Budget = MISSING
    export: Export = MISSING
    paths: Paths = MISSING
    resume: Resume = MISSING
    fallback: Fallback = MISSING

    def __post_init__(self):
        if self.optimizer.awp > 0 and self.trainer.strategy == Strategy.mirrored:
            raise ConfigError(
                "optimizer.awp perturbs the weights inside each replica's step, which "
                "trainer.strategy=mirrored cannot aggregate: use optimizer.awp=0 or trainer.strategy=auto"
            )


# -- at run time -------------------------------------------------------------------------------
def typed(cfg: DictConfig) -> Config:
    """The composed config as the schema's dataclasses, converted once: values of their declared
    types, the closed choices as enums, and the rules across keys checked (each dataclass's
    `__post_init__`). What is wrong is one line: a ConfigError."""
    try:
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(Config), cfg))
    except MissingMandatoryValue as e:
        key = e.full_key or str(e).rsplit(" ", 1)[-1]
        raise ConfigError(f"{key} has no value: give one on the command line ({key}=...)") from None
    except OmegaConfBaseException as e:
        raise ConfigError(str(e).splitlines()[0]) from None


def as_dict(cfg: Config) -> dict:
    """Plain values (the choices as their names): what W&B records as the run's config."""
    return OmegaConf.to_container(OmegaConf.structured(cfg), enum_to_str=True)


def load(path: Path, output_dir: Path) -> Config:
    """A run's .hydra/config.yaml, typed: `output_dir` is the run's directory (the record keeps
    `paths.output_dir` as the ${hydra:...} that named it)."""
    register()
    saved = OmegaConf.load(path)
    saved.paths.output_dir = str(output_dir)
    return typed(saved)


# -- registration -------------------------------------------------------------------------------
def stamp() -> str:
    """HH-MM-SS.mmm-xxxxxx: the time to the millisecond, then 6 random lowercase letters/digits."""
    now = datetime.now()
    alphabet = string.ascii_lowercase + string.digits
    suffix = "".join(secrets.choice(alphabet) for _ in range(6))
    return f"{now:%H-%M-%S}.{now.microsecond // 1000:03d}-{suffix}"


def gather(sweeps_dir: str) -> str | None:
    """`${gather:${paths.sweeps_dir}}`, the default of wandb.gather_dir (where a run links its W&B
    folder beside its siblings'): under `wandb agent` (WANDB_SWEEP_ID) SWEEPS_DIR/<sweep id>; in a
    Hydra multirun the multirun's directory; a single run gathers nowhere."""
    sweep = os.environ.get("WANDB_SWEEP_ID")
    if sweep:
        return f"{sweeps_dir}/{sweep}"
    if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        return str(Path(HydraConfig.get().runtime.output_dir).parent)
    return None


def run_dir(default: str, sweeps_dir: str) -> str:
    """`${run_dir:...}`, hydra.run.dir: under `wandb agent` (WANDB_SWEEP_ID and WANDB_RUN_ID)
    SWEEPS_DIR/<sweep id>/run-<run id>, so that a run the sweep re-queues after a preemption
    (same run id) comes back to its own directory and resumes from its checkpoint; otherwise
    `default`, a new directory."""
    sweep, run = os.environ.get("WANDB_SWEEP_ID"), os.environ.get("WANDB_RUN_ID")
    return f"{sweeps_dir}/{sweep}/run-{run}" if sweep and run else default


def register() -> None:
    """Before composing conf/: the schema (`schema` in Hydra's ConfigStore), the `${stamp:}`
    resolver of conf/config.yaml's hydra.run.dir and hydra.sweep.dir, cached like Hydra's own
    `now`, so every read in one run (and every job of one multirun) sees the same name, and
    `${gather:}` (wandb.gather_dir) and `${run_dir:}` (hydra.run.dir)."""
    ConfigStore.instance().store(name="schema", node=Config)
    OmegaConf.register_new_resolver("stamp", stamp, use_cache=True, replace=True)
    OmegaConf.register_new_resolver("gather", gather, replace=True)
    OmegaConf.register_new_resolver("run_dir", run_dir, replace=True)
