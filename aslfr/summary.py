"""A run's summary.json: what the run measured, as the sweep runner, `aslfr-compare` and the
benchmarks read it. This class alone writes it, whole or not at all (temp file then rename): the
training stage fills it as the run goes and writes it at the end (an over-budget run right after
the probe), and `aslfr-export` adds the measurements of a later export."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from aslfr import names
from aslfr.atomic import write_json


class Summary:
    def __init__(self, run_dir: Path, values: Mapping | None = None):
        self.path = Path(run_dir) / names.SUMMARY_FILE
        self.values: dict = dict(values or {})

    @classmethod
    def load(cls, run_dir: Path) -> Summary | None:
        """The summary a run wrote, or None when it wrote none (yet)."""
        path = Path(run_dir) / names.SUMMARY_FILE
        if not path.exists():
            return None
        return cls(run_dir, json.loads(path.read_text()))

    def update(self, values: Mapping) -> Summary:
        self.values.update(values)
        return self

    def write(self) -> dict:
        """summary.json, keys sorted; returns its values."""
        write_json(self.path, self.values, sort_keys=True)
        return self.values

    def __getitem__(self, key: str):
        return self.values[key]

    def __contains__(self, key: str) -> bool:
        return key in self.values

    def get(self, key: str, default=None):
        return self.values.get(key, default)
