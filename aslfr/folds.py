"""Cross-validation folds grouped by participant: a signer's sequences all fall in one fold, so
validation signers are never seen in training."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold

from .atomic import replacing
from .errors import DataError


def assign_folds(participant_id: np.ndarray, n_folds: int, seed: int,
                 strata: np.ndarray | None = None) -> np.ndarray:
    """Fold number (0..n_folds-1) of every sequence; deterministic from the seed.

    scikit-learn's StratifiedGroupKFold keeps each participant in one fold while balancing fold
    sizes and the share of each stratum (e.g. left-handed signers) across folds; the seed breaks
    ties between equally good assignments."""
    n_signers = len(np.unique(participant_id))
    if n_folds < 2 or n_signers < n_folds:
        raise DataError(f"data.n_folds={n_folds} needs at least 2 folds and at most one fold per "
                        f"signer; the data has {n_signers} signer(s): lower data.n_folds")
    splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    y = np.zeros(len(participant_id), np.int64) if strata is None else np.asarray(strata)
    fold = np.full(len(participant_id), -1, np.int64)
    for k, (_, val) in enumerate(splitter.split(participant_id, y, groups=participant_id)):
        fold[val] = k
    return fold


def signer_handedness(participant_id: np.ndarray, dominant_left: np.ndarray) -> np.ndarray:
    """Per sequence: whether its signer is mostly left-dominant (a stratum for the folds)."""
    ids, inverse = np.unique(participant_id, return_inverse=True)
    share = np.bincount(inverse, weights=dominant_left.astype(float)) / np.bincount(inverse)
    return (share > 0.5)[inverse]


def split(fold: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, validation) sequence indices for `data.fold=k`; k=-1 trains on everything."""
    n_folds = int(fold.max()) + 1
    if k == -1:
        return np.arange(len(fold)), np.arange(0)
    if not 0 <= k < n_folds:
        raise DataError(f"data.fold={k} is out of range: use 0..{n_folds - 1}, or -1 to train on "
                        "all folds")
    return np.flatnonzero(fold != k), np.flatnonzero(fold == k)


def write_folds_csv(path: Path, sequence_id: np.ndarray, participant_id: np.ndarray,
                    fold: np.ndarray) -> Path:
    """folds.csv (sequence_id, participant_id, fold), written to a temp file then renamed."""
    with replacing(path) as tmp:
        pd.DataFrame({"sequence_id": sequence_id, "participant_id": participant_id,
                      "fold": fold}).to_csv(tmp, index=False)
    return Path(path)
