"""Refinement after mapping: bundle adjustment with some cameras held, the refinement of
EXIF-prior intrinsics with a guard against focal drift, and the refinement of the free
cameras' principal points with a guard against their drift.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import citysplat  # noqa: F401  (loads zlib before pycolmap)
from citysplat.sfm.priors import CameraRoles


def bundle_adjust(reconstruction, constant_camera_ids: Iterable[int], *,
                  principal_point_only: bool = False) -> None:
    """Global bundle adjustment (Cauchy loss) of ``reconstruction`` in place, with the given
    cameras' intrinsics held and the principal points fixed; ``principal_point_only``: the
    other cameras' principal points are refined instead, their focal lengths and distortion
    held."""
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
    options.refine_principal_point = principal_point_only
    if principal_point_only:
        options.refine_focal_length = False
        options.refine_extra_params = False
    options.ceres.loss_function_type = pycolmap.LossFunctionType.CAUCHY
    pycolmap.create_default_bundle_adjuster(options, config, reconstruction).solve()


def _describe(reconstruction, camera_id: int) -> str:
    camera = reconstruction.cameras[camera_id]
    count = sum(1 for im in reconstruction.images.values() if im.camera_id == camera_id)
    return f"camera {camera_id} ({camera.width}x{camera.height}, {count} images)"


def refine_intrinsics(reconstruction, cameras: CameraRoles, max_focal_change: float
                      ) -> tuple[object, list[str]]:
    """Refine the intrinsics of ``cameras.free`` (others held) after mapping; undo the
    refinement of a camera whose focal moves more than ``max_focal_change`` from its EXIF
    prior (``cameras.prior_focal``): on street sequences (forward motion) the focal length is
    weakly determined and drifts (lund: EXIF 996 px, the 35 mm equivalent of an iPhone 4S,
    refined to 750 px with no better reprojection). Returns the model (``reconstruction`` or a
    refined copy of it) and messages for the result."""
    import pycolmap

    all_ids = set(reconstruction.cameras.keys())
    free = set(cameras.free) & all_ids
    if not free:
        return reconstruction, []
    refined = pycolmap.Reconstruction(reconstruction)
    bundle_adjust(refined, all_ids - free)
    drifted = []
    for camera_id in sorted(free & set(cameras.prior_focal)):
        focal = float(refined.cameras[camera_id].mean_focal_length())
        change = focal / cameras.prior_focal[camera_id] - 1.0
        if not math.isfinite(change) or abs(change) > max_focal_change:
            drifted.append((camera_id, focal, change))
    if not drifted:
        return refined, []
    keep = {camera_id for camera_id, _, _ in drifted}
    messages = [f"{_describe(reconstruction, camera_id)}: EXIF focal "
                f"{cameras.prior_focal[camera_id]:.0f} px kept; refinement moved it to "
                f"{focal:.0f} px ({change:+.0%}), more than {max_focal_change:.0%} (forward "
                "motion leaves the focal weakly determined)"
                for camera_id, focal, change in drifted]
    if free - keep:
        bundle_adjust(reconstruction, all_ids - (free - keep))
    return reconstruction, messages


def refine_principal_points(reconstruction, free: Iterable[int], max_shift: float
                            ) -> tuple[object, list[str]]:
    """Refine the principal points of the ``free`` cameras (others held) in one more bundle
    adjustment, their focal lengths and distortion held; undo the refinement of a camera whose
    principal point moves more than ``max_shift`` x its longer image side.

    Mapping holds the principal point at the image centre, but a real camera's is a few pixels
    off, and a shared camera then turns every image's axes the same way: fountain-P11's true
    principal point is 7.8 px (0.8 %) off centre, 0.49 deg at its 920 px focal length, which
    is nearly all of its rotation error; refined here (with first octave -1 features) it lands
    within 1.3 px of the true one and the rotation error falls from 0.45 to 0.05 deg
    (docs/BENCHMARKS.md). On forward-looking street photos it is weakly determined and drifts
    (lund: 55 px, 5 % of the width, with a slightly worse GPS centre error), so such a move
    is undone. Returns the model (``reconstruction`` or a refined copy of it) and messages for
    the result."""
    import pycolmap

    all_ids = set(reconstruction.cameras.keys())
    free = set(free) & all_ids
    if not free:
        return reconstruction, []

    def adjusted(variable: set[int]):
        copy = pycolmap.Reconstruction(reconstruction)
        bundle_adjust(copy, all_ids - variable, principal_point_only=True)
        return copy

    refined = adjusted(free)
    drifted = []
    for camera_id in sorted(free):
        before, after = reconstruction.cameras[camera_id], refined.cameras[camera_id]
        move = math.hypot(after.principal_point_x - before.principal_point_x,
                          after.principal_point_y - before.principal_point_y)
        shift = move / max(before.width, before.height)
        if not math.isfinite(shift) or shift > max_shift:
            drifted.append((camera_id, before, move, shift))
    if not drifted:
        return refined, []
    messages = [f"{_describe(reconstruction, camera_id)}: principal point kept at "
                f"({before.principal_point_x:.1f}, {before.principal_point_y:.1f}) px; "
                f"refinement moved it {move:.0f} px ({shift:.1%} of the longer side), more "
                f"than {max_shift:.0%} (forward motion leaves it weakly determined)"
                for camera_id, before, move, shift in drifted]
    keep = free - {camera_id for camera_id, *_ in drifted}
    return (adjusted(keep) if keep else reconstruction), messages


def refine_model(model, cameras: CameraRoles, max_focal_change: float, *,
                 refine_principal_point: bool = False, max_principal_point_shift: float = 0.02
                 ) -> tuple[object, list[str]]:
    """The main model after mapping: its free cameras' intrinsics refined when some cameras
    were held while mapping (else mapping refined them already), then, with
    ``refine_principal_point``, their principal points (:func:`refine_principal_points`).
    Calibrated cameras (``cameras.free`` leaves them out: the Mapillary API's) are never
    touched."""
    if model is None:
        return model, []
    messages: list[str] = []
    if cameras.held and cameras.free:
        model, messages = refine_intrinsics(model, cameras, max_focal_change)
    if refine_principal_point and cameras.free:
        model, notes = refine_principal_points(model, cameras.free, max_principal_point_shift)
        messages += notes
    return model, messages
