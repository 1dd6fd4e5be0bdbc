"""What a reconstruction leaves: the model written atomically, ``metrics.json``, and the
:class:`SfmResult` record.
"""

from __future__ import annotations

import json
import os
import shutil
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from citysplat.frames import LocalFrame
from citysplat.io import atomic_write_text, make_temp_dir
from citysplat.sfm.features import camera_groups
from citysplat.sfm.georegister import Georegistration
from citysplat.sfm.inputs import SfmInput
from citysplat.sfm.mapping import MappedModels
from citysplat.sfm.matching import ChosenPairs, Matches
from citysplat.sfm.merge import PlacedModel


def write_model_atomically(reconstruction, sparse_dir: Path) -> None:
    """Write the model as ``sparse_dir`` (COLMAP binary), replacing any model there only once
    the new one is complete; the folder gets ``mkdir``'s mode under the umask."""
    parent = sparse_dir.parent
    tmp = make_temp_dir(parent, f".{sparse_dir.name}.", ".tmp")
    old = None
    try:
        reconstruction.write_binary(tmp)
        if sparse_dir.exists():
            old = make_temp_dir(parent, f".{sparse_dir.name}.", ".old")
            os.replace(sparse_dir, old / sparse_dir.name)
        os.replace(tmp, sparse_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and not sparse_dir.exists():
            os.replace(old / sparse_dir.name, sparse_dir)  # put the last good model back
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def write_metrics(path: Path, metrics: dict[str, Any]) -> None:
    """``metrics`` as indented JSON at ``path`` (atomically; numpy numbers as floats)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(metrics, indent=2, default=float) + "\n")


def run_metrics(*, total_images: int, usable: Sequence[SfmInput], present: Sequence[SfmInput],
                unusable: dict[str, str], mapper: str, seed: int, chosen: ChosenPairs,
                matches: Matches, mapped: MappedModels) -> dict[str, Any]:
    """What a run did, model or not: images, cameras, pairs, mappers."""
    return {
        "total_images": total_images,
        "usable_images": len(present),
        "unusable": unusable,
        "mapper": mapper,
        "component_mappers": mapped.component_mappers,
        "seed": seed,
        "pairing": chosen.how,
        "pairs": len(chosen.pairs),
        "verified_pairs": matches.verified,
        "cameras": {f"{k[0]} {k[1]}x{k[2]}": {**g[0].camera.to_dict(), "images": len(g)}
                    for k, g in camera_groups(usable).items()},
    }


def prior_sources(inputs: Sequence[SfmInput]) -> dict[str, int]:
    """How many inputs have a prior of each source (``computed``, ``gps``, ``exif_gps``)."""
    return dict(sorted(Counter(i.prior_source for i in inputs if i.prior_source).items()))


def model_metrics(placed: PlacedModel) -> dict[str, Any]:
    """The figures of a placed model: points, reprojection error, track length and its
    georegistration."""
    model, geo = placed.model, placed.georegistration
    return {
        "components": placed.components,
        "points3D": int(model.num_points3D()),
        "mean_reprojection_error_px": float(model.compute_mean_reprojection_error()),
        "mean_track_length": float(model.compute_mean_track_length()),
        "georeferenced": geo.georeferenced,
        "gps_residual_median_m": geo.median_residual_m,
        "georegistration": geo.to_dict(),
    }


@dataclass
class SfmResult:
    """What :func:`citysplat.sfm.reconstruct.reconstruct` made. ``reconstruction`` is the
    georegistered pycolmap model (also on disk in ``sparse_dir``); ``metrics`` is what
    ``metrics.json`` (``metrics_path``) holds."""

    out_dir: Path
    sparse_dir: Path
    metrics_path: Path
    reconstruction: Any
    registered: list[str]
    unregistered: list[str]
    unusable: dict[str, str]
    total_images: int
    mapper: str
    georeferenced: bool
    georegistration: Georegistration
    mean_reprojection_error_px: float
    seconds: float
    timings: dict[str, float]
    messages: list[str]
    metrics: dict[str, Any]
    frame: LocalFrame | None = None

    @property
    def registered_images(self) -> int:
        return len(self.registered)

    @property
    def gps_residual_median_m(self) -> float | None:
        return self.georegistration.median_residual_m

    def poses(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Image name -> (R, t) world-to-camera (``x_cam = R X + t``), in the model's frame
        (ENU metres when georeferenced)."""
        out = {}
        for image in self.reconstruction.images.values():
            if image.has_pose:
                pose = image.cam_from_world()
                out[image.name] = (np.asarray(pose.rotation.matrix()),
                                   np.asarray(pose.translation))
        return out

    def camera_centers(self) -> dict[str, np.ndarray]:
        return {n: -R.T @ t for n, (R, t) in self.poses().items()}

    def save_metrics(self) -> None:
        """Rewrite ``metrics.json`` after ``metrics`` changed (a caller's additions)."""
        write_metrics(self.metrics_path, self.metrics)
