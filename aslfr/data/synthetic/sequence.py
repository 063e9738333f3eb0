"""One sequence: a signer fingerspelling a phrase, as the file's float32 landmark columns (`_sequence`).

The signing hand's joint angles and wrist position per frame (`_signing_track`: idle, rise, the
characters with smooth transitions, lowering, idle), both hands with dropouts (`_hands`), the head
(`_head`), the face mouthing along (`_face`), an arm pose that follows the hands (`_pose`), landmark
noise (`_noise`). A frame is built in *body units* (fractions of the image height, X measured from the
body's centre line, Y down) and turned into image coordinates at the very end (`_assemble`), mirrored
for a left-handed signer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from aslfr.data import layout
from aslfr.data.synthetic.face import _MOUTH_Y, _FaceTemplate
from aslfr.data.synthetic.hand import (
    _CHAR_INDEX,
    _HANGING,
    _J_PATH,
    _J_ROLL,
    _REST,
    _WRIST,
    _Z_PATH,
    CHARACTER_ANGLES,
    N_ANGLES,
    _frozen,
    _rotate,
    _rotation,
    hand_pose,
)
from aslfr.data.synthetic.signers import _Signer


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

    angles: np.ndarray  # (T, 23) degrees
    offset: np.ndarray  # (T, 2) wrist offset from the signing spot, palm lengths (x right, y up)
    signing: np.ndarray  # (T,) bool: inside a character (not idle)


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


def _detected(rng: np.random.Generator, n: int, rate: float, miss_run: float) -> np.ndarray:
    """(n,) bool, True where the detector finds the hand: runs found and runs missed alternate, each
    of geometric length, the missed runs `miss_run` frames long on average and about 1 - `rate` of
    all frames (a tracker that loses the hand for a while, not a coin tossed per frame)."""
    if rate >= 1.0:
        return np.ones(n, dtype=bool)
    found_run = max(1.0, miss_run * rate / (1.0 - rate))
    pairs = int(n / (found_run + miss_run)) + 4
    while True:
        lengths = np.stack([rng.geometric(1.0 / found_run, pairs), rng.geometric(1.0 / miss_run, pairs)], 1)
        start = int(rng.integers(0, lengths[0].sum()))  # the clip starts anywhere in the first cycle
        if lengths.sum() >= start + n:
            break
        pairs *= 2  # rare: the draws fell short of the clip
    states = np.resize(np.array([True, False]), 2 * pairs)
    return np.repeat(states, lengths.ravel())[start : start + n]


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
    """The signing (right) hand from the track, found by the detector in runs (`_detected`, at the
    signer's rate, a little better or worse in each clip); the other (left) hand hanging at the side,
    in a few of the signer's clips found resting low in the image for a while. Empty (~1%) and
    near-empty (~3%) clips lose the signing hand."""
    n = track.angles.shape[0]
    wrist = np.array(signer.sign_at) + signer.palm * track.offset * [1, -1]
    right = _place_hand(hand_pose(track.angles), wrist, signer.palm)
    rate = float(np.clip(signer.detect + rng.normal(0, 0.08), 0.2, 0.995))
    right_seen = (right[:, 9, 1] < 1.0) & _detected(rng, n, rate, signer.miss_run)
    kind = rng.random()
    if kind < 0.01:  # the hand is never found
        right_seen[:] = False
    elif kind < 0.04:  # a near-empty clip: the hand is found in 1-5 frames only
        keep = rng.choice(n, size=min(n, int(rng.integers(1, 6))), replace=False)
        right_seen[:] = False
        right_seen[keep] = True

    shown = rng.random() < signer.other_hand
    hang_y = rng.uniform(0.8, 0.93) if shown else rng.uniform(0.98, 1.2)
    hang = np.array([0.2 * signer.scale + rng.normal(0, 0.02), hang_y])
    hang = hang + _smooth_noise(rng, n, 2, 0.004, width=9)
    shape = hand_pose(_HANGING + rng.normal(0, 5, N_ANGLES))[None]
    left = _place_hand(shape, hang, signer.palm, left=True)
    left_seen = np.zeros(n, dtype=bool)
    if shown:
        length = max(1, int(n * rng.uniform(0.05, 0.6)))
        first = int(rng.integers(0, n - length + 1))
        left_seen[first : first + length] = True
        left_seen &= (left[:, 9, 1] < 1.0) & _detected(rng, n, 0.7, 4.0)
    return _Hands(right=right, left=left, right_seen=right_seen, left_seen=left_seen)


@dataclass(frozen=True, eq=False)
class _Head:
    """Head motion over the frames."""

    turn: np.ndarray  # (T, 3, 3) rotation
    shift: np.ndarray  # (T, 2) body units
    width: float  # face width, body units


def _head(signer: _Signer, n: int, rng: np.random.Generator) -> _Head:
    angles = np.deg2rad(_smooth_noise(rng, n, 3, 1.0, width=15) + rng.normal(0, [2, 3, 4]))
    return _Head(
        turn=_rotation(angles[:, 0], angles[:, 1], angles[:, 2]),
        shift=_smooth_noise(rng, n, 2, 0.003, width=15),
        width=0.155 * signer.scale,
    )


def _on_head(signer: _Signer, head: _Head, local: np.ndarray) -> np.ndarray:
    """Face-local points (T or 1, P, 3) -> body units (T, P, 3), moving with the head."""
    out = head.width * _rotate(local, head.turn)
    out[..., 0] += head.shift[:, None, 0]
    out[..., 1] += signer.nose_y + head.shift[:, None, 1]
    return out


def _face(
    signer: _Signer, face: _FaceTemplate, head: _Head, track: _Track, rng: np.random.Generator
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
_POSE_HEAD = _frozen(
    [
        [0.0, 0.04, 0],
        [0.09, -0.12, 0],
        [0.16, -0.12, 0],
        [0.23, -0.12, 0],
        [-0.09, -0.12, 0],
        [-0.16, -0.12, 0],
        [-0.23, -0.12, 0],
        [0.46, -0.04, 0],
        [-0.46, -0.04, 0],
        [0.17, _MOUTH_Y, 0],
        [-0.17, _MOUTH_Y, 0],
    ]
)
_POSE_DEPTH = _frozen(
    [
        -0.95,
        -0.88,
        -0.88,
        -0.86,
        -0.88,
        -0.88,
        -0.86,
        -0.55,
        -0.55,
        -0.85,
        -0.85,
        -0.3,
        -0.38,
        -0.15,
        0,
        -0.2,
        0,
        -0.25,
        0,
        -0.25,
        0,
        -0.25,
        0,
        0.005,
        -0.005,
        0.15,
        0.15,
        0.45,
        0.45,
        0.5,
        0.5,
        0.3,
        0.3,
    ]
)
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
        pose[:, hip + 2 : hip + 10 : 2, :2] = pose[:, hip, None, :2] + _LEGS * [side * s, s]
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
    if rng.random() < 0.01:  # a broken clip: only a few frames of it survive
        keep = int(rng.integers(1, 13))
        first = int(rng.integers(0, max(1, n - keep)))
        parts = {name: points[first : first + keep] for name, points in parts.items()}
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
        out[:, :, at : at + size] = parts[name].transpose(0, 2, 1)
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
