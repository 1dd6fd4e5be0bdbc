"""Camera models of the generated city, in Mapillary's (OpenSfM's) conventions.

Perspective cameras use OpenSfM's normalised focal (focal / max(width, height)) and radial
distortion x_d = x_u (1 + k1 r^2 + k2 r^4), which is COLMAP's RADIAL model; spherical cameras are
equirectangular 2:1 panoramas. Camera axes follow OpenCV/COLMAP: x right, y down, z forward.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class CameraModel:
    """Intrinsics of one capture device."""

    camera_type: str  # "perspective" | "spherical"
    width: int
    height: int
    focal: float = 0.0  # normalised by max(width, height); perspective only
    k1: float = 0.0
    k2: float = 0.0

    @property
    def camera_parameters(self) -> list[float]:
        """The API v4 ``camera_parameters`` list (empty for spherical cameras)."""
        if self.camera_type == "spherical":
            return []
        return [round(self.focal, 6), round(self.k1, 6), round(self.k2, 6)]

    @property
    def focal_px(self) -> float:
        return self.focal * max(self.width, self.height)

    def colmap(self) -> tuple[str, list[float]]:
        """The equivalent COLMAP camera model name and parameters (pixel units)."""
        f = self.focal_px
        return "RADIAL", [f, self.width / 2, self.height / 2, self.k1, self.k2]

    def rays(self, supersample: int = 1) -> np.ndarray:
        """Unit ray directions in the camera frame for every (sub)pixel: (H*s, W*s, 3)."""
        s = supersample
        u = (np.arange(self.width * s) + 0.5) / s
        v = (np.arange(self.height * s) + 0.5) / s
        uu, vv = np.meshgrid(u, v)
        if self.camera_type == "spherical":
            lon = (uu / self.width - 0.5) * 2 * np.pi
            lat = -(vv / self.height - 0.5) * np.pi
            d = np.stack([np.cos(lat) * np.sin(lon), -np.sin(lat), np.cos(lat) * np.cos(lon)], -1)
            return d.astype(np.float32)
        f = self.focal_px
        xd = (uu - self.width / 2) / f
        yd = (vv - self.height / 2) / f
        xu, yu = undistort_radial(xd, yd, self.k1, self.k2)
        d = np.stack([xu, yu, np.ones_like(xu)], -1)
        return (d / np.linalg.norm(d, axis=-1, keepdims=True)).astype(np.float32)

    def project(self, points_cam: np.ndarray) -> np.ndarray:
        """Camera-frame points (N, 3) to pixel coordinates (N, 2); NaN behind the camera."""
        p = np.asarray(points_cam, np.float64)
        if self.camera_type == "spherical":
            r = np.linalg.norm(p, axis=-1)
            lon = np.arctan2(p[:, 0], p[:, 2])
            lat = np.arcsin(np.clip(-p[:, 1] / r, -1, 1))
            return np.stack([(lon / (2 * np.pi) + 0.5) * self.width,
                             (0.5 - lat / np.pi) * self.height], -1)
        z = np.where(p[:, 2] > 1e-6, p[:, 2], np.nan)
        x, y = p[:, 0] / z, p[:, 1] / z
        r2 = x * x + y * y
        g = 1 + self.k1 * r2 + self.k2 * r2 * r2
        f = self.focal_px
        return np.stack([f * x * g + self.width / 2, f * y * g + self.height / 2], -1)


def undistort_radial(xd: np.ndarray, yd: np.ndarray, k1: float, k2: float, iters: int = 20):
    """Invert x_d = x_u (1 + k1 r_u^2 + k2 r_u^4) by fixed-point iteration (mild distortion)."""
    xu, yu = xd.copy(), yd.copy()
    for _ in range(iters):
        r2 = xu * xu + yu * yu
        g = 1 + k1 * r2 + k2 * r2 * r2
        xu, yu = xd / g, yd / g
    return xu, yu


def rotation_from_heading(compass_deg: float, pitch_deg: float = 0.0, roll_deg: float = 0.0
                          ) -> np.ndarray:
    """Camera-to-world rotation (columns: camera x, y, z in ENU) for a compass heading.

    ``compass_deg`` is clockwise from north (API v4's compass_angle), ``pitch_deg`` positive
    looks up, ``roll_deg`` rotates about the optical axis.
    """
    yaw, pitch, roll = np.radians([compass_deg, pitch_deg, roll_deg])
    forward = np.array([np.sin(yaw) * np.cos(pitch), np.cos(yaw) * np.cos(pitch), np.sin(pitch)])
    right = np.array([np.cos(yaw), -np.sin(yaw), 0.0])
    down = np.cross(forward, right)
    # roll about the forward axis
    c, s = np.cos(roll), np.sin(roll)
    right, down = c * right + s * down, -s * right + c * down
    return np.stack([right, down, forward], axis=1)


def heading_of(rotation_c2w: np.ndarray) -> float:
    """Compass heading (degrees clockwise from north) of a camera's optical axis."""
    f = rotation_c2w[:, 2]
    return float(np.degrees(np.arctan2(f[0], f[1])) % 360.0)
