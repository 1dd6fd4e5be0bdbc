"""Training views from a COLMAP model: undistorted pinhole cameras, images, masks, the split.

Splatting rasterizers (gsplat's and ours) project with a pinhole camera, while street imagery
comes with radial distortion (Mapillary's ``perspective`` cameras: k1, k2). Each image is
therefore resampled into the pinhole camera with the same focal length and principal point
(pycolmap's camera model does the distortion maths), at a training resolution of at most
``max_side`` pixels. Moving-object masks (``<image stem>.png``, non-zero = moving) follow the
same mapping (nearest neighbour) and become per-pixel loss weights.

Every ``test_every``-th image in name order, starting with the first, is held out for
evaluation: the split of the 3DGS papers and of gsplat's ``simple_trainer`` (index % 8 == 0), so
both trainers score the same views of a dataset.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image


class SceneDataError(ValueError):
    """The model or its images cannot be used for training."""


@dataclass
class View:
    """One training or evaluation image."""

    name: str
    index: int  # position among all views (the appearance embedding's row)
    image: torch.Tensor  # [H, W, 3] float in [0, 1]
    weight: torch.Tensor  # [H, W] float: 0 on moving objects and undistortion holes
    K: torch.Tensor  # [3, 3] pinhole intrinsics at this resolution
    viewmat: torch.Tensor  # [4, 4] world-to-camera
    sequence: str | None = None
    sparse_uv: torch.Tensor | None = None  # [M, 2] pixels (this resolution) of its SfM points
    sparse_depth: torch.Tensor | None = None  # [M] their depths along the optical axis

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    @property
    def width(self) -> int:
        return int(self.image.shape[1])

    @property
    def center(self) -> torch.Tensor:
        R, t = self.viewmat[:3, :3], self.viewmat[:3, 3]
        return -R.T @ t


@dataclass
class SceneData:
    """Views (train and test), the sparse points that seed the Gaussians, the scene scale."""

    train: list[View]
    test: list[View]
    points: np.ndarray  # [P, 3] float32
    colors: np.ndarray  # [P, 3] float32 in [0, 1]
    scene_scale: float
    masked_pixels: float = 0.0  # fraction of training pixels weighted 0

    @property
    def views(self) -> list[View]:
        return sorted(self.train + self.test, key=lambda v: v.index)


def _pinhole_remap(
    camera, width: int, height: int, scale: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(K of the pinhole camera at the training size, source pixel x and y per target pixel)."""
    f = camera.focal_length_idxs()
    params = np.asarray(camera.params, dtype=np.float64)
    fx = params[f[0]]
    fy = params[f[1]] if len(f) > 1 else fx
    cx, cy = camera.principal_point_x, camera.principal_point_y
    K = np.array([[fx * scale, 0.0, cx * scale], [0.0, fy * scale, cy * scale], [0, 0, 1.0]])
    u, v = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
    rays = np.stack([(u / scale - cx) / fx, (v / scale - cy) / fy], axis=-1).reshape(-1, 2)
    if camera.model.name in ("SIMPLE_PINHOLE", "PINHOLE"):
        source = np.column_stack([rays[:, 0] * fx + cx, rays[:, 1] * fy + cy])
    else:
        source = np.asarray(camera.img_from_cam(np.column_stack([rays, np.ones(len(rays))])))
    return K, source[:, 0].reshape(height, width), source[:, 1].reshape(height, width)


def _project(xyz: np.ndarray, viewmat: np.ndarray, K: np.ndarray, width: int, height: int
             ) -> tuple[np.ndarray, np.ndarray]:
    """Pixel positions [M, 2] and depths [M] of the world points in front of a pinhole camera
    and inside its image."""
    cam = xyz @ viewmat[:3, :3].T + viewmat[:3, 3]
    z = cam[:, 2]
    front = z > 1e-3
    uv = (cam[front] @ K.T)[:, :2] / z[front, None]
    inside = (uv[:, 0] >= 0) & (uv[:, 0] < width) & (uv[:, 1] >= 0) & (uv[:, 1] < height)
    return uv[inside], z[front][inside]


def _sample(
    array: np.ndarray, sx: np.ndarray, sy: np.ndarray, scale: float, nearest: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Resample ``array`` [H0, W0, C] at source pixel coordinates (full resolution) into the
    training grid; box-filtered first when shrinking. Returns (values [H, W, C], valid [H, W])."""
    src = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32)).permute(2, 0, 1)[None]
    h0, w0 = src.shape[-2:]
    if scale < 1.0 and not nearest:  # area-average to the training scale, then sample
        factor = max(1, int(round(1.0 / scale)))
        src = torch.nn.functional.avg_pool2d(src, factor, factor, ceil_mode=True)
    grid = torch.from_numpy(np.stack([sx / w0 * 2 - 1, sy / h0 * 2 - 1], -1)[None]).float()
    out = torch.nn.functional.grid_sample(
        src,
        grid,
        mode="nearest" if nearest else "bilinear",
        padding_mode="zeros",
        align_corners=False,
    )
    valid = (sx >= 0) & (sx <= w0) & (sy >= 0) & (sy <= h0)
    return out[0].permute(1, 2, 0), torch.from_numpy(valid)


def load_scene(
    sparse_dir: str | Path,
    images: str | Path | Mapping[str, Path],
    *,
    masks: str | Path | None = None,
    max_side: int = 320,
    test_every: int = 8,
    sequences: Mapping[str, str] | None = None,
    max_points: int = 200_000,
    seed: int = 0,
) -> SceneData:
    """Load a COLMAP model (``sparse_dir``) and its registered images for training.

    ``images``: a folder (COLMAP's image names relative to it) or ``{name: path}``;
    ``masks``: a folder of ``<stem>.png`` masks (non-zero = moving, left out of the loss);
    ``sequences``: ``{name: sequence}`` (held-out views borrow the appearance of their
    sequence's nearest training view). Raises :class:`SceneDataError` for a missing,
    truncated or corrupt model (checked by :func:`citysplat.sfm.model_files.check_sparse_model`
    before pycolmap reads it), fewer than 2 registered images with files, or a model without
    3D points.
    """
    from citysplat.sfm.model_files import SparseModelError, read_sparse_model

    sparse_dir = Path(sparse_dir)
    if not (sparse_dir / "images.bin").is_file() and not (sparse_dir / "images.txt").is_file():
        raise SceneDataError(
            f"{sparse_dir} holds no COLMAP model (images.bin): give the "
            "sparse/ folder of a reconstruction (e.g. districts/<name>/sparse)"
        )
    try:  # checked before pycolmap reads it: a truncated file must not crash or eat memory
        model = read_sparse_model(sparse_dir)
    except SparseModelError as exc:
        raise SceneDataError(str(exc)) from None

    def path_of(name: str) -> Path | None:
        if isinstance(images, Mapping):
            p = images.get(name)
            return Path(p) if p else None
        return Path(images) / name

    registered = sorted((im for im in model.images.values() if im.has_pose), key=lambda im: im.name)
    present = [(im, p) for im in registered if (p := path_of(im.name)) and p.is_file()]
    if len(present) < 2:
        raise SceneDataError(
            f"{len(present)} of the model's {len(registered)} registered "
            "images have image files: point IMAGES_DIR at the folder the "
            "model was built from"
        )
    if model.num_points3D() == 0:
        raise SceneDataError(f"{sparse_dir} has no 3D points to start the Gaussians from")
    tracks: dict[int, list[int]] = {}  # image id -> ids of the 3D points it observes
    for point_id, point in model.points3D.items():
        for element in point.track.elements:
            tracks.setdefault(element.image_id, []).append(point_id)
    views: list[View] = []
    masked = 0.0
    for index, (image, path) in enumerate(present):
        camera = model.cameras[image.camera_id]
        scale = min(1.0, max_side / max(camera.width, camera.height))
        width, height = max(1, round(camera.width * scale)), max(1, round(camera.height * scale))
        with Image.open(path) as pil:
            rgb = np.asarray(pil.convert("RGB"), dtype=np.float32) / 255.0
        if rgb.shape[:2] != (camera.height, camera.width):
            raise SceneDataError(
                f"{image.name} is {rgb.shape[1]}x{rgb.shape[0]} but its "
                f"camera is {camera.width}x{camera.height}"
            )
        K, sx, sy = _pinhole_remap(camera, width, height, scale)
        pixels, valid = _sample(rgb, sx, sy, scale)
        weight = valid.float()
        mask_path = Path(masks) / (Path(image.name).stem + ".png") if masks else None
        if mask_path is not None and mask_path.is_file():
            with Image.open(mask_path) as pil:
                moving = (np.asarray(pil.convert("L")) > 0).astype(np.float32)[..., None]
            moving_t, _ = _sample(moving, sx, sy, scale, nearest=True)
            weight = weight * (1.0 - moving_t[..., 0])
        masked += float((weight == 0).float().mean())
        pose = image.cam_from_world()
        viewmat = np.eye(4)
        viewmat[:3, :3] = np.asarray(pose.rotation.matrix())
        viewmat[:3, 3] = np.asarray(pose.translation)
        ids = tracks.get(image.image_id, [])
        xyz = np.array([model.points3D[i].xyz for i in ids], dtype=np.float64).reshape(-1, 3)
        uv, depth = _project(xyz, viewmat, K, width, height)
        views.append(
            View(
                image.name,
                index,
                pixels.clamp(0, 1).contiguous(),
                weight,
                torch.from_numpy(K).float(),
                torch.from_numpy(viewmat).float(),
                (sequences or {}).get(image.name),
                torch.from_numpy(uv).float(),
                torch.from_numpy(depth).float(),
            )
        )
    test_every = max(0, int(test_every))
    held = {v.index for v in views if test_every and v.index % test_every == 0}
    test = [v for v in views if v.index in held]
    train = [v for v in views if v.index not in held] or views
    points = np.array([p.xyz for p in model.points3D.values()], dtype=np.float32)
    colors = np.array([p.color for p in model.points3D.values()], dtype=np.float32) / 255.0
    if len(points) > max_points:
        keep = np.random.default_rng(seed).choice(len(points), max_points, replace=False)
        points, colors = points[np.sort(keep)], colors[np.sort(keep)]
    centres = np.stack([v.center.numpy() for v in views])
    scene_scale = float(np.linalg.norm(centres - centres.mean(0), axis=1).max()) * 1.1
    return SceneData(train, test, points, colors, max(scene_scale, 1e-3), masked / len(views))
