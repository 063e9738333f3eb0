"""Export any run again, as the competition ran models, or several runs as one ensemble:

    aslfr-export RUN_DIR [--quantize none|fp16|int8_dynamic] [--zip] [--no-evaluate]
    aslfr-export RUN_DIR RUN_DIR ... --ensemble OUT [--quantize ...] [--zip] [--no-evaluate]

writes model.tflite + inference_args.json (+ submission.zip) into RUN_DIR, measures the file
against the run's budget, scores it on the run's validation fold by the competition's rules, and
updates the run's summary.json. With --ensemble the files (and ensemble.json) go to OUT instead
(`aslfr.export.ensemble`).
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from aslfr.runtime import import_tensorflow

import_tensorflow()  # first, so that TensorFlow's start-up lines are held back

from aslfr.errors import exit_on_error  # noqa: E402
from aslfr.export import budget, competition  # noqa: E402
from aslfr.export.convert import QUANTIZE, RunFiles  # noqa: E402
from aslfr.export.ensemble import export_ensemble  # noqa: E402
from aslfr.summary import Summary  # noqa: E402

log = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="aslfr-export", description=__doc__.splitlines()[0])
    ap.add_argument("run_dirs", type=Path, nargs="+", metavar="RUN_DIR")
    ap.add_argument("--ensemble", type=Path, metavar="OUT", help="export the runs as one ensemble into OUT")
    ap.add_argument(
        "--quantize", choices=QUANTIZE, default=None, help="default: the run's export.quantize (none)"
    )
    ap.add_argument("--zip", action="store_true", help="also write submission.zip")
    ap.add_argument(
        "--no-evaluate", action="store_true", help="skip decoding the validation fold with the exported file"
    )
    args = ap.parse_args(argv)
    if len(args.run_dirs) > 1 and args.ensemble is None:
        ap.error("several runs make an ensemble: add --ensemble OUT")
    _export_cli(args)


@exit_on_error
def _export_cli(args) -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.ensemble is not None:
        report = export_ensemble(
            args.run_dirs, args.ensemble, args.quantize or "none", args.zip, not args.no_evaluate
        )
        print(json.dumps(report, indent=1))
        return
    run = RunFiles.load(args.run_dirs[0])
    quantize = args.quantize or run.cfg.export.quantize
    evaluate = not args.no_evaluate
    if evaluate and not (run.data_root and run.data_root.exists()):
        log.warning("not scoring the export: the run's data (%s) is not here", run.data_root)
        evaluate = False
    report = budget.export_and_measure(
        run.model(),
        run.pre,
        run.dir,
        run.cfg.budget,
        quantize,
        args.zip,
        data_root=run.data_root if evaluate else None,
        val_ids=competition.validation_ids(run.dir) if evaluate else None,
    )
    summary = Summary.load(run.dir)
    if summary is not None:  # the run directory describes the model.tflite it holds
        summary.update(report).write()
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
