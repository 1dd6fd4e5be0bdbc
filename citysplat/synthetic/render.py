"""Render one capture of the generated city on the CPU (open3d ray casting, numpy shading)."""

from __future__ import annotations

import io
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image, ImageFilter

from citysplat.synthetic.cameras import CameraModel
from citysplat.synthetic.captures import Capture
from citysplat.synthetic.scene import CityScene

SUPERSAMPLE = 1  # rays per pixel side; 2 is smoother and four times slower
COVIS_VOXEL = 0.5  # metres: surface cells used to decide which images see common surface
COVIS_RANGE = 45.0  # metres: farther surface is too small in the image to match


@dataclass
class Rendering:
    """A rendered capture: the JPEG as served, the moving-object mask, and seen surface cells."""

    jpeg: bytes
    moving_mask: np.ndarray  # (H, W) bool, True where a moving car or pedestrian is
    surface_cells: np.ndarray  # (K, 3) int64 voxel keys of static surface seen in the image


@lru_cache(maxsize=8)
def _camera_rays(camera: CameraModel, supersample: int) -> np.ndarray:
    return camera.rays(supersample)


def render_capture(scene: CityScene, capture: Capture, supersample: int = SUPERSAMPLE,
                   quality: int = 92) -> Rendering:
    """Ray-cast, shade, expose and encode one capture; degrade it if it is a bad image."""
    cam = capture.camera
    s = supersample
    rays_cam = _camera_rays(cam, s)
    dirs = (rays_cam.reshape(-1, 3) @ capture.rotation.T).astype(np.float32)
    origins = np.broadcast_to(capture.position.astype(np.float32), dirs.shape)
    movers = scene.movers_at(capture.scene_seconds, capture.position)
    hit = scene.cast(origins, dirs, movers)
    pixel_angle = (2 * np.pi / cam.width if cam.camera_type == "spherical"
                   else 1.0 / cam.focal_px) / s
    linear = scene.shade(origins, dirs, hit, movers, pixel_angle)

    h, w = cam.height, cam.width
    img = linear.reshape(h, s, w, s, 3).mean(axis=(1, 3))
    moving = (hit["gid"] == 5).reshape(h, s, w, s).mean(axis=(1, 3)) > 0.5

    # exposure, white balance, vignetting, sensor noise, display gamma
    rng = np.random.default_rng(int(capture.image_id) % (2**32))
    exposure = capture.exposure * (3.2 if capture.quality == "overexposed" else 1.0)
    img = img * exposure * np.asarray(capture.white_balance, np.float32)
    if cam.camera_type == "perspective":
        yy, xx = np.mgrid[0:h, 0:w]
        r2 = ((xx - w / 2) ** 2 + (yy - h / 2) ** 2) / (max(w, h) / 2) ** 2
        img *= (1 - 0.18 * r2)[..., None]
    img = np.clip(img, 0, 1) ** (1 / 1.1)
    img = img + rng.normal(0, 0.008, img.shape)
    rgb = (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)
    pil = Image.fromarray(rgb).filter(ImageFilter.GaussianBlur(radius=0.5))  # lens softness
    if capture.quality == "blurred":
        pil = pil.filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(4, 7))))
    buf = io.BytesIO()
    pil.save(buf, format="JPEG", quality=quality)
    jpeg = buf.getvalue()
    if capture.quality == "truncated":
        jpeg = jpeg[: int(len(jpeg) * 0.55)]

    # static surface seen, for the ground-truth co-visibility of image pairs
    t = hit["t"]
    seen = (hit["gid"] >= 0) & (hit["gid"] != 5) & (t < COVIS_RANGE)
    sub = np.zeros((h * s, w * s), bool)
    sub[:: 4 * s, :: 4 * s] = True
    pick = seen & sub.reshape(-1)
    pts = origins[pick] + dirs[pick] * t[pick, None]
    cells = np.unique(np.floor(pts / COVIS_VOXEL).astype(np.int64), axis=0)
    return Rendering(jpeg, moving, cells)
