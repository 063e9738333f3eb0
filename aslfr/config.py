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

import os
import secrets
import string
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import Path

from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import MISSING, OmegaConf


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


class OptimizerName(StrEnum):
    adamw = "adamw"
    adam = "adam"


class ScheduleName(StrEnum):
    cosine = "cosine"
    constant = "constant"


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
class Paths:
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
    n_sequences: int = MISSING
    n_signers: int = MISSING
    synthetic: Synthetic = MISSING


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


@dataclass
class Optimizer:
    name: OptimizerName = MISSING
    lr: float = MISSING
    weight_decay_ratio: float = MISSING
    beta_1: float = MISSING
    beta_2: float = MISSING
    epsilon: float = MISSING
    clipnorm: float | None = MISSING
    ema: float = MISSING
    awp: float = MISSING
    awp_from: float = MISSING


@dataclass
class Schedule:
    name: ScheduleName = MISSING
    warmup_epochs: float = MISSING
    final_ratio: float = MISSING


@dataclass
class Trainer:
    epochs: int = MISSING
    batch_size: int = MISSING
    seed: int = MISSING
    eval_every: int = MISSING
    log_every: int = MISSING
    precision: Precision = MISSING
    jit: bool = MISSING
    strategy: Strategy = MISSING
    cpu_devices: int = MISSING
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


def register() -> None:
    """Before composing conf/: the schema (`schema` in Hydra's ConfigStore), the `${stamp:}`
    resolver of conf/config.yaml's hydra.run.dir and hydra.sweep.dir, cached like Hydra's own
    `now`, so every read in one run (and every job of one multirun) sees the same name, and
    `${gather:}` (wandb.gather_dir)."""
    ConfigStore.instance().store(name="schema", node=Config)
    OmegaConf.register_new_resolver("stamp", stamp, use_cache=True, replace=True)
    OmegaConf.register_new_resolver("gather", gather, replace=True)
