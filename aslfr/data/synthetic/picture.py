"""A picture of the hand shapes (`plot_alphabet`), to check them by eye."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from aslfr.data import layout
from aslfr.data.synthetic.dataset import _seed
from aslfr.data.synthetic.hand import (
    _J_PATH,
    _WRIST,
    _Z_PATH,
    CHARACTER_ANGLES,
    HAND_BONES,
    MOVING_CHARACTERS,
    N_ANGLES,
    canonical_hand,
    hand_pose,
)
from aslfr.data.synthetic.signers import _draw_signer


def plot_alphabet(path: Path, seed: int = 0) -> Path:
    """A PNG grid of every character's canonical hand shape (x/y projection, bones drawn), with
    the same shape as three random signers of `seed` make it (grey) and the paths of j and z."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    rng = np.random.default_rng(seed)
    signers = [_draw_signer(_seed(seed, 1, k), 0, False) for k in range(3)]
    cols = 10
    rows = -(-len(layout.CHARACTERS) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.6, rows * 1.8))
    for ax, (i, char) in zip(axes.ravel(), enumerate(layout.CHARACTERS)):
        canonical = canonical_hand(char)
        for signer in signers:
            angles = CHARACTER_ANGLES[i] + signer.accent[i] + rng.normal(0, 3, N_ANGLES)
            angles[_WRIST] += signer.rotation
            _draw_hand(ax, hand_pose(angles), color="0.75", width=0.8)
        _draw_hand(ax, canonical, color="C0", width=1.6)
        shown = canonical[:, :2]
        if char in MOVING_CHARACTERS:
            trail = _Z_PATH if char == "z" else _J_PATH
            trail = trail - trail[-1] + canonical[8 if char == "z" else 20, :2]
            ax.plot(*trail.T, "-", color="C3", lw=1.0, alpha=0.8, zorder=3)
            shown = np.concatenate([shown, trail])
        centre = (shown.min(0) + shown.max(0)) / 2
        half = max(1.45, *(np.ptp(shown, axis=0) / 2 + 0.1))
        ax.set_xlim(centre[0] - half, centre[0] + half)
        ax.set_ylim(centre[1] - half, centre[1] + half)
        ax.set_title({" ": "space"}.get(char, char), fontsize=11)
        ax.set_aspect("equal")
        ax.axis("off")
    for ax in axes.ravel()[len(layout.CHARACTERS) :]:
        ax.axis("off")
    fig.suptitle(
        "Synthetic hand shapes: right hand facing the camera, thumb side right "
        "(grey: three signers' versions; red: the path of j and z)"
    )
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=0.92, wspace=0.05, hspace=0.25)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _draw_hand(ax, points: np.ndarray, color: str, width: float) -> None:
    """The bones as one line broken by NaNs (one artist per hand keeps the figure quick)."""
    bones = np.array(HAND_BONES)
    xy = np.full((len(bones), 3, 2), np.nan)
    xy[:, 0], xy[:, 1] = points[bones[:, 0], :2], points[bones[:, 1], :2]
    ax.plot(*xy.reshape(-1, 2).T, color=color, lw=width, solid_capstyle="round")
    ax.plot(points[[4, 8, 12, 16, 20], 0], points[[4, 8, 12, 16, 20], 1], "o", color=color, ms=2)
