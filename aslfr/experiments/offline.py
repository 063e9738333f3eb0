"""Read W&B offline runs back: config, summary, history, files and artifacts from `run-*.wandb`
(record by record with aslfr.train.wandb_log), the parts of a resumed run merged into one.
Tests check what a run logged with it; aslfr.experiments.compare fills in unfinished runs from it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from aslfr.train.wandb_log import records


def _items(items) -> dict:
    out = {}
    for item in items:
        key = "/".join(item.nested_key) if item.nested_key else item.key
        out[key] = json.loads(item.value_json) if item.value_json else None
    return out


@dataclass
class OfflineRun:
    id: str = ""
    name: str = ""
    group: str = ""
    project: str = ""
    job_type: str = ""
    sweep_id: str = ""  # the sweep W&B started it for (`wandb agent`), else empty
    tags: list[str] = field(default_factory=list)
    config: dict = field(default_factory=dict)
    summary: dict = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    artifacts: list[dict] = field(default_factory=list)
    exit_code: int | None = None
    paths: list[Path] = field(default_factory=list)

    def series(self, key: str) -> list[tuple[int, object]]:
        """(step, value) of every history row that has `key`."""
        return [(row.get("_step"), row[key]) for row in self.history if key in row]


def _unwrap_config(raw: dict) -> dict:
    # W&B stores each config key as {"value": ..., "desc": ...}; "_wandb" is its own bookkeeping.
    return {
        k: (v["value"] if isinstance(v, dict) and "value" in v else v)
        for k, v in raw.items()
        if k != "_wandb"
    }


def read_run(path: Path) -> OfflineRun:
    # W&B names the file run-<id>.wandb: the id is known even when a killed process left no
    # record in it (the header only).
    run = OfflineRun(id=Path(path).stem.removeprefix("run-"), paths=[Path(path)])
    for rec in records(path):
        kind = rec.WhichOneof("record_type")
        if kind == "run":
            r = rec.run
            run.id, run.name, run.group, run.project = r.run_id, r.display_name, r.run_group, r.project
            run.job_type, run.sweep_id = r.job_type, r.sweep_id
            run.tags = list(r.tags)
            run.config.update(_unwrap_config(_items(r.config.update)))
        elif kind == "config":
            run.config.update(_unwrap_config(_items(rec.config.update)))
        elif kind == "history":
            row = _items(rec.history.item)
            row.setdefault("_step", rec.history.step.num)
            run.history.append(row)
        elif kind == "summary":
            run.summary.update(_items(rec.summary.update))
            for item in rec.summary.remove:
                run.summary.pop("/".join(item.nested_key) if item.nested_key else item.key, None)
        elif kind == "files":
            run.files += [f.path for f in rec.files.files]
        elif kind == "artifact":
            a = rec.artifact
            run.artifacts.append(
                {
                    "name": a.name,
                    "type": a.type,
                    "aliases": list(a.aliases),
                    "metadata": json.loads(a.metadata) if a.metadata else {},
                }
            )
        elif kind == "exit":
            run.exit_code = rec.exit.exit_code
    return run


def find_run_files(root: Path) -> list[Path]:
    root = Path(root)
    return sorted(root.rglob("run-*.wandb")) if root.is_dir() else [root]


def read_runs(root: Path) -> list[OfflineRun]:
    """Every offline run under `root` (a run directory, a sweep directory...). The parts of a
    resumed run (one offline-run-* directory per process, same run id) are merged in time order;
    a resumed part starts again from its checkpoint, so it replaces the earlier parts' rows from
    its first step on (what a killed process logged after its last checkpoint)."""
    runs: dict[str, OfflineRun] = {}
    for path in sorted(find_run_files(root), key=lambda p: p.parent.name):
        part = read_run(path)
        if part.id in runs:
            whole = runs[part.id]
            whole.config.update(part.config)
            whole.summary.update(part.summary)
            if part.history:
                first = part.history[0]["_step"]
                whole.history = [row for row in whole.history if row["_step"] < first]
            whole.history += part.history
            whole.files += part.files
            whole.artifacts += part.artifacts
            whole.paths += part.paths
            whole.exit_code = part.exit_code
            if part.project:  # the part has its run record (a killed one may have none)
                whole.tags, whole.name, whole.group = part.tags, part.name, part.group
                whole.job_type, whole.sweep_id = part.job_type, part.sweep_id
        else:
            runs[part.id] = part
    return list(runs.values())
