"""What `python train.py` does, stage by stage: budget probe -> data -> model -> training ->
export and measurement -> summary."""

from __future__ import annotations

import logging
from pathlib import Path

from aslfr import names
from aslfr.atomic import write_json
from aslfr.config import Config
from aslfr.data import prepare
from aslfr.export import budget
from aslfr.export.convert import Preprocessing
from aslfr.train import loop
from aslfr.train.tracking import Tracker, new_run_id

log = logging.getLogger(__name__)
# what the submission artifact's metadata says of the export (infer/val_score: when scored)
SUBMISSION_METADATA = (
    names.INFER_VAL_SCORE,
    names.INFER_LATENCY_MS,
    names.INFER_LATENCY_MS_RAW,
    names.INFER_CPU_FACTOR,
    names.INFER_MODEL_MB,
    names.EXPORT_QUANTIZE,
    names.BUDGET_OK,
)


def run(cfg: Config) -> dict:
    """One run in cfg.paths.output_dir (claimed by train.py: see aslfr/rundir.py)."""
    devices = loop.configure_devices(cfg.trainer)
    log.info("devices: %s", devices)
    run_dir = Path(cfg.paths.output_dir)
    known = {}
    if cfg.budget.probe:
        probe = budget.probe(cfg)
        log.info("budget probe (untrained model, %s): %s", cfg.model.name, probe.why())
        if not probe.ok:
            return over_budget(cfg, run_dir, probe, devices)
        known = probe.metrics()
    split = prepare.setup_from_config(cfg)
    log.info("\n%s", prepare.summary(split, cfg.data))
    after = None
    if cfg.export.enabled:
        pre = Preprocessing(split.spec, split.stats, cfg.data.max_frames)
        val_ids = split.prepared.sequence_id[split.val] if cfg.export.evaluate else None

        def after(model, tracker: Tracker) -> dict:
            report = budget.export_and_measure(
                model,
                pre,
                run_dir,
                cfg.budget,
                cfg.export.quantize,
                cfg.export.zip,
                data_root=Path(split.prepared.meta["root"]),
                val_ids=val_ids,
            )
            # only the files this export wrote (a submission.zip left by an earlier
            # `aslfr-export --zip` would not be of these weights)
            shipped = ["model.tflite", "inference_args.json", *(["submission.zip"] if cfg.export.zip else [])]
            tracker.log_submission(
                [run_dir / name for name in shipped],
                {k: report[k] for k in SUBMISSION_METADATA if k in report},
            )
            return report

    summary = loop.train(cfg, split, run_dir, known=known, after=after, devices=devices)
    shown = (
        names.VAL_SCORE,
        names.BEST_VAL_SCORE,
        names.INFER_VAL_SCORE,
        names.INFER_LATENCY_MS,
        names.BUDGET_OK,
    )
    log.info("done: %s", {k: summary[k] for k in shown if k in summary})
    return summary


def over_budget(cfg: Config, run_dir: Path, probe: budget.Measurement, devices: dict) -> dict:
    """Stop before any data work: log budget/ok=false and the sweep metric at its worst value,
    so a sweep learns the configuration cannot ship (exit status 0: nothing went wrong)."""
    summary = {
        **probe.metrics(),
        names.VAL_SCORE: cfg.budget.worst_score,
        names.BUDGET_REASON: probe.why(),
        names.EPOCHS: 0,
        **devices,
    }
    tracker = Tracker(cfg, run_dir, new_run_id())
    tracker.record_devices(devices)
    tracker.record(summary, 0)
    tracker.finish(0)
    write_json(
        run_dir / "summary.json",
        {**summary, names.WANDB_ID: tracker.run.id, names.WANDB_MODE: tracker.mode},
        sort_keys=True,
    )
    log.warning(
        "stopping: the model is over the inference budget, so it is not trained (%s). What helps: %s.",
        probe.why(),
        probe.advice(),
    )
    return summary
