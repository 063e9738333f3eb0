"""`DatasetDecoder`: a whole data set decoded in batches by one traced function (validation, the
fallback's choice, the export's tests, the benches)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from aslfr.model.decoding import hand_frames, transcribe
from aslfr.model.model import FingerspellingModel


class DatasetDecoder:
    """Batched decoding of a data set, compiled once, with one decoding or several at once:
    `how` = attention (greedy, key/value cache, early stop), ctc, joint or joint@W
    (`ModelConfig.decodes`), or a sequence of them; the model's configured decoding by default.
    Several decodings share one trace and one pass over the data."""

    def __init__(self, model: FingerspellingModel, vocab, how: str | Sequence[str] | None = None):
        self.model, self.vocab, self.cfg = model, vocab, model.cfg
        self.hows = (how,) if isinstance(how, str) else tuple(how or (model.cfg.decode,))

        def decoded(frames, mask):  # the tokens of each decoding, and each clip's frames showing the hand
            tokens = tuple(transcribe(model, frames, mask, how=how) for how in self.hows)
            return tokens, hand_frames(model.cfg, frames, mask)

        # One trace for every batch: validation batches vary in size and (cut to their longest
        # clip) in frames, which would retrace per shape and make TensorFlow warn about it.
        self.fn = tf.function(
            decoded,
            input_signature=[
                tf.TensorSpec([None, None, model.cfg.n_features], tf.float32),
                tf.TensorSpec([None, None], tf.float32),
            ],
        )
        self.hand_frames = np.zeros(0, np.int64)  # of the last call's clips, in their order

    @property
    def fallbacks(self) -> int:
        """Clips of the last call given the fallback phrase."""
        return int((self.hand_frames < self.cfg.fallback_frames).sum())

    def each(self, dataset) -> tuple[list[str], dict[str, list[str]]]:
        """The true phrases and, for each decoding, the decoded ones (in the data set's order)."""
        truth, predicted, seen = [], {how: [] for how in self.hows}, []
        for batch in dataset:
            outs, hand = self.fn(batch["frames"], batch["mask"])
            for how, out in zip(self.hows, outs):
                predicted[how] += [self.vocab.decode(row) for row in out.numpy()]
            truth += [self.vocab.decode(row) for row in batch["tokens"].numpy()]
            seen.append(hand.numpy())
        self.hand_frames = np.concatenate(seen) if seen else np.zeros(0, np.int64)
        return truth, predicted

    def __call__(self, dataset) -> tuple[list[str], list[str]]:
        """The true phrases and the first decoding's."""
        truth, predicted = self.each(dataset)
        return truth, predicted[self.hows[0]]
