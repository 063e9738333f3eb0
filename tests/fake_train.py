"""A stand-in for train.py in the sweep runner's tests: it takes the same `key=value` arguments and
writes, in the real files' formats, what the runner reads of a run, in a fraction of a second per
epoch instead of TensorFlow's start-up and tracing.

    RUN_DIR/.hydra/config.yaml       the configuration (trainer.epochs: the runner's "epoch 2/3")
    RUN_DIR/checkpoints/latest.json  -> epoch-NNNN/state.json {epoch, last_eval}, at each epoch
    RUN_DIR/summary.json             the last evaluation, best/val/score and best/epoch, epochs...
    RUN_DIR/wandb/offline-run-*      the W&B record: a history row per evaluation, the metrics
                                     defined as train.py defines them (unless wandb.mode=disabled)

Over budget (`fake.latency_ms` above `budget.latency_ms`) it writes the over-budget summary at
once, as train.py's probe does. Its own keys say what it does:

    fake.levenshtein=[3,1,2]  val/levenshtein at epochs 1, 2, 3 (the last one repeats);
                              val/score = 1 - levenshtein / 10
    fake.seconds=0.1          the length of each epoch
    fake.exit=N               exit with status N before anything (a crash)
    fake.latency_ms=1         its inference latency
    fake.hold=true            before its first epoch, wait while a file hold-RUN_DIR_NAME exists
                              beside its run directory (SWEEP_DIR/hold-trial-001: the second trial)

and it records CUDA_VISIBLE_DEVICES as train.py does (devices/cuda_visible_devices).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import yaml

from aslfr import names
from aslfr.atomic import write_json
from aslfr.train.checkpoints import LATEST


def nested(args: list[str]) -> dict:
    """key=value arguments as the nested configuration Hydra records (values read as YAML)."""
    cfg: dict = {}
    for arg in args:
        key, _, value = arg.lstrip("+~").partition("=")
        *parents, leaf = key.split(".")
        node = cfg
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = yaml.safe_load(value) if value else None
    return cfg


def main(args: list[str]) -> int:
    cfg = nested(args)
    fake, trainer = cfg.get("fake", {}), cfg.setdefault("trainer", {})
    if fake.get("exit"):
        print("fake_train: exiting with status", fake["exit"], file=sys.stderr)
        return int(fake["exit"])
    run_dir = Path(cfg["hydra"]["run"]["dir"])
    epochs = int(trainer.setdefault("epochs", 2))
    distances = list(fake.get("levenshtein", [2.0]))
    mode = cfg.get("wandb", {}).get("mode") or os.environ.get("WANDB_MODE", "offline")
    (run_dir / ".hydra").mkdir(parents=True, exist_ok=True)
    (run_dir / ".hydra" / "config.yaml").write_text(yaml.safe_dump(cfg))
    # the GPUs it was given, recorded as train.py records them (aslfr.train.loop.device_record)
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "")
    cfg["devices"] = {"cuda_visible_devices": visible}

    run = None
    if mode != "disabled":
        import wandb

        run = wandb.init(
            mode=mode,
            dir=str(run_dir),
            project="aslfr-fake",
            group=os.environ.get("WANDB_RUN_GROUP"),
            config=cfg,
            settings=wandb.Settings(console="off", x_disable_stats=True, silent=True),
        )
        for key, goal in ((names.VAL_SCORE, "max"), (names.VAL_LEVENSHTEIN, "min")):
            run.define_metric(key, summary=goal)
    record = {
        names.WANDB_ID: run.id if run else "",
        names.WANDB_MODE: mode,
        names.DEVICES_CUDA_VISIBLE: visible,
    }

    latency = float(fake.get("latency_ms", 1.0))
    if latency > float(cfg.get("budget", {}).get("latency_ms", 375)):
        summary = {
            names.INFER_LATENCY_MS: latency,
            names.BUDGET_OK: False,
            names.BUDGET_REASON: f"latency {latency} ms",
            names.VAL_SCORE: 0.0,  # budget.worst_score
            names.EPOCHS: 0,
        }
        if run:
            run.log(summary, step=0)
            run.finish()
        write_json(run_dir / "summary.json", {**summary, **record}, sort_keys=True)
        return 0

    hold = run_dir.parent / f"hold-{run_dir.name}"
    while fake.get("hold") and hold.exists():
        time.sleep(0.05)
    best: dict = {}
    for epoch in range(1, epochs + 1):
        time.sleep(float(fake.get("seconds", 0.1)))
        distance = float(distances[min(epoch, len(distances)) - 1])
        last_eval = {names.VAL_LEVENSHTEIN: distance, names.VAL_SCORE: 1 - distance / 10}
        if last_eval[names.VAL_SCORE] > best.get("score", -1e9):
            best = {"score": last_eval[names.VAL_SCORE], "epoch": epoch}
        if run:
            run.log({**last_eval, names.EPOCH: epoch}, step=epoch)
        checkpoint = run_dir / "checkpoints" / f"epoch-{epoch:04d}"
        checkpoint.mkdir(parents=True, exist_ok=True)
        state = {"epoch": epoch, "last_eval": last_eval, "dir": checkpoint.name}
        write_json(checkpoint / "state.json", state)
        write_json(run_dir / "checkpoints" / LATEST, {"dir": checkpoint.name})
    if run:
        run.finish()
    summary = {
        **last_eval,
        names.PARAMS: 1000,
        names.EPOCHS: epochs,
        names.BEST_VAL_SCORE: best["score"],
        names.BEST_EPOCH: best["epoch"],
        **record,
    }
    write_json(run_dir / "summary.json", summary, sort_keys=True)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except KeyboardInterrupt:  # Ctrl-C reaches the runner's whole process group
        sys.exit(130)
