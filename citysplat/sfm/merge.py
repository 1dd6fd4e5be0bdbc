"""One model in ENU from the models of mapping: georegister the largest, merge the others in by
their own georegistration, and drop images registered far from their position prior.

The other models hold images that matched each other but not the largest model. They share no
points with it, so their place is as good as their priors (a few decimetres with Mapillary's
computed positions, metres with raw GPS): each is georegistered on its own and merged into the
largest in ENU, with a note, when its priors pin it down.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

import citysplat  # noqa: F401  (loads zlib before pycolmap)
from citysplat.sfm.georegister import Georegistration
from citysplat.sfm.options import SfmOptions
from citysplat.sfm.priors import PositionPriors


def merge_into(main, other) -> int:
    """Add the registered images (with their poses, keypoints and 3D points) of ``other`` to
    ``main``; both come from one database, so image and camera ids agree. Returns the number
    of images added."""
    import pycolmap

    added: set[int] = set()
    for camera_id, camera in other.cameras.items():
        if not main.exists_camera(camera_id):
            main.add_camera_with_trivial_rig(camera)
    for image_id, image in other.images.items():
        if not image.has_pose or main.exists_image(image_id):
            continue
        keypoints = np.array([p.xy for p in image.points2D], dtype=np.float64).reshape(-1, 2)
        new = pycolmap.Image(name=image.name, keypoints=keypoints, camera_id=image.camera_id,
                             image_id=image_id)
        try:
            main.add_image_with_trivial_frame(new, image.cam_from_world())
        except (RuntimeError, ValueError):  # e.g. a rig id that is not the camera id
            continue
        added.add(image_id)
    for point in other.points3D.values():
        elements = [el for el in point.track.elements if el.image_id in added]
        if len(elements) >= 2:
            main.add_point3D(point.xyz, pycolmap.Track(elements), point.color)
    return len(added)


def drop_misregistered(model, priors: PositionPriors, max_error_m: float) -> dict[str, float]:
    """Deregister the images of a georegistered ``model`` whose camera centre lies
    horizontally more than ``max(max_error_m, 5 sigma)`` from its position prior: a pose that
    far off is a wrong registration (a facade matched to its twin down the street), never GPS
    noise. Returns ``{name: horizontal distance}`` of those dropped."""
    dropped: dict[str, float] = {}
    for image in list(model.images.values()):
        prior = priors.positions.get(image.name)
        if not image.has_pose or prior is None:
            continue
        sigma = float(priors.sigma(image.name)[0])
        distance = float(np.linalg.norm(np.asarray(image.projection_center())[:2]
                                        - np.asarray(prior, dtype=np.float64)[:2]))
        if distance > max(max_error_m, 5.0 * sigma):
            model.deregister_frame(image.frame_id)
            dropped[image.name] = distance
    return dropped


@dataclass
class PlacedModel:
    """The model in ENU (when georeferenced), its georegistration (residuals and inliers of
    merged models included), one entry per model of mapping (``images``, ``georeferenced``,
    ``in_model``) and notes for the result."""

    model: Any
    georegistration: Georegistration
    components: list[dict[str, Any]] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)


def place_models(models: Sequence, priors: PositionPriors, options: SfmOptions | None = None,
                 seed: int = 0) -> PlacedModel:
    """Georegister ``models[0]`` (the largest) to ``priors``; merge each other model of at
    least ``options.min_merge_images`` images that georegisters on its own into it; drop the
    images registered far from their prior (:func:`drop_misregistered`). The models are
    changed in place: ``models[0]`` becomes the placed model."""
    options = options or SfmOptions()
    model = models[0]
    geo = priors.georegister(model, options, seed)
    placed = PlacedModel(model, geo, [{"images": model.num_reg_images(),
                                       "georeferenced": geo.georeferenced, "in_model": True}])
    if not geo.georeferenced:
        placed.messages.append(geo.message)
    for other in models[1:]:
        entry = {"images": other.num_reg_images(), "georeferenced": False, "in_model": False}
        placed.components.append(entry)
        if not (options.merge_models and geo.georeferenced):
            continue
        if other.num_reg_images() < options.min_merge_images:
            placed.messages.append(f"a separate model of {other.num_reg_images()} images left "
                                   f"out (fewer than {options.min_merge_images})")
            continue
        other_geo = priors.georegister(other, options, seed)
        entry["georeferenced"] = other_geo.georeferenced
        entry["gps_residual_median_m"] = other_geo.median_residual_m
        if not other_geo.georeferenced:
            placed.messages.append(f"a separate model of {other.num_reg_images()} images left "
                                   f"out: {other_geo.message}")
            continue
        added = merge_into(model, other)
        entry["in_model"] = added > 0
        if added:
            geo.residuals_m.update(other_geo.residuals_m)
            geo.inliers += other_geo.inliers
            placed.messages.append(
                f"{added} images of a separate model (no matches with the largest) placed by "
                f"their GPS alone: {other_geo.message}")
    if geo.georeferenced:
        dropped = drop_misregistered(model, priors, options.georegister_max_error_m)
        for name in dropped:
            geo.residuals_m.pop(name, None)
        if dropped:
            placed.messages.append(
                f"{len(dropped)} image(s) registered far from their position prior (more than "
                f"{options.georegister_max_error_m:g} m or 5 sigma) dropped as misregistered: "
                + ", ".join(f"{n} ({d:.0f} m)" for n, d in list(dropped.items())[:5]))
    return placed
