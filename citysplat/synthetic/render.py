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


def _cell_rays(height: int, width: int, supersample: int) -> np.ndarray:
    """Which rays (flat, over the supersampled grid) decide the surface an image sees: every
    4th pixel in each direction."""
    sub = np.zeros((height * supersample, width * supersample), bool)
    sub[:: 4 * supersample, :: 4 * supersample] = True
    return sub.reshape(-1)


def _seen_cells(origins: np.ndarray, dirs: np.ndarray, hit: dict) -> np.ndarray:
    """The 0.5 m voxels of static surface the rays hit within ``COVIS_RANGE``."""
    t = hit["t"]
    seen = (hit["gid"] >= 0) & (hit["gid"] != 5) & (t < COVIS_RANGE)
    pts = origins[seen] + dirs[seen] * t[seen, None]
    return np.unique(np.floor(pts / COVIS_VOXEL).astype(np.int64), axis=0)


def _capture_rays(capture: Capture, supersample: int) -> tuple[np.ndarray, np.ndarray]:
    """World-frame origins and directions of a capture's rays (row-major, supersampled)."""
    rays_cam = _camera_rays(capture.camera, supersample)
    dirs = (rays_cam.reshape(-1, 3) @ capture.rotation.T).astype(np.float32)
    return np.broadcast_to(capture.position.astype(np.float32), dirs.shape), dirs


def surface_cells(scene: CityScene, capture: Capture, supersample: int = SUPERSAMPLE
                  ) -> np.ndarray:
    """The surface cells :func:`render_capture` reports for ``capture``, from the same rays
    alone (a sixteenth of a render's rays, no shading): ground truth without the image."""
    origins, dirs = _capture_rays(capture, supersample)
    pick = _cell_rays(capture.camera.height, capture.camera.width, supersample)
    origins, dirs = origins[pick], dirs[pick]
    movers = scene.movers_at(capture.scene_seconds, capture.position)  # they hide surface
    return _seen_cells(origins, dirs, scene.cast(origins, dirs, movers))


def render_capture(scene: CityScene, capture: Capture, supersample: int = SUPERSAMPLE,
                   quality: int = 92) -> Rendering:
    """Ray-cast, shade, expose and encode one capture; degrade it if it is a bad image."""
    cam = capture.camera
    s = supersample
    origins, dirs = _capture_rays(capture, s)
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
    pick = _cell_rays(h, w, s)
    cells = _seen_cells(origins[pick], dirs[pick], {k: hit[k][pick] for k in ("t", "gid")})
    return Rendering(jpeg, moving, cells)
