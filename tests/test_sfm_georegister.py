"""Georegistration (citysplat.sfm.georegister): a model in COLMAP's arbitrary frame moved into
ENU by its cameras' position priors, with the level-horizon prior; a known similarity is
recovered, GPS outliers are ignored, and too few or unfit priors leave the model where it is."""

from __future__ import annotations

import numpy as np
import pytest

import citysplat  # noqa: F401  (loads zlib before pycolmap)
from citysplat.groundtruth import pose_errors
from citysplat.sfm.georegister import georegister
from citysplat.sfm.options import SfmOptions
from citysplat.sfm.priors import PositionPriors
from citysplat.synthetic.cameras import rotation_from_heading

pycolmap = pytest.importorskip("pycolmap")


def _street_model(positions, rotations_c2w):
    """A pycolmap Reconstruction with one camera per (position, camera-to-world rotation)."""
    reconstruction = pycolmap.Reconstruction()
    camera = pycolmap.Camera.create_from_model_name(1, "SIMPLE_PINHOLE", 500.0, 640, 480)
    reconstruction.add_camera_with_trivial_rig(camera)
    for k, (center, r_c2w) in enumerate(zip(positions, rotations_c2w), start=1):
        r_w2c = np.asarray(r_c2w).T
        pose = pycolmap.Rigid3d(pycolmap.Rotation3d(r_w2c), -r_w2c @ np.asarray(center))
        image = pycolmap.Image(name=f"{k:03d}.jpg", keypoints=np.zeros((0, 2)), camera_id=1,
                               image_id=k)
        reconstruction.add_image_with_trivial_frame(image, pose)
    return reconstruction


def _colmap_frame(reconstruction, seed=3):
    """Move a model into an arbitrary frame, as COLMAP leaves it."""
    rng = np.random.default_rng(seed)
    from scipy.spatial.transform import Rotation

    sim = pycolmap.Sim3d(0.07, pycolmap.Rotation3d(Rotation.random(random_state=seed).as_matrix()),
                         rng.normal(0, 5, 3))
    reconstruction.transform(sim)


def _true_errors(reconstruction, positions, rotations_c2w):
    truth = {f"{k:03d}.jpg": (np.asarray(r).T, -np.asarray(r).T @ np.asarray(c))
             for k, (c, r) in enumerate(zip(positions, rotations_c2w), start=1)}
    estimated = {im.name: im.cam_from_world() for im in reconstruction.images.values()}
    return pose_errors(estimated, truth, align=False)


def test_georegister_a_straight_street_with_noisy_gps_and_an_outlier():
    rng = np.random.default_rng(0)
    n = 40
    positions = np.column_stack([np.linspace(-60, 60, n), np.full(n, 5.0), np.full(n, 1.5)])
    rotations = [rotation_from_heading(90.0 + rng.normal(0, 1), rng.normal(0, 1),
                                       rng.normal(0, 1)) for _ in range(n)]
    model = _street_model(positions, rotations)
    _colmap_frame(model)
    priors = {f"{k:03d}.jpg": p + rng.normal(0, [0.4, 0.4, 0.3])
              for k, p in enumerate(positions, start=1)}
    priors["007.jpg"] = priors["007.jpg"] + np.array([40.0, -25.0, 3.0])  # a GPS jump
    result = georegister(model, priors, sigmas={n: (0.4, 0.3) for n in priors})
    assert result.georeferenced and result.horizon_prior, result.message
    assert "007.jpg" not in result.inliers and "1 GPS outlier" in result.message
    errors = _true_errors(model, positions, rotations).summary()
    # a straight line of cameras: only the horizon prior fixes the tilt about the street
    assert errors["rotation_deg_median"] < 1.0
    assert errors["center_error_median"] < 0.3
    assert result.median_residual_m < 1.0


def test_georegister_needs_three_priors_and_upright_cameras():
    positions = np.array([[0.0, 0, 1.5], [5, 0, 1.5], [10, 1, 1.5], [15, 3, 1.5]])
    rotations = [rotation_from_heading(90.0)] * 4
    model = _street_model(positions, rotations)
    few = georegister(model, {"001.jpg": positions[0], "002.jpg": positions[1]})
    assert not few.georeferenced and "at least 3" in few.message and few.similarity is None
    # cameras rolled by 90 degrees (a portrait photo without its orientation tag): no horizon
    rolled = [rotation_from_heading(90.0 + 20 * k, 0.0, 90.0) for k in range(6)]
    square = np.array([[0.0, 0, 1.5], [20, 0, 1.5], [20, 20, 1.5], [0, 20, 1.5],
                       [10, 5, 1.5], [5, 15, 1.5]])
    model = _street_model(square, rolled)
    result = georegister(model, {f"{k:03d}.jpg": p for k, p in enumerate(square, 1)},
                         sigmas={f"{k:03d}.jpg": (0.5, 0.5) for k in range(1, 7)})
    assert result.georeferenced and not result.horizon_prior
    assert "not upright" in result.message


def test_a_known_similarity_is_recovered():
    """A bent street moved by a known similarity comes back: the fitted similarity is its
    inverse, and the cameras are where they were."""
    positions = np.array([[3.0 * k, 0.2 * k * k, 1.5] for k in range(12)])
    rotations = [rotation_from_heading(90.0 - 2.0 * k) for k in range(12)]
    model = _street_model(positions, rotations)
    from scipy.spatial.transform import Rotation

    rotation = Rotation.from_euler("zyx", [40.0, 10.0, -5.0], degrees=True).as_matrix()
    model.transform(pycolmap.Sim3d(0.25, pycolmap.Rotation3d(rotation),
                                   np.array([5.0, -2.0, 1.0])))
    names = [f"{k:03d}.jpg" for k in range(1, 13)]
    priors = PositionPriors(dict(zip(names, map(tuple, positions))),
                            {n: (0.05, 0.05) for n in names})
    result = priors.georegister(model, SfmOptions(), seed=0)
    assert result.georeferenced, result.message
    scale, fitted, _ = result.similarity
    assert scale == pytest.approx(4.0, rel=1e-3)
    assert np.allclose(fitted @ rotation, np.eye(3), atol=1e-3)
    errors = _true_errors(model, positions, rotations).summary()
    assert errors["center_error_max"] < 0.01 and errors["rotation_deg_max"] < 0.1
