"""Train an ASL fingerspelling model: `python train.py [group=option ...] [key=value ...]`.

The Hydra config under conf/ is the whole interface; see README.md.
"""

from pathlib import Path

import hydra
from omegaconf import DictConfig

from aslfr.config import register_resolvers
from aslfr.errors import exit_on_error
from aslfr.train.rundir import RunDir

register_resolvers()  # ${stamp:} in hydra.run.dir, resolved by Hydra before main() runs


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
@exit_on_error
def main(cfg: DictConfig) -> None:
    # Claimed before TensorFlow loads: a refused resume (another config, another live process)
    # answers in a second and leaves the directory as it was.
    with RunDir(Path(cfg.paths.output_dir)).claim(cfg):
        from aslfr.train.run import run  # imported here so --help and config errors stay fast

        run(cfg)


if __name__ == "__main__":
    main()
