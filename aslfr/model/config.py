"""The model's dimensions: `ModelConfig` from the `model` config group plus what the features,
the data and the vocabulary fix (`model_config`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from omegaconf import DictConfig

from aslfr.data.features import FeatureSpec
from aslfr.data.vocab import Vocab


@dataclass(frozen=True)
class StackConfig:
    depth: int
    width: int
    heads: int
    mlp_ratio: float
    key_dim: int | None  # per-head attention size; None: width // heads
    conv_kernel: int  # a depthwise temporal convolution in each block (0: none; decoders: 0)

    @property
    def head_dim(self) -> int:
        return self.key_dim or self.width // self.heads


@dataclass(frozen=True)
class ModelConfig:
    n_features: int  # points x axes per frame
    hand_features: int  # leading features that belong to the signing hand
    max_frames: int
    max_length: int  # decoder positions: max_phrase_length + 1 (EOS)
    vocab_size: int  # characters + PAD, SOS, EOS
    pad: int
    sos: int
    eos: int
    encoder: StackConfig
    decoder: StackConfig
    attention_dropout: float
    mlp_dropout: float
    classifier_dropout: float
    ctc_weight: float  # auxiliary CTC loss on the encoder output (0: off)
    # CTC from dense labels (TensorFlow ops, which XLA compiles: trainer.jit=true) instead of
    # TensorFlow's C++ kernel for sparse labels (faster on CPU, but XLA has no kernel for it)
    ctc_xla: bool

    @classmethod
    def from_config(cls, model_cfg: Mapping, **data) -> ModelConfig:
        """From the `model` config group (the YAML holds every value: no default here)."""
        stack = {
            k: StackConfig(
                int(model_cfg[k]["depth"]),
                int(model_cfg[k]["width"]),
                int(model_cfg[k]["heads"]),
                float(model_cfg[k]["mlp_ratio"]),
                _none_or_int(model_cfg[k]["key_dim"]),
                int(model_cfg[k]["conv_kernel"]) if k == "encoder" else 0,
            )
            for k in ("encoder", "decoder")
        }
        drop = model_cfg["dropout"]
        return cls(
            **data,
            **stack,
            attention_dropout=float(drop["attention"]),
            mlp_dropout=float(drop["mlp"]),
            classifier_dropout=float(drop["classifier"]),
            ctc_weight=float(model_cfg["ctc_weight"]),
        )


def _none_or_int(v) -> int | None:
    return None if v in (None, "None", "null") else int(v)


def model_config(cfg: DictConfig, spec: FeatureSpec, vocab: Vocab) -> ModelConfig:
    """The model's dimensions: the `model` group plus what the features, data and vocabulary fix
    (and, for the CTC loss, whether the train step is XLA-compiled)."""
    return ModelConfig.from_config(
        cfg.model,
        n_features=spec.n_features,
        hand_features=len(spec.group_points("hand")) * len(spec.axes),
        max_frames=int(cfg.data.max_frames),
        max_length=int(cfg.data.max_phrase_length) + 1,
        vocab_size=vocab.size,
        pad=vocab.pad,
        sos=vocab.sos,
        eos=vocab.eos,
        ctc_xla=bool(cfg.trainer.jit),
    )
