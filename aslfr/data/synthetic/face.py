"""The face: face-mesh points in face-local units and how they move when the mouth opens.

Either the 40 lip points of MediaPipe's face mesh (`LIP_POINTS`) or a whole 468-point face whose
non-lip points are a plausible symmetric mesh (`_face_template`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from aslfr.data import layout

LIP_POINTS = (
    61,
    185,
    40,
    39,
    37,
    0,
    267,
    269,
    270,
    409,
    291,
    146,
    91,
    181,
    84,
    17,
    314,
    405,
    321,
    375,
    78,
    191,
    80,
    81,
    82,
    13,
    312,
    311,
    310,
    415,
    95,
    88,
    178,
    87,
    14,
    317,
    402,
    318,
    324,
    308,
)


@dataclass(frozen=True, eq=False)
class _FaceTemplate:
    """Face-mesh points in face-local units (face width = 1; x right, y down, z towards the camera
    negative), sorted by landmark number."""

    indices: np.ndarray  # (P,) MediaPipe face-mesh landmark numbers, ascending
    base: np.ndarray  # (P, 3) neutral position
    opening: np.ndarray  # (P, 3) displacement per unit of mouth opening
    mirror: np.ndarray  # (P,) position of each point's left/right partner


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
        y = -0.055 * arch[i] ** 0.7 + 0.012 * math.exp(-((u[i] / 0.2) ** 2))  # cupid's bow
        points[k] = ((w * u[i], _MOUTH_Y + y, -0.06 * arch[i]), (-0.03 * u[i], -0.01 * arch[i], 0))
    for i, k in enumerate(outer_lower, start=1):
        points[k] = (
            (w * u[i], _MOUTH_Y + 0.07 * arch[i] ** 0.7, -0.05 * arch[i]),
            (-0.03 * u[i], 0.13 * arch[i] ** 0.5, 0.01),
        )
    for i, k in enumerate(inner_upper):
        points[k] = (
            (0.85 * w * u[i], _MOUTH_Y - 0.012 * arch[i], -0.04 * arch[i]),
            (-0.025 * u[i], -0.012 * arch[i], 0),
        )
    for i, k in enumerate(inner_lower, start=1):
        points[k] = (
            (0.85 * w * u[i], _MOUTH_Y + 0.012 * arch[i], -0.04 * arch[i]),
            (-0.025 * u[i], 0.11 * arch[i] ** 0.5, 0.01),
        )
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
