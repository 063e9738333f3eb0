"""The export: TFLite in the competition's format, equal to Keras string for string, scored by
the competition's rules; quantization; the inference budget and its probe."""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from omegaconf import OmegaConf

from aslfr.data import pipeline, prepare
from aslfr.data.features import FeatureSpec, extract
from aslfr.experiments import compare
from aslfr.experiments.offline import read_runs
from aslfr.export import competition
from aslfr.export import convert as export
from aslfr.model.decoding import transcribe
from aslfr.train.datasets import validation_dataset, validation_order
from aslfr.train.decoder import DatasetDecoder

from conftest import ROOT, compose_cfg, min_ctc_frames, train_here


def raw_sequences(root, columns, limit=None):
    """(sequence_id, raw [frames, columns]) from the Kaggle-layout files, read with pandas."""
    index = pd.read_csv(root / "train.csv")
    for path, rows in index.groupby("path", sort=False):
        df = pd.read_parquet(root / path, columns=columns)
        for sid in rows.sequence_id[:limit]:
            yield int(sid), df.loc[[sid], columns].to_numpy(np.float32)


@pytest.mark.parametrize(
    "features",
    [
        [],  # the default: signing hand, lips, pose, mirrored, handless frames dropped
        [
            "data.features.hands=both",
            "data.features.mirror=false",
            "data.features.handless_frames=keep",
            "data.features.z=true",
        ],
    ],
)
def test_canonical_frames_is_extract_in_tensorflow(tiny_root, tmp_path, features):
    spec = FeatureSpec.from_config(compose_cfg(features, tmp_path).data.features)
    lefties = 0
    for sid, raw in raw_sequences(tiny_root, spec.columns):
        ours = pipeline.canonical_frames(tf.constant(raw), spec).numpy()
        ref = extract(raw, spec)
        if ref is None:  # no hand ever: training skips it, inference keeps every frame
            assert ours.shape == (len(raw), spec.n_points, len(spec.axes))
            continue
        lefties += ref.dominant_left
        np.testing.assert_array_equal(ours, ref.frames, err_msg=f"sequence {sid}")
    assert lefties > 0  # the mirrored path was exercised


@pytest.fixture(scope="module")
def exported(debug_run):
    run = export.RunFiles.load(debug_run)
    return run, run.model(), export.TFLiteModel((debug_run / "model.tflite").read_bytes())


@pytest.mark.slow
def test_export_has_the_competition_signature(debug_run, exported):
    run, _, lite = exported
    assert lite.interpreter.get_signature_list() == {
        "serving_default": {"inputs": ["inputs"], "outputs": ["outputs"]}
    }
    args = json.loads((debug_run / "inference_args.json").read_text())
    assert args["selected_columns"] == list(run.pre.spec.columns)
    raw = np.full((7, len(args["selected_columns"])), np.nan, np.float32)
    out = lite.runner(inputs=raw)["outputs"]
    assert out.ndim == 2 and out.shape[1] >= 59 and out.shape[0] == run.cfg.data.max_phrase_length + 1


def keras_phrases_by_id(run, model, tmp_path: Path, how: str | None = None) -> dict:
    """The run's validation fold decoded as the validation metric decodes it (`how`: the model's
    configured decoding by default): sequence id -> phrase."""
    cfg = run.cfg
    split = prepare.setup(cfg.data, cfg.paths.cache_dir, cfg.paths.data_dir, tmp_path, progress=False)
    _, phrases = DatasetDecoder(model, split.vocab, how)(
        validation_dataset(cfg, split, model.cfg, batch_size=16)
    )
    order = validation_order(cfg, split, model.cfg)  # shortest first: the batches' order
    return dict(zip(split.prepared.sequence_id[order].tolist(), phrases))


@pytest.mark.slow
def test_litert_decodes_the_validation_fold_exactly_like_keras(debug_run, exported, tmp_path):
    run, model, lite = exported
    keras_by_id = keras_phrases_by_id(run, model, tmp_path)  # the validation metric's own decoding
    root = json.loads((debug_run / "features.json").read_text())["data_root"]
    result = competition.score(
        debug_run / "model.tflite", debug_run / "inference_args.json", root, list(keras_by_id)
    )
    assert dict(zip(result.sequence_ids, result.predicted)) == keras_by_id
    # ... so the exported file scores what the run reported for the same weights
    summary = json.loads((debug_run / "summary.json").read_text())
    assert result.score == pytest.approx(summary["best/val/score"], abs=1e-12)
    assert summary["infer/val_score"] == pytest.approx(summary["best/val/score"], abs=1e-12)

    # edge cases: one frame, no hand at all, longer than max_frames (the model's own decoding)
    for name, case in edge_cases(Path(root), run, model).items():
        frames, mask = export.preprocess(tf.constant(case), run.pre)
        keras_tokens = transcribe(model, frames, mask)[0].numpy()
        np.testing.assert_array_equal(lite(case), keras_tokens, err_msg=name)


@pytest.mark.slow
@pytest.mark.parametrize("how", ["ctc", "joint"])
def test_litert_decodes_like_keras_with_ctc_and_joint_decoding(debug_run, exported, tmp_path, how):
    """The debug run's model has both heads: exported with each other decoding, LiteRT spells the
    validation fold (and the edge cases) string for string as the validation metric does. The
    fallback phrase is off here, so that clips shorter than their phrases reach the decoders."""
    run, _, _ = exported
    model = run.model()
    model.cfg = dataclasses.replace(model.cfg, fallback_frames=0)
    module = export.inference_module(model, run.pre, decode=functools.partial(transcribe, how=how))
    (tmp_path / "model.tflite").write_bytes(export.convert_module(module))
    keras_by_id = keras_phrases_by_id(run, model, tmp_path, how)
    root = json.loads((debug_run / "features.json").read_text())["data_root"]
    result = competition.score(
        tmp_path / "model.tflite", debug_run / "inference_args.json", root, list(keras_by_id)
    )
    assert dict(zip(result.sequence_ids, result.predicted)) == keras_by_id
    assert any(keras_by_id.values())  # something was spelled
    lite = export.TFLiteModel((tmp_path / "model.tflite").read_bytes())
    beyond = []  # clips spelled longer than CTC can align: the attention search alone ran
    for name, case in edge_cases(Path(root), run, model).items():
        frames, mask = export.preprocess(tf.constant(case), run.pre)
        tokens = transcribe(model, frames, mask, how=how)[0].numpy()
        np.testing.assert_array_equal(lite(case), tokens, err_msg=name)
        beyond += [name] if min_ctc_frames(tokens, model.cfg.eos) > int(mask.numpy().sum()) else []
    assert how == "ctc" or beyond, "no edge case exercised the attention search for unaligned clips"


def edge_cases(root: Path, run, model) -> dict:
    """One, three and eight frames (shorter than the phrases: CTC cannot align them), no hand at
    all, longer than max_frames."""
    (_, raw), *_ = raw_sequences(root, run.pre.spec.columns, 1)
    visible = np.flatnonzero(~np.isnan(raw).all(axis=1))
    cases = {
        "one frame": raw[visible[:1]],
        "three frames": raw[visible[:3]],
        "eight frames": raw[visible[:8]],
        "all NaN": np.full_like(raw, np.nan),
        "long": np.concatenate([raw] * (model.cfg.max_frames // len(raw) + 2)),
    }
    assert len(cases["long"]) > model.cfg.max_frames
    return cases


@pytest.mark.slow
def test_quantized_exports_are_smaller_and_still_decode(debug_run, exported):
    run, _, _ = exported
    model = run.model()
    model.cfg = model.cfg.decoding("joint")  # every weight in the graph, whichever decoding the run chose
    sizes, outputs = {}, {}
    root = Path(json.loads((debug_run / "features.json").read_text())["data_root"])
    raws = [raw for _, raw in raw_sequences(root, run.pre.spec.columns, 3)]
    for q in export.QUANTIZE:
        content = export.convert(model, run.pre, q)
        sizes[q] = len(content)
        lite = export.TFLiteModel(content)
        outputs[q] = [lite(raw) for raw in raws]
    assert sizes["int8_dynamic"] < sizes["fp16"] < sizes["none"]
    # fp16 stores each float32 weight in 2 bytes instead of 4 (the rest is the graph itself)
    assert sizes["none"] - sizes["fp16"] > 1.5 * model.count_params()
    for q in ("fp16", "int8_dynamic"):
        assert all(o.shape == outputs["none"][0].shape for o in outputs[q])
    with pytest.raises(ValueError, match="export.quantize"):
        export.convert(model, run.pre, "int4")


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_an_ensemble_exports_as_one_file_that_decodes_like_keras(debug_run, tmp_path):
    """Two runs (seeds) and a member that selects fewer columns (no pose): one TFLite file over
    the union of their columns decodes the validation fold string for string as Keras' ensemble
    decoding does, is measured against the budget and scored by the competition's rules."""
    from aslfr.export.__main__ import main as export_cli
    from aslfr.export.ensemble import ensemble_module, union_columns
    from aslfr.model.decoding import transcribe_ensemble

    other = tmp_path / "other"
    same_data = f"paths.data_dir={debug_run.parent / 'data'}"  # the same files and folds
    # (the first member's decoding and fallback are the ensemble's: this one's are not searched)
    train_here(
        tmp_path,
        "trainer.epochs=1",
        "trainer.seed=1",
        "data.features.pose=false",
        "model.decode=attention",
        "fallback.min_hand_frames=0",
        same_data,
        run_dir=other,
    )
    out = tmp_path / "ensemble"
    export_cli([str(debug_run), str(other), "--ensemble", str(out)])  # aslfr-export, in this process
    report = json.loads((out / "ensemble.json").read_text())
    assert report["budget/ok"] is True and report["infer/val_score"] <= 1  # (debug models: may be < 0)
    runs = [export.RunFiles.load(d) for d in (debug_run, other)]
    columns = json.loads((out / "inference_args.json").read_text())["selected_columns"]
    assert columns == union_columns(runs) and len(columns) > len(runs[1].pre.spec.columns)
    models = [run.model() for run in runs]
    module = ensemble_module(runs, models)
    lite = export.TFLiteModel((out / "model.tflite").read_bytes())
    root = Path(json.loads((debug_run / "features.json").read_text())["data_root"])
    ids = competition.validation_ids(debug_run)[:12]
    result = competition.score(out / "model.tflite", out / "inference_args.json", root, ids)
    index = pd.read_csv(root / "train.csv").set_index("sequence_id")
    vocab = runs[0].vocab
    for sid, predicted in zip(result.sequence_ids, result.predicted):
        raw = pd.read_parquet(root / index.loc[sid, "path"], columns=columns).loc[[sid]].to_numpy(np.float32)
        keras_tokens = module.serve(tf.constant(raw))["outputs"].numpy().argmax(1)
        assert vocab.decode(keras_tokens) == predicted == vocab.decode(lite(raw)), sid
    # the graph's own decoding is transcribe_ensemble: one member alone is that member's own decoding
    frames, mask = export.preprocess(
        tf.constant(raw[:, [columns.index(c) for c in runs[0].pre.spec.columns]]), runs[0].pre
    )
    np.testing.assert_array_equal(
        transcribe_ensemble(models[:1], [(frames, mask)]), transcribe(models[0], frames, mask)
    )


@pytest.mark.slow
def test_export_cli_writes_a_submission_zip(debug_run, tmp_path, capsys):
    """competition.py (it stands alone: a process of its own) names the fix when a run has no
    export; aslfr-export (its main, in this process) writes the zip and rewrites the summary,
    and refuses a directory that is not a run in one line with exit status 2."""
    from aslfr.export.__main__ import main as export_cli

    copy = tmp_path / "run"
    shutil.copytree(debug_run, copy)
    (copy / "model.tflite").unlink()
    no_export = subprocess.run(
        [sys.executable, "-m", "aslfr.export.competition", str(copy)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert no_export.returncode != 0 and "Traceback" not in no_export.stderr
    assert f"aslfr-export {copy}" in no_export.stderr  # the fix, in one line
    export_cli([str(copy), "--zip", "--quantize", "fp16"])
    with zipfile.ZipFile(copy / "submission.zip") as z:
        assert sorted(z.namelist()) == ["inference_args.json", "model.tflite"]
    summary = json.loads((copy / "summary.json").read_text())
    assert json.loads(capsys.readouterr().out)["export/quantize"] == "fp16"  # the report, printed
    assert summary["export/quantize"] == "fp16" and summary["budget/ok"] is True
    assert summary["infer/model_mb"] == pytest.approx((copy / "model.tflite").stat().st_size / 1e6)
    assert summary["infer/val_score"] <= 1
    # the comparison reads the run's own summary.json (rewritten by the re-export) before W&B's
    (row,) = compare.offline_rows([copy])
    (logged,) = read_runs(copy)
    assert row.model_mb == pytest.approx(summary["infer/model_mb"])
    assert logged.summary["infer/model_mb"] > row.model_mb  # W&B still has the float32 size
    with pytest.raises(SystemExit) as bad:
        export_cli([str(tmp_path)])
    assert bad.value.code == 2
    err = capsys.readouterr().err
    assert "not a train.py run directory" in err and "Traceback" not in err and err.count("\n") == 1


@pytest.mark.slow
def test_over_budget_config_stops_before_any_data_work_with_the_worst_score(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    train_here(tmp_path, "budget.probe=true", "budget.latency_ms=0.001")  # returns: nothing went wrong
    out = caplog.text
    assert "OVER BUDGET" in out and "budget.latency_ms=0.001" in out
    advice = out.split("What helps: ")[1].split("\n")[0]
    assert advice.startswith("for latency: a shallower or narrower decoder")
    assert "fp16" not in advice  # it halves the file, it is not faster on a CPU
    assert not (tmp_path / "data").exists()  # no data work, no training
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["budget/ok"] is False and summary["val/score"] == 0.0
    # the probe's latency on the reference CPU, as measured here, and this CPU's factor
    assert summary["infer/latency_ms"] == pytest.approx(
        summary["infer/latency_ms_raw"] * summary["infer/cpu_factor"]
    )
    (run,) = read_runs(tmp_path / "run")
    assert run.summary["budget/ok"] is False and run.exit_code == 0
    for key in ("infer/latency_ms", "infer/latency_ms_raw", "infer/cpu_factor"):
        assert run.summary[key] == pytest.approx(summary[key]), key
    assert [v for _, v in run.series("val/score")] == [0.0]
    cfg = OmegaConf.create(run.config)
    assert cfg.budget.latency_ms == 0.001
