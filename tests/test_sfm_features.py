"""The features stage (citysplat.sfm.features): SIFT of real images into the work folder's
database, one camera per distinct intrinsics, reused while nothing changed."""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

import citysplat  # noqa: F401  (loads zlib before pycolmap)
from citysplat.groundtruth import read_strecha_cameras
from citysplat.layout import SfmWorkLayout
from citysplat.sfm.features import camera_groups, extract_features, first_octave
from citysplat.sfm.inputs import SfmInput, screen_inputs
from citysplat.sfm.intrinsics import default_guess, from_matrix
from citysplat.sfm.options import SfmOptions
from citysplat.sfm.workdir import WorkState, claim_work_dir, link_images

pycolmap = pytest.importorskip("pycolmap")

OPTIONS = SfmOptions(max_num_features=2048, first_octave=0)


@pytest.fixture(scope="module")
def work(shared_data, tmp_path_factory):
    """(usable inputs, work layout) of three 640 px fountain-P11 thumbnails, the third with a
    guessed camera (a second COLMAP camera), linked into a claimed work folder."""
    root = shared_data / "fountain-P11"
    folder = tmp_path_factory.mktemp("fountain")
    truth = read_strecha_cameras(root / "cameras")
    inputs = []
    for k, name in enumerate(list(truth)[:3]):
        image = Image.open(root / "images" / name)
        image.thumbnail((640, 640))
        image.save(folder / name, quality=92)
        camera = from_matrix(truth[name].K, truth[name].width, truth[name].height)
        inputs.append(SfmInput(name, folder / name, camera=None if k == 2 else camera))
    usable = screen_inputs(inputs).usable
    work = SfmWorkLayout(folder / "work")
    claim_work_dir(work)
    link_images(usable, work.images_dir)
    return usable, work


def test_features_are_extracted_into_the_database_and_reused(work):
    usable, layout = work
    state = WorkState.load(layout)
    features = extract_features(usable, layout, OPTIONS, state)
    assert not features.reused and set(features.images) == {i.name for i in usable}
    assert state.features == features.key and WorkState.load(layout).features == features.key
    with pycolmap.Database.open(features.database) as db:
        counts = [db.num_keypoints_for_image(image.image_id)
                  for image in features.images.values()]
        cameras = db.read_all_cameras()
    assert min(counts) > 300 and max(counts) <= OPTIONS.max_num_features
    assert len(cameras) == 2  # the ground truth's camera, and the guess of the third image
    t0 = time.perf_counter()
    again = extract_features(usable, layout, OPTIONS, WorkState.load(layout))
    assert again.reused and again.key == features.key and time.perf_counter() - t0 < 1.0
    assert features.present(usable) == usable and features.failed(usable) == {}


def test_other_settings_extract_again(work):
    usable, layout = work
    fewer = replace(OPTIONS, max_num_features=200)
    features = extract_features(usable, layout, fewer, WorkState.load(layout))
    assert not features.reused
    with pycolmap.Database.open(features.database) as db:
        counts = [db.num_keypoints_for_image(image.image_id)
                  for image in features.images.values()]
    # SIFT keeps every orientation of the features it takes: somewhat more than the cap
    assert max(counts) < 2 * fewer.max_num_features


def test_one_camera_per_distinct_intrinsics_and_the_octave_rule(work):
    usable, _ = work
    groups = camera_groups(usable)
    assert [len(g) for g in groups.values()] == [2, 1]
    assert first_octave(None, default_guess(640, 427)) == -1
    # refined cameras (guesses, EXIF priors): upsampled up to 1600 px
    assert first_octave(None, default_guess(1024, 768)) == -1
    assert first_octave(None, default_guess(1600, 1200)) == -1
    assert first_octave(None, default_guess(2048, 1536)) == 0
    # calibrated cameras (the API's, given ones): under 1000 px only, as the districts had it
    calibrated = usable[0].camera
    assert calibrated.fixed and first_octave(None, calibrated) == -1  # a 640 px thumbnail
    assert first_octave(None, from_matrix(np.diag([900.0, 900.0, 1.0]), 1024, 768)) == 0
    assert first_octave(0, default_guess(1024, 768)) == 0
    assert first_octave(-1, default_guess(2048, 1536)) == -1
