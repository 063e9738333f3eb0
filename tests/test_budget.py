"""The budget travels: latencies are stated for the reference CPU, whichever machine measured them,
from a reference graph timed once per machine; and every export is logged as a W&B artifact."""

from __future__ import annotations

import json

import pytest

from aslfr.atomic import write_json
from aslfr.config import Reference
from aslfr.experiments.offline import read_runs
from aslfr.export import budget, reference
from aslfr.train.wandb_log import records

from conftest import typed_cfg


@pytest.fixture
def timings(monkeypatch) -> list[float]:
    """Every real timing of the reference graph in this test."""
    out: list[float] = []
    real = reference.time_graph

    def counted() -> float:
        out.append(real())
        return out[-1]

    monkeypatch.setattr(reference, "time_graph", counted)
    return out


def test_the_reference_graph_is_timed_once_per_machine_and_again_when_it_changes(
    tmp_path, timings, monkeypatch
):
    ms = reference.machine_ms(tmp_path)
    path = reference.cache_path(tmp_path)
    assert timings == [ms] and ms > 0
    assert json.loads(path.read_text())["ms"] == ms
    # a later measurement (another process, another run) reads the cache: no timing
    assert reference.machine_ms(tmp_path) == ms and len(timings) == 1
    assert reference.cpu_factor(Reference(scale=True, ms=2 * ms, cache_dir=str(tmp_path))) == pytest.approx(
        2.0
    )
    assert len(timings) == 1
    # another reference graph measures again, and its figure replaces the old one
    monkeypatch.setattr(reference, "GRAPH_VERSION", reference.GRAPH_VERSION + 1)
    assert reference.machine_ms(tmp_path) == timings[1] and len(timings) == 2
    assert json.loads(path.read_text())["graph_version"] == reference.GRAPH_VERSION
    # so does another interpreter (or TensorFlow, or a reboot: whatever the cache records)
    write_json(path, {**json.loads(path.read_text()), "litert": "0.0.0"})
    reference.machine_ms(tmp_path)
    assert len(timings) == 3 and json.loads(path.read_text())["litert"] == reference.key()["litert"]
    # and a re-measurement can be asked for (a machine that was busy the first time)
    assert reference.machine_ms(tmp_path, fresh=True) == timings[3]
    assert {p.name for p in tmp_path.iterdir()} - {f"{path.name}.lock"} == {path.name}  # no temporaries


def test_feasibility_follows_the_latency_on_the_reference_cpu(tmp_path, timings, monkeypatch):
    """The probe's arithmetic on a fixed conversion and timing (a model taking 10 ms here), so that
    the outcome does not depend on this machine's speed; real conversions and timings of the
    probe: test_a_run_logs_both_latencies_and_its_export_as_a_submission_artifact and
    test_export.py's over-budget run."""
    cache = tmp_path / "cache"
    cfg = typed_cfg(["debug=default", f"budget.reference.cache_dir={cache}"], tmp_path)
    monkeypatch.setattr(budget, "convert", lambda *args, **kw: bytes(1_500_000))
    monkeypatch.setattr(budget, "latency_ms", lambda *args, **kw: 10.0)
    # as cached, this machine runs the reference graph twice as fast as the reference CPU
    write_json(reference.cache_path(cache), {**reference.key(), "ms": cfg.budget.reference.ms / 2})
    m = budget.probe(cfg)
    assert timings == []  # the cached figure was used
    assert m.cpu_factor == pytest.approx(2.0) and m.model_mb == 1.5
    assert m.latency_ms == pytest.approx(2 * m.latency_ms_raw)
    assert m.projected_hours == pytest.approx(m.latency_ms * cfg.budget.test_sequences / 3.6e6)
    logged = m.metrics()
    assert logged["infer/latency_ms"] == m.latency_ms and logged["infer/latency_ms_raw"] == m.latency_ms_raw
    assert logged["infer/cpu_factor"] == m.cpu_factor

    # 10 ms here, 20 ms on the reference CPU, against a budget of 15 ms: a fast machine must not
    # pass what the reference CPU would find too slow
    cfg.budget.latency_ms = 15
    m = budget.probe(cfg)
    assert (m.latency_ms_raw, m.latency_ms) == (10.0, pytest.approx(20.0))
    assert not m.ok and m.metrics()["budget/ok"] is False
    why = m.why()
    assert why.startswith("OVER BUDGET: latency 20.00 ms per sequence on the reference CPU (10.00 ms on this")
    assert "> budget.latency_ms=15" in why
    assert m.advice().startswith("for latency: a shallower or narrower decoder")

    # unscaled, the same model is within the same budget: its latency is this machine's
    cfg.budget.reference.scale = False
    m = budget.probe(cfg)
    assert m.ok and m.cpu_factor is None and m.latency_ms == m.latency_ms_raw == 10.0
    assert "infer/cpu_factor" not in m.metrics() and "on this CPU" in m.why()


@pytest.mark.slow
def test_a_run_logs_both_latencies_and_its_export_as_a_submission_artifact(debug_run):
    summary = json.loads((debug_run / "summary.json").read_text())
    assert summary["infer/latency_ms"] == pytest.approx(
        summary["infer/latency_ms_raw"] * summary["infer/cpu_factor"]
    )
    (run,) = read_runs(debug_run)
    for key in ("infer/latency_ms", "infer/latency_ms_raw", "infer/cpu_factor"):
        assert run.summary[key] == pytest.approx(summary[key]), key
        assert run.series(key), key  # logged, not only summarized
    (submission,) = [a for a in run.artifacts if a["type"] == "submission"]
    assert submission["name"] == f"submission-{run.id}"
    meta = submission["metadata"]
    for key in ("infer/val_score", "infer/latency_ms", "infer/latency_ms_raw", "infer/model_mb"):
        assert meta[key] == pytest.approx(summary[key]), key
    assert meta["export/quantize"] == "none" and meta["budget/ok"] is True
    # it holds the files of the export (no submission.zip: export.zip=false)
    (path,) = run.paths
    (record,) = [
        r.artifact
        for r in records(path)
        if r.WhichOneof("record_type") == "artifact" and r.artifact.type == "submission"
    ]
    assert sorted(e.path for e in record.manifest.contents) == ["inference_args.json", "model.tflite"]
