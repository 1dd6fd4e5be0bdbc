"""Structure from motion: pycolmap 4.x, georegistered into a local ENU frame.

The pipeline is a short orchestration of stage modules, each a function over typed records:

=============================  =================================================================
:mod:`.inputs`                 :class:`SfmInput`, the input errors, screening (:mod:`.quality`)
:mod:`.workdir`                the scratch folder: claimed, image links, what its database holds
:mod:`.features`               SIFT features, one COLMAP camera per distinct intrinsics
:mod:`.priors`                 position priors into the database; which cameras are held
:mod:`.matching`               the pairs to match (:func:`citysplat.pairs.select_pairs`),
                               matching with its cache, the match graph
:mod:`.mapping`                per-component mapping, incremental against GLOMAP, initial pair
:mod:`.refine`                 bundle adjustment, EXIF intrinsics refinement with a drift guard
:mod:`.georegister`            model -> ENU similarity
:mod:`.merge`                  the largest model georegistered, others merged, misregistered
                               images dropped
:mod:`.output`                 the model written atomically, metrics, :class:`SfmResult`
:mod:`.reconstruct`            ``reconstruct(inputs, work_dir, out)``: the stages in order
:mod:`.folder`                 ``reconstruct_folder``: bring your own photos
:mod:`.district`               ``reconstruct_district``: one district of the data root
=============================  =================================================================

plus :mod:`.intrinsics` (API / EXIF / guessed cameras), :mod:`.model_files` (a COLMAP model's
files checked before pycolmap reads them), :mod:`.known_poses` and :mod:`.plots`.

Functions are imported from their modules (``from citysplat.sfm.reconstruct import
reconstruct``): none is re-exported here under the name of a module. The records, errors and
settings are re-exported for convenience.
"""

from citysplat.sfm.georegister import Georegistration
from citysplat.sfm.inputs import NotEnoughImagesError, SfmInput, SfmInputError
from citysplat.sfm.intrinsics import CameraIntrinsics, UnsupportedCameraError, resolve_intrinsics
from citysplat.sfm.mapping import ReconstructionFailedError
from citysplat.sfm.model_files import SparseModelError, check_sparse_model, read_sparse_model
from citysplat.sfm.options import DEFAULT_MAPPER, MAPPERS, SfmOptions
from citysplat.sfm.output import SfmResult
from citysplat.sfm.quality import ImageCheck, ScreeningOptions, screen_images

__all__ = [
    "DEFAULT_MAPPER",
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
    "check_sparse_model",
    "read_sparse_model",
    "resolve_intrinsics",
    "screen_images",
]
