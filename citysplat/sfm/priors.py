"""What is known of the images before SfM: their positions and their cameras.

* :class:`PositionPriors`: the images' ENU positions and 1-sigma errors, written to the
  database as CARTESIAN ``pycolmap.PosePrior`` records with their covariance
  (:func:`write_pose_priors`; COLMAP's image reader writes the EXIF GPS as WGS84 priors: those
  are replaced), and the target of georegistration (:meth:`PositionPriors.georegister`);
* :class:`CameraRoles`: which cameras keep their intrinsics while mapping (API, given and EXIF
  intrinsics), which are refined (EXIF priors and guesses), and the EXIF focal lengths that
  guard the refinement (:func:`camera_roles`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import citysplat  # noqa: F401  (loads zlib before pycolmap)
from citysplat.positions import GPS_SIGMA_M
from citysplat.sfm.georegister import Georegistration, georegister
from citysplat.sfm.inputs import SfmInput
from citysplat.sfm.options import SfmOptions


@dataclass
class PositionPriors:
    """Image name -> prior position (ENU metres) and its 1-sigma error (horizontal,
    vertical; :data:`citysplat.positions.GPS_SIGMA_M` where an input gives none)."""

    positions: dict[str, tuple[float, float, float]] = field(default_factory=dict)
    sigmas: dict[str, tuple[float, float]] = field(default_factory=dict)

    @classmethod
    def of(cls, inputs: Sequence[SfmInput]) -> PositionPriors:
        return cls({item.name: item.prior_enu for item in inputs if item.prior_enu is not None},
                   {item.name: item.prior_sigma_m or GPS_SIGMA_M
                    for item in inputs if item.prior_enu is not None})

    def __len__(self) -> int:
        return len(self.positions)

    def sigma(self, name: str) -> tuple[float, float]:
        return self.sigmas.get(name) or GPS_SIGMA_M

    def georegister(self, reconstruction, options: SfmOptions, seed: int, *,
                    apply: bool = True) -> Georegistration:
        """:func:`citysplat.sfm.georegister.georegister` of ``reconstruction`` to these
        priors, with the options' inlier threshold and horizon prior; ``apply``: move the
        model into ENU (else only measure)."""
        return georegister(reconstruction, self.positions, sigmas=self.sigmas, apply=apply,
                           max_error_m=options.georegister_max_error_m, seed=seed,
                           upright=options.upright)


def write_pose_priors(database: Path, inputs: Sequence[SfmInput],
                      images: Mapping[str, Any]) -> int:
    """Replace the database's pose priors with the inputs' ENU positions (CARTESIAN, with the
    covariance of their sigmas); ``images``: the database's images by name. Returns how many
    were written."""
    import pycolmap

    by_name = {item.name: item for item in inputs}
    written = 0
    with pycolmap.Database.open(database) as db:
        db.clear_pose_priors()  # the reader's EXIF GPS priors (WGS84): ours replace them
        for name, image in images.items():
            item = by_name.get(name)
            if item is None or item.prior_enu is None:
                continue
            h, v = item.prior_sigma_m or GPS_SIGMA_M
            db.write_pose_prior(pycolmap.PosePrior(
                position=np.asarray(item.prior_enu, dtype=np.float64),
                position_covariance=np.diag([h * h, h * h, v * v]),
                coordinate_system=pycolmap.PosePriorCoordinateSystem.CARTESIAN,
                corr_data_id=image.data_id))
            written += 1
    return written


@dataclass
class CameraRoles:
    """COLMAP camera ids by what mapping may do with their intrinsics: ``held`` are kept
    while mapping (API, given and EXIF intrinsics), ``free`` are refined (EXIF priors after
    mapping, guesses throughout), ``prior_focal`` are the EXIF focal lengths (pixels) that
    guard that refinement; ``all_held``: every camera is held."""

    held: set[int] = field(default_factory=set)
    free: set[int] = field(default_factory=set)
    prior_focal: dict[int, float] = field(default_factory=dict)
    all_held: bool = False


def camera_roles(inputs: Sequence[SfmInput], images: Mapping[str, Any]) -> CameraRoles:
    """The roles of the cameras of ``inputs`` that are in the database (``images``: the
    database's images by name)."""
    roles = CameraRoles()
    present = [item for item in inputs if item.name in images]
    for item in present:
        camera_id = images[item.name].camera_id
        if item.camera.source != "default":
            roles.held.add(camera_id)
        if not item.camera.fixed:
            roles.free.add(camera_id)
        if item.camera.source == "exif":
            roles.prior_focal[camera_id] = item.camera.focal_px
    roles.all_held = all(item.camera.source != "default" for item in present)
    return roles
