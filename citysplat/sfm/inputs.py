"""The images of one reconstruction: :class:`SfmInput`, the input errors, and the screening
that keeps the usable ones.

:func:`check_names` refuses a list COLMAP cannot take (repeated names, names with whitespace);
:func:`screen_inputs` leaves out the images the caller marked unusable and those
:mod:`citysplat.sfm.quality` finds corrupt, tiny, blurred or badly exposed, gives each kept
image a camera that fits its file, and raises :class:`NotEnoughImagesError` below 3.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from citysplat.frames import LocalFrame
from citysplat.layout import image_file_name
from citysplat.positions import GPS_SIGMA_M, best_heading, best_position
from citysplat.sfm.intrinsics import (
    CameraIntrinsics,
    UnsupportedCameraError,
    default_guess,
    from_exif,
)
from citysplat.sfm.intrinsics import from_entity as intrinsics_from_entity
from citysplat.sfm.quality import ScreeningOptions, screen_images

MIN_IMAGES = 3
"""Fewer usable images than this cannot make a model."""

_WHITESPACE = re.compile(r"\s")


class SfmInputError(ValueError):
    """The inputs cannot be reconstructed as given; the message names the fix."""


class NotEnoughImagesError(SfmInputError):
    """Fewer than 3 usable images."""


@dataclass(frozen=True)
class SfmInput:
    """One image for SfM.

    ``name``: the image's name in the model (unique; ``/`` allowed, no whitespace);
    ``path``: where its pixels are (upright: EXIF orientation is not applied by COLMAP);
    ``camera``: intrinsics (None: a default guess from the file's size);
    ``prior_enu``: prior camera position in the district's ENU frame, metres (GPS);
    ``prior_sigma_m``: its 1-sigma error (horizontal, vertical), for the database's covariance;
    ``heading_deg``: compass heading, optional; ``sequence`` and ``order`` (capture time or
    index) drive the sequential pairing; ``unusable``: a reason the caller already knows
    (reported, never reconstructed).
    """

    name: str
    path: Path
    camera: CameraIntrinsics | None = None
    prior_enu: tuple[float, float, float] | None = None
    prior_sigma_m: tuple[float, float] | None = None
    prior_source: str | None = None
    heading_deg: float | None = None
    sequence: str | None = None
    order: float | None = None
    unusable: str | None = None

    @classmethod
    def from_entity(cls, entity: Mapping[str, Any], path: str | Path, frame: LocalFrame, *,
                    name: str | None = None, use_computed: bool = True) -> SfmInput:
        """An API v4 image entity (and its downloaded file) -> SfmInput.

        The prior is the entity's best position (:func:`citysplat.positions.best_position`:
        Mapillary's ``computed_geometry`` when present and ``use_computed``, decimetres, else
        the raw GPS ``geometry``, metres) with that source's sigma. Spherical panoramas come
        back ``unusable``.
        """
        camera, unusable = None, None
        try:
            camera = intrinsics_from_entity(entity)
        except UnsupportedCameraError as exc:
            unusable = str(exc)
        best = best_position(entity, use_computed=use_computed)
        prior = None
        if best is not None:
            alt = frame.alt0 if best.alt is None else best.alt
            prior = tuple(float(v) for v in frame.to_enu(best.lon, best.lat, alt)[0])
        return cls(
            name=name or image_file_name(entity["id"]), path=Path(path), camera=camera,
            prior_enu=prior, prior_sigma_m=best.sigma_m if best else None,
            prior_source=best.source if best else None,
            heading_deg=best_heading(entity, use_computed=use_computed),
            sequence=entity.get("sequence"),
            order=None if entity.get("captured_at") is None else float(entity["captured_at"]),
            unusable=unusable,
        )

    @classmethod
    def from_photo(cls, record, frame: LocalFrame | None, *, path: str | Path | None = None,
                   name: str | None = None) -> SfmInput:
        """A :class:`citysplat.photos.PhotoRecord` -> SfmInput (EXIF focal prior or a guess;
        GPS prior when the photo has one and a frame is given). ``path``: an upright copy when
        the original needs EXIF rotation."""
        try:
            camera = from_exif(record.focal_px, record.width, record.height,
                               record.focal_px_source)
        except UnsupportedCameraError:
            camera = default_guess(record.width, record.height)
        prior = None
        if frame is not None and record.has_gps:
            alt = frame.alt0 if record.alt is None else record.alt
            prior = tuple(float(v) for v in frame.to_enu(record.lon, record.lat, alt)[0])
        order = record.captured_at.timestamp() if record.captured_at else None
        return cls(
            name=name or record.name, path=Path(path or record.path), camera=camera,
            prior_enu=prior, prior_sigma_m=GPS_SIGMA_M if prior else None,
            prior_source="exif_gps" if prior else None, heading_deg=record.heading_deg,
            sequence=None, order=order,
        )


def check_names(inputs: Sequence[SfmInput]) -> None:
    """Raise :class:`SfmInputError` for names COLMAP cannot take: repeated names, names with
    whitespace (COLMAP's pair lists split on spaces), absolute names or names with ``..``."""
    names = [item.name for item in inputs]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise SfmInputError(f"image names must be unique; repeated: {', '.join(duplicates[:5])}"
                            " (name images by their id, e.g. '<id>.jpg')")
    bad_names = [n for n in names
                 if _WHITESPACE.search(n) or n.startswith("/") or ".." in Path(n).parts]
    if bad_names:
        raise SfmInputError(f"image names must be relative and free of whitespace (COLMAP's "
                            f"pair lists split on spaces): {bad_names[0]!r}; rename the image")


def fit_camera(camera: CameraIntrinsics, width: int, height: int
               ) -> tuple[CameraIntrinsics | None, str | None]:
    """The camera for a file of ``width`` x ``height`` pixels: the same one, or rescaled when
    the file is a uniformly scaled copy (e.g. a 1024 px thumbnail of a 4000 px original);
    ``(None, why)`` when the aspect ratio differs."""
    if (camera.width, camera.height) == (width, height):
        return camera, None
    sx, sy = width / camera.width, height / camera.height
    if abs(sx - sy) > 0.01 * max(sx, sy):
        return None, (f"size mismatch: file is {width}x{height}, camera is "
                      f"{camera.width}x{camera.height} (different aspect ratio)")
    s = (sx + sy) / 2
    params = list(camera.params)
    scaled = {"SIMPLE_RADIAL": 3, "RADIAL": 3, "RADIAL_FISHEYE": 3, "SIMPLE_PINHOLE": 3,
              "PINHOLE": 4, "OPENCV": 4}.get(camera.model, 0)
    for k in range(scaled):
        params[k] *= s
    note = (camera.note + "; " if camera.note else "") + (
        f"rescaled from {camera.width}x{camera.height} to the file's {width}x{height}")
    return replace(camera, width=width, height=height, params=tuple(params), note=note), None


@dataclass
class ScreenedInputs:
    """The outcome of :func:`screen_inputs`: the usable images (each with a camera that fits
    its file), the others with their reasons, and notes for the result."""

    usable: list[SfmInput]
    unusable: dict[str, str]
    messages: list[str] = field(default_factory=list)


def screen_inputs(inputs: Sequence[SfmInput], options: ScreeningOptions | None = None
                  ) -> ScreenedInputs:
    """Keep the inputs SfM can use: not marked unusable, passing
    :func:`citysplat.sfm.quality.screen_images`, with a camera that fits the file (the given
    one, rescaled for a thumbnail, or a default guess). Raises :class:`NotEnoughImagesError`
    when fewer than 3 remain."""
    unusable: dict[str, str] = {item.name: item.unusable for item in inputs if item.unusable}
    candidates = [item for item in inputs if not item.unusable]
    checks = screen_images({item.name: item.path for item in candidates},
                           options or ScreeningOptions())
    usable: list[SfmInput] = []
    for item in candidates:
        check = checks[item.name]
        if not check.ok:
            unusable[item.name] = check.reason
            continue
        camera, problem = fit_camera(item.camera or default_guess(check.width, check.height),
                                     check.width, check.height)
        if problem:
            unusable[item.name] = problem
            continue
        usable.append(replace(item, camera=camera))
    if len(usable) < MIN_IMAGES:
        shown = "; ".join(f"{n}: {r}" for n, r in list(unusable.items())[:3])
        raise NotEnoughImagesError(
            f"{len(usable)} usable image(s) of {len(inputs)}, SfM needs at least 3"
            + (f" (unusable: {shown})" if shown else "")
            + ": add more photos that overlap (of the same place, from a few metres apart)")
    messages = []
    guessed = [item for item in usable if item.camera.source == "default"]
    if guessed:
        messages.append(f"{len(guessed)} image(s) without calibration or EXIF focal length: "
                        f"{guessed[0].camera.note}")
    return ScreenedInputs(usable, unusable, messages)
