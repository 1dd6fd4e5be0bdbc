"""The priors stage (citysplat.sfm.priors): ENU position priors written to a real COLMAP
database in place of the reader's EXIF GPS, and the roles of the cameras."""

from __future__ import annotations

import numpy as np
import pytest

import citysplat  # noqa: F401  (loads zlib before pycolmap)
from citysplat.layout import SfmWorkLayout
from citysplat.positions import GPS_SIGMA_M
from citysplat.sfm.inputs import SfmInput
from citysplat.sfm.intrinsics import default_guess, from_api, from_exif
from citysplat.sfm.priors import PositionPriors, camera_roles, write_pose_priors
from citysplat.sfm.workdir import link_images

pycolmap = pytest.importorskip("pycolmap")


@pytest.fixture()
def database(shared_data, tmp_path):
    """(inputs, database images by name) of four lund photos imported into a database by
    COLMAP's reader (which writes their EXIF GPS as WGS84 priors), one camera per photo."""
    lund = shared_data / "lund" / "images"
    inputs = [
        SfmInput("01.jpg", lund / "01.jpg", camera=from_api("perspective", [0.97], 1024, 768),
                 prior_enu=(1.0, 2.0, 3.0), prior_sigma_m=(1.0, 1.0)),
        SfmInput("02.jpg", lund / "02.jpg", camera=from_exif(995.6, 1024, 768),
                 prior_enu=(4.0, 5.0, 6.0)),  # no sigma: the GPS's
        SfmInput("03.jpg", lund / "03.jpg", camera=default_guess(1024, 768),
                 prior_enu=(7.0, 8.0, 9.0), prior_sigma_m=(2.0, 4.0)),
        SfmInput("04.jpg", lund / "04.jpg", camera=from_exif(900.0, 1024, 768)),
    ]
    work = SfmWorkLayout(tmp_path)
    link_images(inputs, work.images_dir)
    pycolmap.Database.open(work.database).close()
    pycolmap.import_images(work.database, work.images_dir, pycolmap.CameraMode.PER_IMAGE,
                           [i.name for i in inputs])
    with pycolmap.Database.open(work.database) as db:
        assert db.num_pose_priors() > 0  # the reader's own, from EXIF GPS
        images = {image.name: image for image in db.read_all_images()}
    return inputs, work.database, images


def test_pose_priors_replace_the_readers_gps_with_enu_and_their_covariance(database):
    inputs, path, images = database
    assert write_pose_priors(path, inputs, images) == 3
    with pycolmap.Database.open(path) as db:
        priors = {prior.corr_data_id: prior for prior in db.read_all_pose_priors()}
    assert len(priors) == 3
    by_data = {images[i.name].data_id: i for i in inputs}
    for data_id, prior in priors.items():
        item = by_data[data_id]
        h, v = item.prior_sigma_m or GPS_SIGMA_M
        assert prior.coordinate_system == pycolmap.PosePriorCoordinateSystem.CARTESIAN
        assert np.allclose(prior.position, item.prior_enu)
        assert np.allclose(np.diag(prior.position_covariance), [h * h, h * h, v * v])
    positions = PositionPriors.of(inputs)
    assert set(positions.positions) == {"01.jpg", "02.jpg", "03.jpg"}
    assert positions.sigma("02.jpg") == GPS_SIGMA_M and positions.sigma("01.jpg") == (1.0, 1.0)


def test_camera_roles_hold_api_and_exif_cameras_and_refine_exif_and_guesses(database):
    inputs, _, images = database
    roles = camera_roles(inputs, images)
    camera = {name: image.camera_id for name, image in images.items()}
    assert roles.held == {camera["01.jpg"], camera["02.jpg"], camera["04.jpg"]}
    assert roles.free == {camera["02.jpg"], camera["03.jpg"], camera["04.jpg"]}
    assert roles.prior_focal == {camera["02.jpg"]: pytest.approx(995.6),
                                 camera["04.jpg"]: pytest.approx(900.0)}
    assert not roles.all_held
    assert camera_roles([i for i in inputs if i.name != "03.jpg"], images).all_held
