"""What `python train.py` does, stage by stage: (the directory claimed) -> budget probe -> data ->
model -> training -> the decoding and fallback it ships -> export and measurement -> summary."""

from __future__ import annotations

import logging
from pathlib import Path

from aslfr import names
from aslfr.config import Config
from aslfr.data import prepare
from aslfr.export import budget
from aslfr.export.convert import Preprocessing
from aslfr.summary import Summary
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
# what the log's last line shows of the summary
SHOWN = (
    names.VAL_SCORE,
    names.BEST_VAL_SCORE,
    names.INFER_VAL_SCORE,
    names.INFER_LATENCY_MS,
    names.BUDGET_OK,
)


def run(cfg: Config) -> dict:
    """One run in cfg.paths.output_dir, top to bottom. train.py has claimed the directory
    (aslfr/train/rundir.py) before TensorFlow loads; then each step is a call to its stage."""
    devices = loop.configure_devices(cfg.trainer)
    log.info("devices: %s", devices)
    run_dir = Path(cfg.paths.output_dir)
    probe = probe_budget(cfg)
    if probe is not None and not probe.ok:
        return over_budget(cfg, run_dir, probe, devices)
    split = prepare_data(cfg)
    training = loop.Training(cfg, split, run_dir)
    training.build()
    with training.tracking(known=probe.metrics() if probe else None, devices=devices):
        training.fit()
        training.ship()
        if cfg.export.enabled:
            training.record(export(cfg, split, training))
        summary = training.summarize()
    log.info("done: %s", {k: summary[k] for k in SHOWN if k in summary})
    return summary


def probe_budget(cfg: Config) -> budget.Measurement | None:
    """The untrained model's export measured against the inference budget (budget.probe)."""
    if not cfg.budget.probe:
        return None
    probe = budget.probe(cfg)
    log.info("budget probe (untrained model, %s): %s", cfg.model.name, probe.why())
    return probe


def prepare_data(cfg: Config) -> prepare.DataSplit:
    """The features, folds and vocabulary of the run (and their files in its directory)."""
    split = prepare.setup_from_config(cfg)
    log.info("\n%s", prepare.summary(split, cfg.data))
    return split


def export(cfg: Config, split: prepare.DataSplit, training: loop.Training) -> dict:
    """The shipped model converted for the competition and measured against the budget (scored on
    the validation fold with export.evaluate); its files logged with the run. Returns the report."""
    run_dir = training.run_dir
    report = budget.export_and_measure(
        training.model,
        Preprocessing(split.spec, split.stats, cfg.data.max_frames),
        run_dir,
        cfg.budget,
        cfg.export.quantize,
        cfg.export.zip,
        data_root=Path(split.prepared.meta["root"]),
        val_ids=split.prepared.sequence_id[split.val] if cfg.export.evaluate else None,
    )
    # only the files this export wrote (a submission.zip left by an earlier `aslfr-export --zip`
    # would not be of these weights)
    shipped = [
        names.MODEL_FILE,
        names.INFERENCE_ARGS_FILE,
        *([names.SUBMISSION_FILE] if cfg.export.zip else []),
    ]
    training.tracker.log_submission(
        [run_dir / name for name in shipped],
        {k: report[k] for k in SUBMISSION_METADATA if k in report},
    )
    return report


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
    Summary(run_dir, summary).update({names.WANDB_ID: tracker.run.id, names.WANDB_MODE: tracker.mode}).write()
    log.warning(
        "stopping: the model is over the inference budget, so it is not trained (%s). What helps: %s.",
        probe.why(),
        probe.advice(),
    )
    return summary
