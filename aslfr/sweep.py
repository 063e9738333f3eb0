"""W&B sweep definitions (sweeps/*.yaml): loading, validation and the arguments a W&B agent
passes to train.py.

A definition's `command` runs `python train.py ${args_no_hyphens}`: the agent turns each proposed
parameter into `key=value` (a Hydra override; W&B writes None as the string "None"). `agent_args`
builds exactly those arguments, so the offline runner and the tests see what train.py will get.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from pathlib import Path

import yaml

from .errors import DataError

ARG_MACROS = ("${args_no_hyphens}", "${args_override_hydra}")


def load(path: Path) -> dict:
    """A sweep definition, checked against W&B's own sweep schema (the `sweeps` package)."""
    path = Path(path)
    try:
        definition = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise DataError(f"{path}: cannot read the sweep definition ({e})") from None
    from sweeps.config import fill_validate_schema  # W&B's schema: sweeps/config/schema.json

    try:
        fill_validate_schema(definition)
    except Exception as e:  # jsonschema.ValidationError and friends: the message says what
        raise DataError(f"{path}: not a valid W&B sweep definition: {e}".split("\n")[0]) from None
    if not any(m in definition.get("command", []) for m in ARG_MACROS):
        raise DataError(f"{path}: `command` must pass the parameters to train.py as Hydra "
                        f"overrides ({' or '.join(ARG_MACROS)})")
    return definition


def format_value(value) -> str:
    """A parameter value as the W&B agent writes it after `key=`."""
    if value is None:
        return "None"
    if isinstance(value, bool):
        return str(value)  # True / False, which Hydra's grammar reads as booleans
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(format_value(v) for v in value) + "]"
    return str(value)


def agent_args(params: Mapping) -> list[str]:
    """`${args_no_hyphens}`: one `key=value` per parameter, in the definition's order."""
    return [f"{key}={format_value(value)}" for key, value in params.items()]


def grid(definition: Mapping) -> list[dict]:
    """Every combination of a definition's `value`/`values` parameters (method: grid)."""
    params = definition["parameters"]
    choices = {k: p["values"] if "values" in p else [p["value"]] for k, p in params.items()}
    return [dict(zip(choices, combo)) for combo in itertools.product(*choices.values())]
