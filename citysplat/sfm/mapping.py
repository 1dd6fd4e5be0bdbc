"""Mapping: a model per connected component of the match graph, the better of two mappers.

:func:`map_components` maps each component of the match graph (pairs with >= 30 inliers) of
3+ images. The default mapper ``"auto"`` runs ``incremental_mapping`` (from an initial pair
chosen here, :func:`initial_pairs`) and, when that leaves images of the component out,
``global_mapping`` (GLOMAP) too, and keeps the model with more images consistent with their
position priors. Incremental was the more accurate on the generated city (ENU centre error
0.18 m against GLOMAP's 0.32 m), GLOMAP the only one to register all of lund (29 against
0-24). Seeds are fixed; held intrinsics (:class:`citysplat.sfm.priors.CameraRoles`) stay
fixed, the others are refined (guesses while mapping, EXIF priors afterwards:
:mod:`.refine`).
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import citysplat  # noqa: F401  (loads zlib before pycolmap)
from citysplat.layout import SfmWorkLayout
from citysplat.sfm.matching import CALIBRATED, UNCALIBRATED, MatchGraph
from citysplat.sfm.options import DEFAULT_MAPPER, MAPPERS, SfmOptions
from citysplat.sfm.priors import CameraRoles, PositionPriors

__all__ = [
    "DEFAULT_MAPPER",
    "MAPPERS",
    "MappedModels",
    "ReconstructionFailedError",
    "initial_pairs",
    "map_components",
    "mapping_options",
]


class ReconstructionFailedError(RuntimeError):
    """The images were usable but SfM found no model (too few matches)."""


def mapping_options(mapper: str, seed: int, num_threads: int, cameras: CameraRoles):
    """Pipeline options of ``mapper`` (``"incremental"`` or ``"global"``) with fixed seeds;
    the cameras ``cameras.held`` keep their intrinsics."""
    import pycolmap

    if mapper == "incremental":
        options = pycolmap.IncrementalPipelineOptions()
        options.random_seed = seed
        options.num_threads = num_threads
        options.mapper.random_seed = seed
        options.triangulation.random_seed = seed
        options.min_model_size = 3
        if cameras.all_held:
            options.ba_refine_focal_length = False
            options.ba_refine_extra_params = False
            options.mapper.abs_pose_refine_focal_length = False
            options.mapper.abs_pose_refine_extra_params = False
        elif cameras.held:
            options.constant_cameras = set(cameras.held)
            options.mapper.constant_cameras = set(cameras.held)
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
    if cameras.held:  # GLOMAP's switches are global: free cameras are refined afterwards
        ba.refine_focal_length = False
        ba.refine_extra_params = False
    return options


# ------------------------------------------------------------------------------ initial pair
def initial_pairs(graph: MatchGraph, component: Sequence[int], count: int,
                  min_inliers: int = 100, angles_deg: Sequence[float] = (16.0, 8.0, 4.0),
                  max_pairs: int = 400) -> list[tuple[int, int, float]]:
    """Initial pairs ``(image_id1, image_id2, parallax_deg)`` of ``component`` for the
    incremental mapper, best first.

    COLMAP picks its own by re-estimating each candidate's geometry, and accepts pairs that a
    homography explains (the ground and facades of a street are planes) with the triangulation
    angle of a homography decomposition: on the generated city's walking sequence that gave
    30-50 degrees between neighbours 2.5 m apart (truly 1-2), and a model bent through 90
    degrees. Here only pairs that verification explained by epipolar geometry (CALIBRATED or
    UNCALIBRATED, not planar) count, with the median triangulation angle of their essential
    matrix; the pairs with the most inliers among those of at least 16 degrees come first,
    then 8, then 4 (a walk's images are 2-3 m apart: pairs 10 m apart make good starts).
    """
    import pycolmap

    members = set(component)
    candidates = sorted(((a, b, n) for a, b, n, config in graph.edges
                         if config in (CALIBRATED, UNCALIBRATED) and n >= min_inliers
                         and a in members and b in members),
                        key=lambda e: (-e[2], e[0], e[1]))[:max_pairs]
    if not candidates or count <= 0:
        return []
    keypoints: dict[int, np.ndarray] = {}
    scored: list[tuple[int, int, int, float]] = []
    with pycolmap.Database.open(graph.database_path) as db:
        for a, b, n in candidates:
            for i in (a, b):
                if i not in keypoints:
                    keypoints[i] = np.asarray(db.read_keypoints(i))[:, :2].astype(np.float64)
            inliers = graph.matches[(a, b)]
            geometry = db.read_two_view_geometry(a, b)
            camera1 = graph.cameras[graph.camera_ids[a]]
            camera2 = graph.cameras[graph.camera_ids[b]]
            if geometry.E is not None:
                E = np.asarray(geometry.E)
            elif geometry.F is not None:
                E = (np.asarray(camera2.calibration_matrix()).T @ np.asarray(geometry.F)
                     @ np.asarray(camera1.calibration_matrix()))
            else:
                continue
            found = parallax_from_essential(E, camera1, keypoints[a][inliers[:, 0]],
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


def parallax_from_essential(E, camera1, points1, camera2, points2
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


def incremental_with_initial_pair(database_path: Path, image_dir: Path, out_dir: Path,
                                  options, initial: Sequence[tuple[int, int, float]]) -> list:
    """Incremental mapping from the first initial pair that yields a model covering at least
    half of ``options.image_names``; COLMAP's own choice when none does. COLMAP checks a given
    pair against ``init_min_tri_angle`` (16 degrees) too: for ours it is lowered to half the
    pair's measured parallax."""
    import pycolmap

    wanted = max(3, len(options.image_names) // 2)
    best: list = []
    for k, (a, b, parallax) in enumerate(initial):
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


# ------------------------------------------------------------------------------ components
@dataclass
class MappedModels:
    """The models of :func:`map_components`, largest first (``models[0]`` is the main one),
    and the mapper that won in each mapped component."""

    models: list = field(default_factory=list)
    component_mappers: list[str] = field(default_factory=list)

    @property
    def largest(self):
        """The model with the most registered images, or None."""
        return self.models[0] if self.models else None


def clear_mapping_folders(work: SfmWorkLayout) -> None:
    """Remove the per-component folders an earlier run left in ``work`` (components of 3+
    images come first, so their folders are numbered without gaps)."""
    k = 0
    while work.component_dir(k).exists():
        shutil.rmtree(work.component_dir(k))
        k += 1


def map_components(graph: MatchGraph, work: SfmWorkLayout, *, mapper: str = DEFAULT_MAPPER,
                   seed: int = 0, cameras: CameraRoles | None = None,
                   priors: PositionPriors | None = None,
                   options: SfmOptions | None = None) -> MappedModels:
    """Map every component of 3+ images of ``graph`` (its images linked under
    ``work.images_dir``; mapper outputs under ``work.component_dir(k)``). With ``"auto"``
    the incremental and global models of a component compete: the one with more images
    consistent with ``priors`` wins (ties: more registered images)."""
    import pycolmap

    if mapper not in MAPPERS:
        raise ValueError(f"unknown mapper {mapper!r}: use one of {', '.join(MAPPERS)}")
    options = options or SfmOptions()
    cameras = cameras or CameraRoles()
    priors = priors or PositionPriors()
    clear_mapping_folders(work)

    def score(reconstruction) -> tuple[int, int]:
        """(images consistent with their priors, registered images): the better model wins."""
        check = priors.georegister(reconstruction, options, seed, apply=False)
        return (len(check.inliers) if check.georeferenced else 0,
                reconstruction.num_reg_images())

    out = MappedModels()
    for k, component in enumerate(graph.components(options.component_min_inliers)):
        if len(component) < 3:
            continue
        names = [graph.names[i] for i in component]
        with_priors = sum(1 for n in names if n in priors.positions)
        tried: dict[str, list] = {}
        for which in (["incremental", "global"] if mapper == "auto" else [mapper]):
            run_options = mapping_options(which, seed, options.num_threads, cameras)
            run_options.image_names = names
            if which == "incremental" and options.use_prior_position and with_priors >= 3:
                # bundle adjustment with the position priors (robust loss: GPS outliers):
                # keeps a street from bending where the mapper registers a turn badly (the
                # city district in one image order: 0.34 m without, 0.17 m with)
                run_options.use_prior_position = True
                run_options.use_robust_loss_on_prior_position = True
            out_k = work.component_dir(k) / which
            out_k.mkdir(parents=True)
            if which == "global":
                found = pycolmap.global_mapping(graph.database_path, work.images_dir, out_k,
                                                run_options)
                tried[which] = [m for m in (found or {}).values() if m.num_reg_images() > 0]
            else:
                tried[which] = incremental_with_initial_pair(
                    graph.database_path, work.images_dir, out_k, run_options,
                    initial_pairs(graph, component, options.initial_pair_candidates))
            # images, not models: a failing incremental run can return the same few images
            # as dozens of tiny models
            registered = len({i for m in tried[which] for i in m.reg_image_ids()})
            if mapper == "auto" and registered >= len(component):
                break  # incremental registered the whole component: no need for global
        best = max(tried, key=lambda w: max((score(m) for m in tried[w]), default=(0, 0)))
        out.models += tried[best]
        out.component_mappers.append(best)
    out.models = sorted((m for m in out.models if m.num_reg_images() > 0),
                        key=lambda m: m.num_reg_images(), reverse=True)
    return out
