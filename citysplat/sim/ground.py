"""The ground's height along the capture, from the sparse model's points under the cameras.

Under a camera the ground is the bulk of the sparse points below it (the road or sidewalk it
photographed from a few metres back); where too few points are there, the camera's height less a
mount height. Between cameras, heights are interpolated from the nearest ones.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree


@dataclass(frozen=True)
class GroundEstimate:
    """Ground heights (ENU up, m) under camera positions, and how each was found."""

    xy: np.ndarray  # (N, 2)
    z: np.ndarray  # (N,)
    from_points: np.ndarray  # (N,) bool: from sparse points (else camera height - mount)

    def height(self, xy: np.ndarray, k: int = 4) -> np.ndarray:
        """The ground height at ``xy`` ((M, 2) ENU): inverse-distance weights of the ``k``
        nearest cameras' ground."""
        xy = np.atleast_2d(np.asarray(xy, np.float64))
        if len(self.z) == 0:
            return np.zeros(len(xy))
        k = min(k, len(self.z))
        dist, idx = cKDTree(self.xy).query(xy, k=k)
        dist, idx = dist.reshape(len(xy), k), idx.reshape(len(xy), k)
        w = 1.0 / np.maximum(dist, 0.5) ** 2
        return (self.z[idx] * w).sum(axis=1) / w.sum(axis=1)


def ground_under_cameras(centres: np.ndarray, points: np.ndarray | None = None, *,
                         mount_height: float = 1.5, radius: float = 3.0,
                         clearance: float = 0.8, depth: float = 4.0,
                         min_points: int = 5) -> GroundEstimate:
    """Ground under each camera centre ((N, 3) ENU): the median height of the sparse points
    within ``radius`` m horizontally and ``clearance``..``depth`` m below it."""
    centres = np.asarray(centres, np.float64).reshape(-1, 3)
    z = centres[:, 2] - mount_height
    found = np.zeros(len(centres), bool)
    if points is not None and len(points):
        points = np.asarray(points, np.float64)
        tree = cKDTree(points[:, :2])
        for k, c in enumerate(centres):
            near = points[tree.query_ball_point(c[:2], radius), 2]
            below = near[(near < c[2] - clearance) & (near > c[2] - depth)]
            if len(below) >= min_points:
                z[k], found[k] = float(np.median(below)), True
    return GroundEstimate(centres[:, :2].copy(), z, found)
