"""Strecha ground-truth cameras (fountain-P11) and the pose-comparison helpers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy.spatial.transform import Rotation

from citysplat.groundtruth import (
    GroundTruthCamera,
    apply_similarity,
    pose_errors,
    read_strecha_camera,
    read_strecha_cameras,
    rotation_angle_deg,
    umeyama_similarity,
)

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
FOUNTAIN = DATA / "fountain-P11"


@pytest.fixture(scope="module")
def cameras() -> dict[str, GroundTruthCamera]:
    if not (FOUNTAIN / "cameras").is_dir():
        pytest.skip(
            "shared data set fountain-P11 is absent (expected at ../shared/data/fountain-P11)"
        )
    return read_strecha_cameras(FOUNTAIN / "cameras")


def _random_similarity(seed: int) -> tuple[float, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return (
        float(rng.uniform(0.2, 5.0)),
        Rotation.random(random_state=seed).as_matrix(),
        rng.normal(scale=50.0, size=3),
    )


def _transformed(
    camera: GroundTruthCamera, s: float, R: np.ndarray, t: np.ndarray
) -> GroundTruthCamera:
    """The same camera seen in a world mapped by X' = s R X + t."""
    return GroundTruthCamera(
        name=camera.name,
        K=camera.K,
        R_cam_to_world=R @ camera.R_cam_to_world,
        center=s * R @ camera.center + t,
        width=camera.width,
        height=camera.height,
    )


def _closest_point_to_lines(origins: np.ndarray, directions: np.ndarray) -> np.ndarray:
    A = np.zeros((3, 3))
    b = np.zeros(3)
    for origin, direction in zip(origins, directions):
        M = np.eye(3) - np.outer(direction, direction)
        A += M
        b += M @ origin
    return np.linalg.solve(A, b)


# --------------------------------------------------------------------------- fountain-P11


def test_eleven_cameras_matching_the_images(cameras) -> None:
    assert list(cameras) == [f"{i:04d}.jpg" for i in range(11)]
    assert read_strecha_cameras(FOUNTAIN).keys() == cameras.keys()  # dataset root works too
    for name, camera in cameras.items():
        with Image.open(FOUNTAIN / "images" / name) as image:
            assert image.size == (camera.width, camera.height) == (1024, 683)
        K = camera.K
        assert K[0, 1] == 0 and np.allclose(K[2], [0, 0, 1])
        # principal point near the centre of the stated image size, square pixels
        assert abs(K[0, 2] - camera.width / 2) < 0.05 * camera.width
        assert abs(K[1, 2] - camera.height / 2) < 0.05 * camera.height
        assert K[0, 0] == pytest.approx(K[1, 1], rel=0.01)
        fov = np.degrees(2 * np.arctan(camera.width / 2 / K[0, 0]))
        assert 40 < fov < 70, fov  # a normal lens (the data says ~58 degrees)
        np.testing.assert_array_equal(camera.distortion, [0, 0, 0])


def test_rotations_are_proper(cameras) -> None:
    for camera in cameras.values():
        R = camera.R_cam_to_world
        rows = (FOUNTAIN / "cameras" / f"{camera.name}.camera").read_text().split("\n")
        np.testing.assert_allclose(R, np.loadtxt(rows[4:7]), atol=1e-5)  # the file's R
        np.testing.assert_allclose(R.T @ R, np.eye(3), atol=1e-5)
        assert np.linalg.det(R) == pytest.approx(1.0, abs=1e-5)
        R_w2c, t = camera.world_to_camera()
        np.testing.assert_allclose(R_w2c @ camera.center + t, 0.0, atol=1e-12)


def test_optical_axes_converge_on_the_fountain(cameras) -> None:
    centers = np.array([c.center for c in cameras.values()])
    axes = np.array([c.optical_axis for c in cameras.values()])
    target = _closest_point_to_lines(centers, axes)
    steps = np.linalg.norm(np.diff(centers, axis=0), axis=1)
    assert np.all((steps > 0.5) & (steps < 3.0))  # a walk around the fountain, ~1.7 m a step
    for camera in cameras.values():
        offset = target - camera.center
        depth = offset @ camera.optical_axis
        assert 5.0 < depth < 15.0  # in front, metres away
        assert np.linalg.norm(offset - depth * camera.optical_axis) < 1.0  # axis passes close
        u, v = camera.project(target)[0]
        # inside every image, and near its centre (within 10% of the size)
        assert abs(u - camera.width / 2) < 0.1 * camera.width, (camera.name, u)
        assert abs(v - camera.height / 2) < 0.1 * camera.height, (camera.name, v)


def test_project_agrees_with_P(cameras) -> None:
    rng = np.random.default_rng(0)
    for camera in cameras.values():
        points = camera.center + camera.optical_axis * 8.0 + rng.normal(scale=2.0, size=(50, 3))
        homogeneous = np.hstack([points, np.ones((50, 1))]) @ camera.P.T
        expected = homogeneous[:, :2] / homogeneous[:, 2:]
        np.testing.assert_allclose(camera.project(points), expected, rtol=1e-10, atol=1e-8)
        R, t = camera.world_to_camera()
        np.testing.assert_allclose(camera.P, camera.K @ np.hstack([R, t[:, None]]))
        behind = camera.center - camera.optical_axis
        assert np.isnan(camera.project(behind)).all()


# --------------------------------------------------------------------------- umeyama


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_umeyama_recovers_a_known_similarity(seed: int) -> None:
    s, R, t = _random_similarity(seed)
    src = np.random.default_rng(seed + 100).normal(scale=10.0, size=(20, 3))
    s_hat, R_hat, t_hat = umeyama_similarity(src, apply_similarity(s, R, t, src))
    assert s_hat == pytest.approx(s, rel=1e-12)
    np.testing.assert_allclose(R_hat, R, atol=1e-12)
    np.testing.assert_allclose(t_hat, t, atol=1e-9)


def _umeyama_reference(src: np.ndarray, dst: np.ndarray):
    """Textbook Umeyama (1991) in numpy, to cross-check the library's result."""
    mu_src, mu_dst = src.mean(0), dst.mean(0)
    a, b = src - mu_src, dst - mu_dst
    U, D, Vt = np.linalg.svd(b.T @ a / len(src))
    S = np.diag([1.0, 1.0, np.sign(np.linalg.det(U @ Vt))])
    R = U @ S @ Vt
    s = np.trace(np.diag(D) @ S) / (a**2).sum(1).mean()
    return s, R, mu_dst - s * R @ mu_src


def test_umeyama_matches_the_textbook_least_squares_on_noisy_points() -> None:
    s, R, t = _random_similarity(7)
    rng = np.random.default_rng(8)
    src = rng.normal(scale=10.0, size=(40, 3))
    dst = apply_similarity(s, R, t, src) + rng.normal(scale=0.5, size=(40, 3))
    got, ref = umeyama_similarity(src, dst), _umeyama_reference(src, dst)
    assert got[0] == pytest.approx(ref[0], rel=1e-10)
    np.testing.assert_allclose(got[1], ref[1], atol=1e-10)
    np.testing.assert_allclose(got[2], ref[2], atol=1e-8)
    # A reflected point set still gets a proper rotation.
    _, R_mirror, _ = umeyama_similarity(src, src * [1, 1, -1])
    assert np.linalg.det(R_mirror) == pytest.approx(1.0)


def test_umeyama_rejects_degenerate_input() -> None:
    line = np.c_[np.arange(5.0), np.zeros(5), np.zeros(5)]
    with pytest.raises(ValueError, match="collinear"):
        umeyama_similarity(line, 2 * line)
    with pytest.raises(ValueError, match="at least 3"):
        umeyama_similarity(np.eye(3)[:2], np.eye(3)[:2])
    with pytest.raises(ValueError, match="shape"):
        umeyama_similarity(np.zeros((4, 3)), np.zeros((5, 3)))


# --------------------------------------------------------------------------- pose errors


def test_rotation_angle_matches_scipy_over_the_whole_range() -> None:
    for angle in [0.0, 1e-7, 0.01, 2.0, 90.0, 179.0, 179.9999]:
        axis = np.random.default_rng(int(angle * 10)).normal(size=3)
        R = Rotation.from_rotvec(np.radians(angle) * axis / np.linalg.norm(axis)).as_matrix()
        assert rotation_angle_deg(R) == pytest.approx(angle, abs=1e-9)


def test_pose_errors_of_truth_against_a_similar_copy_are_zero(cameras) -> None:
    s, R, t = _random_similarity(5)
    moved = {name: _transformed(c, s, R, t) for name, c in cameras.items()}
    errors = pose_errors(moved, cameras)
    assert errors.names == list(cameras) and errors.missing == []
    assert errors.rotation_deg.max() < 1e-9
    assert errors.center_error.max() < 1e-9
    s_back, R_back, _ = errors.similarity  # the inverse of the applied similarity
    assert s_back == pytest.approx(1 / s)
    np.testing.assert_allclose(R_back, R.T, atol=1e-9)
    # Without alignment the copy is far off.
    unaligned = pose_errors(moved, cameras, align=False)
    assert unaligned.center_error.min() > 1.0


def test_pose_errors_measure_a_perturbed_camera(cameras) -> None:
    import pycolmap

    s, R, t = _random_similarity(6)
    moved = {name: _transformed(c, s, R, t) for name, c in cameras.items()}
    # Camera 0003: turned by 2 degrees. Estimates given as pycolmap Rigid3d and (R, t) pairs.
    turn = Rotation.from_rotvec(np.radians(2.0) * np.array([0.0, 0.6, 0.8])).as_matrix()
    R3, t3 = moved["0003.jpg"].world_to_camera()
    estimate: dict[str, object] = {
        name: pycolmap.Rigid3d(pycolmap.Rotation3d(Rw), tw)
        for name, (Rw, tw) in ((n, c.world_to_camera()) for n, c in moved.items())
    }
    estimate["0003.jpg"] = (turn @ R3, turn @ t3)  # same centre, rotated camera
    del estimate["0010.jpg"]
    errors = pose_errors(estimate, cameras)
    assert errors.missing == ["0010.jpg"] and len(errors.names) == 10
    by_name = dict(zip(errors.names, errors.rotation_deg))
    assert by_name["0003.jpg"] == pytest.approx(2.0, abs=1e-9)
    assert max(v for k, v in by_name.items() if k != "0003.jpg") < 1e-9
    assert errors.center_error.max() < 1e-9
    summary = errors.summary()
    assert summary["cameras"] == 10 and summary["rotation_deg_max"] == pytest.approx(2.0)


# --------------------------------------------------------------------------- bad input


def test_bad_camera_files(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no \\*.camera files"):
        read_strecha_cameras(tmp_path)
    with pytest.raises(ValueError, match="does not exist"):
        read_strecha_cameras(tmp_path / "missing")
    short = tmp_path / "0000.jpg.camera"
    short.write_text("1 0 0\n0 1 0\n0 0 1\n")
    with pytest.raises(ValueError, match="0000.jpg.camera"):
        read_strecha_camera(short)
    skewed = tmp_path / "0001.jpg.camera"
    skewed.write_text(
        "900 0 512\n0 900 340\n0 0 1\n0 0 0\n1 0 0\n0 2 0\n0 0 1\n0 0 0\n1024 683\n"
    )
    with pytest.raises(ValueError, match="not a rotation"):
        read_strecha_camera(skewed)
