"""Score an exported model the way the competition did, knowing nothing but its rules.

    aslfr-competition RUN_DIR [--data ROOT] [--limit N]

Deliberately independent of the rest of aslfr (pandas, numpy, rapidfuzz and LiteRT only): read
`selected_columns` from inference_args.json, read each sequence's rows of those columns from its
parquet file with pandas, call the `serving_default` signature with `inputs` =
float32 [n_frames, n_columns], take the argmax over axis 1 of `outputs`, map indices through
character_to_prediction_index.json (indices it lacks spell nothing), and score
(N - D) / N over the whole set: N characters in the true phrases, D the summed Levenshtein
distances. The sequences are the run's validation fold (folds.csv and data.fold of the run).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from rapidfuzz.distance import Levenshtein


@dataclass
class Result:
    score: float
    n_sequences: int
    sequence_ids: list[int]
    truth: list[str]
    predicted: list[str]


class Submission:
    def __init__(self, model_path: Path, inference_args_path: Path, character_map: Path):
        from ai_edge_litert.interpreter import Interpreter

        self.columns = json.loads(Path(inference_args_path).read_text())["selected_columns"]
        self.interpreter = Interpreter(model_path=str(model_path), num_threads=1)
        self.runner = self.interpreter.get_signature_runner("serving_default")
        char_to_index = json.loads(Path(character_map).read_text())
        self.index_to_char = {i: c for c, i in char_to_index.items()}

    def predict(self, frames: np.ndarray) -> str:
        out = self.runner(inputs=frames.astype(np.float32))["outputs"]
        return "".join(self.index_to_char.get(int(i), "") for i in np.argmax(out, axis=1))


def score(
    model_path: Path, inference_args_path: Path, data_root: Path, sequence_ids: list[int] | None = None
) -> Result:
    """Score the sequences `sequence_ids` of train.csv and, when present, of
    supplemental_metadata.csv under data_root (a validation fold of a run that trained with the
    supplemental data holds some); all of train.csv when None."""
    data_root = Path(data_root)
    sub = Submission(model_path, inference_args_path, data_root / "character_to_prediction_index.json")
    index = pd.read_csv(data_root / "train.csv")
    if sequence_ids is not None:
        supplemental = data_root / "supplemental_metadata.csv"
        if supplemental.exists():
            index = pd.concat([index, pd.read_csv(supplemental)], ignore_index=True)
        index = index.set_index("sequence_id").loc[list(sequence_ids)].reset_index()
    ids, truth, predicted = [], [], []
    for path, rows in index.groupby("path", sort=False):
        df = pd.read_parquet(data_root / path, columns=sub.columns)
        for sid, phrase in zip(rows.sequence_id, rows.phrase):
            frames = df.loc[[sid], sub.columns].to_numpy(np.float32)
            ids.append(int(sid))
            truth.append(phrase)
            predicted.append(sub.predict(frames))
    n = sum(len(t) for t in truth)
    d = sum(Levenshtein.distance(t, p) for t, p in zip(truth, predicted))
    return Result((n - d) / max(n, 1), len(truth), ids, truth, predicted)


def validation_ids(run_dir: Path) -> list[int]:
    """The run's validation fold: folds.csv rows whose fold is the run's data.fold."""
    import yaml

    fold = int(yaml.safe_load((Path(run_dir) / ".hydra" / "config.yaml").read_text())["data"]["fold"])
    folds = pd.read_csv(Path(run_dir) / "folds.csv")
    return folds.loc[folds.fold == fold, "sequence_id"].tolist()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="aslfr-competition", description=__doc__.splitlines()[0])
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--data", type=Path, help="Kaggle-layout root (default: the run's)")
    ap.add_argument("--limit", type=int, help="score only the first N validation sequences")
    args = ap.parse_args(argv)
    run_dir = args.run_dir
    for name, fix in (
        ("features.json", "is it a train.py run directory?"),
        ("folds.csv", "is it a train.py run directory?"),
        ("model.tflite", f"export it first: aslfr-export {run_dir}"),
        ("inference_args.json", f"export it first: aslfr-export {run_dir}"),
    ):
        if not (run_dir / name).is_file():  # one line, not a traceback (this module stands alone)
            raise SystemExit(f"error: {run_dir / name} is missing: {fix}")
    root = args.data or Path(json.loads((run_dir / "features.json").read_text())["data_root"])
    if not (root / "character_to_prediction_index.json").is_file():
        raise SystemExit(
            f"error: {root} does not hold the run's data in the Kaggle layout "
            "(character_to_prediction_index.json is missing): give it with --data ROOT"
        )
    ids = validation_ids(run_dir)[: args.limit]
    result = score(run_dir / "model.tflite", run_dir / "inference_args.json", root, ids)
    line = f"{run_dir}: score {result.score:.4f} on {result.n_sequences} validation sequences"
    summary = run_dir / "summary.json"
    if summary.exists():
        best = json.loads(summary.read_text()).get("best/val/score")
        line += f" (the run's own best/val/score: {best:.4f})" if best is not None else ""
    print(line)


if __name__ == "__main__":
    main()
