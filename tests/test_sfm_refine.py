"""The refinement stage (citysplat.sfm.refine): bundle adjustment brings a wrong focal length
back to the truth on a real fountain-P11 model, and the drift guard undoes a refinement that
moves a focal further from its EXIF prior than allowed; the principal point, held at the image
centre while mapping, moves to the true one, and its guard undoes a larger move."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import citysplat  # noqa: F401  (loads zlib before pycolmap)
from citysplat.groundtruth import read_strecha_cameras
from citysplat.sfm.inputs import SfmInput
from citysplat.sfm.intrinsics import from_matrix
from citysplat.sfm.options import SfmOptions
from citysplat.sfm.priors import CameraRoles
from citysplat.sfm.reconstruct import reconstruct
from citysplat.sfm.refine import refine_intrinsics, refine_model, refine_principal_points

pycolmap = pytest.importorskip("pycolmap")

OPTIONS = SfmOptions(max_num_features=2048, first_octave=0)
WRONG = 1.06  # the EXIF focal of this test is 6 % too long


@pytest.fixture(scope="module")
def model(shared_data, tmp_path_factory):
    """(the model, its camera id, the true focal in pixels) of six 640 px fountain-P11
    thumbnails reconstructed with their true intrinsics."""
    root = shared_data / "fountain-P11"
    folder = tmp_path_factory.mktemp("fountain")
    truth = read_strecha_cameras(root / "cameras")
    inputs = []
    for name in list(truth)[:6]:
        image = Image.open(root / "images" / name)
        image.thumbnail((640, 640))
        image.save(folder / name, quality=92)
        camera = from_matrix(truth[name].K, truth[name].width, truth[name].height)
        inputs.append(SfmInput(name, folder / name, camera=camera))
    result = reconstruct(inputs, folder / "work", folder / "out", options=OPTIONS)
    assert result.registered_images == 6
    (camera_id, camera), = result.reconstruction.cameras.items()
    return result.reconstruction, camera_id, float(camera.mean_focal_length())


def _with_focal_scaled(reconstruction, camera_id: int, factor: float):
    copy = pycolmap.Reconstruction(reconstruction)
    camera = copy.cameras[camera_id]
    params = np.asarray(camera.params, dtype=np.float64).copy()
    params[:2] *= factor  # PINHOLE: fx, fy
    camera.params = params
    return copy


def test_refinement_brings_a_wrong_exif_focal_back(model):
    reconstruction, camera_id, true_focal = model
    wrong = _with_focal_scaled(reconstruction, camera_id, WRONG)
    assert wrong.cameras[camera_id].mean_focal_length() == pytest.approx(WRONG * true_focal)
    roles = CameraRoles(held={camera_id}, free={camera_id},
                        prior_focal={camera_id: WRONG * true_focal})
    refined, messages = refine_model(wrong, roles, max_focal_change=0.15)
    assert messages == [] and refined is not wrong  # a refined copy
    focal = refined.cameras[camera_id].mean_focal_length()
    assert abs(focal / true_focal - 1.0) < 0.015, (focal, true_focal)


def test_a_refinement_beyond_the_guard_is_undone_with_a_message(model):
    reconstruction, camera_id, true_focal = model
    wrong = _with_focal_scaled(reconstruction, camera_id, WRONG)
    roles = CameraRoles(free={camera_id}, prior_focal={camera_id: WRONG * true_focal})
    kept, messages = refine_intrinsics(wrong, roles, max_focal_change=0.02)
    assert kept is wrong
    assert kept.cameras[camera_id].mean_focal_length() == pytest.approx(WRONG * true_focal)
    assert len(messages) == 1 and "EXIF focal" in messages[0] and "kept" in messages[0]


def test_nothing_is_refined_when_no_camera_was_held(model):
    reconstruction, camera_id, _ = model
    same, messages = refine_model(reconstruction, CameraRoles(free={camera_id}), 0.15)
    assert same is reconstruction and messages == []


def test_a_calibrated_camera_keeps_its_principal_point(model):
    reconstruction, camera_id, _ = model
    same, messages = refine_model(reconstruction, CameraRoles(held={camera_id}), 0.15,
                                  refine_principal_point=True)
    assert same is reconstruction and messages == []


@pytest.fixture(scope="module")
def centred(shared_data, tmp_path_factory):
    """(the model, its camera id, the true principal point) of six 640 px fountain-P11
    thumbnails reconstructed with their true focal length and the principal point at the image
    centre, held while mapping (what mapping does with a refined camera's), with first octave
    -1 and 8,192 features: the true principal point is (-3.2, -3.7) px from the centre, 0.8 %
    of the width."""
    root = shared_data / "fountain-P11"
    folder = tmp_path_factory.mktemp("fountain-centred")
    truth = read_strecha_cameras(root / "cameras")
    inputs, true_point = [], None
    for name in list(truth)[:6]:
        image = Image.open(root / "images" / name)
        image.thumbnail((640, 640))
        image.save(folder / name, quality=92)
        K = np.array(truth[name].K, dtype=np.float64)
        scale = image.width / truth[name].width
        true_point = (K[0, 2] * scale, K[1, 2] * scale)
        K[0, 2], K[1, 2] = truth[name].width / 2, truth[name].height / 2
        camera = from_matrix(K, truth[name].width, truth[name].height)
        inputs.append(SfmInput(name, folder / name, camera=camera))
    result = reconstruct(inputs, folder / "work", folder / "out",
                         options=SfmOptions(first_octave=-1))
    assert result.registered_images == 6
    (camera_id, camera), = result.reconstruction.cameras.items()
    assert (camera.principal_point_x, camera.principal_point_y) == pytest.approx(
        (camera.width / 2, camera.height / 2), abs=0.1)  # the thumbnail's rounding
    return result.reconstruction, camera_id, np.array(true_point)


def _principal_point(reconstruction, camera_id: int) -> np.ndarray:
    camera = reconstruction.cameras[camera_id]
    return np.array([camera.principal_point_x, camera.principal_point_y])


def test_the_principal_point_moves_to_the_true_one(centred):
    reconstruction, camera_id, truth = centred
    before = _principal_point(reconstruction, camera_id)
    # a camera refined while mapping (a guess): refine_model refines its principal point
    refined, messages = refine_model(reconstruction, CameraRoles(free={camera_id}), 0.15,
                                     refine_principal_point=True, max_principal_point_shift=0.02)
    assert messages == [] and refined is not reconstruction  # a refined copy
    after = _principal_point(refined, camera_id)
    assert np.linalg.norm(_principal_point(reconstruction, camera_id) - before) == 0.0
    print(f"\nprincipal point: centre {before.round(2)}, refined {after.round(2)}, "
          f"true {truth.round(2)}")
    assert np.linalg.norm(before - truth) > 4.0  # 4.9 px
    assert np.linalg.norm(after - truth) < 0.5 * np.linalg.norm(before - truth)


def test_a_principal_point_move_beyond_the_guard_is_undone_with_a_message(centred):
    reconstruction, camera_id, _ = centred
    before = _principal_point(reconstruction, camera_id)
    kept, messages = refine_principal_points(reconstruction, {camera_id}, max_shift=0.002)
    assert kept is reconstruction
    assert np.array_equal(_principal_point(kept, camera_id), before)
    assert len(messages) == 1 and "principal point kept" in messages[0], messages
