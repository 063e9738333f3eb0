"""Synthetic fingerspelling signers, written in the exact Kaggle ASLFR layout.

The generator imitates what MediaPipe Holistic extracted from the competition's videos, so that the
reader, the features and a model can be exercised end to end without the 190 GB of real data:

* **A kinematic hand.** 21 landmarks (MediaPipe numbering) computed by forward kinematics from 23
  joint angles: per finger abduction and MCP/PIP/DIP flexion, the thumb's two CMC angles plus MCP
  and IP flexion, and the wrist's roll/pitch/yaw. Every one of the 59 characters has its own angle
  vector, loosely after the ASL manual alphabet; some pairs differ only slightly (`CONFUSABLE_PAIRS`)
  and j and z move (`MOVING_CHARACTERS`).
* **Signers** with their own hand size, camera aspect, place of the hand, hand rotation, speed, landmark
  noise, hand detector (the fraction of signing frames in which the hand is found, and the mean length
  of the runs in which it is lost), how often the other hand shows, shape accent, mouthing and
  handedness. Left-handed signers are
  synthesised right-handed and then mirrored (x -> 1 - x, left/right parts and points swapped with
  `layout.MIRROR` / `layout.MIRROR_PART`), so their hand is in the ``left_hand`` columns.
* **Sequences** with smooth transitions between letters, a slight drift, pauses at spaces and
  repeated letters, idle frames while the hand rises and falls, runs of frames in which the detector
  loses the hand, near-empty (~3%), handless (~1%) and broken 1-12 frame (~1%) clips, an other hand
  that rarely shows, an arm pose that follows the hand and a face that mouths along.
* **Phrases** like the real ones (addresses, phone numbers, URLs, names, e-mail addresses); every
  data set is patched so that it contains all 59 characters.

Coordinates are MediaPipe's: x, y normalised image coordinates (y down), hand z relative to the wrist,
pose z relative to the hips, face z relative to the head, all in x's scale. Internally a frame is
built in *body units* (fractions of the image height, X measured from the body's centre line, Y down)
and turned into image coordinates at the very end (`sequence._assemble`).

Everything is deterministic from `SyntheticSpec.seed`: every decision of the data set's plan, every
signer and every sequence draws from its own random stream derived from the seed and its number, so
results depend neither on the order nor on the process in which files are written, nor on how the
sequences are grouped into files.

The modules, each importing only those above it:

    hand        the kinematic hand: joint angles -> landmarks, every character's angles
    phrases     phrase templates and `make_phrase`
    signers     a signer's style (`_Signer`), drawn once
    face        the face-mesh template: lip points or a whole face, and the mouth's opening
    sequence    one sequence: hand track, hands, head, face, pose -> the file's columns
    dataset     `SyntheticSpec`, the plan, writing the files: `generate`, `ensure`
    picture     `plot_alphabet`, the hand shapes drawn
    __main__    the command line (`main`)

Entry points: `SyntheticSpec`, `generate`, `ensure` (the cached data set of a spec), `make_phrase`,
`plot_alphabet`, `hand_pose` / `canonical_hand`, and ``aslfr-synthetic OUT_DIR``.
"""

from __future__ import annotations

from collections.abc import Sequence

from aslfr.data.synthetic.dataset import (
    FORMAT_VERSION,
    SyntheticSpec,
    ensure,
    face_points,
    generate,
    spec_digest,
    written_points,
)
from aslfr.data.synthetic.face import LIP_POINTS
from aslfr.data.synthetic.hand import (
    ANGLE_NAMES,
    CHARACTER_ANGLES,
    CONFUSABLE_PAIRS,
    HAND_BONES,
    MOVING_CHARACTERS,
    N_ANGLES,
    canonical_hand,
    hand_pose,
)
from aslfr.data.synthetic.phrases import RARE_PUNCTUATION, make_phrase
from aslfr.data.synthetic.picture import plot_alphabet

__all__ = [
    "ANGLE_NAMES",
    "CHARACTER_ANGLES",
    "CONFUSABLE_PAIRS",
    "FORMAT_VERSION",
    "HAND_BONES",
    "LIP_POINTS",
    "MOVING_CHARACTERS",
    "N_ANGLES",
    "RARE_PUNCTUATION",
    "SyntheticSpec",
    "canonical_hand",
    "ensure",
    "face_points",
    "generate",
    "hand_pose",
    "main",
    "make_phrase",
    "plot_alphabet",
    "spec_digest",
    "written_points",
]


def main(argv: Sequence[str] | None = None) -> int:
    """The command line (`aslfr.data.synthetic.__main__.main`), for the console script ``aslfr-synthetic``.

    Imported only when called: if importing the package imported ``__main__``,
    ``python -m aslfr.data.synthetic`` would find it imported already and warn (runpy's RuntimeWarning).
    """
    from aslfr.data.synthetic.__main__ import main as command_line

    return command_line(argv)
