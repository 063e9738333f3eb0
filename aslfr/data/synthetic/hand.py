"""The kinematic hand: 21 landmarks (MediaPipe numbering) from 23 joint angles, and every character's angles.

Hand-local frame, in palm lengths (wrist -> middle knuckle = 1): x towards the thumb side, y along
the fingers, z towards the camera negative (the palm faces the camera when all angles are zero).
For a right hand facing the camera the thumb side is the image's right.

Every one of the 59 characters has its own joint-angle vector (`CHARACTER_ANGLES`), loosely after the
ASL manual alphabet; some pairs differ only slightly (`CONFUSABLE_PAIRS`) and j and z move along a
path (`MOVING_CHARACTERS`, `_J_PATH`, `_Z_PATH`). `hand_pose` turns angles into landmarks.
"""

from __future__ import annotations

import numpy as np

from aslfr.data import layout


def _frozen(values, dtype=np.float64) -> np.ndarray:
    """A read-only array (module constants stay constant)."""
    array = np.array(values, dtype=dtype)
    array.flags.writeable = False
    return array


HAND_BONES = (
    (0, 1),
    (1, 2),
    (2, 3),
    (3, 4),
    (0, 5),
    (5, 6),
    (6, 7),
    (7, 8),
    (5, 9),
    (9, 10),
    (10, 11),
    (11, 12),
    (9, 13),
    (13, 14),
    (14, 15),
    (15, 16),
    (13, 17),
    (17, 18),
    (18, 19),
    (19, 20),
    (0, 17),
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
_CURVE = (30, 45, 30)  # c
_ROUND = (50, 65, 40)  # o: fingertips meet the thumb
_ROUND0 = (57, 72, 45)  # 0: a slightly tighter o
_HOOK = (15, 95, 70)  # x
_KNUCKLE = (85, 5, 5)  # bent at the knuckle only
_CLAW_E = (55, 105, 80)  # e
_RELAXED = (15, 20, 10)
_HALF = (40, 40, 25)
_LOOSE = (75, 85, 50)  # d: loosely curled onto the thumb
_DRAPED = (65, 95, 50)  # m, n: draped over the thumb

# Thumb states (phi: direction in the palm plane from the thumb side towards the fingers; psi: out of
# the palm towards the camera; MCP and IP flexion; degrees).
_T_SIDE = (75, 10, 0, 5)  # a: alongside the index
_T_FRONT = (70, 55, 35, 40)  # s: across the front of the fist
_T_TUCK = (80, 45, 60, 55)  # e: under the curled fingertips
_T_M = (100, 40, 45, 20)  # m: under three fingers
_T_N = (92, 40, 42, 22)  # n: under two fingers
_T_T = (86, 35, 30, 15)  # t: between index and middle
_T_OUT = (5, 10, 0, 0)  # l, y: out to the side
_T_FOLD = (95, 35, 60, 45)  # b, 4: folded across the palm
_T_CURVE = (30, 45, 15, 15)  # c
_T_ROUND = (55, 60, 25, 25)  # o: touching the fingertips
_T_PINCH = (60, 50, 20, 30)  # f, 9: touching the index tip
_T_RELAXED = (45, 25, 10, 10)
_T_K = (80, 35, 10, 0)  # k, p: up against the middle finger
_T_HOLD = (120, 45, 50, 30)  # w, 6: holding the little finger
_T_HOLD_RING = (82, 45, 40, 35)  # u, v: holding the ring finger

_SPREAD = (3, 0, -3, -7)  # natural abduction of index, middle, ring, pinky
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
        cr * cy,
        -cr * sy * sp - sr * cp,
        cr * sy * cp - sr * sp,
        sr * cy,
        -sr * sy * sp + cr * cp,
        sr * sy * cp + cr * sp,
        -sy,
        -cy * sp,
        cy * cp,
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
