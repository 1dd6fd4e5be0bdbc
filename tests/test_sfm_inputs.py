"""The inputs stage (citysplat.sfm.inputs): SfmInput from API entities and photos, name checks,
and screening of real images (fountain-P11 thumbnails, a truncated file, a blank frame)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import citysplat  # noqa: F401  (loads zlib before pycolmap)
from citysplat.frames import LocalFrame
from citysplat.groundtruth import read_strecha_cameras
from citysplat.layout import image_file_name
from citysplat.positions import COMPUTED_SIGMA_M, GPS_SIGMA_M
from citysplat.sfm.inputs import (
    NotEnoughImagesError,
    SfmInput,
    SfmInputError,
    check_names,
    screen_inputs,
)
from citysplat.sfm.intrinsics import from_matrix

FRAME = LocalFrame(13.19, 55.70, 20.0)


def _entity(**extra) -> dict:
    """An API v4 image entity of a perspective camera 10 m east / 20 m north of FRAME's
    origin (computed position) with a raw GPS fix 3 m further east."""
    computed = FRAME.to_lonlat([[10.0, 20.0, 2.0]])[0]
    raw = FRAME.to_lonlat([[13.0, 20.0, 2.0]])[0]
    return {"id": "4711", "width": 640, "height": 480, "camera_type": "perspective",
            "camera_parameters": [0.8, 0.0, 0.0], "sequence": "s1", "captured_at": 1000,
            "computed_geometry": {"type": "Point", "coordinates": [computed[0], computed[1]]},
            "computed_altitude": 22.0, "computed_compass_angle": 91.0,
            "geometry": {"type": "Point", "coordinates": [raw[0], raw[1]]}, "altitude": 22.0,
            "compass_angle": 80.0, **extra}


def test_an_entity_gives_its_best_position_and_heading_with_their_sigma():
    item = SfmInput.from_entity(_entity(), "x.jpg", FRAME)
    assert item.name == image_file_name("4711") and item.camera.source == "api"
    assert np.allclose(item.prior_enu, (10.0, 20.0, 2.0), atol=1e-3)
    assert item.prior_source == "computed" and item.prior_sigma_m == COMPUTED_SIGMA_M
    assert item.heading_deg == 91.0 and item.sequence == "s1" and item.order == 1000.0
    raw = SfmInput.from_entity(_entity(), "x.jpg", FRAME, use_computed=False)
    assert np.allclose(raw.prior_enu, (13.0, 20.0, 2.0), atol=1e-3)
    assert raw.prior_source == "gps" and raw.prior_sigma_m == GPS_SIGMA_M
    assert raw.heading_deg == 80.0
    nowhere = SfmInput.from_entity(_entity(computed_geometry=None, geometry=None), "x.jpg",
                                   FRAME)
    assert nowhere.prior_enu is None and nowhere.prior_sigma_m is None
    pano = SfmInput.from_entity(_entity(camera_type="spherical", camera_parameters=[]),
                                "x.jpg", FRAME)
    assert pano.camera is None and "panorama" in pano.unusable


def test_a_photo_gives_its_gps_with_the_gps_sigma(shared_data):
    from citysplat.photos import gps_track_enu, scan_photos

    scan = scan_photos(shared_data / "lund" / "images")
    frame, enu = gps_track_enu(scan)
    item = SfmInput.from_photo(scan.geotagged[0], frame)
    assert item.prior_sigma_m == GPS_SIGMA_M and item.prior_source == "exif_gps"
    assert np.allclose(item.prior_enu, enu[0], atol=1e-6)
    assert item.camera.source == "exif" and not item.camera.fixed
    assert SfmInput.from_photo(scan.geotagged[0], None).prior_enu is None


def test_names_colmap_cannot_take_are_refused():
    ok = [SfmInput(f"{k}.jpg", Path(".")) for k in range(3)]
    check_names(ok)
    with pytest.raises(SfmInputError, match="unique; repeated: 1.jpg"):
        check_names([*ok, SfmInput("1.jpg", Path("."))])
    for bad in ("my photo.jpg", "/abs.jpg", "../up.jpg"):
        with pytest.raises(SfmInputError, match="relative and free of whitespace"):
            check_names([*ok, SfmInput(bad, Path("."))])


@pytest.fixture(scope="module")
def fountain(shared_data, tmp_path_factory) -> tuple[dict, Path]:
    """(ground-truth cameras, a folder of 512 px thumbnails of fountain-P11)."""
    root = shared_data / "fountain-P11"
    folder = tmp_path_factory.mktemp("fountain")
    truth = read_strecha_cameras(root / "cameras")
    for name in list(truth)[:4]:
        image = Image.open(root / "images" / name)
        image.thumbnail((512, 512))
        image.save(folder / name, quality=92)
    return truth, folder


def test_screening_keeps_good_images_and_says_why_of_the_rest(fountain, tmp_path):
    truth, folder = fountain
    names = sorted(p.name for p in folder.iterdir())
    inputs = [SfmInput(n, folder / n, camera=from_matrix(truth[n].K, truth[n].width,
                                                         truth[n].height)) for n in names]
    data = (folder / names[0]).read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 3])
    Image.new("RGB", (512, 342), (128, 128, 128)).save(tmp_path / "blank.jpg")
    square = from_matrix(truth[names[0]].K, 1000, 1000)
    inputs += [SfmInput("cut.jpg", tmp_path / "cut.jpg"),
               SfmInput("blank.jpg", tmp_path / "blank.jpg"),
               SfmInput("pano.jpg", folder / names[0], unusable="a panorama"),
               SfmInput("square.jpg", folder / names[1], camera=square),
               SfmInput("guess.jpg", folder / names[2])]
    screened = screen_inputs(inputs)
    assert [i.name for i in screened.usable] == [*names, "guess.jpg"]
    assert screened.unusable["cut.jpg"].startswith("corrupt")
    assert screened.unusable["blank.jpg"].startswith("blurred")
    assert screened.unusable["pano.jpg"] == "a panorama"
    assert "aspect ratio" in screened.unusable["square.jpg"]
    # the ground truth's 1024 px camera, rescaled to the 512 px thumbnail
    thumb = screened.usable[0].camera
    scale = thumb.width / truth[names[0]].width
    assert thumb.params[0] == pytest.approx(truth[names[0]].K[0, 0] * scale, rel=1e-3)
    assert screened.usable[-1].camera.source == "default"
    assert "without calibration" in screened.messages[0]
    with pytest.raises(NotEnoughImagesError, match="2 usable image"):
        screen_inputs(inputs[:2] + inputs[-5:-1])
