"""Structure from motion of one district with pycolmap 4.x, georegistered into its ENU frame.

``reconstruct(inputs, work_dir, out_dir)`` runs, on the CPU:

1. screening (:mod:`citysplat.sfm.quality`): corrupt, tiny, blurred and badly exposed images are
   left out and reported with their reasons, as are images the caller marked unusable (e.g.
   spherical panoramas);
2. SIFT features (``pycolmap.extract_features``), one call per distinct camera so every image
   gets its own intrinsics (API calibration, EXIF prior or a guess: :mod:`.intrinsics`);
3. pose priors: the images' ENU positions written to the database as CARTESIAN
   ``pycolmap.PosePrior`` records with their covariance (COLMAP's image reader writes the EXIF
   GPS as WGS84 priors: those are replaced);
4. matching of the given image pairs only (``pycolmap.match_image_pairs`` with an imported pair
   list); without pairs, sequential neighbours within each capture sequence plus spatial
   neighbours from the priors (never all pairs of a district: only small sets without priors
   are matched exhaustively). Features and matches stay in ``work_dir`` and are reused while
   the images, cameras and pairs are unchanged;
5. mapping, per connected component of the match graph (pairs with >= 30 inliers): the
   default ``"auto"`` runs ``incremental_mapping`` (from an initial pair chosen here, see
   :meth:`_MatchGraph.initial_pairs`) and, when that leaves images of the component out,
   ``global_mapping`` (GLOMAP) too, and keeps the model with more images consistent with their
   GPS. Incremental was the more accurate on the generated city (ENU centre error 0.18 m
   against GLOMAP's 0.32 m), GLOMAP the only one to register all of lund (29 against 0-24).
   Seeds are fixed; API intrinsics are held, EXIF priors are held while mapping and refined
   afterwards (with a drift guard), guesses are refined;
6. the largest model, georegistered (:mod:`.georegister`) to the priors: metres, ENU, up is up.
   Other models (images that matched each other but not the largest model) are georegistered on
   their own and merged in when their GPS pins them down;
7. ``out_dir/sparse/`` (COLMAP binary, written to a temporary folder and renamed into place),
   ``out_dir/metrics.json`` and, given a frame, ``out_dir/frame.json``.

pycolmap is imported lazily, after :mod:`citysplat` has loaded ``zlib`` (see its ``__init__``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
import shutil
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np

import citysplat  # noqa: F401  (loads zlib before pycolmap)
from citysplat.frames import LocalFrame
from citysplat.io import atomic_open, atomic_write_text, make_temp_dir
from citysplat.sfm.georegister import DEFAULT_MAX_ERROR_M, Georegistration, georegister
from citysplat.sfm.intrinsics import (
    CameraIntrinsics,
    UnsupportedCameraError,
    default_guess,
    from_exif,
)
from citysplat.sfm.intrinsics import from_entity as intrinsics_from_entity
from citysplat.sfm.quality import ScreeningOptions, screen_images

__all__ = [
    "MAPPERS",
    "NotEnoughImagesError",
    "ReconstructionFailedError",
    "SfmInput",
    "SfmInputError",
    "SfmOptions",
    "SfmResult",
    "candidate_pairs",
    "reconstruct",
    "reconstruct_folder",
]

MAPPERS = ("auto", "incremental", "global")
DEFAULT_MAPPER = "auto"


class SfmInputError(ValueError):
    """The inputs cannot be reconstructed as given; the message names the fix."""


class NotEnoughImagesError(SfmInputError):
    """Fewer than 3 usable images."""


class ReconstructionFailedError(RuntimeError):
    """The images were usable but SfM found no model (too few matches)."""


# --------------------------------------------------------------------------------------- inputs
@dataclass(frozen=True)
class SfmInput:
    """One image for SfM.

    ``name``: the image's name in the model (unique; ``/`` allowed, no whitespace);
    ``path``: where its pixels are (upright: EXIF orientation is not applied by COLMAP);
    ``camera``: intrinsics (None: a default guess from the file's size);
    ``prior_enu``: prior camera position in the district's ENU frame, metres (GPS);
    ``prior_sigma_m``: its 1-sigma error (horizontal, vertical), for the database's covariance;
    ``heading_deg``: compass heading, optional; ``sequence`` and ``order`` (capture time or
    index) drive the sequential pairing fallback; ``unusable``: a reason the caller already
    knows (reported, never reconstructed).
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

        The prior is Mapillary's ``computed_geometry``/``computed_altitude`` when present and
        ``use_computed`` (their SfM's positions: decimetres, against metres for raw GPS), else
        the raw ``geometry``/``altitude``. Spherical panoramas come back ``unusable``.
        """
        image_id = str(entity["id"])
        camera, unusable = None, None
        try:
            camera = intrinsics_from_entity(entity)
        except UnsupportedCameraError as exc:
            unusable = str(exc)
        geometry, altitude, source, sigma = None, None, None, None
        if use_computed and entity.get("computed_geometry"):
            geometry, altitude = entity["computed_geometry"], entity.get("computed_altitude")
            source, sigma = "computed", (1.0, 1.0)
        elif entity.get("geometry"):
            geometry, altitude = entity["geometry"], entity.get("altitude")
            source, sigma = "gps", (3.0, 5.0)
        prior = None
        if geometry and geometry.get("coordinates"):
            lon, lat = geometry["coordinates"][:2]
            alt = frame.alt0 if altitude is None else float(altitude)
            prior = tuple(float(v) for v in frame.to_enu(lon, lat, alt)[0])
        heading = entity.get("computed_compass_angle") if use_computed else None
        if heading is None:
            heading = entity.get("compass_angle")
        return cls(
            name=name or f"{image_id}.jpg", path=Path(path), camera=camera, prior_enu=prior,
            prior_sigma_m=sigma if prior else None, prior_source=source if prior else None,
            heading_deg=None if heading is None else float(heading),
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
            prior_enu=prior, prior_sigma_m=(3.0, 5.0) if prior else None,
            prior_source="exif_gps" if prior else None, heading_deg=record.heading_deg,
            sequence=None, order=order,
        )


@dataclass
class SfmOptions:
    """Knobs of :func:`reconstruct`; the defaults are the measured best (see tests/test_sfm.py)."""

    sequential_overlap: int = 8
    spatial_neighbors: int = 12
    spatial_max_distance_m: float = 40.0
    exhaustive_below: int = 40  # images without priors or sequences: match all pairs up to this
    max_num_features: int = 8192
    # SIFT's first octave: -1 upsamples the image 2x (COLMAP's default), 0 does not. None: -1
    # for images under 1000 px (the generated city's 640 px images lose half their accuracy
    # without it), 0 above (lund's 1024 px: 5x faster features, 7x faster matching, the same
    # registration; see tests/test_sfm.py)
    first_octave: int | None = None
    georegister_max_error_m: float = DEFAULT_MAX_ERROR_M
    max_focal_change: float = 0.15  # EXIF focal refinement beyond this is undone
    upright: bool = True  # level-horizon prior in georegistration (see georegister)
    merge_models: bool = True  # georegister separate models and merge them into the largest
    component_min_inliers: int = 30  # match-graph edges that join images into one component
    initial_pair_candidates: int = 3  # incremental: initial pairs tried before COLMAP's own
    use_prior_position: bool = True  # incremental: position priors in bundle adjustment
    min_merge_images: int = 5
    num_threads: int = -1
    screening: ScreeningOptions = field(default_factory=ScreeningOptions)
    verbose: bool = False


@dataclass
class SfmResult:
    """What :func:`reconstruct` made. ``reconstruction`` is the georegistered pycolmap model
    (also on disk in ``sparse_dir``); ``metrics`` is what ``metrics.json`` holds."""

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


# -------------------------------------------------------------------------------------- pairing
def _ordered_sequences(inputs: Sequence[SfmInput]) -> list[list[str]]:
    groups: dict[str | None, list[tuple[int, SfmInput]]] = defaultdict(list)
    for k, item in enumerate(inputs):
        groups[item.sequence].append((k, item))
    out = []
    for members in groups.values():
        members.sort(key=lambda m: (m[1].order if m[1].order is not None else math.inf, m[0]))
        out.append([m[1].name for m in members])
    return out


def candidate_pairs(inputs: Sequence[SfmInput], *, sequential_overlap: int = 8,
                    spatial_neighbors: int = 12, spatial_max_distance_m: float = 40.0,
                    exhaustive_below: int = 40) -> list[tuple[str, str]]:
    """Image pairs worth matching when the caller gives none (names, each pair once).

    Sequential: each image with the next ``sequential_overlap`` of its sequence (by ``order``,
    then input order; inputs without a sequence form one). Spatial: each image with up to
    ``spatial_neighbors`` nearest others within ``spatial_max_distance_m`` (horizontal, from the
    priors). A set without priors and of fewer than ``exhaustive_below`` images is matched
    exhaustively (it is small, and nothing else says which images overlap).
    """
    names = [item.name for item in inputs]
    pairs: set[tuple[str, str]] = set()

    def add(a: str, b: str) -> None:
        if a != b:
            pairs.add((a, b) if a < b else (b, a))

    with_prior = [item for item in inputs if item.prior_enu is not None]
    if not with_prior and len(inputs) < exhaustive_below:
        for a, b in combinations(names, 2):
            add(a, b)
        return sorted(pairs)
    for sequence in _ordered_sequences(inputs):
        for i, a in enumerate(sequence):
            for b in sequence[i + 1:i + 1 + sequential_overlap]:
                add(a, b)
    if len(with_prior) >= 2 and spatial_neighbors > 0:
        from scipy.spatial import cKDTree

        xy = np.array([item.prior_enu[:2] for item in with_prior], dtype=np.float64)
        tree = cKDTree(xy)
        k = min(spatial_neighbors + 1, len(with_prior))
        dist, idx = tree.query(xy, k=k, distance_upper_bound=spatial_max_distance_m)
        dist, idx = np.atleast_2d(dist), np.atleast_2d(idx)
        for i in range(len(with_prior)):
            for d, j in zip(dist[i], idx[i]):
                if np.isfinite(d) and j < len(with_prior):
                    add(with_prior[i].name, with_prior[j].name)
    return sorted(pairs)


# ------------------------------------------------------------------------------------- helpers
_SAFE_NAME = re.compile(r"\s")


@contextlib.contextmanager
def _colmap_logging(verbose: bool):
    import pycolmap

    previous = pycolmap.logging.minloglevel
    pycolmap.logging.minloglevel = 0 if verbose else 2  # 2: errors only
    try:
        yield
    finally:
        pycolmap.logging.minloglevel = previous


def _fit_camera(camera: CameraIntrinsics, width: int, height: int
                ) -> tuple[CameraIntrinsics | None, str | None]:
    """The camera for a file of ``width`` x ``height`` pixels: the same one, or rescaled when the
    file is a uniformly scaled copy (e.g. a 1024 px thumbnail of a 4000 px original)."""
    if (camera.width, camera.height) == (width, height):
        return camera, None
    sx, sy = width / camera.width, height / camera.height
    if abs(sx - sy) > 0.01 * max(sx, sy):
        return None, (f"size mismatch: file is {width}x{height}, camera is "
                      f"{camera.width}x{camera.height} (different aspect ratio)")
    s = (sx + sy) / 2
    params = list(camera.params)
    model = camera.model
    scaled = {"SIMPLE_RADIAL": 3, "RADIAL": 3, "RADIAL_FISHEYE": 3, "SIMPLE_PINHOLE": 3,
              "PINHOLE": 4, "OPENCV": 4}.get(model, 0)
    for k in range(scaled):
        params[k] *= s
    note = (camera.note + "; " if camera.note else "") + (
        f"rescaled from {camera.width}x{camera.height} to the file's {width}x{height}")
    return replace(camera, width=width, height=height, params=tuple(params), note=note), None


_WORK_MARKER = ".citysplat-sfm-work"


def _claim_work_dir(work_dir: Path) -> None:
    """Make ``work_dir`` ours (a marker file), refusing a folder that already holds other
    files: the work folder's images/, models/ and database are deleted and rewritten."""
    if work_dir.exists() and not (work_dir / _WORK_MARKER).exists() and any(work_dir.iterdir()):
        raise SfmInputError(
            f"work folder {work_dir} already holds files that are not SfM scratch "
            "(its images/, models/ and database.db are overwritten): pass an empty folder, "
            "or a new one")
    work_dir.mkdir(parents=True, exist_ok=True)
    (work_dir / _WORK_MARKER).touch()


def _link_images(items: Sequence[SfmInput], image_dir: Path) -> None:
    """Make ``image_dir/<name>`` point at each input's file (symlink, else copy)."""
    if image_dir.exists():
        shutil.rmtree(image_dir)
    image_dir.mkdir(parents=True)
    for item in items:
        target = image_dir / item.name
        target.parent.mkdir(parents=True, exist_ok=True)
        source = Path(item.path).resolve()
        try:
            os.symlink(source, target)
        except OSError:
            shutil.copyfile(source, target)


def _write_model_atomically(reconstruction, sparse_dir: Path) -> None:
    """Write the model as ``sparse_dir`` (COLMAP binary), replacing any model there only once
    the new one is complete; the folder gets ``mkdir``'s mode under the umask."""
    parent = sparse_dir.parent
    tmp = make_temp_dir(parent, f".{sparse_dir.name}.", ".tmp")
    old = None
    try:
        reconstruction.write_binary(tmp)
        if sparse_dir.exists():
            old = make_temp_dir(parent, f".{sparse_dir.name}.", ".old")
            os.replace(sparse_dir, old / "sparse")
        os.replace(tmp, sparse_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and not sparse_dir.exists():
            os.replace(old / "sparse", sparse_dir)  # put the last good model back
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def _mapping_options(mapper: str, seed: int, num_threads: int, held_ids: set[int],
                     all_held: bool):
    """Mapper options with fixed seeds; cameras in ``held_ids`` keep their intrinsics."""
    import pycolmap

    if mapper == "incremental":
        options = pycolmap.IncrementalPipelineOptions()
        options.random_seed = seed
        options.num_threads = num_threads
        options.mapper.random_seed = seed
        options.triangulation.random_seed = seed
        options.min_model_size = 3
        if all_held:
            options.ba_refine_focal_length = False
            options.ba_refine_extra_params = False
            options.mapper.abs_pose_refine_focal_length = False
            options.mapper.abs_pose_refine_extra_params = False
        elif held_ids:
            options.constant_cameras = set(held_ids)
            options.mapper.constant_cameras = set(held_ids)
        return options
    options = pycolmap.GlobalPipelineOptions()
    options.random_seed = seed
    options.num_threads = num_threads
    mapper_options = options.mapper
    mapper_options.random_seed = seed
    mapper_options.num_threads = num_threads
    mapper_options.rotation_averaging.random_seed = seed
    mapper_options.global_positioning.random_seed = seed
    mapper_options.global_positioning.use_gpu = False
    mapper_options.retriangulation.random_seed = seed
    ba = mapper_options.bundle_adjustment
    ba.ceres.use_gpu = False
    if held_ids:  # GLOMAP's switches are global: free cameras are refined afterwards
        ba.refine_focal_length = False
        ba.refine_extra_params = False
    return options


def _bundle_adjust(reconstruction, constant_camera_ids: Iterable[int]) -> None:
    """Global bundle adjustment (Cauchy loss) with the given cameras' intrinsics held."""
    import pycolmap

    config = pycolmap.BundleAdjustmentConfig()
    for image_id in reconstruction.reg_image_ids():
        config.add_image(image_id)
    for camera_id in constant_camera_ids:
        if reconstruction.exists_camera(camera_id):
            config.set_constant_cam_intrinsics(camera_id)
    config.fix_gauge(pycolmap.BundleAdjustmentGauge.TWO_CAMS_FROM_WORLD)
    options = pycolmap.BundleAdjustmentOptions()
    options.print_summary = False
    options.refine_principal_point = False
    options.ceres.loss_function_type = pycolmap.LossFunctionType.CAUCHY
    pycolmap.create_default_bundle_adjuster(options, config, reconstruction).solve()


def _refine_intrinsics(reconstruction, free_ids: set[int], prior_focal: Mapping[int, float],
                       max_focal_change: float):
    """Refine the intrinsics of ``free_ids`` (others held) after mapping; undo the refinement
    of a camera whose focal moves more than ``max_focal_change`` from its EXIF prior
    (``prior_focal``): on street sequences (forward motion) the focal length is weakly
    determined and drifts (lund: EXIF 996 px, the 35 mm equivalent of an iPhone 4S, refined to
    750 px with no better reprojection). Returns the model (``reconstruction`` or a refined
    copy of it) and messages for the result."""
    import pycolmap

    all_ids = set(reconstruction.cameras.keys())
    free = set(free_ids) & all_ids
    if not free:
        return reconstruction, []
    refined = pycolmap.Reconstruction(reconstruction)
    _bundle_adjust(refined, all_ids - free)
    drifted = []
    for camera_id in sorted(free & set(prior_focal)):
        focal = float(refined.cameras[camera_id].mean_focal_length())
        change = focal / prior_focal[camera_id] - 1.0
        if not math.isfinite(change) or abs(change) > max_focal_change:
            drifted.append((camera_id, focal, change))
    if not drifted:
        return refined, []
    keep = {camera_id for camera_id, _, _ in drifted}
    def which(camera_id: int) -> str:
        camera = reconstruction.cameras[camera_id]
        count = sum(1 for im in reconstruction.images.values() if im.camera_id == camera_id)
        return f"camera {camera_id} ({camera.width}x{camera.height}, {count} images)"

    messages = [f"{which(camera_id)}: EXIF focal {prior_focal[camera_id]:.0f} px kept; "
                f"refinement moved it to {focal:.0f} px ({change:+.0%}), more than "
                f"{max_focal_change:.0%} (forward motion leaves the focal weakly determined)"
                for camera_id, focal, change in drifted]
    if free - keep:
        _bundle_adjust(reconstruction, all_ids - (free - keep))
    return reconstruction, messages


_CALIBRATED, _UNCALIBRATED = 2, 3  # pycolmap.TwoViewGeometryConfiguration values


@dataclass
class _MatchGraph:
    """The verified image pairs of a database: ids, names, cameras, inlier matches."""

    database_path: Path
    names: dict[int, str]
    camera_ids: dict[int, int]
    cameras: dict[int, Any]
    edges: list[tuple[int, int, int, int]]  # (image_id1, image_id2, inliers, config)
    matches: dict[tuple[int, int], np.ndarray]

    @classmethod
    def read(cls, database_path: Path) -> _MatchGraph:
        import pycolmap

        with pycolmap.Database.open(database_path) as db:
            images = db.read_all_images()
            cameras = {camera.camera_id: camera for camera in db.read_all_cameras()}
            pair_ids, geometries = db.read_two_view_geometries()
        edges, matches = [], {}
        for pair_id, geometry in zip(pair_ids, geometries):
            a, b = pycolmap.pair_id_to_image_pair(pair_id)
            inliers = np.asarray(geometry.inlier_matches).reshape(-1, 2)
            if len(inliers):
                edges.append((int(a), int(b), len(inliers), int(geometry.config)))
                matches[(int(a), int(b))] = inliers
        return cls(Path(database_path), {i.image_id: i.name for i in images},
                   {i.image_id: i.camera_id for i in images}, cameras, edges, matches)

    def components(self, min_inliers: int) -> list[list[int]]:
        """Connected components (image ids, largest first) over pairs with >= min_inliers."""
        parent = {i: i for i in self.names}

        def find(i: int) -> int:
            while parent[i] != i:
                parent[i] = parent[parent[i]]
                i = parent[i]
            return i

        for a, b, inliers, _ in self.edges:
            if inliers >= min_inliers and a in parent and b in parent:
                parent[find(a)] = find(b)
        groups: dict[int, list[int]] = defaultdict(list)
        for i in self.names:
            groups[find(i)].append(i)
        return sorted((sorted(g) for g in groups.values()), key=len, reverse=True)

    def initial_pairs(self, component: Sequence[int], count: int, min_inliers: int = 100,
                      angles_deg: Sequence[float] = (16.0, 8.0, 4.0),
                      max_pairs: int = 400) -> list[tuple[int, int, float]]:
        """Initial pairs ``(image_id1, image_id2, parallax_deg)`` for the incremental mapper,
        best first.

        COLMAP picks its own by re-estimating each candidate's geometry, and accepts pairs that
        a homography explains (the ground and facades of a street are planes) with the
        triangulation angle of a homography decomposition: on the generated city's walking
        sequence that gave 30-50 degrees between neighbours 2.5 m apart (truly 1-2), and a
        model bent through 90 degrees. Here only pairs that verification explained by epipolar
        geometry (CALIBRATED or UNCALIBRATED, not planar) count, with the median triangulation
        angle of their essential matrix; the pairs with the most inliers among those of at
        least 16 degrees come first, then 8, then 4 (a walk's images are 2-3 m apart: pairs
        10 m apart make good starts).
        """
        import pycolmap

        members = set(component)
        candidates = sorted(((a, b, n) for a, b, n, config in self.edges
                             if config in (_CALIBRATED, _UNCALIBRATED) and n >= min_inliers
                             and a in members and b in members),
                            key=lambda e: (-e[2], e[0], e[1]))[:max_pairs]
        if not candidates or count <= 0:
            return []
        keypoints: dict[int, np.ndarray] = {}
        scored: list[tuple[int, int, int, float]] = []
        with pycolmap.Database.open(self.database_path) as db:
            for a, b, n in candidates:
                for i in (a, b):
                    if i not in keypoints:
                        keypoints[i] = np.asarray(db.read_keypoints(i))[:, :2].astype(
                            np.float64)
                inliers = self.matches[(a, b)]
                geometry = db.read_two_view_geometry(a, b)
                camera1 = self.cameras[self.camera_ids[a]]
                camera2 = self.cameras[self.camera_ids[b]]
                if geometry.E is not None:
                    E = np.asarray(geometry.E)
                elif geometry.F is not None:
                    E = (np.asarray(camera2.calibration_matrix()).T @ np.asarray(geometry.F)
                         @ np.asarray(camera1.calibration_matrix()))
                else:
                    continue
                found = _parallax_from_essential(E, camera1, keypoints[a][inliers[:, 0]],
                                                 camera2, keypoints[b][inliers[:, 1]])
                if found is not None and found[1] < 0.95:
                    scored.append((n, a, b, round(found[0], 1)))
        chosen: list[tuple[int, int, float]] = []
        upper = np.inf
        for angle in angles_deg:
            band = [(n, a, b, t) for n, a, b, t in scored if angle <= t < upper]
            chosen += [(a, b, t) for _, a, b, t in sorted(band, key=lambda e: (-e[0], e[1:]))]
            upper = angle
        return chosen[:count]


def _parallax_from_essential(E, camera1, points1, camera2, points2
                             ) -> tuple[float, float] | None:
    """(median parallax in degrees, |forward component| of the baseline) of a pair from its
    essential matrix.

    The parallax is the median angle between matched rays once the rotation is taken out,
    i.e. the pair's triangulation angle. Of the two rotations an essential matrix allows, the
    one with the smaller parallax is taken: with forward motion and distant points COLMAP's
    cheirality test flips between them from run to run (the other gave 60+ degrees where the
    truth was 5), so it is not used. Pure numpy on the stored geometry: the same every run.
    """
    U, _, Vt = np.linalg.svd(np.asarray(E, dtype=np.float64))
    if np.linalg.det(U) < 0:
        U = -U
    if np.linalg.det(Vt) < 0:
        Vt = -Vt
    W = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    rays1 = np.column_stack([camera1.cam_from_img(points1), np.ones(len(points1))])
    rays2 = np.column_stack([camera2.cam_from_img(points2), np.ones(len(points2))])
    if not len(rays1):
        return None
    rays1 /= np.linalg.norm(rays1, axis=1, keepdims=True)
    rays2 /= np.linalg.norm(rays2, axis=1, keepdims=True)
    best = None
    for R in (U @ W @ Vt, U @ W.T @ Vt):  # cam2_from_cam1 rotations
        in_cam1 = rays2 @ R  # R^T r2
        cosine = np.clip(np.sum(rays1 * in_cam1, axis=1), -1.0, 1.0)
        parallax = float(np.median(np.degrees(np.arccos(cosine))))
        best = parallax if best is None else min(best, parallax)
    return best, float(abs(U[2, 2]))


def _incremental_with_initial_pair(database_path: Path, image_dir: Path, out_dir: Path,
                                   options, initial_pairs: Sequence[tuple[int, int, float]]
                                   ) -> list:
    """Incremental mapping from the first initial pair that yields a model covering at least
    half of ``options.image_names``; COLMAP's own choice when none does. COLMAP checks a given
    pair against ``init_min_tri_angle`` (16 degrees) too: for ours it is lowered to half the
    pair's measured parallax."""
    import pycolmap

    wanted = max(3, len(options.image_names) // 2)
    best: list = []
    for k, (a, b, parallax) in enumerate(initial_pairs):
        trial = pycolmap.IncrementalPipelineOptions(options.todict())
        trial.image_names = list(options.image_names)
        trial.constant_cameras = set(options.constant_cameras)
        trial.mapper.constant_cameras = set(options.mapper.constant_cameras)
        trial.init_image_id1, trial.init_image_id2 = int(a), int(b)
        trial.mapper.init_min_tri_angle = min(options.mapper.init_min_tri_angle,
                                              max(2.0, 0.5 * parallax))
        trial_dir = out_dir / f"init{k}"
        trial_dir.mkdir()
        found = [m for m in (pycolmap.incremental_mapping(database_path, image_dir, trial_dir,
                                                          trial) or {}).values()
                 if m.num_reg_images() > 0]
        if sum(m.num_reg_images() for m in found) > sum(m.num_reg_images() for m in best):
            best = found
        if best and max(m.num_reg_images() for m in best) >= wanted:
            return best
    found = [m for m in (pycolmap.incremental_mapping(database_path, image_dir, out_dir,
                                                      options) or {}).values()
             if m.num_reg_images() > 0]
    total = sum(m.num_reg_images() for m in found)
    return found if total >= sum(m.num_reg_images() for m in best) else best


def _drop_misregistered(model, priors: Mapping[str, Any], sigmas: Mapping[str, Any],
                        max_error_m: float) -> dict[str, float]:
    """Deregister the images of a georegistered ``model`` whose camera centre lies
    horizontally more than ``max(max_error_m, 5 sigma)`` from its position prior: a pose that
    far off is a wrong registration (a facade matched to its twin down the street), never GPS
    noise. Returns ``{name: horizontal distance}`` of those dropped."""
    dropped: dict[str, float] = {}
    for image in list(model.images.values()):
        prior = priors.get(image.name)
        if not image.has_pose or prior is None:
            continue
        sigma = float((sigmas.get(image.name) or (3.0, 5.0))[0])
        distance = float(np.linalg.norm(np.asarray(image.projection_center())[:2]
                                        - np.asarray(prior, dtype=np.float64)[:2]))
        if distance > max(max_error_m, 5.0 * sigma):
            model.deregister_frame(image.frame_id)
            dropped[image.name] = distance
    return dropped


def _merge_into(main, other) -> int:
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


def _first_octave(setting: int | None, camera: CameraIntrinsics) -> int:
    if setting is not None:
        return int(setting)
    return -1 if max(camera.width, camera.height) < 1000 else 0


def _fingerprint(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


def _file_identity(path: Path) -> tuple[str, int, int]:
    stat = Path(path).stat()
    return str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns


# ----------------------------------------------------------------------------------------- main
def reconstruct(inputs: Sequence[SfmInput], work_dir: str | Path, out_dir: str | Path, *,
                pairs: Iterable[tuple[str, str]] | None = None, mapper: str = DEFAULT_MAPPER,
                seed: int = 0, options: SfmOptions | None = None,
                frame: LocalFrame | None = None) -> SfmResult:
    """Reconstruct ``inputs`` into ``out_dir/sparse`` (ENU metres when >= 3 images have priors).

    ``pairs``: the image pairs to match (names); None -> sequential + spatial candidates
    (:func:`candidate_pairs`). ``mapper``: ``"auto"`` (incremental, and GLOMAP where
    incremental leaves images out; the better model per component), ``"incremental"`` or
    ``"global"`` (GLOMAP). ``seed`` fixes every RANSAC and mapper seed.
    ``work_dir`` holds the database and image links (scratch: may be deleted afterwards).
    ``frame``: the ENU frame of the priors, saved as ``out_dir/frame.json`` when given.

    Raises :class:`SfmInputError` (a ``ValueError``) for unusable input as a whole: duplicate
    names, fewer than 3 usable images (:class:`NotEnoughImagesError`), an unknown mapper; and
    :class:`ReconstructionFailedError` when no model comes out (``metrics.json`` still says
    what happened).
    """
    import pycolmap

    started = time.perf_counter()
    options = options or SfmOptions()
    if mapper not in MAPPERS:
        raise SfmInputError(f"unknown mapper {mapper!r}: use one of {', '.join(MAPPERS)}")
    inputs = list(inputs)
    work_dir, out_dir = Path(work_dir), Path(out_dir)
    names = [item.name for item in inputs]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise SfmInputError(f"image names must be unique; repeated: {', '.join(duplicates[:5])}"
                            " (name images by their id, e.g. '<id>.jpg')")
    bad_names = [n for n in names
                 if _SAFE_NAME.search(n) or n.startswith("/") or ".." in Path(n).parts]
    if bad_names:
        raise SfmInputError(f"image names must be relative and free of whitespace (COLMAP's "
                            f"pair lists split on spaces): {bad_names[0]!r}; rename the image")
    timings: dict[str, float] = {}
    messages: list[str] = []

    # 1. screening ---------------------------------------------------------------------------
    t0 = time.perf_counter()
    unusable: dict[str, str] = {item.name: item.unusable for item in inputs if item.unusable}
    candidates = [item for item in inputs if not item.unusable]
    checks = screen_images({item.name: item.path for item in candidates}, options.screening)
    usable: list[SfmInput] = []
    for item in candidates:
        check = checks[item.name]
        if not check.ok:
            unusable[item.name] = check.reason
            continue
        camera = item.camera or default_guess(check.width, check.height)
        camera, problem = _fit_camera(camera, check.width, check.height)
        if problem:
            unusable[item.name] = problem
            continue
        usable.append(replace(item, camera=camera))
    timings["screening"] = time.perf_counter() - t0
    if len(usable) < 3:
        shown = "; ".join(f"{n}: {r}" for n, r in list(unusable.items())[:3])
        raise NotEnoughImagesError(
            f"{len(usable)} usable image(s) of {len(inputs)}, SfM needs at least 3"
            + (f" (unusable: {shown})" if shown else "")
            + ": add more photos that overlap (of the same place, from a few metres apart)")
    guessed = [item.name for item in usable if item.camera.source == "default"]
    if guessed:
        messages.append(f"{len(guessed)} image(s) without calibration or EXIF focal length: "
                        f"{usable[[i.name for i in usable].index(guessed[0])].camera.note}")

    _claim_work_dir(work_dir)
    image_dir = work_dir / "images"
    database_path = work_dir / "database.db"
    _link_images(usable, image_dir)
    by_name = {item.name: item for item in usable}
    # features and matches are kept in work_dir and reused while their inputs are unchanged
    # (a re-run with another mapper, other priors or after a crash in mapping)
    state_path = work_dir / "state.json"
    try:
        state = json.loads(state_path.read_text())
    except (OSError, ValueError):
        state = {}
    features_key = _fingerprint({
        "version": 2,
        "max_num_features": options.max_num_features,
        "first_octave": options.first_octave,
        "images": [(item.name, *_file_identity(item.path), item.camera.key) for item in usable],
    })
    reuse_features = state.get("features") == features_key and database_path.exists()

    with _colmap_logging(options.verbose):
        pycolmap.set_random_seed(seed)
        # 2. features, one camera per distinct intrinsics ------------------------------------
        t0 = time.perf_counter()
        groups: dict[tuple, list[SfmInput]] = defaultdict(list)
        for item in usable:
            groups[item.camera.key].append(item)
        if not reuse_features:
            state = {}
            state_path.unlink(missing_ok=True)
            for stale in ("database.db", "database.db-wal", "database.db-shm"):
                (work_dir / stale).unlink(missing_ok=True)
            # images go into the database first, one camera per group, in input order: feature
            # extraction is multi-threaded and numbers images as they finish, and the mappers'
            # results depend on those numbers (the city district: 0.18 or 0.34 m median error
            # from the same images)
            pycolmap.Database.open(database_path).close()
            for members in groups.values():
                camera = members[0].camera
                pycolmap.import_images(
                    database_path, image_dir, pycolmap.CameraMode.SINGLE,
                    [m.name for m in members],
                    pycolmap.ImageReaderOptions(camera_model=camera.model,
                                                camera_params=camera.params_csv))
            extraction = pycolmap.FeatureExtractionOptions()
            extraction.num_threads = options.num_threads
            extraction.use_gpu = False
            extraction.sift.max_num_features = options.max_num_features
            for members in groups.values():
                camera = members[0].camera
                extraction.sift.first_octave = _first_octave(options.first_octave, camera)
                pycolmap.extract_features(
                    database_path, image_dir, image_names=[m.name for m in members],
                    camera_mode=pycolmap.CameraMode.SINGLE,
                    reader_options=pycolmap.ImageReaderOptions(camera_model=camera.model,
                                                               camera_params=camera.params_csv),
                    extraction_options=extraction, device=pycolmap.Device.cpu)
            state["features"] = features_key
            atomic_write_text(state_path, json.dumps(state) + "\n")
        timings["features"] = time.perf_counter() - t0

        # 3. pose priors in ENU -------------------------------------------------------------
        held_ids: set[int] = set()  # intrinsics kept during mapping (API, given, EXIF)
        free_ids: set[int] = set()  # refined (EXIF priors, guesses)
        prior_focal: dict[int, float] = {}  # EXIF priors: drift guard
        with pycolmap.Database.open(database_path) as db:
            db_images = {image.name: image for image in db.read_all_images()}
            db.clear_pose_priors()  # the reader's EXIF GPS priors (WGS84): ours replace them
            for name, image in db_images.items():
                item = by_name[name]
                if item.camera.source != "default":
                    held_ids.add(image.camera_id)
                if not item.camera.fixed:
                    free_ids.add(image.camera_id)
                if item.camera.source == "exif":
                    prior_focal[image.camera_id] = item.camera.focal_px
                if item.prior_enu is None:
                    continue
                h, v = item.prior_sigma_m or (3.0, 5.0)
                db.write_pose_prior(pycolmap.PosePrior(
                    position=np.asarray(item.prior_enu, dtype=np.float64),
                    position_covariance=np.diag([h * h, h * h, v * v]),
                    coordinate_system=pycolmap.PosePriorCoordinateSystem.CARTESIAN,
                    corr_data_id=image.data_id))
        missing = sorted(set(by_name) - set(db_images))
        for name in missing:
            unusable[name] = "feature extraction failed (COLMAP could not read the image)"

        # 4. matching -----------------------------------------------------------------------
        t0 = time.perf_counter()
        present = [by_name[n] for n in by_name if n in db_images]
        if pairs is None:
            pair_list = candidate_pairs(
                present, sequential_overlap=options.sequential_overlap,
                spatial_neighbors=options.spatial_neighbors,
                spatial_max_distance_m=options.spatial_max_distance_m,
                exhaustive_below=options.exhaustive_below)
            pairing = "sequential+spatial" if any(i.prior_enu for i in present) else (
                "exhaustive" if len(present) < options.exhaustive_below else "sequential")
        else:
            seen: set[tuple[str, str]] = set()
            for a, b in pairs:
                if a in db_images and b in db_images and a != b:
                    seen.add((a, b) if a < b else (b, a))
            pair_list, pairing = sorted(seen), "given"
        pairs_path = work_dir / "pairs.txt"
        matches_key = _fingerprint({"features": features_key, "pairs": pair_list, "seed": seed})
        if state.get("matches") != matches_key:
            if reuse_features:
                with pycolmap.Database.open(database_path) as db:
                    db.clear_matches()
                    db.clear_two_view_geometries()
            pairs_path.write_text("".join(f"{a} {b}\n" for a, b in pair_list))
            verification = pycolmap.TwoViewGeometryOptions()
            verification.ransac.random_seed = seed
            matching = pycolmap.FeatureMatchingOptions()
            matching.num_threads = options.num_threads
            matching.use_gpu = False
            if pair_list:
                pycolmap.match_image_pairs(
                    database_path, matching_options=matching,
                    pairing_options=pycolmap.ImportedPairingOptions(
                        match_list_path=str(pairs_path)),
                    verification_options=verification, device=pycolmap.Device.cpu)
            state["matches"] = matches_key
            atomic_write_text(state_path, json.dumps(state) + "\n")
        with pycolmap.Database.open(database_path) as db:
            verified_pairs = db.num_verified_image_pairs()
        timings["matching"] = time.perf_counter() - t0

        # 5. mapping, per connected component of the match graph ----------------------------
        t0 = time.perf_counter()
        all_held = all(item.camera.source != "default" for item in present)
        models_dir = work_dir / "models"
        shutil.rmtree(models_dir, ignore_errors=True)
        models_dir.mkdir(parents=True)
        graph = _MatchGraph.read(database_path)
        components = graph.components(options.component_min_inliers)
        priors_all = {item.name: item.prior_enu for item in present if item.prior_enu is not None}
        sigmas_all = {item.name: item.prior_sigma_m for item in present if item.prior_sigma_m}

        def score(reconstruction) -> tuple[int, int]:
            """(images consistent with their GPS, registered images): the better model wins."""
            check = georegister(reconstruction, priors_all, sigmas=sigmas_all, apply=False,
                                max_error_m=options.georegister_max_error_m, seed=seed,
                                upright=options.upright)
            return (len(check.inliers) if check.georeferenced else 0,
                    reconstruction.num_reg_images())

        models: list = []
        component_mappers: list[str] = []
        for k, component in enumerate(components):
            if len(component) < 3:
                continue
            names_k = [graph.names[i] for i in component]
            tried: dict[str, list] = {}
            order = ["incremental", "global"] if mapper == "auto" else [mapper]
            with_priors = sum(1 for n in names_k if n in priors_all)
            for which in order:
                run_options = _mapping_options(which, seed, options.num_threads, held_ids,
                                               all_held)
                run_options.image_names = names_k
                if which == "incremental" and options.use_prior_position and with_priors >= 3:
                    # bundle adjustment with the position priors (robust loss: GPS outliers):
                    # keeps a street from bending where the mapper registers a turn badly (the
                    # city district in one image order: 0.34 m without, 0.17 m with)
                    run_options.use_prior_position = True
                    run_options.use_robust_loss_on_prior_position = True
                out_k = models_dir / f"{k}-{which}"
                out_k.mkdir()
                if which == "global":
                    found = pycolmap.global_mapping(database_path, image_dir, out_k,
                                                    run_options)
                    tried[which] = [m for m in (found or {}).values()
                                    if m.num_reg_images() > 0]
                else:
                    tried[which] = _incremental_with_initial_pair(
                        database_path, image_dir, out_k, run_options,
                        graph.initial_pairs(component, options.initial_pair_candidates))
                # images, not models: a failing incremental run can return the same few
                # images as dozens of tiny models
                registered_k = len({i for m in tried[which] for i in m.reg_image_ids()})
                if mapper == "auto" and registered_k >= len(component):
                    break  # incremental registered the whole component: no need for global
            best = max(tried, key=lambda w: max((score(m) for m in tried[w]), default=(0, 0)))
            models += tried[best]
            component_mappers.append(best)
        models = sorted((m for m in models if m.num_reg_images() > 0),
                        key=lambda m: m.num_reg_images(), reverse=True)
        model = models[0] if models else None
        if model is not None and held_ids and free_ids:
            refined, notes = _refine_intrinsics(model, free_ids, prior_focal,
                                                options.max_focal_change)
            models[0] = model = refined
            messages += notes
        timings["mapping"] = time.perf_counter() - t0

    base_metrics: dict[str, Any] = {
        "total_images": len(inputs),
        "usable_images": len(present),
        "unusable": unusable,
        "mapper": mapper,
        "component_mappers": component_mappers,
        "seed": seed,
        "pairing": pairing,
        "pairs": len(pair_list),
        "verified_pairs": int(verified_pairs),
        "cameras": {f"{k[0]} {k[1]}x{k[2]}": {**g[0].camera.to_dict(), "images": len(g)}
                    for k, g in groups.items()},
    }
    if model is None:
        timings["total"] = time.perf_counter() - started
        metrics = {**base_metrics, "registered_images": 0, "georeferenced": False,
                   "seconds": timings["total"], "timings": timings,
                   "error": f"no model: {verified_pairs} verified image pairs of "
                            f"{len(pair_list)} matched"}
        out_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out_dir / "metrics.json", json.dumps(metrics, indent=2) + "\n")
        raise ReconstructionFailedError(
            f"SfM found no model in {len(present)} usable images ({verified_pairs} of "
            f"{len(pair_list)} image pairs matched): the images may not overlap, or the pairs "
            "given do not connect them")

    # 6. georegistration --------------------------------------------------------------------
    t0 = time.perf_counter()
    priors, sigmas = priors_all, sigmas_all

    def register(reconstruction) -> Georegistration:
        return georegister(reconstruction, priors, sigmas=sigmas,
                           max_error_m=options.georegister_max_error_m, seed=seed,
                           upright=options.upright)

    geo = register(model)
    components = [{"images": model.num_reg_images(), "georeferenced": geo.georeferenced,
                   "in_model": True}]  # from here on: the models, not the match graph's
    if not geo.georeferenced:
        messages.append(geo.message)
    # other models (images that matched each other but not the largest model): georegistered
    # on their own and merged into the largest in ENU, with a note. They share no points with
    # it, so their place is as good as their GPS (a few decimetres with Mapillary's computed
    # positions, metres with raw GPS)
    for other in models[1:]:
        entry = {"images": other.num_reg_images(), "georeferenced": False, "in_model": False}
        components.append(entry)
        if not (options.merge_models and geo.georeferenced):
            continue
        if other.num_reg_images() < options.min_merge_images:
            messages.append(f"a separate model of {other.num_reg_images()} images left out "
                            f"(fewer than {options.min_merge_images})")
            continue
        other_geo = register(other)
        entry["georeferenced"] = other_geo.georeferenced
        entry["gps_residual_median_m"] = other_geo.median_residual_m
        if not other_geo.georeferenced:
            messages.append(f"a separate model of {other.num_reg_images()} images left out: "
                            f"{other_geo.message}")
            continue
        added = _merge_into(model, other)
        entry["in_model"] = added > 0
        if added:
            geo.residuals_m.update({n: r for n, r in other_geo.residuals_m.items()})
            geo.inliers += other_geo.inliers
            messages.append(
                f"{added} images of a separate model (no matches with the largest) placed by "
                f"their GPS alone: {other_geo.message}")
    if geo.georeferenced:
        dropped = _drop_misregistered(model, priors, sigmas, options.georegister_max_error_m)
        for name in dropped:
            geo.residuals_m.pop(name, None)
        if dropped:
            messages.append(
                f"{len(dropped)} image(s) registered far from their position prior (more than "
                f"{options.georegister_max_error_m:g} m or 5 sigma) dropped as misregistered: "
                + ", ".join(f"{n} ({d:.0f} m)" for n, d in list(dropped.items())[:5]))
    timings["georegistration"] = time.perf_counter() - t0

    registered = sorted(image.name for image in model.images.values() if image.has_pose)
    unregistered = sorted(set(n for n in by_name if n in db_images) - set(registered))
    t0 = time.perf_counter()
    sparse_dir = out_dir / "sparse"
    _write_model_atomically(model, sparse_dir)
    if frame is not None:
        frame.save(out_dir / "frame.json")
    timings["write"] = time.perf_counter() - t0
    timings["total"] = time.perf_counter() - started
    reprojection = float(model.compute_mean_reprojection_error())
    metrics = {
        **base_metrics,
        "registered_images": len(registered),
        "unregistered": unregistered,
        "models": len(models),
        "components": components,
        "points3D": int(model.num_points3D()),
        "mean_reprojection_error_px": reprojection,
        "mean_track_length": float(model.compute_mean_track_length()),
        "georeferenced": geo.georeferenced,
        "gps_residual_median_m": geo.median_residual_m,
        "georegistration": geo.to_dict(),
        "prior_sources": dict(sorted(
            {s: sum(1 for i in present if i.prior_source == s)
             for s in {i.prior_source for i in present if i.prior_source}}.items())),
        "seconds": timings["total"],
        "timings": timings,
        "messages": messages,
    }
    metrics_path = out_dir / "metrics.json"
    atomic_write_text(metrics_path, json.dumps(metrics, indent=2, default=float) + "\n")
    return SfmResult(
        out_dir=out_dir, sparse_dir=sparse_dir, metrics_path=metrics_path, reconstruction=model,
        registered=registered, unregistered=unregistered, unusable=unusable,
        total_images=len(inputs), mapper=mapper, georeferenced=geo.georeferenced,
        georegistration=geo, mean_reprojection_error_px=reprojection,
        seconds=timings["total"], timings=timings, messages=messages, metrics=metrics,
        frame=frame,
    )



# ---------------------------------------------------------------------- bring your own photos
def _safe_names(names: Sequence[str]) -> dict[str, str]:
    """Photo name -> a name COLMAP can list in a pair file (whitespace -> '_'), unique."""
    out: dict[str, str] = {}
    taken: set[str] = set()
    for name in names:
        safe = re.sub(r"\s+", "_", name)
        stem, dot, suffix = safe.rpartition(".")
        candidate, k = safe, 1
        while candidate in taken:
            k += 1
            candidate = f"{stem}_{k}.{suffix}" if dot else f"{safe}_{k}"
        taken.add(candidate)
        out[name] = candidate
    return out


def _upright_copy(record, target: Path) -> Path:
    """An upright copy of a photo whose EXIF orientation is not 1 (COLMAP reads raw pixels);
    kept while newer than the photo."""
    from citysplat.photos import load_oriented

    if target.exists() and target.stat().st_mtime_ns >= Path(record.path).stat().st_mtime_ns:
        return target
    image = load_oriented(record.path)
    with atomic_open(target) as handle:
        if target.suffix.lower() in (".jpg", ".jpeg"):
            image.convert("RGB").save(handle, format="JPEG", quality=95)
        else:
            image.save(handle, format="PNG")
    return target


@contextlib.contextmanager
def _undone_on_input_error(work_dir: Path):
    """Undo what the block creates for ``work_dir`` when it raises an input error
    (:class:`SfmInputError`, :class:`citysplat.photos.PhotoFolderError`): the topmost folder of
    ``work_dir``'s path that did not exist yet (e.g. ``--out`` itself), or, in a work folder
    kept from an earlier run, the marker, ``upright/`` and the files listed in the yielded
    list. Other errors leave the scratch in place for a re-run."""
    from citysplat.photos import PhotoFolderError

    work_dir = Path(work_dir).absolute()
    created_top = None
    for candidate in (work_dir, *work_dir.parents):
        if candidate.exists():
            break
        created_top = candidate
    marker_existed = (work_dir / _WORK_MARKER).exists()
    upright_existed = (work_dir / "upright").exists()
    written: list[Path] = []
    try:
        yield written
    except (SfmInputError, PhotoFolderError):
        if created_top is not None:
            shutil.rmtree(created_top, ignore_errors=True)
        else:
            for path in written:
                path.unlink(missing_ok=True)
            if not upright_existed:
                shutil.rmtree(work_dir / "upright", ignore_errors=True)
            if not marker_existed:
                (work_dir / _WORK_MARKER).unlink(missing_ok=True)
        raise


def reconstruct_folder(folder: str | Path, out_dir: str | Path, *,
                       work_dir: str | Path | None = None, recursive: bool = False,
                       **kwargs) -> SfmResult:
    """Reconstruct a folder of your own photos into ``out_dir`` (``sparse/``, ``metrics.json``,
    ``frame.json``).

    Photos are read with :func:`citysplat.photos.scan_photos` (files it cannot read are
    reported as unusable); EXIF orientation is applied (upright copies in ``work_dir``); the
    EXIF focal length is the intrinsics prior; the ENU frame is centred on the GPS track
    (:func:`citysplat.photos.gps_track_enu`). Photos without GPS still reconstruct, in COLMAP's
    arbitrary frame: ``georeferenced`` is then False and the messages say why. ``work_dir``
    (default ``out_dir/work``) keeps the features and matches for re-runs. Other keyword
    arguments go to :func:`reconstruct` (``pairs``, ``mapper``, ``seed``, ``options``).

    Raises :class:`citysplat.photos.PhotoFolderError` for a missing folder or one without
    photos and :class:`NotEnoughImagesError` for fewer than 3 usable photos (both
    ``ValueError``).
    """
    from citysplat.photos import gps_track_enu, scan_photos

    folder, out_dir = Path(folder), Path(out_dir)
    work_dir = Path(work_dir) if work_dir is not None else out_dir / "work"
    scan = scan_photos(folder, recursive=recursive)
    if len(scan) < 3:
        skipped = "; ".join(f"{s.path.name}: {s.reason}" for s in scan.skipped[:3])
        raise NotEnoughImagesError(
            f"only {len(scan)} usable photo(s) in {folder}"
            + (f" (skipped {skipped})" if skipped else "")
            + ": SfM needs at least 3 overlapping photos of the same place; add more photos "
            "to the folder")
    with _undone_on_input_error(work_dir) as written:
        _claim_work_dir(work_dir)  # before the upright copies go in
        names = _safe_names([record.name for record in scan]
                            + [s.path.relative_to(folder).as_posix() for s in scan.skipped])
        frame = None
        if scan.geotagged:
            frame, _ = gps_track_enu(scan)
        inputs = []
        for record in scan:
            path = record.path
            if record.exif_orientation != 1:
                target = work_dir / "upright" / names[record.name]
                if not target.exists():
                    written.append(target)
                path = _upright_copy(record, target)
            inputs.append(SfmInput.from_photo(record, frame, path=path,
                                              name=names[record.name]))
        for skipped in scan.skipped:
            name = names[skipped.path.relative_to(folder).as_posix()]
            inputs.append(SfmInput(name=name, path=skipped.path, unusable=skipped.reason))
        result = reconstruct(inputs, work_dir, out_dir, frame=frame, **kwargs)
    notes = []
    renamed = {a: b for a, b in names.items() if a != b}
    if renamed:
        notes.append(f"{len(renamed)} photo name(s) with spaces renamed in the model "
                     f"(e.g. {next(iter(renamed))!r} -> {next(iter(renamed.values()))!r})")
    if not scan.geotagged:
        notes.append("none of the photos carries a GPS position: cannot georeference; the "
                     "model is in COLMAP's arbitrary frame (enable location tagging in the "
                     "camera app, or geotag the photos, e.g. from a GPX track)")
    elif len(scan.geotagged) < 3:
        notes.append(f"only {len(scan.geotagged)} photo(s) carry a GPS position: cannot "
                     "georeference (3 are needed)")
    if notes:
        result.messages[:0] = notes
        result.metrics["messages"] = result.messages
        result.metrics["renamed"] = renamed
        atomic_write_text(result.metrics_path,
                          json.dumps(result.metrics, indent=2, default=float) + "\n")
    return result
