"""The merge stage (citysplat.sfm.merge) on real fountain-P11 images matched as two separate
components: each model is georegistered on its own to the true camera centres and the smaller
is merged into the larger; an image far from its prior is dropped as misregistered."""

from __future__ import annotations

from dataclasses import replace
from itertools import combinations

import numpy as np
import pytest
from PIL import Image

import citysplat  # noqa: F401  (loads zlib before pycolmap)
from citysplat.groundtruth import read_strecha_cameras
from citysplat.layout import SfmWorkLayout
from citysplat.sfm.inputs import SfmInput
from citysplat.sfm.intrinsics import from_matrix
from citysplat.sfm.mapping import map_components
from citysplat.sfm.matching import MatchGraph
from citysplat.sfm.merge import drop_misregistered, merge_into, place_models
from citysplat.sfm.options import SfmOptions
from citysplat.sfm.priors import CameraRoles, PositionPriors
from citysplat.sfm.reconstruct import reconstruct

pycolmap = pytest.importorskip("pycolmap")

# the fountain's world frame is not ENU (no level horizon); three cameras make a model
OPTIONS = SfmOptions(max_num_features=2048, first_octave=0, upright=False, min_merge_images=3)
SIGMA_M = (0.005, 0.005)  # the ground truth's centres are good to millimetres


@pytest.fixture(scope="module")
def two_components(shared_data, tmp_path_factory):
    """(result, truth, inputs, work) of eight 640 px fountain-P11 thumbnails whose pairs join
    the even and the odd ones only (two components of four), with the true centres as
    priors."""
    root = shared_data / "fountain-P11"
    folder = tmp_path_factory.mktemp("fountain")
    truth = read_strecha_cameras(root / "cameras")
    names = list(truth)[:8]
    inputs = []
    for name in names:
        image = Image.open(root / "images" / name)
        image.thumbnail((640, 640))
        image.save(folder / name, quality=92)
        camera = from_matrix(truth[name].K, truth[name].width, truth[name].height)
        inputs.append(SfmInput(name, folder / name, camera=camera,
                               prior_enu=tuple(truth[name].center), prior_sigma_m=SIGMA_M))
    pairs = [*combinations(names[0::2], 2), *combinations(names[1::2], 2)]
    work = SfmWorkLayout(folder / "work")
    result = reconstruct(inputs, work, folder / "out", pairs=pairs, options=OPTIONS)
    return result, truth, inputs, work


def test_two_components_become_one_model_in_the_priors_frame(two_components):
    result, truth, _, _ = two_components
    assert result.metrics["models"] == 2
    assert [c["in_model"] for c in result.metrics["components"]] == [True, True]
    assert result.registered_images == 8 and result.georeferenced
    errors = [np.linalg.norm(centre - truth[name].center)
              for name, centre in result.camera_centers().items()]
    assert max(errors) < 0.05, errors  # metres: each half placed by its own four priors
    assert any("placed by their GPS alone" in m for m in result.messages)


def test_merge_into_adds_the_other_models_images_and_points(two_components):
    _, _, inputs, work = two_components
    graph = MatchGraph.read(work.database)
    mapped = map_components(graph, work, cameras=CameraRoles(held=set(graph.cameras),
                                                             all_held=True), options=OPTIONS)
    first, second = mapped.models
    main = pycolmap.Reconstruction(first)
    points_before = main.num_points3D()
    assert merge_into(main, second) == 4
    assert main.num_reg_images() == 8
    assert main.num_points3D() == points_before + second.num_points3D()
    assert merge_into(main, second) == 0  # nothing twice


def test_each_model_is_placed_and_merged_by_place_models(two_components):
    _, truth, inputs, work = two_components
    graph = MatchGraph.read(work.database)
    mapped = map_components(graph, work, cameras=CameraRoles(held=set(graph.cameras),
                                                             all_held=True), options=OPTIONS)
    priors = PositionPriors.of(inputs)

    def copies():  # place_models changes the models in place
        return [pycolmap.Reconstruction(m) for m in mapped.models]

    placed = place_models(copies(), priors, OPTIONS)
    assert placed.georegistration.georeferenced and placed.model.num_reg_images() == 8
    assert len(placed.georegistration.residuals_m) == 8
    alone = place_models(copies(), priors, replace(OPTIONS, merge_models=False))
    assert alone.model.num_reg_images() == 4
    assert [c["in_model"] for c in alone.components] == [True, False]


def test_an_image_far_from_its_prior_is_dropped(two_components):
    result, truth, inputs, _ = two_components
    model = pycolmap.Reconstruction(result.reconstruction)
    moved = {i.name: i.prior_enu for i in inputs}
    moved["0004.jpg"] = tuple(np.asarray(moved["0004.jpg"]) + (30.0, 0.0, 0.0))
    priors = PositionPriors(moved, {name: SIGMA_M for name in moved})
    dropped = drop_misregistered(model, priors, max_error_m=10.0)
    assert list(dropped) == ["0004.jpg"] and dropped["0004.jpg"] == pytest.approx(30.0, abs=0.2)
    assert model.num_reg_images() == 7
