"""Camera intrinsics for SfM, from the best source an image has.

In order of preference:

1. Mapillary API v4 ``camera_type`` + ``camera_parameters`` (OpenSfM's convention: focal
   normalised by the larger image side, radial k1, k2). ``perspective`` is COLMAP's ``RADIAL``
   model (x_d = x_u (1 + k1 r^2 + k2 r^4), principal point at the image centre) and ``fisheye``
   is COLMAP's ``RADIAL_FISHEYE`` (the same polynomial in the angle). These are the camera's
   calibration (Mapillary refines them over many captures), so SfM holds them fixed: on forward
   street motion, refining focal and distortion trades them for depth and bends the trajectory.
   Spherical (equirectangular) panoramas are not reconstructed yet: they are reported with a
   reason instead.
2. The photo's EXIF focal length (:attr:`citysplat.photos.PhotoRecord.focal_px`): a
   ``SIMPLE_RADIAL`` prior that bundle adjustment refines.
3. A default guess (focal = 1.2 x the longer side, COLMAP's own default), refined as well; the
   result says that it was a guess.

Every constructor returns a :class:`CameraIntrinsics`, or raises :class:`UnsupportedCameraError`
(a ``ValueError``) naming why the image cannot be used.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "DEFAULT_FOCAL_FACTOR",
    "CameraIntrinsics",
    "UnsupportedCameraError",
    "from_api",
    "from_entity",
    "from_exif",
    "from_matrix",
    "default_guess",
    "resolve_intrinsics",
]

DEFAULT_FOCAL_FACTOR = 1.2
"""Focal length guess as a multiple of the longer image side (COLMAP's
``ImageReaderOptions.default_focal_length_factor``): a field of view of about 45 degrees."""

SPHERICAL_TYPES = frozenset({"spherical", "equirectangular"})
PERSPECTIVE_TYPES = frozenset({"perspective", "brown"})
FISHEYE_TYPES = frozenset({"fisheye", "fisheye_opencv", "fisheye62", "fisheye624"})


class UnsupportedCameraError(ValueError):
    """The image's camera cannot be used by SfM (yet); the message says why."""


@dataclass(frozen=True)
class CameraIntrinsics:
    """A COLMAP camera: model name, image size, parameters (pixels), and where it came from.

    ``source`` is ``"api"``, ``"exif"``, ``"default"`` or ``"given"``; ``fixed`` says that
    bundle adjustment must hold the parameters (calibrated values rather than priors);
    ``note`` explains a guess or a conversion, for the result's messages.
    """

    model: str
    width: int
    height: int
    params: tuple[float, ...]
    source: str
    fixed: bool
    note: str = ""

    def __post_init__(self) -> None:
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f"camera size {self.width}x{self.height} is not positive")
        if not all(math.isfinite(p) for p in self.params):
            raise ValueError(f"camera parameters {self.params} are not all finite")

    @property
    def focal_px(self) -> float:
        return float(self.params[0])

    @property
    def params_csv(self) -> str:
        """Parameters as COLMAP's comma-separated string (``ImageReaderOptions.camera_params``)."""
        return ",".join(repr(float(p)) for p in self.params)

    @property
    def key(self) -> tuple:
        """Images with equal keys share one COLMAP camera (one device, one calibration)."""
        return (self.model, self.width, self.height,
                tuple(round(float(p), 6) for p in self.params), self.fixed)

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "width": self.width, "height": self.height,
                "params": [float(p) for p in self.params], "source": self.source,
                "fixed": self.fixed, "note": self.note}


def _finite(values: Sequence[Any]) -> list[float] | None:
    try:
        out = [float(v) for v in values]
    except (TypeError, ValueError):
        return None
    return out if all(math.isfinite(v) for v in out) else None


def from_api(camera_type: str | None, camera_parameters: Sequence[float] | None,
             width: int, height: int) -> CameraIntrinsics:
    """API v4 ``camera_type`` + ``camera_parameters`` -> a fixed COLMAP camera.

    Raises :class:`UnsupportedCameraError` for spherical panoramas and for parameters that
    cannot be a camera (missing, non-finite, non-positive focal); the caller may then fall back
    to :func:`from_exif` or :func:`default_guess` (:func:`resolve_intrinsics` does).
    """
    kind = (camera_type or "").strip().lower()
    if kind in SPHERICAL_TYPES:
        raise UnsupportedCameraError(
            f"{kind} panorama: SfM of 360-degree images is not supported yet "
            "(COLMAP needs them split into perspective views)"
        )
    if width <= 0 or height <= 0:
        raise UnsupportedCameraError(f"image size {width}x{height} is not positive")
    params = _finite(camera_parameters or [])
    if not params:
        raise UnsupportedCameraError(f"no camera_parameters for camera_type {kind or '?'!r}")
    focal = params[0] * max(width, height)
    if focal <= 0:
        raise UnsupportedCameraError(f"focal {params[0]} in camera_parameters is not positive")
    k1, k2 = (params[1:3] + [0.0, 0.0])[:2]
    cx, cy = width / 2.0, height / 2.0
    if kind in FISHEYE_TYPES:
        return CameraIntrinsics("RADIAL_FISHEYE", width, height, (focal, cx, cy, k1, k2),
                                "api", True, f"API {kind} camera as COLMAP RADIAL_FISHEYE")
    if kind in PERSPECTIVE_TYPES or not kind:
        note = "" if kind == "perspective" else f"API camera_type {kind or '(none)'!r} read as perspective"
        return CameraIntrinsics("RADIAL", width, height, (focal, cx, cy, k1, k2), "api", True,
                                note)
    raise UnsupportedCameraError(f"unknown camera_type {camera_type!r}")


def from_exif(focal_px: float | None, width: int, height: int,
              source: str | None = None) -> CameraIntrinsics:
    """An EXIF focal prior (pixels of the upright image) -> a ``SIMPLE_RADIAL`` camera that
    bundle adjustment refines. Raises :class:`UnsupportedCameraError` without a usable focal."""
    if focal_px is None or not math.isfinite(focal_px) or focal_px <= 0:
        raise UnsupportedCameraError("no usable focal length in the EXIF")
    how = f" ({source})" if source else ""
    return CameraIntrinsics("SIMPLE_RADIAL", width, height,
                            (float(focal_px), width / 2.0, height / 2.0, 0.0), "exif", False,
                            f"EXIF focal prior{how}, refined by bundle adjustment")


def default_guess(width: int, height: int) -> CameraIntrinsics:
    """No calibration and no EXIF focal: focal = 1.2 x the longer side, refined by BA."""
    focal = DEFAULT_FOCAL_FACTOR * max(width, height)
    return CameraIntrinsics(
        "SIMPLE_RADIAL", width, height, (focal, width / 2.0, height / 2.0, 0.0), "default",
        False, f"no calibration or EXIF focal: guessed focal {focal:.0f} px "
               f"({DEFAULT_FOCAL_FACTOR} x the longer side), refined by bundle adjustment",
    )


def from_matrix(K: np.ndarray, width: int, height: int, *, fixed: bool = True,
                distortion: Sequence[float] | None = None) -> CameraIntrinsics:
    """A calibration matrix (e.g. a benchmark's ground truth) -> ``PINHOLE`` (or ``OPENCV``
    when non-zero radial/tangential distortion k1, k2, p1, p2 is given)."""
    K = np.asarray(K, dtype=np.float64)
    fx, fy, cx, cy = float(K[0, 0]), float(K[1, 1]), float(K[0, 2]), float(K[1, 2])
    dist = [float(d) for d in (distortion or [])]
    if any(dist):
        dist = (dist + [0.0] * 4)[:4]
        return CameraIntrinsics("OPENCV", width, height, (fx, fy, cx, cy, *dist), "given", fixed)
    return CameraIntrinsics("PINHOLE", width, height, (fx, fy, cx, cy), "given", fixed)


def resolve_intrinsics(width: int, height: int, *, camera_type: str | None = None,
                       camera_parameters: Sequence[float] | None = None,
                       focal_px: float | None = None,
                       focal_source: str | None = None) -> CameraIntrinsics:
    """The best camera for an image: API calibration, else EXIF focal, else a default guess.

    Spherical panoramas raise :class:`UnsupportedCameraError` (they have no fallback); other
    unusable API parameters fall through to the EXIF prior or the guess, with a note saying so.
    """
    api_problem = ""
    if camera_type is not None or camera_parameters:
        try:
            return from_api(camera_type, camera_parameters, width, height)
        except UnsupportedCameraError as exc:
            if (camera_type or "").strip().lower() in SPHERICAL_TYPES:
                raise
            api_problem = f"API camera unusable ({exc}); "
    try:
        camera = from_exif(focal_px, width, height, focal_source)
    except UnsupportedCameraError:
        camera = default_guess(width, height)
    if api_problem:
        camera = CameraIntrinsics(camera.model, camera.width, camera.height, camera.params,
                                  camera.source, camera.fixed, api_problem + camera.note)
    return camera


def from_entity(entity: Mapping[str, Any]) -> CameraIntrinsics:
    """:func:`resolve_intrinsics` for an API v4 image entity (``width``, ``height``,
    ``camera_type``, ``camera_parameters``)."""
    width, height = int(entity.get("width") or 0), int(entity.get("height") or 0)
    if width <= 0 or height <= 0:
        raise UnsupportedCameraError(f"image entity {entity.get('id')} has no width/height")
    return resolve_intrinsics(width, height, camera_type=entity.get("camera_type"),
                              camera_parameters=entity.get("camera_parameters"))
