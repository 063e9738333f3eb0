"""The model's dimensions: `ModelConfig` from the `model` config group plus what the features,
the data and the vocabulary fix (`model_config`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from aslfr.config import Block, Data, Decode, Model, Positions, Stack
from aslfr.data.features import FeatureSpec
from aslfr.data.vocab import Vocab


@dataclass(frozen=True)
class StackConfig:
    depth: int
    width: int
    heads: int
    mlp_ratio: float
    key_dim: int | None  # per-head attention size; None: width // heads
    conv_kernel: int  # a depthwise temporal convolution in each block (0: none)
    # The encoder's (a decoder is a transformer with learned positions and none of these):
    block: Block = Block.transformer
    positions: Positions = Positions.learned
    drop_path: float = 0.0  # stochastic depth of the last block
    downsample_at: int | None = None  # halve the frames after this block (1-based)

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
    ctc_weight: float  # CTC loss on the encoder output (0: off; the only loss without a decoder)
    # CTC from dense labels (TensorFlow ops, which XLA compiles: trainer.jit=true) instead of
    # TensorFlow's C++ kernel for sparse labels (faster on CPU, but XLA has no kernel for it)
    ctc_xla: bool
    decode: Decode  # attention | ctc | joint (model.decode=best: auto's choice until the run chooses)
    joint_weight: float  # decode=joint: the CTC prefix score's weight
    token_noise: float = 0.0  # fraction of teacher-forced input characters replaced in training
    # clips whose signing hand is seen in fewer frames decode as fallback_tokens (0: never)
    fallback_frames: int = 0
    fallback_tokens: tuple[int, ...] = ()
    # model.decode=best: every decoding the model can do is scored, joint decoding also at these
    # CTC weights, and the run ships the best (`decodes`)
    choose_decode: bool = False
    joint_weights: tuple[float, ...] = ()

    @property
    def has_decoder(self) -> bool:
        return self.decoder.depth > 0

    @property
    def ctc_frames(self) -> int:
        """The most frames the encoder (and the CTC head) puts out: max_frames, halved (rounded
        up) by the time reduction."""
        return self.max_frames if self.encoder.downsample_at is None else (self.max_frames + 1) // 2

    @property
    def has_ctc(self) -> bool:
        return self.ctc_weight > 0 or not self.has_decoder

    @property
    def decodes(self) -> tuple[str, ...]:
        """Every decoding this model can do, its configured one first; with model.decode=best
        also joint decoding at the other weights of model.joint_weights, named `joint@W`
        (`decoding` reads a name back)."""
        able = [d for d in (Decode.attention, Decode.ctc, Decode.joint) if self.can_decode(d)]
        if self.choose_decode and self.can_decode(Decode.joint):
            able += [f"joint@{w:g}" for w in self.joint_weights if w != self.joint_weight]
        return (self.decode, *[d for d in able if d != self.decode])

    def decoding(self, name: str) -> ModelConfig:
        """This config decoding as `name` says (one of `decodes`): attention, ctc, joint (at
        joint_weight) or joint@W (at weight W)."""
        how, _, weight = name.partition("@")
        return replace(self, decode=Decode(how), joint_weight=float(weight) if weight else self.joint_weight)

    def can_decode(self, how: Decode) -> bool:
        return {
            Decode.attention: self.has_decoder,
            Decode.ctc: self.has_ctc,
            Decode.joint: self.has_decoder and self.has_ctc,
        }[how]

    @classmethod
    def from_config(cls, model: Model, **data) -> ModelConfig:
        """From the `model` config group (the YAML holds every value: no default here)."""
        return cls(
            **data,
            encoder=_stack(
                model.encoder,
                model.encoder.conv_kernel,
                block=model.encoder.block,
                positions=model.encoder.positions,
                drop_path=model.encoder.drop_path,
                downsample_at=model.encoder.downsample_at,
            ),
            decoder=_stack(model.decoder, 0),
            attention_dropout=model.dropout.attention,
            mlp_dropout=model.dropout.mlp,
            classifier_dropout=model.dropout.classifier,
            ctc_weight=model.ctc_weight,
            decode=resolve_decode(model),
            joint_weight=model.joint_weight,
            token_noise=model.token_noise,
            choose_decode=model.decode == Decode.best,
            joint_weights=tuple(model.joint_weights),
        )


def _stack(stack: Stack, conv_kernel: int, **encoder) -> StackConfig:
    return StackConfig(
        stack.depth, stack.width, stack.heads, stack.mlp_ratio, stack.key_dim, conv_kernel, **encoder
    )


def resolve_decode(model: Model) -> Decode:
    """model.decode=auto (and best, until the run has chosen): joint with both heads, else the
    one the model has (a sweep over decoder depths, 0 included, needs no decoding per trial)."""
    if model.decode in (Decode.auto, Decode.best):
        return model.heads[-1]  # joint, else the only one
    return model.decode


def model_config(
    model: Model,
    data: Data,
    jit: bool,
    spec: FeatureSpec,
    vocab: Vocab,
    fallback: Mapping | None = None,
    decoding: Mapping | None = None,
) -> ModelConfig:
    """The model's dimensions: the `model` group plus what the features, data and vocabulary fix
    (and, for the CTC loss, whether the train step is XLA-compiled: trainer.jit); the run's
    fallback rule (its phrase and threshold, as fallback.json holds them: none, or a threshold
    not yet chosen, is off) and, once the run has chosen it, its decoding (decoding.json)."""
    rule = fallback or {}
    min_frames = rule.get("min_hand_frames") or 0
    max_length = data.max_phrase_length + 1
    tokens = tuple(int(t) for t in vocab.encode([rule["phrase"]], max_length)[0]) if min_frames else ()
    mcfg = ModelConfig.from_config(
        model,
        n_features=spec.n_features,
        hand_features=len(spec.group_points("hand")) * len(spec.axes),
        max_frames=data.max_frames,
        max_length=max_length,
        vocab_size=vocab.size,
        pad=vocab.pad,
        sos=vocab.sos,
        eos=vocab.eos,
        ctc_xla=jit,
        fallback_frames=min_frames,
        fallback_tokens=tokens,
    )
    if decoding:
        mcfg = replace(mcfg, decode=Decode(decoding["decode"]), joint_weight=decoding["joint_weight"])
    return mcfg
