"""The Kaggle ASLFR data layout: file names, CSV columns and landmark column names.

These are facts about the competition's files (docs/competition.md, with their public sources),
shared by the reader (`aslfr.data.reader`) and the synthetic writer (`aslfr.data.synthetic`) so both
agree by construction.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

TRAIN_CSV = "train.csv"
SUPPLEMENTAL_CSV = "supplemental_metadata.csv"
CHARACTER_MAP_JSON = "character_to_prediction_index.json"
TRAIN_DIR = "train_landmarks"
SUPPLEMENTAL_DIR = "supplemental_landmarks"
CSV_COLUMNS = ("path", "file_id", "sequence_id", "participant_id", "phrase")

INDEX_COLUMN = "sequence_id"
FRAME_COLUMN = "frame"
AXES = ("x", "y", "z")
# Parts in the order the real files list them within one axis, with their landmark counts.
PART_POINTS = {"face": 468, "left_hand": 21, "pose": 33, "right_hand": 21}

# A MediaPipe hand: 21 points, the wrist first, then four per finger from its base to its tip.
HAND_POINTS = 21
WRIST = 0
MIDDLE_KNUCKLE = 9  # the middle finger's base: wrist to it measures the hand's size
FINGERS = tuple(tuple(range(1 + 4 * f, 5 + 4 * f)) for f in range(5))  # thumb ... pinky

# The 59 characters of character_to_prediction_index.json, in index order.
CHARACTERS = " !#$%&'()*+,-./0123456789:;=?@[_abcdefghijklmnopqrstuvwxyz~"

# Left/right partners under a horizontal mirror (MediaPipe face mesh lips and pose topology).
_LIP_PAIRS = (
    (61, 291),
    (185, 409),
    (40, 270),
    (39, 269),
    (37, 267),
    (146, 375),
    (91, 321),
    (181, 405),
    (84, 314),
    (78, 308),
    (191, 415),
    (80, 310),
    (81, 311),
    (82, 312),
    (95, 324),
    (88, 318),
    (178, 402),
    (87, 317),
)
_LIP_CENTRE = (0, 17, 13, 14)
_POSE_PAIRS = tuple((a, a + 3) for a in (1, 2, 3)) + tuple((a, a + 1) for a in range(7, 33, 2))


def _mirror_map(pairs: Iterable[tuple[int, int]], centre: Iterable[int]) -> dict[int, int]:
    out = {c: c for c in centre}
    for a, b in pairs:
        out[a], out[b] = b, a
    return out


MIRROR = {
    "face": _mirror_map(_LIP_PAIRS, _LIP_CENTRE),
    "pose": _mirror_map(_POSE_PAIRS, (0,)),
    "left_hand": {i: i for i in range(HAND_POINTS)},
    "right_hand": {i: i for i in range(HAND_POINTS)},
}
# Which part a part becomes under the mirror.
MIRROR_PART = {"face": "face", "pose": "pose", "left_hand": "right_hand", "right_hand": "left_hand"}


def column(axis: str, part: str, index: int) -> str:
    return f"{axis}_{part}_{index}"


def parse_column(name: str) -> tuple[str, str, int]:
    """ "x_left_hand_20" -> ("x", "left_hand", 20): the inverse of `column`."""
    axis, rest = name.split("_", 1)
    part, index = rest.rsplit("_", 1)
    return axis, part, int(index)


def landmark_columns(
    points: Mapping[str, Sequence[int]] | None = None, axes: Sequence[str] = AXES
) -> list[str]:
    """Landmark column names in file order: every x, then every y, then every z; within an axis
    face, left_hand, pose, right_hand, each by ascending landmark index.

    `points` limits each part to some landmarks (a part left out has none); None means all 1,629.
    `axes` limits the axes (x, y, z).
    """
    chosen = {p: range(n) for p, n in PART_POINTS.items()} if points is None else points
    return [
        column(axis, part, i) for axis in axes for part in PART_POINTS for i in sorted(chosen.get(part, ()))
    ]
