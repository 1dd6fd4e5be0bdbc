"""The settings of one reconstruction (:class:`SfmOptions`): every stage reads its own part.

The defaults are the measured best (see tests/test_sfm.py and docs/BENCHMARKS.md); the pair
selection's settings are :class:`citysplat.pairs.PairConfig`, the same for a district and for
``reconstruct-folder``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from citysplat.pairs import PairConfig
from citysplat.sfm.georegister import DEFAULT_MAX_ERROR_M
from citysplat.sfm.quality import ScreeningOptions

MAPPERS = ("auto", "incremental", "global")
DEFAULT_MAPPER = "auto"


@dataclass
class SfmOptions:
    """Knobs of :func:`citysplat.sfm.reconstruct.reconstruct`, grouped by the stage that reads
    them."""

    # screening (inputs)
    screening: ScreeningOptions = field(default_factory=ScreeningOptions)
    # features
    max_num_features: int = 8192
    # SIFT's first octave: -1 upsamples the image 2x (COLMAP's default), 0 does not. None:
    # the rule of citysplat.sfm.features.first_octave, by camera: -1 up to 1600 px for the
    # refined cameras (EXIF priors, guesses: 4x the keypoints of 0 on 1024 px photos, which
    # the principal-point refinement needs), -1 under 1000 px and 0 above for calibrated
    # (API, given) cameras
    first_octave: int | None = None
    # matching: the pairs to match when the caller gives none
    pair_config: PairConfig = field(default_factory=PairConfig)
    # mapping
    component_min_inliers: int = 30  # match-graph edges that join images into one component
    initial_pair_candidates: int = 3  # incremental: initial pairs tried before COLMAP's own
    use_prior_position: bool = True  # incremental: position priors in bundle adjustment
    # refinement
    max_focal_change: float = 0.15  # EXIF focal refinement beyond this is undone
    # the refined cameras' principal points, in one more bundle adjustment with their focal and
    # distortion held (calibrated cameras keep theirs): a move of more than
    # max_principal_point_shift x the longer image side is undone (fountain-P11's true one is
    # 0.8 % off centre and is found; lund's forward-looking photos move it 5-6 %)
    refine_principal_point: bool = True
    max_principal_point_shift: float = 0.02
    # georegistration and merge
    georegister_max_error_m: float = DEFAULT_MAX_ERROR_M
    upright: bool = True  # level-horizon prior in georegistration (see georegister)
    merge_models: bool = True  # georegister separate models and merge them into the largest
    min_merge_images: int = 5
    # all stages
    num_threads: int = -1
    verbose: bool = False
