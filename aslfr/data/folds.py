"""Cross-validation folds grouped by participant: a signer's sequences all fall in one fold, so
validation signers are never seen in training.

A signer's fold depends only on the signer, the primary listing (every row of train.csv) and
data.n_folds / data.split_seed -- never on which rows end up loaded -- so skipped sequences,
feature options and data.use_supplemental never move a signer to another fold:

1. the signers of train.csv, ordered by their number of rows (most first; equal counts in the
   order of a seeded hash of the participant id), are placed one by one in the fold with the
   fewest rows so far (equal folds: in a seeded order of the folds) -- a greedy
   largest-first balance of sequences per fold;
2. a signer absent from train.csv (only in supplemental_metadata.csv) goes to fold
   hash(seed, participant) mod n_folds.

The hash is SHA-256, not Python's `hash`, so the folds are the same on every machine and run.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd

from aslfr.atomic import replacing
from aslfr.errors import DataError


def _seeded_hash(seed: int, *parts: int) -> int:
    """A stable 64-bit hash of (seed, parts...): the same on every machine and Python."""
    text = ":".join(str(int(x)) for x in (seed, *parts))
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


def participant_folds(listing: np.ndarray, n_folds: int, seed: int) -> dict[int, int]:
    """{participant_id: fold} for the signers of the primary listing.

    `listing`: the participant_id of every row of train.csv [rows], before any skip. Signers are
    taken largest first (ties: seeded hash order) and each put in the fold with the fewest rows
    so far (ties: a seeded order of the folds), so folds come out balanced in sequences while a
    signer's fold depends on nothing but this listing, n_folds and the seed."""
    ids, counts = np.unique(np.asarray(listing, np.int64), return_counts=True)
    if n_folds < 2 or len(ids) < n_folds:
        raise DataError(
            f"data.n_folds={n_folds} needs at least 2 folds and at most one fold per "
            f"signer; the data has {len(ids)} signer(s): lower data.n_folds"
        )
    order = sorted(range(len(ids)), key=lambda i: (-int(counts[i]), _seeded_hash(seed, ids[i])))
    fold_rank = {k: _seeded_hash(seed, -1, k) for k in range(n_folds)}
    rows = [0] * n_folds
    out: dict[int, int] = {}
    for i in order:
        k = min(range(n_folds), key=lambda f: (rows[f], fold_rank[f]))
        out[int(ids[i])] = k
        rows[k] += int(counts[i])
    return out


def assign_folds(
    participant_id: np.ndarray, n_folds: int, seed: int, listing: np.ndarray | None = None
) -> np.ndarray:
    """Fold number (0..n_folds-1) of every sequence [N]; deterministic from the seed.

    `participant_id`: the signer of each loaded sequence [N]. `listing`: the participant_id of
    every row of the primary listing (train.csv, all rows, before any skip); None takes
    `participant_id` itself. Signers of the listing get `participant_folds`; a signer absent from
    it (supplemental only) gets hash(seed, participant) mod n_folds."""
    participant_id = np.asarray(participant_id, np.int64)
    table = participant_folds(participant_id if listing is None else listing, n_folds, seed)
    ids, inverse = np.unique(participant_id, return_inverse=True)
    per_signer = [table[int(p)] if int(p) in table else _seeded_hash(seed, p) % n_folds for p in ids]
    return np.asarray(per_signer, np.int64)[inverse].reshape(-1)


def split(fold: np.ndarray, k: int, n_folds: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(train, validation) sequence indices for `data.fold=k`; k=-1 trains on everything.
    `n_folds` defaults to the highest fold present + 1."""
    n_folds = int(fold.max()) + 1 if n_folds is None else int(n_folds)
    if k == -1:
        return np.arange(len(fold)), np.arange(0)
    if not 0 <= k < n_folds:
        raise DataError(f"data.fold={k} is out of range: use 0..{n_folds - 1}, or -1 to train on all folds")
    val = np.flatnonzero(fold == k)
    if len(val) == 0:
        raise DataError(
            f"data.fold={k} has no sequence to validate on (every sequence of its "
            "signers was skipped): choose another data.fold"
        )
    return np.flatnonzero(fold != k), val


def write_folds_csv(
    path: Path, sequence_id: np.ndarray, participant_id: np.ndarray, fold: np.ndarray
) -> Path:
    """folds.csv (sequence_id, participant_id, fold), written to a temp file then renamed."""
    with replacing(path) as tmp:
        pd.DataFrame({"sequence_id": sequence_id, "participant_id": participant_id, "fold": fold}).to_csv(
            tmp, index=False
        )
    return Path(path)
