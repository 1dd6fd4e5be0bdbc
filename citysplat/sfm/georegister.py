"""Georegistration: move an SfM model from COLMAP's arbitrary frame into a local ENU frame.

A similarity (scale, rotation, translation) maps the model's camera centres onto the images'
prior positions (GPS or Mapillary's computed positions, in ENU metres about the district origin):

1. LO-RANSAC (``pycolmap.estimate_sim3d_robust``, COLMAP's own) with an inlier threshold in
   metres finds the GPS outliers (jumps, multipath: tens of metres);
2. a weighted least-squares refinement (Huber) over the inliers weighs each prior by its
   1-sigma error, horizontal and vertical apart (GPS heights are worse), and adds a
   level-horizon prior: street cameras are held upright, so each camera's x axis (image right)
   is horizontal up to a few degrees of roll. A street's cameras lie on a line, and a line of
   positions leaves the rotation about it free (fixed only by noise in the GPS heights): on the
   generated city's first car sequence, the tilt about the street was 0.5 degrees from positions
   alone and 0.03 with the horizon prior;
3. the fit's covariance says how well the GPS fixes the frame: when the rotation is uncertain
   by more than ``max_rotation_std_deg`` or the scale by more than ``max_scale_rel_std`` (all
   photos from one spot, too few of them, side-looking cameras on a straight line), the model is
   not georeferenced and the result says why.

The similarity is applied to the reconstruction (``Reconstruction.transform``), so the model is
in metres, East-North-Up, with up up.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

import citysplat  # noqa: F401  (loads zlib before pycolmap)
from citysplat.positions import GPS_SIGMA_M

__all__ = [
    "DEFAULT_MAX_ERROR_M",
    "Georegistration",
    "camera_axes",
    "camera_centers",
    "georegister",
]

DEFAULT_MAX_ERROR_M = 10.0
"""RANSAC inlier threshold: a camera whose prior is further than this from the fitted position
is a GPS outlier. Consumer GPS is good to a few metres (1 sigma, per axis; worse in height), so
10 m keeps nearly all honest fixes and rejects jumps and multipath."""

DEFAULT_SIGMA_M = GPS_SIGMA_M
"""1-sigma error (horizontal, vertical) of a prior position when the caller gives none: a
consumer GPS's (:data:`citysplat.positions.GPS_SIGMA_M`)."""

DEFAULT_ROLL_SIGMA_DEG = 2.0
"""How level street cameras are held, 1 sigma (the generated city's cameras: 0.9 degrees)."""

MAX_MEDIAN_ROLL_DEG = 10.0
"""Cameras whose median roll (after the position fit) exceeds this are not upright: no horizon
prior for them."""


@dataclass
class Georegistration:
    """Outcome of :func:`georegister`.

    ``similarity``: (s, R, t) with ``enu = s * R @ x + t`` (None when not georeferenced);
    ``residuals_m``: image name -> distance from its (transformed) camera centre to its prior;
    ``inliers``: the names used in the final fit; ``rotation_std_deg`` / ``scale_rel_std``: the
    fit's 1-sigma uncertainty (from the priors' sigmas).
    """

    georeferenced: bool
    message: str
    similarity: tuple[float, np.ndarray, np.ndarray] | None = None
    residuals_m: dict[str, float] = field(default_factory=dict)
    inliers: list[str] = field(default_factory=list)
    num_priors: int = 0
    horizon_prior: bool = False
    rotation_std_deg: float | None = None
    scale_rel_std: float | None = None

    @property
    def median_residual_m(self) -> float | None:
        if not self.residuals_m:
            return None
        return float(np.median(list(self.residuals_m.values())))

    def to_dict(self) -> dict[str, Any]:
        s = self.similarity
        return {
            "georeferenced": self.georeferenced,
            "message": self.message,
            "num_priors": self.num_priors,
            "num_inliers": len(self.inliers),
            "gps_residual_median_m": self.median_residual_m,
            "horizon_prior": self.horizon_prior,
            "rotation_std_deg": self.rotation_std_deg,
            "scale_rel_std": self.scale_rel_std,
            "scale": float(s[0]) if s else None,
            "rotation": np.asarray(s[1]).tolist() if s else None,
            "translation": np.asarray(s[2]).tolist() if s else None,
        }


def camera_centers(reconstruction) -> dict[str, np.ndarray]:
    """Image name -> camera centre (world frame) of every registered image."""
    return {image.name: np.asarray(image.projection_center(), dtype=np.float64)
            for image in reconstruction.images.values() if image.has_pose}


def camera_axes(reconstruction) -> tuple[np.ndarray, np.ndarray]:
    """(N, 3) x axes (image right) and (N, 3) y axes (image down) of the registered cameras,
    unit vectors in world coordinates (rows of the world-to-camera rotation)."""
    rotations = [np.asarray(image.cam_from_world().rotation.matrix())
                 for image in reconstruction.images.values() if image.has_pose]
    rotations = np.array(rotations, dtype=np.float64).reshape(-1, 3, 3)
    return rotations[:, 0, :], rotations[:, 1, :]


def _rotation_about(axis: np.ndarray, angle: float) -> np.ndarray:
    from scipy.spatial.transform import Rotation

    axis = axis / np.linalg.norm(axis)
    return Rotation.from_rotvec(axis * angle).as_matrix()


def _level_about_line(rotation, right, down, line_axis):
    """The rotation about ``line_axis`` (ENU) that makes the cameras' x axes most nearly
    horizontal with their y axes pointing down: a line of positions leaves this angle free, and
    a RANSAC fit on (nearly) collinear points sets it at random."""
    angles = np.radians(np.arange(0.0, 360.0, 1.0))
    best, best_cost = rotation, np.inf
    for angle in angles:
        candidate = _rotation_about(line_axis, angle) @ rotation
        if np.mean((down @ candidate.T)[:, 2]) >= 0:  # upside down
            continue
        cost = float(np.sum((right @ candidate.T)[:, 2] ** 2))
        if cost < best_cost:
            best, best_cost = candidate, cost
    return best


def _refine(src, dst, sigma, right, scale, rotation, translation, roll_sigma):
    """Weighted least squares (Huber, in sigma units) over the similarity, from the RANSAC
    estimate: position residuals / sigma and, when ``right`` is given, the height of each
    camera's unit x axis / ``roll_sigma`` (the sine of its roll). Returns (s, R, t, cov) with
    cov the 7x7 covariance of (rotation vector, log scale, translation)."""
    from scipy.optimize import least_squares
    from scipy.spatial.transform import Rotation

    def unpack(p):
        R = Rotation.from_rotvec(p[:3]).as_matrix() @ rotation
        return scale * np.exp(p[3]), R, translation + p[4:7]

    def residuals(p):
        s, R, t = unpack(p)
        out = [((s * src @ R.T + t - dst) / sigma).ravel()]
        if right is not None:
            out.append((right @ R.T)[:, 2] / roll_sigma)
        return np.concatenate(out)

    # all-zero start: scipy's trust region starts at |x0| (1 when that is 0), so a start near
    # but not at zero (a model already close to ENU) would never move
    x0 = np.zeros(7)
    fit = least_squares(residuals, x0, loss="huber", f_scale=2.0, x_scale="jac")
    if not np.all(np.isfinite(fit.x)):
        return scale, rotation, translation, None
    s, R, t = unpack(fit.x)
    try:
        cov = np.linalg.inv(fit.jac.T @ fit.jac)
    except np.linalg.LinAlgError:
        cov = None
    return float(s), R, np.asarray(t, dtype=np.float64), cov


def _not_georeferenced(message: str, num_priors: int) -> Georegistration:
    return Georegistration(False, f"cannot georeference: {message}; the model stays in COLMAP's "
                                  "arbitrary frame (not metres, not ENU)", num_priors=num_priors)


def georegister(reconstruction, priors: Mapping[str, Any], *,
                sigmas: Mapping[str, tuple[float, float]] | None = None,
                max_error_m: float = DEFAULT_MAX_ERROR_M, min_images: int = 3, seed: int = 0,
                upright: bool = True, roll_sigma_deg: float = DEFAULT_ROLL_SIGMA_DEG,
                max_rotation_std_deg: float = 2.0, max_scale_rel_std: float = 0.1,
                apply: bool = True) -> Georegistration:
    """Fit ``enu ~ s R x + t`` from the model's camera centres to ``priors`` (image name ->
    ENU xyz, metres) and, with ``apply``, transform ``reconstruction`` in place.

    ``sigmas``: image name -> (horizontal, vertical) 1-sigma error of its prior, metres
    (default :data:`DEFAULT_SIGMA_M`). ``upright``: use the level-horizon prior (skipped, with a
    note, when the cameras turn out not to be upright). Needs ``min_images`` (>= 3) registered
    images with a prior, and a fit whose rotation and scale the priors determine; otherwise
    returns ``georeferenced=False`` with the reason and leaves the model untouched.
    """
    import pycolmap

    centers = camera_centers(reconstruction)
    names = [n for n in centers if n in priors and priors[n] is not None]
    needed = max(3, min_images)
    if len(names) < needed:
        have = f"{len(names)} registered image(s) have" if names else "no registered image has"
        return _not_georeferenced(f"{have} a GPS position, at least {needed} are needed",
                                  len(names))
    src = np.array([centers[n] for n in names], dtype=np.float64)
    dst = np.array([np.asarray(priors[n], dtype=np.float64) for n in names])
    sigma = np.array([(sigmas or {}).get(n) or DEFAULT_SIGMA_M for n in names], np.float64)
    sigma = np.column_stack([sigma[:, 0], sigma[:, 0], sigma[:, 1]])
    spread_src = np.linalg.svd(src - src.mean(0), compute_uv=False)
    spread_dst = np.linalg.svd(dst - dst.mean(0), compute_uv=False) / np.sqrt(len(dst))
    if spread_src[0] <= 1e-12 * max(1.0, np.abs(src).max()) or spread_dst[0] < 1e-6:
        return _not_georeferenced("the cameras or their GPS positions all coincide", len(names))

    # 1. robust similarity: LO-RANSAC on the positions, then least squares on its inliers
    ransac = pycolmap.RANSACOptions(max_error=float(max_error_m), random_seed=int(seed),
                                    min_inlier_ratio=0.1, max_num_trials=10000,
                                    confidence=0.9999)
    found = pycolmap.estimate_sim3d_robust(src, dst, ransac)
    # pycolmap 4.2 returns {"tgt_from_src": Sim3d, "num_inliers", "inlier_mask"} (or None)
    sim = found.get("tgt_from_src") if isinstance(found, dict) else found
    if sim is None or not np.isfinite(sim.scale) or sim.scale <= 0:
        sim = pycolmap.estimate_sim3d(src, dst)  # degenerate minimal samples (a line)
    if sim is None or not np.isfinite(sim.scale) or sim.scale <= 0:
        return _not_georeferenced(f"no similarity fits the GPS positions of {len(names)} images",
                                  len(names))
    scale, rotation = float(sim.scale), np.asarray(sim.rotation.matrix(), dtype=np.float64)
    translation = np.asarray(sim.translation, dtype=np.float64)
    inlier = np.linalg.norm(scale * src @ rotation.T + translation - dst, axis=1) <= max_error_m
    if inlier.sum() < 3:
        return _not_georeferenced(
            f"fewer than 3 of {len(names)} GPS positions agree with the model within "
            f"{max_error_m:g} m (GPS far off, or the model is wrong)", len(names))
    refit = pycolmap.estimate_sim3d(src[inlier], dst[inlier])
    if refit is not None and np.isfinite(refit.scale) and refit.scale > 0:
        scale, rotation = float(refit.scale), np.asarray(refit.rotation.matrix(), np.float64)
        translation = np.asarray(refit.translation, dtype=np.float64)

    # 2. level-horizon prior (upright cameras)
    right, down = camera_axes(reconstruction)
    notes: list[str] = []
    use_roll = upright and roll_sigma_deg > 0 and len(right) >= 3
    if use_roll:
        # the model's own centres say whether they lie on a line (GPS noise hides it: a
        # straight walk of 60 m with 3 m GPS noise spreads 3.5 m sideways)
        line_like = (spread_src[1] < 0.1 * spread_src[0] or spread_dst[1] < 0.1 * spread_dst[0]
                     or spread_dst[1] < 1.0)
        if line_like:
            center = src[inlier].mean(0)
            _, _, vt = np.linalg.svd(src[inlier] - center)
            axis = rotation @ vt[0]  # the line's direction in ENU
            moved_center = scale * rotation @ center + translation
            leveled = _level_about_line(rotation, right, down, axis)
            translation = moved_center - scale * leveled @ center
            rotation = leveled
        roll = np.degrees(np.arcsin(np.clip((right @ rotation.T)[:, 2], -1, 1)))
        if np.median(np.abs(roll)) > MAX_MEDIAN_ROLL_DEG:
            use_roll = False
            notes.append(f"cameras not upright (median roll {np.median(np.abs(roll)):.0f} "
                         "deg): level-horizon prior not used")
    scale, rotation, translation, cov = _refine(
        src[inlier], dst[inlier], sigma[inlier], right if use_roll else None,
        scale, rotation, translation, np.radians(roll_sigma_deg))

    # 3. is the frame determined?
    rotation_std = scale_std = float("inf")
    if cov is not None and np.all(np.isfinite(np.diag(cov))):
        eig = np.linalg.eigvalsh(cov[:3, :3])
        rotation_std = float(np.degrees(np.sqrt(max(eig.max(), 0.0))))
        scale_std = float(np.sqrt(max(cov[3, 3], 0.0)))
    if rotation_std > max_rotation_std_deg or scale_std > max_scale_rel_std:
        return _not_georeferenced(
            f"the GPS positions of {len(names)} images do not pin the model down (orientation "
            f"uncertain by {rotation_std:.1f} deg, scale by {scale_std:.0%}; limits "
            f"{max_rotation_std_deg:g} deg, {max_scale_rel_std:.0%}): they are too few, too "
            "close together or on one line seen side-on", len(names))

    sim = pycolmap.Sim3d(scale, pycolmap.Rotation3d(rotation), translation)
    residuals = np.linalg.norm(scale * src @ rotation.T + translation - dst, axis=1)
    inlier = residuals <= max_error_m
    if apply:
        reconstruction.transform(sim)
    inliers = [n for n, ok in zip(names, inlier) if ok]
    outliers = len(names) - len(inliers)
    message = (f"georeferenced to {len(names)} GPS positions ({len(inliers)} inliers within "
               f"{max_error_m:g} m" + (", level-horizon prior" if use_roll else "")
               + f"); median residual {float(np.median(residuals)):.2f} m, orientation "
               f"+-{rotation_std:.2f} deg, scale +-{scale_std:.1%}")
    if outliers:
        message += f"; {outliers} GPS outlier(s) ignored"
    if notes:
        message += "; " + "; ".join(notes)
    return Georegistration(True, message, (scale, rotation, translation),
                           {n: float(r) for n, r in zip(names, residuals)}, inliers, len(names),
                           use_roll, rotation_std, scale_std)
