"""Train an ASL fingerspelling model: `python train.py [group=option ...] [key=value ...]`.

The Hydra config under conf/ is the whole interface; see README.md.
"""

import hydra
from omegaconf import DictConfig

from aslfr.errors import exit_on_error


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
@exit_on_error
def main(cfg: DictConfig) -> None:
    from aslfr.run import run  # imported here so --help and config errors stay fast

    run(cfg)


if __name__ == "__main__":
    main()
