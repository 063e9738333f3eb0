"""Signers: one participant's style, drawn once from its own random stream.

Hand size, camera aspect, place of the hand, hand rotation, speed, landmark noise, how well the hand
detector finds the signing hand (the fraction of signing frames and the length of the runs it misses),
how often the other hand shows, shape accent, mouthing and handedness.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from aslfr.data import layout
from aslfr.data.synthetic.hand import N_ANGLES


@dataclass(frozen=True, eq=False)
class _Signer:
    """One participant's style, drawn once. Lengths in body units (fractions of the image height)."""

    participant_id: int
    left_handed: bool
    aspect: float  # image height / width: image x = body_x + aspect * X
    body_x: float  # image x of the body's centre line
    nose_y: float
    scale: float  # body size (closeness to the camera)
    palm: float  # wrist -> middle knuckle
    sign_at: tuple[float, float]  # (X, Y) of the signing wrist
    rotation: np.ndarray  # (3,) degrees added to the wrist's roll, pitch, yaw
    accent: np.ndarray  # (59, 23) degrees added to every character's joint angles
    frames_per_char: float
    transition: float  # fraction of a character's frames spent moving into it
    noise: float  # landmark noise, palm lengths
    detect: float  # fraction of signing frames in which the detector finds the signing hand
    miss_run: float  # mean length of a run of frames in which it misses the hand
    other_hand: float  # fraction of clips in which the other hand is detected at all
    drift: float  # sideways drift over a phrase, palm lengths
    idle: float  # mean idle frames (beyond 3) before and after signing
    mouthing: float  # 0: lips still .. 1: mouths every letter


def _draw_signer(seed: np.random.SeedSequence, participant_id: int, left_handed: bool) -> _Signer:
    rng = np.random.default_rng(seed)
    scale = rng.uniform(0.8, 1.2)
    nose_y = rng.uniform(0.22, 0.36)
    shoulder_y = nose_y + 0.2 * scale
    return _Signer(
        participant_id=participant_id,
        left_handed=left_handed,
        aspect=rng.uniform(0.75, 1.8),
        body_x=rng.uniform(0.42, 0.58),
        nose_y=nose_y,
        scale=scale,
        palm=0.1 * scale * rng.uniform(0.88, 1.12),
        sign_at=(-0.11 * scale + rng.normal(0, 0.02), shoulder_y + scale * rng.uniform(0.0, 0.12)),
        rotation=rng.normal(0, [10, 8, 12]),
        accent=rng.normal(0, 4, N_ANGLES) + rng.normal(0, 3, (len(layout.CHARACTERS), N_ANGLES)),
        frames_per_char=float(np.clip(rng.normal(7.5, 1.5), 6, 13)),
        transition=rng.uniform(0.4, 0.75),
        noise=rng.uniform(0.006, 0.03),
        # most signers' hand is found in 60-95% of the signing frames, a few in far fewer
        detect=float(0.3 + 0.68 * rng.beta(2.2, 1.3)),
        miss_run=rng.uniform(1.5, 8.0),
        other_hand=rng.uniform(0.0, 0.25),
        drift=rng.normal(0.6, 0.3),
        idle=rng.uniform(4, 14),
        mouthing=rng.uniform(0, 1),
    )
