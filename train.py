"""Train an ASL fingerspelling model: `python train.py [group=option ...] [key=value ...]`.

The Hydra config under conf/ is the whole interface; see README.md.
"""

import os
from pathlib import Path

import hydra
from omegaconf import DictConfig

from aslfr import names
from aslfr.config import register, typed
from aslfr.errors import exit_on_error
from aslfr.runtime import import_tensorflow
from aslfr.train.rundir import RunDir

register()  # the config schema and ${stamp:}, which Hydra needs before main() runs


# A W&B service inherited from the process that started this one (WANDB_SERVICE: a notebook, a
# test runner, a tool that logged with wandb) is not this run's: a run killed while attached to it
# leaves its stream there, and resuming it then fails with "run ID ... is in use" until that
# service notices. Each train.py process (and the jobs of its multirun) starts its own.
os.environ.pop("WANDB_SERVICE", None)


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
@exit_on_error
def main(cfg: DictConfig) -> float:
    """One run; returns the sweep metric (val/score: best of the run, or an over-budget run's
    worst score), for Hydra's sweeper plugins."""
    # Typed and checked across keys, then claimed, before TensorFlow loads: a refused config or
    # resume (another config, another live process) answers in a second and leaves the
    # directory as it was.
    config = typed(cfg)
    with RunDir(Path(config.paths.output_dir)).claim(cfg):
        import_tensorflow()
        from aslfr.train.run import run  # TensorFlow and Keras: after the claim, not for --help

        summary = run(config)
    best = summary.get(names.BEST_VAL_SCORE)
    return float(summary[names.VAL_SCORE] if best is None else best)


if __name__ == "__main__":
    main()
