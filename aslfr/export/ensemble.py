"""Several runs as one competition file (2nd place: a 3-seed ensemble, +0.009):

    aslfr-export RUN_DIR RUN_DIR ... --ensemble OUT [--quantize ...] [--zip]

One TFLite graph takes the union of the members' columns; each member preprocesses its own
columns with its own statistics (members may differ in features and size), then the members
decode together: attention decoding averages their per-step log-probabilities, CTC decoding
their frame log-probabilities, joint decoding both (`aslfr.model.decoding.transcribe_ensemble`).
The decoding is the first member's configured one, and its fallback rule applies. OUT gets
model.tflite, inference_args.json (+ submission.zip) and ensemble.json (the members and the
figures); the file is measured against the first member's budget and scored by the
competition's rules on the validation sequences all members held out.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path

import tensorflow as tf

from aslfr import names
from aslfr.atomic import write_json
from aslfr.errors import DataError
from aslfr.export import budget, competition
from aslfr.export.convert import RunFiles, convert_module, preprocess, write_files
from aslfr.model.decoding import transcribe_ensemble
from aslfr.model.model import float32_twin
from aslfr.runtime import quiet

log = logging.getLogger(__name__)


def union_columns(runs: Sequence[RunFiles]) -> list[str]:
    """Every member's columns, in the order they first appear."""
    return list(dict.fromkeys(c for run in runs for c in run.pre.spec.columns))


def ensemble_module(runs: Sequence[RunFiles], models: Sequence, decode_steps: int | None = None) -> tf.Module:
    """`convert.inference_module` for several members: the competition's signature over the union
    of their columns."""
    columns = union_columns(runs)
    picks = [[columns.index(c) for c in run.pre.spec.columns] for run in runs]
    models = [float32_twin(m) for m in models]  # (see inference_module)
    cfg = models[0].cfg
    module = tf.Module()
    module.weights = [v.value for model in models for v in model.variables]  # (see inference_module)

    @tf.function(input_signature=[tf.TensorSpec([None, len(columns)], tf.float32, name="inputs")])
    def serve(inputs):
        member_inputs = [
            preprocess(tf.gather(inputs, pick, axis=1), run.pre) for pick, run in zip(picks, runs)
        ]
        tokens = transcribe_ensemble(
            list(models),
            member_inputs,
            max_length=decode_steps or cfg.max_length,
            early_stop=decode_steps is None,
        )
        return {"outputs": tf.one_hot(tokens[0], cfg.vocab_size)}

    module.serve = serve
    return module


def common_validation_ids(runs: Sequence[RunFiles]) -> list[int]:
    """The validation sequences every member held out (none when they differ in data)."""
    if any(run.data_root != runs[0].data_root for run in runs):
        return []
    held_out = [set(competition.validation_ids(run.dir)) for run in runs]
    return sorted(set.intersection(*held_out))


def export_ensemble(
    run_dirs: Sequence[Path], out: Path, quantize: str = "none", zip_: bool = False, evaluate: bool = True
) -> dict:
    """Write the ensemble of `run_dirs` to `out`, measure and score it; -> the figures."""
    t0 = time.perf_counter()
    if len({Path(d).resolve() for d in run_dirs}) != len(run_dirs):
        raise DataError("an ensemble lists a run twice: name each member once")
    runs = [RunFiles.load(d) for d in run_dirs]
    models = [run.model() for run in runs]
    columns = union_columns(runs)
    content = convert_module(ensemble_module(runs, models), quantize)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = write_files(out, content, columns, zip_)
    steps = runs[0].cfg.budget.benchmark.characters + 1
    timed = convert_module(ensemble_module(runs, models, decode_steps=steps), quantize)
    m = budget.measure_graph(timed, columns, runs[0].cfg.budget, shipped=content)
    report = {**m.metrics(), names.EXPORT_QUANTIZE: quantize}
    log.info("ensemble of %d runs -> %s: %s", len(runs), path, m.why())
    ids = common_validation_ids(runs) if evaluate else []
    root = runs[0].data_root
    if ids and root is not None and root.exists():
        with quiet():
            result = competition.score(path, out / names.INFERENCE_ARGS_FILE, root, ids)
        report[names.INFER_VAL_SCORE] = result.score
        log.info(
            "the ensemble scores %.4f on the %d validation sequences all members held out",
            result.score,
            len(ids),
        )
    elif evaluate:
        log.warning("not scoring the ensemble: its members held out no common validation sequences here")
    report[names.EXPORT_SECONDS] = time.perf_counter() - t0
    write_json(out / names.ENSEMBLE_FILE, {"members": [str(Path(d).resolve()) for d in run_dirs], **report})
    return report
