"""Export a run as the competition ran models: `model.tflite` + `inference_args.json`
(the command line is aslfr/export/__main__.py: `aslfr-export RUN_DIR`).

The TFLite file has one signature, `serving_default`: input `inputs`, float32
[n_frames, len(selected_columns)] (the raw columns of one whole sequence, NaN included); output
`outputs`, [max_phrase_length + 1, 62], one row per decoded token (one-hot), whose argmax over
axis 1 spells the phrase (indices >= 59 are PAD/SOS/EOS and spell nothing). Inside the graph:
the same preprocessing as training (`pipeline.canonical_frames` -> `frame_features` ->
`normalize` -> `resample`; the columns, mirroring and statistics of the run's features.json) and
`aslfr.model.decoding.transcribe` as model.decode says: attention (key/value cache, early stop at
EOS), ctc (greedy) or joint. Built-in TFLite ops only.
"""

from __future__ import annotations

import json
import logging
import tempfile
import zipfile
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf

from aslfr import names
from aslfr.atomic import replacing, write_json
from aslfr.config import Config, Quantize
from aslfr.config import load as load_config
from aslfr.data import pipeline
from aslfr.data.features import FeatureSpec, NormStats
from aslfr.data.vocab import Vocab
from aslfr.errors import DataError
from aslfr.model.config import model_config
from aslfr.model.decoding import transcribe
from aslfr.model.model import FingerspellingModel, build, float32_twin
from aslfr.runtime import quiet

log = logging.getLogger(__name__)
QUANTIZE = tuple(q.value for q in Quantize)  # export.quantize


@dataclass
class Preprocessing:
    """What the graph needs besides the model: from a run's features.json."""

    spec: FeatureSpec
    stats: NormStats
    max_frames: int

    @classmethod
    def from_dict(cls, doc: dict) -> Preprocessing:
        return cls(
            FeatureSpec.from_dict(doc["features"]), NormStats.from_dict(doc["stats"]), int(doc["max_frames"])
        )


def preprocess(raw: tf.Tensor, pre: Preprocessing) -> tuple[tf.Tensor, tf.Tensor]:
    """One raw sequence [n_frames, columns] -> model input ([1, T, F] frames, [1, T] mask) with
    T = min(kept frames, max_frames): no padding, so nothing is computed for it."""
    x = pipeline.canonical_frames(raw, pre.spec)
    x = pipeline.resample(pipeline.normalize(pipeline.frame_features(x, pre.spec), pre.stats), pre.max_frames)
    # A reshape to a constant shape gives the converter a known rank here (the conds above
    # hide it), which it needs to lower the attention einsums to built-in ops.
    frames = tf.reshape(x, [1, -1, pre.spec.n_features])
    return frames, tf.ones([1, tf.shape(frames)[1]], tf.bool)


def inference_module(
    model: FingerspellingModel,
    pre: Preprocessing,
    decode_steps: int | None = None,
    decode: Callable | None = None,
) -> tf.Module:
    """A tf.Module whose `serve` is the competition's signature. `decode_steps` fixes the number
    of decoder steps (no early stop): the budget's latency benchmark uses it. `decode(model,
    frames, mask, max_length, early_stop)` replaces the model's own decoding (the benchmarks'
    baseline)."""
    model = float32_twin(model)  # a model trained in mixed precision ships in float32
    cfg = model.cfg
    decode = decode or transcribe
    module = tf.Module()
    # Keras 3 variables are not tf.Module-trackable themselves: track the tf.Variables they wrap
    # (otherwise the converted graph's decode loop reads uninitialized weights).
    module.weights = [v.value for v in model.variables]

    @tf.function(input_signature=[tf.TensorSpec([None, len(pre.spec.columns)], tf.float32, name="inputs")])
    def serve(inputs):
        frames, mask = preprocess(inputs, pre)
        tokens = decode(
            model, frames, mask, max_length=decode_steps or cfg.max_length, early_stop=decode_steps is None
        )
        return {"outputs": tf.one_hot(tokens[0], cfg.vocab_size)}

    module.serve = serve
    return module


def convert(
    model: FingerspellingModel,
    pre: Preprocessing,
    quantize: Quantize = Quantize.none,
    decode_steps: int | None = None,
) -> bytes:
    """The TFLite flatbuffer (built-in ops only) of `inference_module`."""
    return convert_module(inference_module(model, pre, decode_steps), quantize)


def convert_module(module: tf.Module, quantize: Quantize = Quantize.none) -> bytes:
    """TFLite flatbuffer of `module.serve` as signature serving_default, built-in ops only."""
    if quantize not in QUANTIZE:
        raise ValueError(f"export.quantize must be one of {', '.join(QUANTIZE)}, not {quantize!r}")
    with tempfile.TemporaryDirectory() as tmp, _tensorflow_logs(logging.WARNING):
        # (at INFO, saving logs "Assets written to" a temporary directory and a long "Function
        # `serve` contains input name(s) ..." about the captured weights' names: nothing to act on)
        tf.saved_model.save(module, tmp, signatures={"serving_default": module.serve.get_concrete_function()})
        converter = tf.lite.TFLiteConverter.from_saved_model(tmp)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        if quantize != Quantize.none:
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if quantize == Quantize.fp16:
            converter.target_spec.supported_types = [tf.float16]
        return converter.convert()


@contextmanager
def _tensorflow_logs(level: int):
    """TensorFlow's Python logs (its own logger and absl's) at `level` inside the block."""
    loggers = [logging.getLogger(name) for name in ("tensorflow", "absl")]
    before = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(level)
    try:
        yield
    finally:
        for logger, was in zip(loggers, before):
            logger.setLevel(was)


class TFLiteModel:
    """A converted model in the LiteRT interpreter, called the way the competition did."""

    def __init__(self, content: bytes, threads: int = 1):
        from ai_edge_litert.interpreter import Interpreter

        self.interpreter = Interpreter(model_content=content, num_threads=threads)
        self.runner = self.interpreter.get_signature_runner("serving_default")
        self.called = False

    def __call__(self, raw: np.ndarray) -> np.ndarray:
        """raw [n_frames, columns] -> token ids (argmax over axis 1 of `outputs`)."""
        if not self.called:  # the first call applies the XNNPACK delegate, which announces itself
            self.called = True
            with quiet():
                return self(raw)
        out = self.runner(inputs=np.asarray(raw, np.float32))["outputs"]
        return np.argmax(out, axis=1)


@dataclass
class RunFiles:
    """What a run directory holds for export."""

    dir: Path
    cfg: Config
    pre: Preprocessing
    vocab: Vocab
    weights: Path
    data_root: Path | None  # where the run's data was read (None in runs older than this key)

    @classmethod
    def load(cls, run_dir: Path) -> RunFiles:
        run_dir = Path(run_dir)
        need = [run_dir / names.RECORD_DIR / names.CONFIG_FILE, run_dir / names.FEATURES_FILE]
        for path in need:
            if not path.exists():
                raise DataError(
                    f"{path} is missing: {run_dir} is not a train.py run directory "
                    "(it needs .hydra/config.yaml, features.json and checkpoints/)"
                )
        ckpt = run_dir / names.CHECKPOINTS_DIR
        weights = ckpt / names.BEST_WEIGHTS_FILE
        if not weights.exists():
            latest = ckpt / "latest.json"
            if not latest.exists():
                raise DataError(
                    f"{run_dir}: no checkpoint yet (train it first: python train.py hydra.run.dir={run_dir})"
                )
            weights = ckpt / json.loads(latest.read_text())["dir"] / "model.weights.h5"
        doc = json.loads(need[1].read_text())
        root = doc.get("data_root")
        return cls(
            run_dir,
            load_config(need[0], run_dir),
            Preprocessing.from_dict(doc),
            Vocab(doc["characters"]),
            weights,
            Path(root) if root else None,
        )

    def model(self) -> FingerspellingModel:
        """The run's model with its best weights, its fallback rule (fallback.json) and its
        decoding (decoding.json), as the run shipped them."""
        rule, decoding = (self.dir / name for name in (names.FALLBACK_FILE, names.DECODING_FILE))
        model = build(
            model_config(
                self.cfg.model,
                self.cfg.data,
                self.cfg.trainer.jit,
                self.pre.spec,
                self.vocab,
                json.loads(rule.read_text()) if rule.exists() else None,
                json.loads(decoding.read_text()) if decoding.exists() else None,
            )
        )
        model.load_weights(self.weights)
        return model


def write_export(run_dir: Path, content: bytes, pre: Preprocessing, zip_: bool = False) -> Path:
    """model.tflite + inference_args.json (+ submission.zip) in run_dir, each written whole."""
    return write_files(run_dir, content, pre.spec.columns, zip_)


def write_files(run_dir: Path, content: bytes, columns, zip_: bool = False) -> Path:
    """`write_export` for a graph whose input holds `columns`."""
    run_dir = Path(run_dir)
    with replacing(run_dir / names.MODEL_FILE) as tmp:
        tmp.write_bytes(content)
    write_json(run_dir / names.INFERENCE_ARGS_FILE, {"selected_columns": list(columns)})
    if zip_:
        with (
            replacing(run_dir / names.SUBMISSION_FILE) as tmp,
            zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z,
        ):
            z.write(run_dir / names.MODEL_FILE, names.MODEL_FILE)
            z.write(run_dir / names.INFERENCE_ARGS_FILE, names.INFERENCE_ARGS_FILE)
    return run_dir / names.MODEL_FILE
