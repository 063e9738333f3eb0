"""Synthetic fingerspelling signers, written in the exact Kaggle ASLFR layout.

The generator imitates what MediaPipe Holistic extracted from the competition's videos, so that the
reader, the features and a model can be exercised end to end without the 190 GB of real data:

* **A kinematic hand.** 21 landmarks (MediaPipe numbering) computed by forward kinematics from 23
  joint angles: per finger abduction and MCP/PIP/DIP flexion, the thumb's two CMC angles plus MCP
  and IP flexion, and the wrist's roll/pitch/yaw. Every one of the 59 characters has its own angle
  vector, loosely after the ASL manual alphabet; some pairs differ only slightly (`CONFUSABLE_PAIRS`)
  and j and z move (`MOVING_CHARACTERS`).
* **Signers** with their own hand size, camera aspect, place of the hand, hand rotation, speed, landmark
  noise, detection dropout rate, shape accent, mouthing and handedness. Left-handed signers are
  synthesised right-handed and then mirrored (x -> 1 - x, left/right parts and points swapped with
  `layout.MIRROR` / `layout.MIRROR_PART`), so their hand is in the ``left_hand`` columns.
* **Sequences** with smooth transitions between letters, a slight drift, pauses at spaces and
  repeated letters, idle frames while the hand rises and falls, dropouts, near-empty (~2%), handless
  (~0.5%) and broken 1-12 frame (~0.5%) clips, a resting other hand, an arm pose that follows the
  hand and a face that mouths along.
* **Phrases** like the real ones (addresses, phone numbers, URLs, names, e-mail addresses); every
  data set is patched so that it contains all 59 characters.

Coordinates are MediaPipe's: x, y normalised image coordinates (y down), hand z relative to the wrist,
pose z relative to the hips, face z relative to the head, all in x's scale. Internally a frame is
built in *body units* (fractions of the image height, X measured from the body's centre line, Y down)
and turned into image coordinates at the very end (`_assemble`).

Everything is deterministic from `SyntheticSpec.seed`: every decision of the data set's plan, every
signer and every sequence draws from its own random stream derived from the seed and its number, so
results depend neither on the order nor on the process in which files are written, nor on how the
sequences are grouped into files.

Entry points: `SyntheticSpec`, `generate`, `ensure` (the cached data set of a spec), `make_phrase`,
`plot_alphabet`, `hand_pose` / `canonical_hand`, and ``aslfr-synthetic OUT_DIR``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import multiprocessing
import os
import re
import shutil
import socket
import sys
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from aslfr.data import layout

FORMAT_VERSION = 2  # bump whenever the generator's output changes: it is part of spec_digest()

LIP_POINTS = (
    61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291, 146, 91, 181, 84, 17, 314, 405, 321, 375,
    78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308,
)


def _frozen(values, dtype=np.float64) -> np.ndarray:
    """A read-only array (module constants stay constant)."""
    array = np.array(values, dtype=dtype)
    array.flags.writeable = False
    return array


# =============================================================================== the kinematic hand
#
# Hand-local frame, in palm lengths (wrist -> middle knuckle = 1): x towards the thumb side, y along
# the fingers, z towards the camera negative (the palm faces the camera when all angles are zero).
# For a right hand facing the camera the thumb side is the image's right.

HAND_BONES = (
    (0, 1), (1, 2), (2, 3), (3, 4), (0, 5), (5, 6), (6, 7), (7, 8), (5, 9), (9, 10), (10, 11),
    (11, 12), (9, 13), (13, 14), (14, 15), (15, 16), (13, 17), (17, 18), (18, 19), (19, 20), (0, 17),
)
ANGLE_NAMES = tuple(
    f"{finger}_{joint}"
    for finger in ("index", "middle", "ring", "pinky")
    for joint in ("abduction", "mcp", "pip", "dip")
) + ("thumb_phi", "thumb_psi", "thumb_mcp", "thumb_ip", "wrist_roll", "wrist_pitch", "wrist_yaw")
N_ANGLES = len(ANGLE_NAMES)  # 23
_WRIST = slice(20, 23)

_FINGER_MCP = _frozen([[0.26, 0.92, 0.0], [0.05, 1.0, 0.0], [-0.15, 0.94, 0.01], [-0.32, 0.82, 0.03]])
_FINGER_BONES = _frozen([[0.42, 0.25, 0.21], [0.47, 0.29, 0.22], [0.43, 0.28, 0.21], [0.33, 0.21, 0.19]])
_THUMB_CMC = _frozen([0.20, 0.17, -0.05])
_THUMB_BONES = _frozen([0.36, 0.30, 0.25])
_THUMB_BEND = _frozen(np.array([-0.75, 0.15, -0.65]) / np.linalg.norm([-0.75, 0.15, -0.65]))

# Finger states (MCP, PIP, DIP flexion, degrees).
_STRAIGHT = (0, 0, 0)
_FIST = (90, 100, 60)
_CURVE = (30, 45, 30)       # c
_ROUND = (50, 65, 40)       # o: fingertips meet the thumb
_ROUND0 = (57, 72, 45)      # 0: a slightly tighter o
_HOOK = (15, 95, 70)        # x
_KNUCKLE = (85, 5, 5)       # bent at the knuckle only
_CLAW_E = (55, 105, 80)     # e
_RELAXED = (15, 20, 10)
_HALF = (40, 40, 25)
_LOOSE = (75, 85, 50)       # d: loosely curled onto the thumb
_DRAPED = (65, 95, 50)      # m, n: draped over the thumb

# Thumb states (phi: direction in the palm plane from the thumb side towards the fingers; psi: out of
# the palm towards the camera; MCP and IP flexion; degrees).
_T_SIDE = (75, 10, 0, 5)        # a: alongside the index
_T_FRONT = (70, 55, 35, 40)     # s: across the front of the fist
_T_TUCK = (80, 45, 60, 55)      # e: under the curled fingertips
_T_M = (100, 40, 45, 20)        # m: under three fingers
_T_N = (92, 40, 42, 22)         # n: under two fingers
_T_T = (86, 35, 30, 15)         # t: between index and middle
_T_OUT = (5, 10, 0, 0)          # l, y: out to the side
_T_FOLD = (95, 35, 60, 45)      # b, 4: folded across the palm
_T_CURVE = (30, 45, 15, 15)     # c
_T_ROUND = (55, 60, 25, 25)     # o: touching the fingertips
_T_PINCH = (60, 50, 20, 30)     # f, 9: touching the index tip
_T_RELAXED = (45, 25, 10, 10)
_T_K = (80, 35, 10, 0)          # k, p: up against the middle finger
_T_HOLD = (120, 45, 50, 30)     # w, 6: holding the little finger
_T_HOLD_RING = (82, 45, 40, 35)  # u, v: holding the ring finger

_SPREAD = (3, 0, -3, -7)    # natural abduction of index, middle, ring, pinky
_TOGETHER = (1, 0, -1, -3)
_WIDE = (15, 3, -8, -18)


def _shape(fingers, thumb, wrist=(0, 0, 0), spread=_SPREAD) -> tuple[float, ...]:
    """One joint-angle vector (degrees, in `ANGLE_NAMES` order) from finger/thumb/wrist states."""
    angles: list[float] = []
    for abduction, flexion in zip(spread, fingers):
        angles += [abduction, *flexion]
    return tuple(float(v) for v in (*angles, *thumb, *wrist))


_S, _F = _STRAIGHT, _FIST

_SHAPES = {
    # letters, loosely after the ASL manual alphabet
    "a": _shape((_F, _F, _F, _F), _T_SIDE),
    "b": _shape((_S, _S, _S, _S), _T_FOLD, spread=_TOGETHER),
    "c": _shape((_CURVE,) * 4, _T_CURVE, wrist=(0, 0, 55)),
    "d": _shape((_S, _LOOSE, _LOOSE, _LOOSE), (62, 52, 28, 28)),
    "e": _shape((_CLAW_E,) * 4, _T_TUCK),
    "f": _shape((_ROUND, _S, _S, _S), _T_PINCH, spread=(3, 0, -5, -10)),
    "g": _shape((_S, _F, _F, _F), (80, 15, 5, 5), wrist=(-90, 0, 60)),
    "h": _shape((_S, _S, _F, _F), _T_M, wrist=(-90, 0, 10), spread=(2, -1, -3, -7)),
    "i": _shape((_F, _F, _F, _S), _T_FRONT),
    "j": _shape((_F, _F, _F, _S), _T_FRONT, wrist=(-70, 0, 30)),  # the end of the hook; see _J_PATH
    "k": _shape((_S, (30, 0, 0), _F, _F), _T_K, spread=(10, -6, -3, -7)),
    "l": _shape((_S, _F, _F, _F), _T_OUT),
    "m": _shape((_DRAPED, _DRAPED, _DRAPED, _F), _T_M),
    "n": _shape((_DRAPED, _DRAPED, _F, _F), _T_N),
    "o": _shape((_ROUND,) * 4, _T_ROUND, wrist=(0, 0, 35)),
    "p": _shape((_S, (30, 0, 0), _F, _F), _T_K, wrist=(-150, 25, 0), spread=(10, -6, -3, -7)),
    "q": _shape((_S, _F, _F, _F), (80, 15, 5, 5), wrist=(-160, 30, 20)),
    "r": _shape((_S, _S, _F, _F), (75, 50, 35, 35), spread=(-8, 8, -3, -7)),
    "s": _shape((_F, _F, _F, _F), _T_FRONT),
    "t": _shape((_F, _F, _F, _F), _T_T),
    "u": _shape((_S, _S, _F, _F), _T_HOLD_RING, spread=(2, -2, -3, -7)),
    "v": _shape((_S, _S, _F, _F), _T_HOLD_RING, spread=(14, -12, -3, -7)),
    "w": _shape((_S, _S, _S, _F), _T_HOLD, spread=(14, 0, -14, -7)),
    "x": _shape((_HOOK, _F, _F, _F), _T_FRONT),
    "y": _shape((_F, _F, _F, _S), _T_OUT, spread=(3, 0, -3, -22)),
    "z": _shape((_S, _F, _F, _F), _T_FRONT, wrist=(0, 25, 0)),  # traces a Z; see _Z_PATH
    # digits
    "0": _shape((_ROUND0,) * 4, (57, 62, 27, 27), wrist=(0, 0, 30)),
    "1": _shape((_S, _F, _F, _F), _T_FRONT),
    "2": _shape((_S, _S, _F, _F), (80, 45, 38, 33), wrist=(0, 0, 12), spread=(11, -9, -3, -7)),
    "3": _shape((_S, _S, _F, _F), (25, 15, 0, 0), spread=(12, -10, -3, -7)),
    "4": _shape((_S, _S, _S, _S), _T_FOLD, spread=(12, 3, -6, -14)),
    "5": _shape((_S, _S, _S, _S), (20, 15, 0, 0), spread=_WIDE),
    "6": _shape((_S, _S, _S, _ROUND), (115, 45, 45, 30), spread=(12, 0, -12, -7)),
    "7": _shape((_S, _S, _ROUND, _S), (100, 50, 25, 20), spread=(10, 2, -6, -14)),
    "8": _shape((_S, _ROUND, _S, _S), (85, 55, 25, 20), spread=(10, 0, -6, -14)),
    "9": _shape(((58, 70, 42), _S, _S, _S), _T_PINCH, wrist=(0, 0, 15), spread=(3, 0, -5, -10)),
    # punctuation and space: shapes of their own
    " ": _shape((_RELAXED,) * 4, _T_RELAXED, wrist=(10, 20, 0)),
    "!": _shape((_S, _F, _F, _F), _T_SIDE, wrist=(25, -20, 0)),
    "#": _shape((_S, _S, _F, _F), _T_FRONT, wrist=(-90, 0, 0), spread=(-6, 6, -3, -7)),
    "$": _shape((_F, _F, _F, _F), _T_FRONT, wrist=(80, 0, 0)),
    "%": _shape((_ROUND,) * 4, _T_ROUND, wrist=(-45, 30, 0)),
    "&": _shape((_CURVE,) * 4, _T_CURVE, wrist=(90, 0, 40)),
    "'": _shape((_HOOK, _F, _F, _F), _T_FRONT, wrist=(-45, 0, 0)),
    "(": _shape((_CURVE, _F, _F, _F), _T_CURVE, wrist=(35, 0, 0)),
    ")": _shape((_CURVE, _F, _F, _F), _T_CURVE, wrist=(-35, 0, 0)),
    "*": _shape((_HALF,) * 4, (30, 30, 20, 20), spread=_WIDE),
    "+": _shape((_S, _S, _F, _F), _T_FRONT, wrist=(-45, 0, 0), spread=(-8, 8, -3, -7)),
    ",": _shape((_HOOK, _F, _F, _F), _T_FRONT, wrist=(0, 45, 0)),
    "-": _shape((_S, _S, _S, _S), _T_FOLD, wrist=(-90, 0, 70), spread=_TOGETHER),
    ".": _shape((_S, _F, _F, _F), _T_FRONT, wrist=(0, 70, 0)),
    "/": _shape((_S, _F, _F, _F), _T_FRONT, wrist=(-40, 0, 0)),
    ":": _shape((_S, _S, _F, _F), _T_FRONT, wrist=(-90, 30, 0), spread=(12, -10, -3, -7)),
    ";": _shape((_S, _F, _F, _S), _T_FRONT, spread=(8, 0, 0, -15)),
    "=": _shape((_S, _S, _F, _F), _T_FRONT, wrist=(-90, 0, 60), spread=_TOGETHER),
    "?": _shape((_HOOK, _F, _F, _F), _T_SIDE, wrist=(30, 20, 0)),
    "@": _shape((_CURVE,) * 4, _T_CURVE, wrist=(-90, 30, 0)),
    "[": _shape((_KNUCKLE, _F, _F, _F), _T_OUT),
    "_": _shape((_S, _S, _S, _S), _T_FOLD, wrist=(0, 75, 0), spread=_TOGETHER),
    "~": _shape((_S, _F, _F, _S), _T_OUT, wrist=(20, 0, 0)),
}
assert sorted(_SHAPES) == sorted(layout.CHARACTERS), "every character needs a hand shape"

# Joint angles of every character, (59, 23) degrees, rows in layout.CHARACTERS order.
CHARACTER_ANGLES = _frozen([_SHAPES[c] for c in layout.CHARACTERS])
_CHAR_INDEX = {c: i for i, c in enumerate(layout.CHARACTERS)}
# Hands at rest (idle frames): the signing hand lowered, the other hand hanging down.
_REST = _frozen(_shape((_RELAXED,) * 4, _T_RELAXED, wrist=(20, 40, 0)))
_HANGING = _frozen(_shape((_HALF,) * 4, _T_RELAXED, wrist=(165, 10, 20)))

CONFUSABLE_PAIRS = (("m", "n"), ("a", "s"), ("0", "o"), ("v", "2"), ("1", "d"), ("6", "w"), ("9", "f"))
MOVING_CHARACTERS = ("j", "z")
# Paths of the moving characters over the character's frames, in palm lengths (x right, y up), and
# for j the wrist roll (degrees). The character's static shape/position is the path's end.
_Z_PATH = _frozen([[-0.45, 0.4], [0.45, 0.4], [-0.45, -0.4], [0.45, -0.4]])
_J_PATH = _frozen([[0.0, 0.3], [0.0, -0.2], [0.2, -0.45], [0.45, -0.3]])
_J_ROLL = _frozen([70.0, 70.0, 35.0, 0.0])


def _rotation(roll: np.ndarray, pitch: np.ndarray, yaw: np.ndarray) -> np.ndarray:
    """Rotation matrices (..., 3, 3) = Rz(roll) Ry(yaw) Rx(pitch), angles in radians.

    Positive pitch tilts the fingers (+y) towards the camera (-z); roll turns in the image plane.
    """
    cr, sr, cp, sp, cy, sy = (f(a) for a in (roll, pitch, yaw) for f in (np.cos, np.sin))
    rows = (
        cr * cy, -cr * sy * sp - sr * cp, cr * sy * cp - sr * sp,
        sr * cy, -sr * sy * sp + cr * cp, sr * sy * cp + cr * sp,
        -sy, -cy * sp, cy * cp,
    )
    return np.stack(np.broadcast_arrays(*rows), -1).reshape(*np.shape(roll), 3, 3)


def _rotate(points: np.ndarray, rotation: np.ndarray) -> np.ndarray:
    """points (..., P, 3) rotated by rotation (..., 3, 3)."""
    return points @ np.ascontiguousarray(np.swapaxes(rotation, -1, -2))


_FINGER_JOINTS = _frozen([[4 * f + 1, 4 * f + 2, 4 * f + 3] for f in range(4)], dtype=np.intp)
_TOWARDS_PALM = _frozen([0.0, 0.0, -1.0])  # flexion curls the fingers towards the camera


def hand_pose(angles: np.ndarray) -> np.ndarray:
    """Forward kinematics: joint angles (..., 23) in degrees -> landmarks (..., 21, 3).

    The result is in the hand-local frame rotated by the wrist angles, in palm lengths, with the wrist
    at the origin (x towards the right hand's thumb side, y up along the fingers, z negative towards
    the camera).
    """
    a = np.deg2rad(np.asarray(angles, dtype=np.float64))
    lead = a.shape[:-1]
    # the four fingers at once: (..., finger, joint, xyz)
    abduction = a[..., 0:16:4]
    bend = np.cumsum(a[..., _FINGER_JOINTS], axis=-1)[..., None]
    base = np.stack([np.sin(abduction), np.cos(abduction), np.zeros_like(abduction)], -1)[..., None, :]
    bones = _FINGER_BONES[..., None] * (np.cos(bend) * base + np.sin(bend) * _TOWARDS_PALM)
    knuckles = np.broadcast_to(_FINGER_MCP[:, None, :], lead + (4, 1, 3))
    fingers = np.concatenate([knuckles, knuckles + np.cumsum(bones, axis=-2)], axis=-2)
    # the thumb bends in the plane of its direction d and the bend direction b
    phi, psi, mcp, ip = (a[..., 16 + k, None] for k in range(4))
    d = np.concatenate([np.cos(psi) * np.cos(phi), np.cos(psi) * np.sin(phi), -np.sin(psi)], -1)
    b = _THUMB_BEND - (d @ _THUMB_BEND)[..., None] * d
    b = b / np.linalg.norm(b, axis=-1, keepdims=True)
    thumb_bend = np.stack([np.zeros_like(mcp), mcp, mcp + ip], -2)  # (..., 3, 1)
    d, b = d[..., None, :], b[..., None, :]
    thumb_bones = _THUMB_BONES[:, None] * (np.cos(thumb_bend) * d + np.sin(thumb_bend) * b)
    thumb = _THUMB_CMC + np.concatenate([np.zeros(lead + (1, 3)), np.cumsum(thumb_bones, axis=-2)], axis=-2)
    points = np.concatenate([np.zeros(lead + (1, 3)), thumb, fingers.reshape(lead + (16, 3))], axis=-2)
    return _rotate(points, _rotation(a[..., 20], a[..., 21], a[..., 22]))


def canonical_hand(char: str) -> np.ndarray:
    """The canonical (no signer, no noise) landmarks (21, 3) of one character, see `hand_pose`."""
    return hand_pose(CHARACTER_ANGLES[_CHAR_INDEX[char]])


# =============================================================================== phrases

_FIRST_NAMES = tuple(["james", "mary", "robert", "patricia", "john", "jennifer", "michael", "linda", "david", "elizabeth", "william", "barbara", "richard", "susan", "joseph", "jessica", "thomas", "sarah", "charles", "karen", "daniel", "nancy", "matthew", "lisa", "anthony", "betty", "mark", "sandra", "paul", "ashley", "steven", "emily", "andrew", "donna", "joshua", "michelle", "kevin", "amanda", "brian", "melissa", "george", "deborah", "ryan", "laura", "jacob", "amy", "gary", "angela", "eric", "anna", "jonathan", "brenda", "justin", "nicole", "scott", "helen", "frank", "rachel", "xavier", "zoe", "quinn", "yusuf", "jacques", "maximilian", "ximena", "zachary", "jaqueline", "beatrix", "oksana", "kwame", "ingrid", "dmitri", "priya"])
_LAST_NAMES = tuple(["smith", "johnson", "williams", "brown", "jones", "garcia", "miller", "davis", "rodriguez", "martinez", "hernandez", "lopez", "gonzalez", "wilson", "anderson", "taylor", "moore", "jackson", "martin", "lee", "perez", "thompson", "white", "harris", "sanchez", "clark", "ramirez", "lewis", "robinson", "walker", "young", "allen", "king", "wright", "torres", "nguyen", "hill", "flores", "green", "adams", "nelson", "baker", "hall", "rivera", "campbell", "mitchell", "carter", "roberts", "lanier", "kowalski", "okafor", "yamamoto", "ivanov", "quigley", "fitzgerald", "vazquez", "oxley", "dubois", "schwartz", "kuhaylah", "zhang", "jablonski", "becker"])
_WORDS = tuple(["creek", "house", "oak", "maple", "pine", "cedar", "elm", "lake", "hill", "park", "river", "sunset", "valley", "meadow", "forest", "spring", "ridge", "highland", "willow", "cherry", "church", "mill", "washington", "lincoln", "jefferson", "franklin", "madison", "main", "market", "broadway", "harbor", "bay", "canyon", "prairie", "quarry", "fox", "birch", "juniper", "aspen", "sycamore", "magnolia", "orchard", "stone", "wood", "brook", "glen", "summit", "vista", "plaza", "kingston", "oxford", "zephyr", "quail", "jasper", "liberty", "union", "central", "lakeview", "fairway", "garden", "bridge", "station", "crystal", "golden", "silver", "eagle", "hawk", "bear", "wolf", "deer", "buffalo", "pioneer", "heritage", "village", "country", "mountain", "ocean", "island", "beach", "harvest", "autumn", "winter", "summer", "rose", "lily", "ivy", "hazel", "laurel", "academy", "college", "school", "library", "museum", "hotel", "cafe", "bakery", "studio", "market", "shop", "travel", "photo", "music", "news", "blog", "store", "home", "world", "city", "life", "green", "blue", "black", "white", "red", "sky", "star", "moon", "sun", "king", "queen"])
_DIRECTIONS = tuple(["north", "south", "east", "west", "northeast", "northwest", "southeast", "southwest", "n", "s", "e", "w"])
_SUFFIXES = tuple(["road", "street", "avenue", "drive", "lane", "way", "court", "place", "boulevard", "circle", "trail", "parkway", "terrace", "highway", "loop", "square", "crossing", "pike", "run", "rd", "st", "ave", "dr", "ln", "blvd", "ct", "pl", "hwy"])
_TLDS = tuple(["com", "com", "com", "org", "net", "net", "edu", "gov", "io", "co", "uk", "de", "jp", "fr", "it", "es", "nl", "ru", "br", "au", "ca", "in", "kr", "ne.jp", "co.uk", "com.au", "or.jp", "ac.uk", "is", "ly", "me", "tv", "us", "info", "biz", "xyz", "co.jp", "org.uk"])
_ONSETS = tuple(["b", "c", "d", "f", "g", "h", "j", "k", "l", "m", "n", "p", "r", "s", "t", "v", "w", "y", "z", "ch", "sh", "th", "qu", "x", "br", "cr", "dr", "fr", "gr", "kr", "pr", "tr", "st", "sp"])
_VOWELS = tuple(["a", "e", "i", "o", "u", "a", "e", "i", "o", "u", "ai", "ea", "oo", "ou", "ee", "ia", "y"])
_CODAS = ("",) * 6 + tuple(["n", "r", "s", "l", "t", "k", "m", "x", "z", "ng"])

# Phrase templates by kind. Placeholders: {w} made-up word, {W} English word, {f} first name,
# {l} last name, {n} house number, {d2} two digits, {3}/{4} three/four digits, {c} country code,
# {g} a group of 2-4 digits, {t} top-level domain, {dir} direction, {suf} street suffix, {ord} ordinal.
_TEMPLATES = {
    "address": (
        "{n} {dir} {ord} {suf}", "{n} {W}{W}", "{n} {W} {suf}", "{n} {f} {l}", "{n} {dir} {W} {suf}",
        "{n} {W} {W} {suf}", "{n} {w} {suf}", "{n} {w}", "{n} {ord} {suf}", "{n} {W} {suf} {dir}",
        "{n} {dir} {w} {suf}", "{n} {l} {suf}",
    ),
    "phone": (
        "+{c}-{g}-{g}-{g}", "{3}-{3}-{4}", "+{c} {g} {g} {g}", "{3}.{3}.{4}", "+{c}-{g}-{g}-{g}-{g}",
        "+{c}-{3}-{3}-{4}", "{g}-{g}-{g}-{g}", "+{c}-{4}-{3}-{g}",
    ),
    "url": (
        "www.{w}.{t}", "https://{w}.{t}/{w}", "http://www.{w}.{t}", "{w}.{t}", "https://www.{W}{w}.{t}",
        "{w}.{t}/{w}", "http://{w}.{t}/{w}/{d2}", "https://{w}-{W}.{t}", "www.{W}-{w}.{t}",
        "{W}{W}.{t}", "https://{W}.{t}/{w}-{w}",
    ),
    "name": (
        "{f} {l}", "{w}/{w}", "{f} {f} {l}", "{f} {l}-{l}", "{l}/{f}", "{f} {w}", "dr. {f} {l}",
        "{f} {l} jr.", "{l}, {f}", "{w} {w}",
    ),
    "email": (
        "{f}.{l}@{w}.{t}", "{f}{d2}@{W}.{t}", "{w}-{w}@{w}.{t}", "{f}@{w}.{t}", "{w}{d2}@{W}mail.com",
        "{f}{l}@{W}.{t}",
    ),
    "other": (
        "{W} {W} {W}", "{d2}/{d2}/{4}", "{W} at {d2}:{d2}", "{W} {W} {n}", "{n}+{n} {W}", "{W}, {W} {n}",
        "{W}.{W}.{t}", "{w} {W} {W}", "{n}-{n} {W} {suf}",
    ),
    "short": ("{n}", "{a}", "{d2}", "{ws}", "{a}{a}"),
}
_KINDS = ("address", "phone", "url", "name", "email", "other", "rare", "short")
_KIND_WEIGHTS = _frozen([0.27, 0.13, 0.18, 0.15, 0.10, 0.08, 0.065, 0.015])
RARE_PUNCTUATION = "!#$%&'()*;=?[_~"
# Templates that use each rare punctuation character (']' is not one of the 59 characters).
_RARE_TEMPLATES = {
    "!": ("{W} {W}!", "{f} {l}!", "{w}!{w}.{t}"),
    "#": ("#{W}{d2} {W}", "{n} {W} {suf} #{d2}", "{n} {w} apt #{n}"),
    "$": ("${n}.{d2} {W}", "{W} {W} ${n}", "{W} ${d2}.{d2}"),
    "%": ("{d2}% {W} {W}", "{w}.{t}/{w}%20{w}", "{W} {d2}.{3}%"),
    "&": ("{l} & {l}", "{w}.{t}/?a={d2}&b={d2}", "{W}&{W} {W}"),
    "'": ("{f}'s {W} {W}", "{f} o'{l}", "{n} {W}'s {suf}"),
    "(": ("({3}) {3}-{4}", "{W} ({W} {W})", "+{c} ({3}) {3}-{4}"),
    ")": ("({3}) {3}-{4}", "{f} {l} ({W})", "{d2}) {W} {W}"),
    "*": ("*{n} {W} {W}", "{w}*{w}.{t}", "{f} {l} *{d2}"),
    ";": ("{W} {W}; {W}", "{l}; {l}; {l}", "{w};{d2}@{w}.{t}"),
    "=": ("{w}.{t}/?id={n}", "{w}.{t}?{w}={w}", "{w}.{t}?{w}={d2}"),
    "?": ("{w}.{t}/{w}?{w}={d2}", "{W} {W} {w}?", "{f}, {W} {W}?"),
    "[": ("[{W} {W}", "{w}.{t}/{w}[{d2}", "{W} {W} [{n}"),
    "_": ("{w}_{w}@{w}.{t}", "{w}_{n}@{W}.{t}", "{f}_{l}"),
    "~": ("{w}.{t}/~{w}", "~{W} {W}", "{w}.{t}/~{f}"),
}


def _made_up_word(rng: np.random.Generator, max_syllables: int = 3) -> str:
    """A pronounceable made-up word like 'kuhaylah', 'freem' or 'jsi'."""
    n = int(rng.integers(1, max_syllables + 1))
    parts = [_pick(rng, _ONSETS) + _pick(rng, _VOWELS) + _pick(rng, _CODAS) for _ in range(n)]
    return "".join(parts)


def _pick(rng: np.random.Generator, options: Sequence[str]) -> str:
    return options[int(rng.integers(len(options)))]


def _digits(rng: np.random.Generator, n: int) -> str:
    first = str(int(rng.integers(1, 10)))
    return first + "".join(str(d) for d in rng.integers(0, 10, n - 1))


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _placeholder(name: str, rng: np.random.Generator) -> str:
    """The text for one template placeholder."""
    if name == "w":
        return _made_up_word(rng)
    if name == "ws":
        return _made_up_word(rng, 1)
    if name == "W":
        return _pick(rng, _WORDS)
    if name == "f":
        return _pick(rng, _FIRST_NAMES)
    if name == "l":
        return _pick(rng, _LAST_NAMES)
    if name == "n":
        return _digits(rng, int(rng.choice([1, 2, 3, 4, 5], p=[0.15, 0.15, 0.25, 0.35, 0.10])))
    if name == "d2":
        return "".join(str(d) for d in rng.integers(0, 10, 2))
    if name in ("3", "4"):
        return "".join(str(d) for d in rng.integers(0, 10, int(name)))
    if name == "c":
        return _digits(rng, int(rng.integers(1, 4)))
    if name == "g":
        return "".join(str(d) for d in rng.integers(0, 10, int(rng.integers(2, 5))))
    if name == "t":
        return _pick(rng, _TLDS)
    if name == "dir":
        return _pick(rng, _DIRECTIONS)
    if name == "suf":
        return _pick(rng, _SUFFIXES)
    if name == "ord":
        return _ordinal(int(rng.integers(1, 1000)))
    if name == "a":
        return layout.CHARACTERS[int(rng.integers(32, 58))]
    raise KeyError(name)


def _fill(template: str, rng: np.random.Generator) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: _placeholder(m.group(1), rng), template)


def _phrase_from(templates: Sequence[str], rng: np.random.Generator) -> str:
    """A phrase from one of `templates`, drawn again until it is 1-31 characters long."""
    for _ in range(100):
        phrase = _fill(_pick(rng, templates), rng)
        if 1 <= len(phrase) <= 31:
            return phrase
    return phrase[:31]


def make_phrase(rng: np.random.Generator) -> str:
    """One phrase like the competition's: an address, phone number, URL, name, e-mail address, ...

    Lower case, 1-31 characters (mean about 18), only characters of `layout.CHARACTERS`. A small
    fraction use the rare punctuation ``!#$%&'()*;=?[_~``.
    """
    kind = _KINDS[int(rng.choice(len(_KINDS), p=_KIND_WEIGHTS / _KIND_WEIGHTS.sum()))]
    if kind == "rare":
        return _phrase_with(RARE_PUNCTUATION[int(rng.integers(len(RARE_PUNCTUATION)))], rng)
    return _phrase_from(_TEMPLATES[kind], rng)


def _phrase_with(char: str, rng: np.random.Generator) -> str:
    """A realistic phrase that contains `char`."""
    if char in _RARE_TEMPLATES:
        return _phrase_from(_RARE_TEMPLATES[char], rng)
    for _ in range(1000):
        phrase = make_phrase(rng)
        if char in phrase:
            return phrase
    return char


def _cover_all_characters(pool: list[str], rng: np.random.Generator) -> list[str]:
    """Replace phrases of `pool` so that together they contain every one of the 59 characters.

    A phrase is only replaced if every character it has also occurs in another phrase of the pool.
    """
    pool = list(pool)
    counts = Counter(c for phrase in pool for c in set(phrase))
    for char in layout.CHARACTERS:
        if counts[char]:
            continue
        for j in rng.permutation(len(pool)):
            if all(counts[c] >= 2 for c in set(pool[j])):
                counts.subtract(set(pool[j]))
                pool[j] = _phrase_with(char, rng)
                counts.update(set(pool[j]))
                break
    return pool


# =============================================================================== signers

@dataclass(frozen=True, eq=False)
class _Signer:
    """One participant's style, drawn once. Lengths in body units (fractions of the image height)."""

    participant_id: int
    left_handed: bool
    aspect: float           # image height / width: image x = body_x + aspect * X
    body_x: float           # image x of the body's centre line
    nose_y: float
    scale: float            # body size (closeness to the camera)
    palm: float             # wrist -> middle knuckle
    sign_at: tuple[float, float]  # (X, Y) of the signing wrist
    rotation: np.ndarray    # (3,) degrees added to the wrist's roll, pitch, yaw
    accent: np.ndarray      # (59, 23) degrees added to every character's joint angles
    frames_per_char: float
    transition: float       # fraction of a character's frames spent moving into it
    noise: float            # landmark noise, palm lengths
    dropout: float          # fraction of frames in which the hand is not detected
    drift: float            # sideways drift over a phrase, palm lengths
    idle: float             # mean idle frames (beyond 3) before and after signing
    mouthing: float         # 0: lips still .. 1: mouths every letter


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
        dropout=rng.uniform(0, 0.15),
        drift=rng.normal(0.6, 0.3),
        idle=rng.uniform(4, 14),
        mouthing=rng.uniform(0, 1),
    )


# =============================================================================== the face

@dataclass(frozen=True, eq=False)
class _FaceTemplate:
    """Face-mesh points in face-local units (face width = 1; x right, y down, z towards the camera
    negative), sorted by landmark number."""

    indices: np.ndarray     # (P,) MediaPipe face-mesh landmark numbers, ascending
    base: np.ndarray        # (P, 3) neutral position
    opening: np.ndarray     # (P, 3) displacement per unit of mouth opening
    mirror: np.ndarray      # (P,) position of each point's left/right partner


_MOUTH_Y = 0.33
_MOUTH_HALF_WIDTH = 0.19


def _lip_points() -> dict[int, tuple[tuple[float, float, float], tuple[float, float, float]]]:
    """{landmark: (neutral xyz, opening xyz)} for the 40 lip points, symmetric about x = 0.

    Corner 61 (outer) / 78 (inner) is the subject's right corner: the image's left.
    """
    u = np.linspace(-1, 1, 11)
    arch = np.sqrt(1 - u**2)
    outer_upper = (61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291)
    outer_lower = (146, 91, 181, 84, 17, 314, 405, 321, 375)
    inner_upper = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308)
    inner_lower = (95, 88, 178, 87, 14, 317, 402, 318, 324)
    w = _MOUTH_HALF_WIDTH
    points = {}
    for i, k in enumerate(outer_upper):
        y = -0.055 * arch[i] ** 0.7 + 0.012 * math.exp(-(u[i] / 0.2) ** 2)  # cupid's bow
        points[k] = ((w * u[i], _MOUTH_Y + y, -0.06 * arch[i]), (-0.03 * u[i], -0.01 * arch[i], 0))
    for i, k in enumerate(outer_lower, start=1):
        points[k] = ((w * u[i], _MOUTH_Y + 0.07 * arch[i] ** 0.7, -0.05 * arch[i]),
                     (-0.03 * u[i], 0.13 * arch[i] ** 0.5, 0.01))
    for i, k in enumerate(inner_upper):
        points[k] = ((0.85 * w * u[i], _MOUTH_Y - 0.012 * arch[i], -0.04 * arch[i]),
                     (-0.025 * u[i], -0.012 * arch[i], 0))
    for i, k in enumerate(inner_lower, start=1):
        points[k] = ((0.85 * w * u[i], _MOUTH_Y + 0.012 * arch[i], -0.04 * arch[i]),
                     (-0.025 * u[i], 0.11 * arch[i] ** 0.5, 0.01))
    return points


def _face_template(face: str) -> _FaceTemplate:
    """The 40 lip points (face="lips") or a whole 468-point face (face="full").

    The 428 non-lip points of the full face are a plausible symmetric mesh (not MediaPipe's real
    one): an oval outline and a filling lattice, a dome in depth with a nose; they form left/right
    pairs among themselves, so mirroring keeps the mesh's structure.
    """
    lips = _lip_points()
    positions = {k: v[0] for k, v in lips.items()}
    openings = {k: v[1] for k, v in lips.items()}
    partner = dict(layout.MIRROR["face"])
    if face == "full":
        others = [i for i in range(layout.PART_POINTS["face"]) if i not in lips]  # 428
        centre, half = _face_mesh_points(n_centre=20, n_pairs=(len(others) - 20) // 2)
        for k, p in zip(others[:20], centre):
            positions[k], partner[k] = tuple(p), k
        for j, p in enumerate(half):
            a, b = others[20 + 2 * j], others[21 + 2 * j]
            positions[a], positions[b] = tuple(p), (-p[0], p[1], p[2])
            partner[a], partner[b] = b, a
        for k in others:
            y = positions[k][1]
            openings[k] = (0.0, 0.12 * float(np.clip((y - _MOUTH_Y) / 0.15, 0, 1)), 0.0)  # the jaw
    elif face != "lips":
        raise ValueError(f"face must be 'lips' or 'full', not {face!r}")
    indices = np.array(sorted(positions))
    where = {k: i for i, k in enumerate(indices)}
    return _FaceTemplate(
        indices=indices,
        base=np.array([positions[k] for k in indices]),
        opening=np.array([openings[k] for k in indices]),
        mirror=np.array([where[partner[k]] for k in indices]),
    )


def _face_mesh_points(n_centre: int, n_pairs: int) -> tuple[np.ndarray, np.ndarray]:
    """Points on the centre line (n_centre, 3) and on the right half (n_pairs, 3) of an oval face."""
    a, b = 0.5, 0.68  # half width, half height

    def depth(x, y):
        dome = -0.35 * np.sqrt(np.clip(1 - (x / a) ** 2 - (y / b) ** 2, 0, None))
        nose = -0.18 * np.exp(-(x**2 / 0.004 + (y - 0.02) ** 2 / 0.02))
        return dome + nose

    cy = np.concatenate([np.linspace(-0.64, 0.2, n_centre - 5), np.linspace(0.46, 0.66, 5)])
    centre = np.stack([np.zeros_like(cy), cy, depth(0, cy)], 1)
    n_outline = 17
    t = np.linspace(-np.pi / 2, np.pi / 2, n_outline + 2)[1:-1]
    outline = np.stack([a * np.cos(t), b * np.sin(t)], 1)
    gx, gy = np.meshgrid(np.arange(0.04, a, 0.042), np.arange(-0.64, 0.66, 0.042))
    grid = np.stack([gx.ravel(), gy.ravel()], 1)
    inside = (grid[:, 0] / (0.94 * a)) ** 2 + (grid[:, 1] / (0.94 * b)) ** 2 < 1
    mouth = (np.abs(grid[:, 0]) < _MOUTH_HALF_WIDTH + 0.03) & (np.abs(grid[:, 1] - _MOUTH_Y) < 0.09)
    grid = grid[inside & ~mouth]
    grid = grid[np.round(np.linspace(0, len(grid) - 1, n_pairs - n_outline)).astype(int)]
    half = np.concatenate([outline, grid])
    return centre, np.concatenate([half, depth(half[:, 0], half[:, 1])[:, None]], 1)


# =============================================================================== one sequence

def _smoothstep(t: np.ndarray) -> np.ndarray:
    return t * t * (3 - 2 * t)


def _smooth_noise(rng: np.random.Generator, n: int, dims: int, sigma: float, width: int = 5) -> np.ndarray:
    """Slowly varying noise (n, dims): white noise averaged over `width` frames, std about sigma."""
    white = rng.normal(0, sigma * math.sqrt(width), (n + width - 1, dims))
    sums = np.cumsum(np.concatenate([np.zeros((1, dims)), white]), axis=0)
    return (sums[width:] - sums[:-width]) / width


@dataclass(frozen=True, eq=False)
class _Track:
    """The signing hand over a sequence's frames."""

    angles: np.ndarray      # (T, 23) degrees
    offset: np.ndarray      # (T, 2) wrist offset from the signing spot, palm lengths (x right, y up)
    signing: np.ndarray     # (T,) bool: inside a character (not idle)


def _signing_track(signer: _Signer, phrase: str, rng: np.random.Generator) -> _Track:
    """Joint angles and wrist position per frame: idle, rise, the characters, lowering, idle.

    The frames are segments; within a segment the hand moves (smoothstep) from the previous
    segment's target to its own over the first `tau` of the segment's frames and then holds.
    """
    chars = np.array([_CHAR_INDEX[c] for c in phrase])
    n = chars.size
    shapes = CHARACTER_ANGLES[chars] + signer.accent[chars] + rng.normal(0, 3.0, (n, N_ANGLES))
    shapes[:, _WRIST] += signer.rotation
    space = np.array([c == " " for c in phrase])
    repeat = np.array([i > 0 and phrase[i] == phrase[i - 1] for i in range(n)])
    frames = signer.frames_per_char * np.exp(rng.normal(0, 0.2, n)) * np.where(space, 1.3, 1.0)
    frames = np.maximum(2, np.rint(frames + repeat * rng.integers(2, 5, n))).astype(int)
    if rng.random() < 0.01:  # a rare long hesitation
        frames[rng.integers(n)] += rng.integers(30, 150)
    progress = np.arange(n) / max(n - 1, 1)
    where = rng.normal(0, 0.08, (n, 2))
    where[:, 0] += -signer.drift * progress - 0.3 * repeat  # drift outwards; slide on double letters

    rest = _REST + rng.normal(0, 4, N_ANGLES)
    rest[_WRIST] += signer.rotation
    rest_y = rng.uniform(0.95, 1.25)  # the lowered wrist, often below the image
    rest_at = np.array([-1.0, -(rest_y - signer.sign_at[1]) / signer.palm])
    before, after = (int(min(30, 3 + rng.exponential(signer.idle))) for _ in range(2))
    rise, lower = min(before, int(rng.integers(3, 9))), min(after, int(rng.integers(3, 9)))

    targets = np.concatenate([[rest, shapes[0]], shapes, [rest, rest]])
    places = np.concatenate([[rest_at, where[0]], where, [rest_at, rest_at]])
    lengths = np.concatenate([[before - rise, rise], frames, [lower, after - lower]])
    taus = np.concatenate([[1, 1], signer.transition * rng.uniform(0.8, 1.2, n), [1, 1]])
    seg_char = np.concatenate([[-1, -1], chars, [-1, -1]])

    segment = np.repeat(np.arange(lengths.size), lengths)
    start = np.cumsum(lengths) - lengths
    t = (np.arange(segment.size) - start[segment] + 0.5) / lengths[segment]
    w = _smoothstep(np.clip(t / taus[segment], 0, 1))[:, None]
    previous = np.maximum(np.arange(lengths.size) - 1, 0)[segment]
    angles = targets[previous] * (1 - w) + targets[segment] * w
    offset = places[previous] * (1 - w) + places[segment] * w
    _add_motion(angles, offset, seg_char[segment], t, w[:, 0])

    count = segment.size
    angles += _smooth_noise(rng, count, N_ANGLES, 1.0)
    offset += _smooth_noise(rng, count, 2, 0.03)  # tremor
    offset += _smooth_noise(rng, count, 2, 0.12, width=25)  # sway
    return _Track(angles=angles, offset=offset, signing=seg_char[segment] >= 0)


def _add_motion(angles, offset, char, t, w) -> None:
    """Moves the hand along j's hook and z's Z (in place). The static target is the path's end, so
    the offset is path(p) - path(end), faded in with the transition weight `w`."""
    p = 3 * np.clip((t - 0.3) / 0.65, 0, 1)
    knots = np.arange(4)
    for c, path in (("z", _Z_PATH), ("j", _J_PATH)):
        frames = char == _CHAR_INDEX[c]
        if not frames.any():
            continue
        for axis in range(2):
            offset[frames, axis] += w[frames] * (np.interp(p[frames], knots, path[:, axis]) - path[-1, axis])
        if c == "j":
            angles[frames, 20] += w[frames] * (np.interp(p[frames], knots, _J_ROLL) - _J_ROLL[-1])


def _dropouts(rng: np.random.Generator, n: int, rate: float) -> np.ndarray:
    """(n,) bool, True where the detector misses: single frames and short runs, about `rate` of all."""
    mean_run = 0.65 * 1 + 0.35 * 4
    starts = np.flatnonzero(rng.random(n) < rate / mean_run)
    runs = np.where(rng.random(starts.size) < 0.65, 1, rng.integers(2, 7, starts.size))
    missed = np.zeros(n + 6, dtype=bool)
    for k in range(6):
        missed[starts[runs > k] + k] = True
    return missed[:n]


_BYTE_PAIR_STD = math.sqrt(2 * (256**2 - 1) / 12)


def _noise(rng: np.random.Generator, shape: tuple[int, ...], sigma: float) -> np.ndarray:
    """Landmark noise with standard deviation `sigma`, float32.

    Triangular (the sum of two uniform random bytes) rather than Gaussian: a sequence needs ~10^5
    of these and random bytes are several times cheaper to draw than normal deviates.
    """
    size = math.prod(shape)
    pair = np.frombuffer(rng.bytes(2 * size), dtype=np.int8).reshape(2, *shape)
    total = pair[0].astype(np.float32)
    total += pair[1]
    total += 1.0  # int8 is -128..127: centre the sum on zero
    total *= np.float32(sigma / _BYTE_PAIR_STD)
    return total


def _place_hand(local: np.ndarray, wrist: np.ndarray, palm: float, left: bool = False) -> np.ndarray:
    """Hand-local landmarks (T or 1, 21, 3) -> body units (T, 21, 3): X right, Y down, Z from the wrist."""
    sign = -1.0 if left else 1.0  # a left hand is the mirror image of a right hand
    out = np.empty((wrist.shape[0], 21, 3))
    out[..., 0] = wrist[:, None, 0] + sign * palm * local[..., 0]
    out[..., 1] = wrist[:, None, 1] - palm * local[..., 1]
    out[..., 2] = palm * local[..., 2]
    return out


def _elbow(shoulder: np.ndarray, raised: np.ndarray, upper: float, outward: float) -> np.ndarray:
    """The elbow (T, 2): the upper arm hangs from the shoulder, swinging outwards and forwards (so
    foreshortened) as the hand is raised (`raised` 0..1); the forearm then points at the wrist."""
    angle = np.deg2rad(12 + 28 * raised)
    length = upper * (1 - 0.35 * raised)
    return shoulder + length[:, None] * np.stack([outward * np.sin(angle), np.cos(angle)], 1)


@dataclass(frozen=True, eq=False)
class _Hands:
    """Both hands in body units (T, 21, 3), before noise and detection, and where they are found."""

    right: np.ndarray
    left: np.ndarray
    right_seen: np.ndarray
    left_seen: np.ndarray


def _hands(signer: _Signer, track: _Track, rng: np.random.Generator) -> _Hands:
    """The signing (right) hand from the track; the other (left) hand hanging at the side, now and then
    found resting low in the image. Empty (~0.5%) and near-empty (~2%) clips lose the signing hand."""
    n = track.angles.shape[0]
    wrist = np.array(signer.sign_at) + signer.palm * track.offset * [1, -1]
    right = _place_hand(hand_pose(track.angles), wrist, signer.palm)
    right_seen = (right[:, 9, 1] < 1.0) & ~_dropouts(rng, n, signer.dropout)
    kind = rng.random()
    if kind < 0.005:  # the hand is never found
        right_seen[:] = False
    elif kind < 0.025:  # a near-empty clip: the hand is found in 1-5 frames only
        keep = rng.choice(n, size=min(n, int(rng.integers(1, 6))), replace=False)
        right_seen[:] = False
        right_seen[keep] = True

    shown = rng.random() < 0.12
    hang_y = rng.uniform(0.8, 0.93) if shown else rng.uniform(0.98, 1.2)
    hang = np.array([0.2 * signer.scale + rng.normal(0, 0.02), hang_y])
    hang = hang + _smooth_noise(rng, n, 2, 0.004, width=9)
    shape = hand_pose(_HANGING + rng.normal(0, 5, N_ANGLES))[None]
    left = _place_hand(shape, hang, signer.palm, left=True)
    left_seen = np.zeros(n, dtype=bool)
    if shown:
        length = max(1, int(n * rng.uniform(0.1, 1.0)))
        first = int(rng.integers(0, n - length + 1))
        left_seen[first:first + length] = True
        left_seen &= (left[:, 9, 1] < 1.0) & ~_dropouts(rng, n, signer.dropout)
    return _Hands(right=right, left=left, right_seen=right_seen, left_seen=left_seen)


@dataclass(frozen=True, eq=False)
class _Head:
    """Head motion over the frames."""

    turn: np.ndarray        # (T, 3, 3) rotation
    shift: np.ndarray       # (T, 2) body units
    width: float            # face width, body units


def _head(signer: _Signer, n: int, rng: np.random.Generator) -> _Head:
    angles = np.deg2rad(_smooth_noise(rng, n, 3, 1.0, width=15) + rng.normal(0, [2, 3, 4]))
    return _Head(turn=_rotation(angles[:, 0], angles[:, 1], angles[:, 2]),
                 shift=_smooth_noise(rng, n, 2, 0.003, width=15), width=0.155 * signer.scale)


def _on_head(signer: _Signer, head: _Head, local: np.ndarray) -> np.ndarray:
    """Face-local points (T or 1, P, 3) -> body units (T, P, 3), moving with the head."""
    out = head.width * _rotate(local, head.turn)
    out[..., 0] += head.shift[:, None, 0]
    out[..., 1] += signer.nose_y + head.shift[:, None, 1]
    return out


def _face(signer: _Signer, face: _FaceTemplate, head: _Head, track: _Track, rng: np.random.Generator
          ) -> np.ndarray:
    """Face-mesh points (T, P, 3) in body units; the mouth opens and closes as if mouthing the letters."""
    n = track.signing.size
    period = signer.frames_per_char * rng.uniform(1.5, 3)
    beat = np.sin(2 * np.pi * np.arange(n) / period + rng.uniform(0, 2 * np.pi))
    envelope = np.convolve(track.signing.astype(float), np.ones(5) / 5, mode="same")
    mouth = signer.mouthing * envelope * np.clip(0.5 + 0.5 * beat + _smooth_noise(rng, n, 1, 0.2)[:, 0], 0, 1)
    points = _on_head(signer, head, face.base + mouth[:, None, None] * face.opening)
    return points + _noise(rng, points.shape, 0.0015 * head.width)


# Pose head points in face-local units (x right, y down) and pose depths (body units, at scale 1).
_POSE_HEAD = _frozen([
    [0.0, 0.04, 0], [0.09, -0.12, 0], [0.16, -0.12, 0], [0.23, -0.12, 0], [-0.09, -0.12, 0],
    [-0.16, -0.12, 0], [-0.23, -0.12, 0], [0.46, -0.04, 0], [-0.46, -0.04, 0], [0.17, _MOUTH_Y, 0],
    [-0.17, _MOUTH_Y, 0],
])
_POSE_DEPTH = _frozen([-0.95, -0.88, -0.88, -0.86, -0.88, -0.88, -0.86, -0.55, -0.55, -0.85, -0.85,
                       -0.3, -0.38, -0.15, 0, -0.2, 0, -0.25, 0, -0.25, 0, -0.25, 0,
                       0.005, -0.005, 0.15, 0.15, 0.45, 0.45, 0.5, 0.5, 0.3, 0.3])
# Legs relative to the hip of their side, (X outwards, Y down) at scale 1: knee, ankle, heel, foot index.
_LEGS = _frozen([[0.01, 0.48], [0.01, 0.93], [0.0, 0.97], [0.04, 0.99]])


def _pose(signer: _Signer, head: _Head, hands: _Hands, rng: np.random.Generator) -> np.ndarray:
    """The 33 pose points (T, 33, 3) in body units: head, shoulders, arms reaching the hands, and
    hips and legs (mostly below the image, but present as in the real data)."""
    n, s = hands.right.shape[0], signer.scale
    right, left = hands.right, hands.left
    pose = np.zeros((n, 33, 3))
    pose[:, :11] = _on_head(signer, head, _POSE_HEAD)
    shoulder_y = signer.nose_y + 0.2 * s + 0.3 * head.shift[:, 1]
    pose[:, 11, 0], pose[:, 12, 0] = 0.17 * s, -0.17 * s
    pose[:, 11, 1] = pose[:, 12, 1] = shoulder_y
    pose[:, 16, :2] = right[:, 0, :2]
    pose[:, 15, :2] = left[:, 0, :2]
    raised = np.clip((1.1 - right[:, 0, 1]) / max(1.1 - signer.sign_at[1], 1e-3), 0, 1)
    pose[:, 14, :2] = _elbow(pose[:, 12, :2], raised, 0.28 * s, outward=-1)
    pose[:, 13, :2] = _elbow(pose[:, 11, :2], np.zeros(n), 0.28 * s, outward=+1)
    pose[:, [18, 20, 22], :2] = (right[:, [17, 5, 2], :2] + right[:, [18, 6, 3], :2]) / 2
    pose[:, [17, 19, 21], :2] = (left[:, [17, 5, 2], :2] + left[:, [18, 6, 3], :2]) / 2
    for side, hip in ((1, 23), (-1, 24)):
        pose[:, hip, 0], pose[:, hip, 1] = side * 0.09 * s, shoulder_y + 0.55 * s
        pose[:, hip + 2: hip + 10: 2, :2] = pose[:, hip, None, :2] + _LEGS * [side * s, s]
    pose[..., 2] = _POSE_DEPTH * s
    pose[:, 16, 2] = (-0.2 - 0.65 * raised) * s
    pose[:, 14, 2] = (-0.1 - 0.35 * raised) * s
    pose[:, [18, 20, 22], 2] = pose[:, 16, None, 2] - 0.05 * s
    pose[:, [17, 19, 21], 2] = pose[:, 15, None, 2] - 0.03 * s
    off_screen = pose[..., 1:2] > 1.0  # MediaPipe guesses those: noisier
    return pose + _noise(rng, pose.shape, 0.004) * np.where(off_screen, 4.0, 1.0) * [1.0, 1.0, 8.0]


def _sequence(signer: _Signer, phrase: str, rng: np.random.Generator, face: _FaceTemplate) -> np.ndarray:
    """One sequence as the file's float32 landmark columns (T, 3 * points): x of every point, then y,
    then z, parts in `layout.PART_POINTS` order."""
    track = _signing_track(signer, phrase, rng)
    n = track.signing.size
    hands = _hands(signer, track, rng)
    head = _head(signer, n, rng)
    parts = {
        "face": _face(signer, face, head, track, rng),
        "left_hand": hands.left + _noise(rng, hands.left.shape, signer.noise * signer.palm),
        "pose": _pose(signer, head, hands, rng),
        "right_hand": hands.right + _noise(rng, hands.right.shape, signer.noise * signer.palm),
    }
    for name, seen in (("left_hand", hands.left_seen), ("right_hand", hands.right_seen)):
        parts[name][:, 0, 2] = 0.0  # hand z is relative to the wrist
        parts[name][~seen] = np.nan
    if rng.random() < 0.005:  # a broken clip: only a few frames of it survive
        keep = int(rng.integers(1, 13))
        first = int(rng.integers(0, max(1, n - keep)))
        parts = {name: points[first:first + keep] for name, points in parts.items()}
    return _assemble(signer, parts, face.mirror)


def _assemble(signer: _Signer, parts: dict[str, np.ndarray], face_mirror: np.ndarray) -> np.ndarray:
    """Body units -> image coordinates, mirrored for a left-handed signer, laid out as the file's
    columns (T, 3 * points) float32."""
    order = {"face": face_mirror, "pose": _POSE_MIRROR, "left_hand": slice(None), "right_hand": slice(None)}
    if signer.left_handed:
        parts = {layout.MIRROR_PART[name]: points[:, order[name]] for name, points in parts.items()}
    n = parts["pose"].shape[0]
    sizes = [parts[name].shape[1] for name in layout.PART_POINTS]
    out = np.empty((n, 3, sum(sizes)), dtype=np.float32)
    at = 0
    for name, size in zip(layout.PART_POINTS, sizes):
        out[:, :, at: at + size] = parts[name].transpose(0, 2, 1)
        at += size
    x = out[:, 0]
    x *= signer.aspect
    x += signer.body_x
    if signer.left_handed:
        np.subtract(1.0, x, out=x)  # the mirror: x -> 1 - x
    out[:, 2] *= signer.aspect  # z is in x's scale
    out *= 1 / _QUANTUM
    np.rint(out, out=out)
    out *= _QUANTUM
    return out.reshape(n, -1)


# Coordinates are rounded to multiples of 2^-16 (about 1.5e-5 of the image, far below MediaPipe's own
# jitter) so that the parquet files compress; exact in float32 for |values| < 256.
_QUANTUM = 2.0**-16


_POSE_MIRROR = _frozen([layout.MIRROR["pose"][i] for i in range(layout.PART_POINTS["pose"])], dtype=np.intp)


# =============================================================================== the data set

@dataclass(frozen=True)
class SyntheticSpec:
    """What to generate. Every field takes part in `spec_digest`."""

    n_sequences: int = 3000
    n_signers: int = 30
    seed: int = 0
    sequences_per_file: int = 1000
    face: str = "lips"  # "lips": the 40 lip points of the face mesh; "full": all 468 points (1,630 columns)
    n_supplemental: int = 0  # sequences in supplemental_metadata.csv + supplemental_landmarks/

    def __post_init__(self):
        if self.n_sequences < 1 or self.n_supplemental < 0:
            raise ValueError("n_sequences must be >= 1 and n_supplemental >= 0")
        if not 1 <= self.n_signers <= 255:
            raise ValueError("n_signers must be in 1..255 (participant ids are 0..254)")
        if self.sequences_per_file < 1:
            raise ValueError("sequences_per_file must be >= 1")
        if self.face not in ("lips", "full"):
            raise ValueError(f"face must be 'lips' or 'full', not {self.face!r}")


def spec_digest(spec: SyntheticSpec) -> str:
    """A short stable hex digest of the spec and the generator's format version."""
    text = json.dumps({"format_version": FORMAT_VERSION, **asdict(spec)}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def face_points(face: str) -> list[int]:
    """The face-mesh landmarks written for `SyntheticSpec.face` ("lips": the 40 lip points)."""
    return sorted(LIP_POINTS) if face == "lips" else list(range(layout.PART_POINTS["face"]))


def written_points(face: str) -> dict[str, list[int]]:
    """Landmarks per part in the written files (`layout.landmark_columns` of this are the columns)."""
    return {"face": face_points(face), "left_hand": list(range(21)), "pose": list(range(33)),
            "right_hand": list(range(21))}


@dataclass(frozen=True)
class _FileJob:
    """One landmark file to write: which sequences, by whom, saying what."""

    path: Path
    face: str
    seed: int
    sequence_ids: tuple[int, ...]
    signer_numbers: tuple[int, ...]
    phrases: tuple[str, ...]
    stream_numbers: tuple[int, ...]   # sequence k draws from the stream (seed, 2, stream_numbers[k])
    signers: tuple[_Signer, ...]


def _seed(seed: int, *key: int) -> np.random.SeedSequence:
    return np.random.SeedSequence(seed, spawn_key=key)


def _unique_ints(rng: np.random.Generator, n: int, low: int, high: int, exclude=()) -> np.ndarray:
    """n distinct random integers in [low, high) and not in `exclude`, in draw order."""
    values = np.empty(0, dtype=np.int64)
    while values.size < n:
        more = rng.integers(low, high, 2 * n + 8, dtype=np.int64)
        merged = np.concatenate([values, more[~np.isin(more, exclude)]])
        _, first = np.unique(merged, return_index=True)
        values = merged[np.sort(first)]
    return values[:n]


def _assign_phrases(rng: np.random.Generator, n: int, n_distinct: int, cover: bool) -> list[str]:
    """n phrases from a pool of n_distinct: each pool phrase once, the rest repeats, shuffled."""
    if n == 0:
        return []
    pool = [make_phrase(rng) for _ in range(n_distinct)]
    if cover:
        pool = _cover_all_characters(pool, rng)
    picks = np.concatenate([np.arange(n_distinct), rng.integers(0, n_distinct, n - n_distinct)])
    return [pool[i] for i in rng.permutation(picks)]


def _assign_signers(rng: np.random.Generator, n: int, n_signers: int) -> np.ndarray:
    """A signer per sequence; signers sign unequal shares and every signer signs something."""
    if n == 0:
        return np.zeros(0, dtype=int)
    weights = rng.dirichlet(np.full(n_signers, 3.0))
    who = rng.choice(n_signers, size=n, p=weights)
    who[: min(n, n_signers)] = rng.permutation(n_signers)[: min(n, n_signers)]
    return rng.permutation(who)


_ID_RANGE = (1_000_000, 2_147_483_647)  # file and sequence ids: 7-10 digits, like the real ones


def _plan(spec: SyntheticSpec) -> tuple[pd.DataFrame, pd.DataFrame, list[_FileJob]]:
    """train.csv, supplemental_metadata.csv and the files to write.

    Each decision draws from its own stream, so the sequences (ids, phrases, signers, landmarks) do
    not depend on how they are grouped into files: only the files' ids and contents do.
    """
    streams = [np.random.default_rng(_seed(spec.seed, 0, k)) for k in range(8)]
    participants = streams[0].choice(255, size=spec.n_signers, replace=False)
    left_handed = set(streams[0].choice(spec.n_signers, size=round(0.2 * spec.n_signers), replace=False).tolist())
    signers = tuple(
        _draw_signer(_seed(spec.seed, 1, k), int(participants[k]), k in left_handed)
        for k in range(spec.n_signers)
    )
    n, m = spec.n_sequences, spec.n_supplemental
    n_files = -(-n // spec.sequences_per_file), -(-m // spec.sequences_per_file)
    file_ids = _unique_ints(streams[1], sum(n_files), *_ID_RANGE)
    train_ids = _unique_ints(streams[2], n, *_ID_RANGE)
    supplemental_ids = _unique_ints(streams[3], m, *_ID_RANGE, exclude=train_ids)
    # most training phrases are signed once, some a few times; the supplemental set (as the real one)
    # repeats a few hundred phrases many times
    train = _Split(layout.TRAIN_DIR, file_ids[: n_files[0]], train_ids, first=0,
                   phrases=_assign_phrases(streams[4], n, max(1, round(0.72 * n)), cover=True),
                   signers=_assign_signers(streams[5], n, spec.n_signers))
    supplemental = _Split(layout.SUPPLEMENTAL_DIR, file_ids[n_files[0]:], supplemental_ids, first=n,
                          phrases=_assign_phrases(streams[6], m, min(m, max(10, m // 100), 500), cover=False),
                          signers=_assign_signers(streams[7], m, spec.n_signers))
    tables, jobs = [], []
    for split in (train, supplemental):
        table, split_jobs = _split_files(spec, split, signers)
        tables.append(table)
        jobs += split_jobs
    return tables[0], tables[1], jobs


@dataclass(frozen=True, eq=False)
class _Split:
    """The sequences of train.csv or of supplemental_metadata.csv."""

    folder: str
    file_ids: np.ndarray
    sequence_ids: np.ndarray
    first: int              # number of the first sequence's random stream
    phrases: list[str]
    signers: np.ndarray     # signer number per sequence


def _split_files(spec: SyntheticSpec, split: _Split, signers: tuple[_Signer, ...]
                 ) -> tuple[pd.DataFrame, list[_FileJob]]:
    """The CSV rows of a split and its files, `spec.sequences_per_file` consecutive sequences each."""
    rows, jobs = [], []
    per_file = spec.sequences_per_file
    for f, file_id in enumerate(split.file_ids):
        part = range(f * per_file, min(len(split.sequence_ids), (f + 1) * per_file))
        path = f"{split.folder}/{int(file_id)}.parquet"
        jobs.append(_FileJob(
            path=Path(path), face=spec.face, seed=spec.seed,
            sequence_ids=tuple(int(split.sequence_ids[k]) for k in part),
            signer_numbers=tuple(int(split.signers[k]) for k in part),
            phrases=tuple(split.phrases[k] for k in part),
            stream_numbers=tuple(split.first + k for k in part),
            signers=signers,
        ))
        rows += [(path, int(file_id), int(split.sequence_ids[k]), signers[split.signers[k]].participant_id,
                  split.phrases[k]) for k in part]
    return pd.DataFrame(rows, columns=list(layout.CSV_COLUMNS)), jobs


_SEQUENCES_PER_ROW_GROUP = {"lips": 500, "full": 100}  # keeps a row group near 100-300 MB in memory


def _write_file(job: _FileJob, root: Path) -> int:
    """Synthesise one file's sequences and write them as the competition's parquet; returns rows.

    Written as pandas writes parquet by default (snappy), like the competition's files, so reading
    them costs what reading the real ones costs.
    """
    face = _face_template(job.face)
    columns = layout.landmark_columns(written_points(job.face))
    writer = None
    rows = 0
    step = _SEQUENCES_PER_ROW_GROUP[job.face]
    try:
        for lo in range(0, len(job.sequence_ids), step):
            blocks, ids = [], []
            for k in range(lo, min(lo + step, len(job.sequence_ids))):
                rng = np.random.default_rng(_seed(job.seed, 2, job.stream_numbers[k]))
                block = _sequence(job.signers[job.signer_numbers[k]], job.phrases[k], rng, face)
                blocks.append(block)
                ids.append(np.full(len(block), job.sequence_ids[k], dtype=np.int64))
            data = np.concatenate(blocks)
            frames = np.concatenate([np.arange(len(b), dtype=np.int16) for b in blocks])
            index = pd.Index(np.concatenate(ids), name=layout.INDEX_COLUMN)
            df = pd.DataFrame(data, columns=columns, index=index)
            df.insert(0, layout.FRAME_COLUMN, frames)
            table = pa.Table.from_pandas(df, preserve_index=True)
            if writer is None:
                writer = pq.ParquetWriter(root / job.path, table.schema, compression="snappy")
            writer.write_table(table)
            rows += len(df)
    finally:
        if writer is not None:
            writer.close()
    return rows


def _write_job(args: tuple[_FileJob, Path]) -> int:
    return _write_file(*args)


def _temp_prefix(root: Path) -> str:
    return f".{root.name}.tmp-{socket.gethostname()}-"


def generate(spec: SyntheticSpec, root: Path, *, progress: bool = True) -> Path:
    """Write the whole data set into `root` (which must not exist) and return `root`.

    The files are built in a sibling temporary directory that is renamed to `root` at the end, so a
    directory named `root` is always complete.
    """
    root = Path(root)
    if root.exists():
        raise FileExistsError(root)
    root.parent.mkdir(parents=True, exist_ok=True)
    train, supplemental, jobs = _plan(spec)
    temp = _make_temp_dir(root)
    try:
        (temp / layout.TRAIN_DIR).mkdir()
        train.to_csv(temp / layout.TRAIN_CSV, index=False, lineterminator="\n")
        if spec.n_supplemental:
            (temp / layout.SUPPLEMENTAL_DIR).mkdir()
            supplemental.to_csv(temp / layout.SUPPLEMENTAL_CSV, index=False, lineterminator="\n")
        index = {c: i for i, c in enumerate(layout.CHARACTERS)}
        (temp / layout.CHARACTER_MAP_JSON).write_text(json.dumps(index))
        _write_files(jobs, temp, progress)
        try:
            os.rename(temp, root)
        except OSError as error:
            if root.exists():  # another process finished the same data set first
                raise FileExistsError(root) from error
            raise
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    return root


def _make_temp_dir(root: Path) -> Path:
    """A new sibling of `root` named after this host and process (see `_remove_stale_temps`)."""
    while True:
        temp = root.parent / f"{_temp_prefix(root)}{os.getpid()}-{os.urandom(4).hex()}"
        try:
            temp.mkdir()  # unlike tempfile.mkdtemp, keeps the umask's permissions
            return temp
        except FileExistsError:
            continue


def _write_files(jobs: list[_FileJob], temp: Path, progress: bool) -> None:
    """Write the landmark files, in parallel over files when there are several and CPUs to spare."""
    from tqdm import tqdm

    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    workers = min(len(jobs), cpus)
    # disable=None: a bar only on a terminal (a log file would get every redraw)
    with tqdm(total=len(jobs), desc="synthetic files", unit="file",
              disable=None if progress else True) as bar:
        if workers <= 1:
            for job in jobs:
                _write_file(job, temp)
                bar.update()
            return
        # spawn, not fork: the caller may hold threads (a training framework, tqdm's monitor)
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            for _ in pool.map(_write_job, [(job, temp) for job in jobs]):
                bar.update()


def _remove_stale_temps(root: Path) -> None:
    """Delete temporary directories left by interrupted generations on this host (dead pids)."""
    prefix = _temp_prefix(root)
    for path in root.parent.glob(prefix + "*"):
        pid = path.name[len(prefix):].split("-", 1)[0]
        if not pid.isdigit() or _alive(int(pid)):
            continue
        shutil.rmtree(path, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def ensure(spec: SyntheticSpec, data_dir: Path, *, progress: bool = True) -> Path:
    """The data set of `spec` under `data_dir`, generated if missing: ``data_dir/synthetic-<digest>``.

    The directory exists only once complete (see `generate`); temporary directories of interrupted runs
    are never taken for it, and those of dead processes on this host are removed.
    """
    root = Path(data_dir) / f"synthetic-{spec_digest(spec)}"
    if root.is_dir():
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temps(root)
    try:
        return generate(spec, root, progress=progress)
    except FileExistsError:
        if root.is_dir():  # another process finished first
            return root
        raise


# =============================================================================== a picture

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
    for ax in axes.ravel()[len(layout.CHARACTERS):]:
        ax.axis("off")
    fig.suptitle("Synthetic hand shapes: right hand facing the camera, thumb side right "
                 "(grey: three signers' versions; red: the path of j and z)")
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


# =============================================================================== command line

def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="aslfr-synthetic",
        description="Write a synthetic ASLFR data set in the Kaggle layout to OUT_DIR/synthetic-<digest>.",
    )
    defaults = SyntheticSpec()
    parser.add_argument("out_dir", type=Path, help="data directory (the data set goes in a subdirectory)")
    parser.add_argument("--n-sequences", type=int, default=defaults.n_sequences)
    parser.add_argument("--n-signers", type=int, default=defaults.n_signers)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--sequences-per-file", type=int, default=defaults.sequences_per_file)
    parser.add_argument("--face", choices=("lips", "full"), default=defaults.face)
    parser.add_argument("--n-supplemental", type=int, default=defaults.n_supplemental)
    parser.add_argument("--exact", action="store_true", help="write into OUT_DIR itself (must not exist)")
    parser.add_argument("--plot", type=Path, metavar="PNG", help="also draw the hand shapes to PNG")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    spec = SyntheticSpec(
        n_sequences=args.n_sequences, n_signers=args.n_signers, seed=args.seed,
        sequences_per_file=args.sequences_per_file, face=args.face, n_supplemental=args.n_supplemental,
    )
    if args.exact:
        root = generate(spec, args.out_dir, progress=not args.quiet)
    else:
        root = ensure(spec, args.out_dir, progress=not args.quiet)
    print(root)
    if args.plot:
        print(plot_alphabet(args.plot, seed=args.seed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
