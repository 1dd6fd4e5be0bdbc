"""SIFT features of the usable images, in the work folder's COLMAP database.

Images are imported one camera per distinct intrinsics (:func:`camera_groups`: API calibration,
EXIF prior or a guess, :mod:`.intrinsics`), in input order, then features are extracted one call
per camera (``pycolmap.extract_features`` on the CPU). The database is kept and reused while
the images, their files, their cameras and the feature settings are unchanged
(:class:`citysplat.sfm.workdir.WorkState`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import citysplat  # noqa: F401  (loads zlib before pycolmap)
from citysplat.layout import SfmWorkLayout
from citysplat.sfm.inputs import SfmInput
from citysplat.sfm.intrinsics import CameraIntrinsics
from citysplat.sfm.options import SfmOptions
from citysplat.sfm.workdir import WorkState, file_identity, fingerprint

FEATURES_VERSION = 3
"""Part of the features' fingerprint: bump it when extraction changes (3: the first-octave
rule by camera)."""

UPSAMPLE_MAX_SIDE = 1600
"""Longer image side (pixels) up to which the images of refined cameras (EXIF priors,
guesses) are upsampled for SIFT (:func:`first_octave`)."""

UPSAMPLE_MAX_SIDE_HELD = 999
"""The same for calibrated cameras (API, given intrinsics): under 1000 px."""

FEATURE_FAILED = "feature extraction failed (COLMAP could not read the image)"


def camera_groups(inputs: Sequence[SfmInput]) -> dict[tuple, list[SfmInput]]:
    """The inputs by camera (:attr:`CameraIntrinsics.key`), in input order: one COLMAP camera
    each."""
    groups: dict[tuple, list[SfmInput]] = defaultdict(list)
    for item in inputs:
        groups[item.camera.key].append(item)
    return dict(groups)


def first_octave(setting: int | None, camera: CameraIntrinsics) -> int:
    """SIFT's first octave for ``camera``: the setting, else -1 (the image upsampled 2x,
    COLMAP's default) up to a longer side that depends on the camera, and 0 above.

    * Refined cameras (EXIF priors and guesses: bring-your-own photos): -1 up to
      :data:`UPSAMPLE_MAX_SIDE` (1600 px, about 1.9 Mpx at 4:3). Measured at 1024 px
      (docs/BENCHMARKS.md, reconstruct-folder against pycolmap): 8,953 keypoints per image
      against 1,960 with 0; 4.3x the 3D points on fountain-P11 and 3x on lund, a lower
      reprojection error (0.38 -> 0.23 px, 0.90 -> 0.71 px), less pose noise, and lund's
      incremental mapper registers 23 photos instead of none; the principal-point refinement
      (:mod:`.refine`) finds fountain-P11's true principal point only with these features. It
      costs 3-4x the time. Above 1600 px, upsampling costs 4x the pixels (a 12 Mpx phone
      photo would be 48 Mpx), while 0 alone gives more keypoints as the image grows (their
      count goes roughly with the area: about 2,000 at 1024 px, towards the 8,192 cap at
      2,000 px and more).
    * Calibrated cameras (Mapillary API, given intrinsics: the district pipeline): -1 under
      1000 px (the generated city's 640 px images lose half their accuracy without it) and 0
      from 1000 px (1024 px street images: 5x faster features and 7x faster matching with the
      same registration), as before: their intrinsics are held, so nothing needs the extra
      keypoints.
    """
    if setting is not None:
        return int(setting)
    limit = UPSAMPLE_MAX_SIDE_HELD if camera.fixed else UPSAMPLE_MAX_SIDE
    return -1 if max(camera.width, camera.height) <= limit else 0


@dataclass
class Features:
    """The features in a database: ``key`` fingerprints what they were made from,
    ``reused`` says that an earlier run's were kept, ``images`` are the database's images by
    name (``pycolmap.Image``: ``image_id``, ``camera_id``, ``data_id``)."""

    database: Path
    key: str
    reused: bool
    images: dict[str, Any]

    def present(self, inputs: Sequence[SfmInput]) -> list[SfmInput]:
        """The inputs that made it into the database, in input order."""
        return [item for item in inputs if item.name in self.images]

    def failed(self, inputs: Sequence[SfmInput]) -> dict[str, str]:
        """The inputs COLMAP could not read, with the reason."""
        return {item.name: FEATURE_FAILED for item in inputs if item.name not in self.images}


def features_key(inputs: Sequence[SfmInput], options: SfmOptions) -> str:
    """The fingerprint of the features of ``inputs`` under ``options``."""
    return fingerprint({
        "version": FEATURES_VERSION,
        "max_num_features": options.max_num_features,
        "first_octave": options.first_octave,
        "images": [(item.name, *file_identity(item.path), item.camera.key,
                    first_octave(options.first_octave, item.camera)) for item in inputs],
    })


def extract_features(inputs: Sequence[SfmInput], work: SfmWorkLayout, options: SfmOptions,
                     state: WorkState | None = None) -> Features:
    """SIFT features of ``inputs`` (each with a camera, linked under ``work.images_dir``) in
    ``work.database``; an earlier run's are reused when ``state`` says they were made from the
    same images, cameras and settings."""
    import pycolmap

    state = state if state is not None else WorkState.load(work)
    key = features_key(inputs, options)
    database = work.database
    reused = state.features == key and database.exists()
    if not reused:
        state.forget()
        for stale in (database, *(database.with_name(database.name + s)
                                  for s in ("-wal", "-shm"))):
            stale.unlink(missing_ok=True)
        groups = camera_groups(inputs)
        # images go into the database first, one camera per group, in input order: feature
        # extraction is multi-threaded and numbers images as they finish, and the mappers'
        # results depend on those numbers (the city district: 0.18 or 0.34 m median error
        # from the same images)
        pycolmap.Database.open(database).close()
        for members in groups.values():
            camera = members[0].camera
            pycolmap.import_images(
                database, work.images_dir, pycolmap.CameraMode.SINGLE,
                [m.name for m in members],
                pycolmap.ImageReaderOptions(camera_model=camera.model,
                                            camera_params=camera.params_csv))
        extraction = pycolmap.FeatureExtractionOptions()
        extraction.num_threads = options.num_threads
        extraction.use_gpu = False
        extraction.sift.max_num_features = options.max_num_features
        for members in groups.values():
            camera = members[0].camera
            extraction.sift.first_octave = first_octave(options.first_octave, camera)
            pycolmap.extract_features(
                database, work.images_dir, image_names=[m.name for m in members],
                camera_mode=pycolmap.CameraMode.SINGLE,
                reader_options=pycolmap.ImageReaderOptions(camera_model=camera.model,
                                                           camera_params=camera.params_csv),
                extraction_options=extraction, device=pycolmap.Device.cpu)
        state.features = key
        state.save()
    with pycolmap.Database.open(database) as db:
        images = {image.name: image for image in db.read_all_images()}
    return Features(database, key, reused, images)
