"""The ground's height along the capture, from the sparse model's points under the cameras.

Under a camera the ground is the low part of the sparse points below it (the road or sidewalk
it photographed from a few metres back); a camera rides at one height above the ground for a
whole sequence, so each track's mount height is the median over its cameras, and the ground is
every camera's height less it (1.5 m where a track has no points below). Between cameras,
heights are interpolated from the nearest ones.
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
                         min_points: int = 5, quantile: float = 30.0) -> GroundEstimate:
    """Ground under each camera centre ((N, 3) ENU): the ``quantile`` (per cent) of the
    heights of the sparse points within ``radius`` m horizontally and ``clearance``..``depth``
    m below it (the ground is the lowest thing there; a low quantile keeps the sides of parked
    cars out)."""
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
                z[k], found[k] = float(np.percentile(below, quantile)), True
    return GroundEstimate(centres[:, :2].copy(), z, found)


def ground_under_tracks(tracks: list[np.ndarray], points: np.ndarray | None = None, *,
                        mount_height: float = 1.5, min_cameras: int = 3) -> GroundEstimate:
    """Ground under the cameras of each track ((N, 3) ENU centres in capture order): a camera
    rides at one height above the ground for a whole sequence, so the track's mount height is
    the median, over its cameras with sparse points below (:func:`ground_under_cameras`), of
    camera minus ground, and every camera's ground is its height less that. One bad estimate
    then moves nothing, and cameras without points get the ground too."""
    xy, z, found = [], [], []
    for centres in tracks:
        centres = np.asarray(centres, np.float64).reshape(-1, 3)
        each = ground_under_cameras(centres, points, mount_height=mount_height)
        if each.from_points.sum() >= min_cameras:
            mount = float(np.median(centres[each.from_points, 2] - each.z[each.from_points]))
            known = True
        else:
            mount, known = mount_height, False
        xy.append(centres[:, :2])
        z.append(centres[:, 2] - mount)
        found.append(np.full(len(centres), known))
    if not xy:
        return GroundEstimate(np.zeros((0, 2)), np.zeros(0), np.zeros(0, bool))
    return GroundEstimate(np.concatenate(xy), np.concatenate(z), np.concatenate(found))
