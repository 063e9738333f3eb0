"""Characters <-> token ids: the competition's 59-character map plus PAD, SOS and EOS after it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from aslfr.errors import DataError


@dataclass(frozen=True)
class Vocab:
    chars: str  # characters in index order, as in character_to_prediction_index.json

    @classmethod
    def from_json(cls, path: Path) -> Vocab:
        try:
            mapping = json.loads(Path(path).read_text())
        except (OSError, ValueError) as e:
            raise DataError(
                f"{path}: cannot read the character map ({e}); it must be the "
                "competition's character_to_prediction_index.json"
            ) from None
        ok = (
            isinstance(mapping, dict)
            and all(isinstance(k, str) and len(k) == 1 for k in mapping)
            and sorted(mapping.values()) == list(range(len(mapping)))
        )
        if not ok:
            raise DataError(
                f"{path}: expected a JSON object mapping single characters to the "
                "indices 0..N-1 (the competition's character_to_prediction_index.json)"
            )
        return cls("".join(sorted(mapping, key=mapping.__getitem__)))

    @property
    def n_chars(self) -> int:
        return len(self.chars)

    @property
    def pad(self) -> int:
        return self.n_chars

    @property
    def sos(self) -> int:
        return self.n_chars + 1

    @property
    def eos(self) -> int:
        return self.n_chars + 2

    @property
    def size(self) -> int:
        return self.n_chars + 3

    def unknown(self, phrase: str) -> str:
        """Characters of `phrase` that the map lacks (sorted, unique)."""
        return "".join(sorted(set(phrase) - set(self.chars)))

    def encode(self, phrases: list[str], length: int) -> np.ndarray:
        """[N, length] int32: characters, then EOS, then PAD. Phrases must fit (len < length)."""
        index = {c: i for i, c in enumerate(self.chars)}
        out = np.full((len(phrases), length), self.pad, np.int32)
        for row, phrase in enumerate(phrases):
            out[row, : len(phrase)] = [index[c] for c in phrase]
            out[row, len(phrase)] = self.eos
        return out

    def decode(self, ids) -> str:
        """Characters up to the first EOS; ids outside the character map spell nothing."""
        chars = []
        for i in np.asarray(ids).tolist():
            if i == self.eos:
                break
            if 0 <= i < self.n_chars:
                chars.append(self.chars[i])
        return "".join(chars)
