"""Structure from motion of a district: pycolmap 4.x, georegistered into the district's ENU frame.

``reconstruct`` (a list of :class:`SfmInput`) and ``reconstruct_folder`` (your own photos) write
``sparse/`` (COLMAP binary, ENU metres), ``metrics.json`` and ``frame.json`` into a destination
folder and return an :class:`SfmResult`.

Modules: :mod:`.intrinsics` (API / EXIF / guessed cameras), :mod:`.quality` (unusable-image
screening), :mod:`.model_files` (a COLMAP model's files checked before pycolmap reads them:
:func:`check_sparse_model`, :func:`read_sparse_model`), :mod:`.reconstruct` (the pipeline),
:mod:`.georegister` (model -> ENU similarity; its function is
``citysplat.sfm.georegister.georegister``, not re-exported here so that the module name stays
the module).
"""

from citysplat.sfm.georegister import Georegistration
from citysplat.sfm.intrinsics import CameraIntrinsics, UnsupportedCameraError, resolve_intrinsics
from citysplat.sfm.model_files import SparseModelError, check_sparse_model, read_sparse_model
from citysplat.sfm.quality import ImageCheck, ScreeningOptions, screen_images
from citysplat.sfm.reconstruct import (
    MAPPERS,
    NotEnoughImagesError,
    ReconstructionFailedError,
    SfmInput,
    SfmInputError,
    SfmOptions,
    SfmResult,
    candidate_pairs,
    reconstruct,
    reconstruct_folder,
)

__all__ = [
    "MAPPERS",
    "CameraIntrinsics",
    "Georegistration",
    "ImageCheck",
    "NotEnoughImagesError",
    "ReconstructionFailedError",
    "ScreeningOptions",
    "SfmInput",
    "SfmInputError",
    "SfmOptions",
    "SfmResult",
    "SparseModelError",
    "UnsupportedCameraError",
    "candidate_pairs",
    "check_sparse_model",
    "reconstruct",
    "reconstruct_folder",
    "read_sparse_model",
    "resolve_intrinsics",
    "screen_images",
]
