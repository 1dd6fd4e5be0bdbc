"""The pose metrics of benchmarks/sfm_vs_pycolmap.py on known transforms (fast, no SfM run)."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.sfm_vs_pycolmap import accuracy, camera_frame_bias, parse_method
from citysplat.groundtruth import GroundTruthCamera, rotation_angle_deg


def _rotation(axis, angle_deg: float) -> np.ndarray:
    """Rodrigues: the rotation by ``angle_deg`` about ``axis``."""
    axis = np.asarray(axis, dtype=np.float64) / np.linalg.norm(axis)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    a = np.radians(angle_deg)
    return np.eye(3) + np.sin(a) * k + (1 - np.cos(a)) * k @ k


def _truth(count: int = 8, seed: int = 0) -> dict[str, GroundTruthCamera]:
    rng = np.random.default_rng(seed)
    cameras = {}
    for k in range(count):
        r_c2w = _rotation(rng.normal(size=3), rng.uniform(0, 180))
        cameras[f"{k:04d}.jpg"] = GroundTruthCamera(
            f"{k:04d}.jpg", np.diag([900.0, 900.0, 1.0]), r_c2w, rng.uniform(-5, 5, size=3),
            1024, 683)
    return cameras


def test_a_common_camera_frame_rotation_is_all_bias():
    truth = [c.world_to_camera()[0] for c in _truth().values()]
    bias = _rotation([1.0, -2.0, 0.5], 0.4)
    aligned = [bias.T @ r for r in truth]  # E_i = R_true R_aligned^T = B for every camera
    found, rest = camera_frame_bias(truth, aligned)
    assert found == pytest.approx(0.4, abs=1e-9)
    assert rest == pytest.approx(0.0, abs=1e-6)


def test_noise_around_a_bias_is_the_rest():
    truth = [c.world_to_camera()[0] for c in _truth().values()]
    bias = _rotation([0.0, 1.0, 0.0], 0.5)
    rng = np.random.default_rng(1)
    noises = []
    for _ in range(len(truth) // 2):  # pairs N, N^T: their chordal mean is exactly the bias
        noise = _rotation(rng.normal(size=3), 0.1)
        noises += [noise, noise.T]
    aligned = [(noise @ bias).T @ r for noise, r in zip(noises, truth, strict=True)]
    found, rest = camera_frame_bias(truth, aligned)
    assert found == pytest.approx(0.5, abs=1e-6)  # the pairs' noise averages out exactly
    assert rest == pytest.approx(0.1, abs=1e-6)


def test_errors_after_a_similarity_on_the_centres():
    """An estimate that is the truth in another frame (scale 3, rotated, shifted), each camera
    also turned by 0.3 degrees about its own x axis: no centre error, 0.3 degrees of rotation
    error, all of it common."""
    truth = _truth()
    s, R, t = 3.0, _rotation([0.2, 0.3, 1.0], 70.0), np.array([10.0, -4.0, 2.0])
    bias = _rotation([1.0, 0.0, 0.0], 0.3)
    poses = {}
    for name, camera in truth.items():
        rotation = bias @ camera.world_to_camera()[0] @ R.T  # world_est = s R world + t
        centre = s * R @ camera.center + t
        poses[name] = (rotation, -rotation @ centre)
    found = accuracy(poses, truth, "truth")
    assert found["compared"] == len(truth)
    assert found["centre"] == pytest.approx(0.0, abs=1e-9)
    assert found["rotation_deg"] == pytest.approx(0.3, abs=1e-6)
    assert found["rotation_bias_deg"] == pytest.approx(0.3, abs=1e-6)
    assert found["rotation_debiased_deg"] == pytest.approx(0.0, abs=1e-5)


def test_gps_reference_gives_centre_errors_only():
    truth = _truth()
    gps = {name: camera.center.copy() for name, camera in truth.items()}
    name = next(iter(gps))
    gps[name] = gps[name] + np.array([0.0, 0.0, 4.0])  # one fix 4 m off
    poses = {n: c.world_to_camera() for n, c in truth.items()}
    found = accuracy(poses, gps, "gps")
    assert found["rotation_deg"] is None and found["rotation_bias_deg"] is None
    extent = float(np.linalg.norm(np.ptp(np.array(list(gps.values())), axis=0)))
    assert found["extent"] == pytest.approx(extent)
    assert found["centre_pct"] == pytest.approx(100 * found["centre"] / extent)
    assert 0 < found["centre"] < 1.0  # the outlier moves the fit a little; the median is small


def test_rotation_angle_helper_agrees_with_the_construction():
    assert rotation_angle_deg(_rotation([0, 0, 1], 12.5)) == pytest.approx(12.5)


def test_method_specs():
    assert parse_method("citysplat") == ("citysplat", {})
    assert parse_method("citysplat:first_octave=-1, mapper=global") == (
        "citysplat", {"first_octave": "-1", "mapper": "global"})
    assert parse_method("pycolmap:camera_mode=SINGLE") == ("pycolmap",
                                                           {"camera_mode": "SINGLE"})
    with pytest.raises(SystemExit):
        parse_method("colmap")
    with pytest.raises(SystemExit):
        parse_method("citysplat:first_octave")
