"""The mapping stage (citysplat.sfm.mapping): both mappers on the match graph of real
fountain-P11 images, the initial pairs chosen for the incremental mapper, and the parallax of
a pair from its essential matrix against a geometry whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import citysplat  # noqa: F401  (loads zlib before pycolmap)
from citysplat.groundtruth import pose_errors, read_strecha_cameras
from citysplat.layout import SfmWorkLayout
from citysplat.sfm.inputs import SfmInput
from citysplat.sfm.intrinsics import from_matrix
from citysplat.sfm.mapping import initial_pairs, map_components, parallax_from_essential
from citysplat.sfm.matching import MatchGraph
from citysplat.sfm.options import SfmOptions
from citysplat.sfm.priors import CameraRoles
from citysplat.sfm.reconstruct import reconstruct

pycolmap = pytest.importorskip("pycolmap")

OPTIONS = SfmOptions(max_num_features=2048, first_octave=0)
IMAGES = 6


@pytest.fixture(scope="module")
def matched(shared_data, tmp_path_factory):
    """(work layout, ground truth, match graph) after a reconstruction of six 640 px
    fountain-P11 thumbnails with their true intrinsics (every pair matched)."""
    root = shared_data / "fountain-P11"
    folder = tmp_path_factory.mktemp("fountain")
    truth = read_strecha_cameras(root / "cameras")
    inputs = []
    for name in list(truth)[:IMAGES]:
        image = Image.open(root / "images" / name)
        image.thumbnail((640, 640))
        image.save(folder / name, quality=92)
        camera = from_matrix(truth[name].K, truth[name].width, truth[name].height)
        inputs.append(SfmInput(name, folder / name, camera=camera))
    work = SfmWorkLayout(folder / "work")
    result = reconstruct(inputs, work, folder / "out", options=OPTIONS)
    assert result.registered_images == IMAGES
    return work, truth, MatchGraph.read(work.database)


@pytest.mark.parametrize("mapper", ["incremental", "global"])
def test_each_mapper_registers_the_component_close_to_the_truth(matched, mapper):
    work, truth, graph = matched
    held = CameraRoles(held=set(graph.cameras), all_held=True)
    mapped = map_components(graph, work, mapper=mapper, cameras=held, options=OPTIONS)
    assert mapped.component_mappers == [mapper] and len(mapped.models) == 1
    model = mapped.largest
    assert model.num_reg_images() == IMAGES
    poses = {}
    for image in model.images.values():
        pose = image.cam_from_world()
        poses[image.name] = (np.asarray(pose.rotation.matrix()), np.asarray(pose.translation))
    errors = pose_errors(poses, {n: truth[n] for n in poses}).summary()
    assert errors["rotation_deg_median"] < 1.0
    assert errors["center_error_median"] < 0.02  # metres, of a 10 m wide arc
    assert (work.component_dir(0) / mapper).is_dir()


def test_auto_stops_at_incremental_when_it_registers_everything(matched):
    work, _, graph = matched
    held = CameraRoles(held=set(graph.cameras), all_held=True)
    mapped = map_components(graph, work, cameras=held, options=OPTIONS)
    assert mapped.component_mappers == ["incremental"]
    assert not (work.component_dir(0) / "global").exists()


def test_initial_pairs_have_parallax_and_come_best_band_first(matched):
    _, _, graph = matched
    component = graph.components(OPTIONS.component_min_inliers)[0]
    chosen = initial_pairs(graph, component, 3)
    assert 1 <= len(chosen) <= 3
    assert all(a in component and b in component and parallax >= 4.0
               for a, b, parallax in chosen)
    bands = [0 if p >= 16 else 1 if p >= 8 else 2 for _, _, p in chosen]
    assert bands == sorted(bands)
    assert initial_pairs(graph, component, 0) == []


def _skew(v: np.ndarray) -> np.ndarray:
    return np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])


def test_the_parallax_of_a_known_pair():
    """Two cameras 2 m apart sideways, the second turned 5 degrees, looking at points 8-12 m
    away: the parallax is the median angle between matched rays with the rotation taken
    out, whichever of the essential matrix's two rotations is tried."""
    rng = np.random.default_rng(0)
    points = np.column_stack([rng.uniform(-4, 4, 200), rng.uniform(-3, 3, 200),
                              rng.uniform(8, 12, 200)])
    angle = np.radians(5.0)
    R = np.array([[np.cos(angle), 0, np.sin(angle)], [0, 1, 0],
                  [-np.sin(angle), 0, np.cos(angle)]])  # cam2_from_cam1
    t = -R @ np.array([2.0, 0.0, 0.0])
    camera = pycolmap.Camera.create_from_model_name(1, "PINHOLE", 500.0, 640, 480)
    K = np.asarray(camera.calibration_matrix())
    in2 = points @ R.T + t

    def pixels(p):
        uv = (p / p[:, 2:]) @ K.T
        return uv[:, :2]

    parallax, forward = parallax_from_essential(_skew(t) @ R, camera, pixels(points),
                                                camera, pixels(in2))
    rays1 = points / np.linalg.norm(points, axis=1, keepdims=True)
    rays2 = in2 / np.linalg.norm(in2, axis=1, keepdims=True)
    expected = np.median(np.degrees(np.arccos(np.clip(np.sum(rays1 * (rays2 @ R), axis=1),
                                                      -1, 1))))
    assert parallax == pytest.approx(expected, abs=1e-6)
    assert 8.0 < parallax < 16.0 and forward < 0.2  # a sideways baseline
