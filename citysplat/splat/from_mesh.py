"""Gaussian splats that reproduce a triangle mesh: flat discs laid on its surface.

A reference for everything downstream of training: the splat of a known surface (a CAD model,
or the generated city's true geometry) renders the depth of that surface exactly, so a mesh or a
navmesh derived from it measures the derivation alone, not the training.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation

from citysplat.splat.export import SplatArrays
from citysplat.splat.model import SH_C0


def splat_from_mesh(vertices: np.ndarray, faces: np.ndarray, spacing: float = 0.1,
                    face_colors: np.ndarray | None = None, opacity: float = 0.99,
                    thickness: float = 0.005, seed: int = 0) -> SplatArrays:
    """Discs of radius about ``spacing`` spread over the mesh (one per ``spacing``² of area),
    each lying in its triangle's plane, opaque, coloured by ``face_colors`` ([F, 3] in [0, 1],
    default grey)."""
    vertices = np.asarray(vertices, np.float64)
    faces = np.asarray(faces, np.int64)
    tri = vertices[faces]
    cross = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    double_area = np.linalg.norm(cross, axis=1)
    keep = double_area > 1e-12
    if not keep.any():
        raise ValueError("the mesh has no triangle with an area")
    area = 0.5 * double_area
    rng = np.random.default_rng(seed)
    n = int(max(1, area.sum() / spacing**2))
    pick = rng.choice(len(faces), n, p=area / area.sum())
    u, v = rng.random(n), rng.random(n)
    flip = u + v > 1
    u[flip], v[flip] = 1 - u[flip], 1 - v[flip]
    t = tri[pick]
    means = t[:, 0] + u[:, None] * (t[:, 1] - t[:, 0]) + v[:, None] * (t[:, 2] - t[:, 0])
    normal = cross[pick] / double_area[pick, None]
    # a rotation taking the disc's local z to the face normal
    z = np.array([0.0, 0.0, 1.0])
    axis = np.cross(z, normal)
    sin = np.linalg.norm(axis, axis=1)
    angle = np.arctan2(sin, normal @ z)
    axis = np.where(sin[:, None] > 1e-9, axis / np.maximum(sin, 1e-12)[:, None],
                    np.array([1.0, 0.0, 0.0]))
    xyzw = Rotation.from_rotvec(axis * angle[:, None]).as_quat()
    quats = np.column_stack([xyzw[:, 3], xyzw[:, :3]])  # wxyz, as 3DGS stores them
    scales = np.log(np.tile([spacing, spacing, thickness], (n, 1)))
    colors = (np.full((n, 3), 0.5) if face_colors is None
              else np.asarray(face_colors, np.float64)[pick])
    sh0 = (colors - 0.5) / SH_C0
    logit = np.log(opacity / (1 - opacity))
    return SplatArrays(means.astype(np.float32), scales.astype(np.float32),
                       quats.astype(np.float32), np.full(n, logit, np.float32),
                       sh0[:, None, :].astype(np.float32), np.zeros((n, 0, 3), np.float32))
