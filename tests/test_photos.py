"""Bring-your-own-photos parsing, on the real Lund walk (29 geotagged phone photos) and on
small folders built from it with the problems users actually have."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from PIL import ExifTags, Image

from citysplat.frames import LocalFrame
from citysplat.photos import (
    PhotoFolderError,
    PhotoReadError,
    PhotoRecord,
    gps_track_enu,
    load_oriented,
    read_photo,
    scan_photos,
)

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
LUND = DATA / "lund" / "images"


@pytest.fixture(scope="module")
def lund_dir() -> Path:
    if not LUND.is_dir():
        pytest.skip("shared data set lund is absent (expected at ../shared/data/lund/images)")
    return LUND


@pytest.fixture(scope="module")
def lund(lund_dir: Path):
    return scan_photos(lund_dir)


# --------------------------------------------------------------------------- the Lund walk


def test_lund_all_photos_geotagged_in_lund(lund) -> None:
    assert len(lund) == 29
    assert lund.skipped == []
    assert [r.name for r in lund] == [f"{i:02d}.jpg" for i in range(1, 30)]
    for record in lund:
        assert isinstance(record, PhotoRecord)
        assert record.has_gps, record.name
        assert 55.69 < record.lat < 55.71 and 13.18 < record.lon < 13.21, record
        assert record.alt is not None and 0.0 < record.alt < 100.0  # Lund is ~35 m above sea
        assert (record.width, record.height) == (1024, 768)
        assert record.exif_orientation == 1
        assert record.issues == ()
    assert len(lund.geotagged) == 29


def test_lund_camera_time_and_focal_prior(lund) -> None:
    # Standard EXIF has no Make/Model/DateTimeOriginal here: the Mapillary app put them in the
    # JSON ImageDescription, which the reader falls back to.
    first = lund[0]
    assert (first.make, first.model) == ("Apple", "iPhone4,1")
    assert first.focal_length_mm == pytest.approx(4.3)
    assert first.focal_35mm == 35
    assert first.focal_px_source == "exif_35mm"
    assert first.focal_px == pytest.approx(35 / 36 * 1024)
    assert first.heading_deg is not None and 0 <= first.heading_deg < 360
    times = [r.captured_at for r in lund]
    assert all(t is not None for t in times)
    assert times[0] == datetime(2014, 6, 7, 10, 24, 5, 656000, tzinfo=UTC)
    assert all(b > a for a, b in zip(times, times[1:])), "capture times must increase"


def test_lund_gps_track_is_a_plausible_walk(lund) -> None:
    frame, enu = gps_track_enu(lund)
    assert isinstance(frame, LocalFrame)
    assert enu.shape == (29, 3)
    assert 55.69 < frame.lat0 < 55.71 and 13.18 < frame.lon0 < 13.21
    # The origin is the median position: the track sits about it.
    assert np.all(np.abs(np.median(enu[:, :2], axis=0)) < 5.0)
    steps = np.linalg.norm(np.diff(enu[:, :2], axis=0), axis=1)
    assert steps.max() < 20.0  # a photo every few metres (largest gap ~16 m)
    assert 100.0 < steps.sum() < 400.0  # ~200 m walked
    assert np.linalg.norm(enu[-1, :2] - enu[0, :2]) > 100.0  # a street, not a loop in place
    # Walking speed from GPS spacing and capture time.
    seconds = np.array(
        [(b.captured_at - a.captured_at).total_seconds() for a, b in zip(lund, lund[1:])]
    )
    assert np.all(steps / seconds < 3.0)
    # Street-level: heights stay within a few metres of each other.
    assert np.abs(enu[:, 2]).max() < 10.0
    # Back to lon/lat through the frame.
    lonlat = frame.to_lonlat(enu)
    np.testing.assert_allclose(lonlat[:, 0], [r.lon for r in lund], atol=1e-9)
    np.testing.assert_allclose(lonlat[:, 1], [r.lat for r in lund], atol=1e-9)
    np.testing.assert_allclose(lonlat[:, 2], [r.alt for r in lund], atol=1e-6)


# --------------------------------------------------------------------------- orientation


def _with_orientation(src: Path, dst: Path, orientation: int) -> None:
    """Copy ``src`` with the same pixels and EXIF, but another Orientation tag."""
    with Image.open(src) as image:
        exif = image.getexif()
        exif[ExifTags.Base.Orientation] = orientation
        image.save(dst, exif=exif, quality=95)


def test_orientation_is_applied_to_size_and_pixels(lund_dir: Path, tmp_path: Path) -> None:
    rotated = tmp_path / "portrait.jpg"
    _with_orientation(lund_dir / "01.jpg", rotated, 6)  # 6: rotate 90 degrees clockwise to view
    record = read_photo(rotated)
    assert record.exif_orientation == 6
    assert (record.width, record.height) == (768, 1024)
    assert record.has_gps  # metadata survives the rewrite
    upright = load_oriented(rotated)
    assert upright.size == (768, 1024)
    with Image.open(rotated) as raw:
        expected = np.asarray(raw.convert("RGB").transpose(Image.Transpose.ROTATE_270))
    np.testing.assert_array_equal(np.asarray(upright.convert("RGB")), expected)

    upside_down = tmp_path / "upside_down.jpg"
    _with_orientation(lund_dir / "01.jpg", upside_down, 3)
    assert (read_photo(upside_down).width, read_photo(upside_down).height) == (1024, 768)
    assert load_oriented(upside_down).size == (1024, 768)


# --------------------------------------------------------------------------- synthetic EXIF


def _exif_photo(path: Path, *, size=(64, 48), gps=True, **tags) -> None:
    exif = Image.Exif()
    for key in ("Make", "Model", "Orientation"):
        if key in tags:
            exif[ExifTags.Base[key]] = tags[key]
    sub = exif.get_ifd(ExifTags.IFD.Exif)
    for key in ("DateTimeOriginal", "OffsetTimeOriginal", "FocalLength", "FocalLengthIn35mmFilm"):
        if key in tags:
            sub[ExifTags.Base[key]] = tags[key]
    if gps:
        info = exif.get_ifd(ExifTags.IFD.GPSInfo)
        info[ExifTags.GPS.GPSLatitudeRef] = tags.get("lat_ref", "S")
        info[ExifTags.GPS.GPSLatitude] = tags.get("lat", (33.0, 52.0, 12.34))
        info[ExifTags.GPS.GPSLongitudeRef] = tags.get("lon_ref", "W")
        info[ExifTags.GPS.GPSLongitude] = tags.get("lon", (70.0, 40.0, 0.5))
        info[ExifTags.GPS.GPSAltitudeRef] = b"\x01"  # below sea level
        info[ExifTags.GPS.GPSAltitude] = 12.5
    Image.new("RGB", size, (120, 80, 40)).save(path, exif=exif)


def test_exif_signs_offsets_and_sensor_width_focal(tmp_path: Path) -> None:
    path = tmp_path / "a.jpg"
    _exif_photo(path, Make="Canon", Model="EOS 5D", DateTimeOriginal="2021:03:04 05:06:07",
                OffsetTimeOriginal="-03:00", FocalLength=24.0)
    record = read_photo(path, sensor_widths_mm={"Canon EOS 5D": 36.0})
    assert record.lat == pytest.approx(-(33 + 52 / 60 + 12.34 / 3600))
    assert record.lon == pytest.approx(-(70 + 40 / 60 + 0.5 / 3600))
    assert record.alt == pytest.approx(-12.5)
    assert record.captured_at == datetime(2021, 3, 4, 8, 6, 7, tzinfo=UTC)
    assert record.captured_at.utcoffset().total_seconds() == -3 * 3600
    assert (record.make, record.model) == ("Canon", "EOS 5D")
    assert record.focal_35mm is None
    assert record.focal_px == pytest.approx(24.0 / 36.0 * 64)
    assert record.focal_px_source == "sensor_width"
    # Without a sensor width nor a 35 mm equivalent there is no focal prior.
    assert read_photo(path).focal_px is None


def test_zero_gps_fix_is_treated_as_absent(tmp_path: Path) -> None:
    path = tmp_path / "nofix.jpg"
    _exif_photo(path, lat=(0.0, 0.0, 0.0), lon=(0.0, 0.0, 0.0), lat_ref="N", lon_ref="E")
    record = read_photo(path)
    assert not record.has_gps and record.lat is None and record.lon is None
    assert any("0,0" in issue for issue in record.issues)


# --------------------------------------------------------------------------- bad input


def test_missing_folder_names_the_folder(tmp_path: Path) -> None:
    missing = tmp_path / "no_such_folder"
    with pytest.raises(PhotoFolderError, match="does not exist") as info:
        scan_photos(missing)
    assert str(missing) in str(info.value)
    assert isinstance(info.value, ValueError)


def test_empty_folder_says_what_to_put_there(tmp_path: Path) -> None:
    with pytest.raises(PhotoFolderError, match=r"no photos in .*\.jpg") as info:
        scan_photos(tmp_path)
    assert str(tmp_path) in str(info.value)


def test_a_file_instead_of_a_folder(lund_dir: Path) -> None:
    with pytest.raises(PhotoFolderError, match="not a folder"):
        scan_photos(lund_dir / "01.jpg")


def test_dataset_root_points_at_its_images_subfolder(lund_dir: Path) -> None:
    with pytest.raises(PhotoFolderError, match="did you mean .*images"):
        scan_photos(lund_dir.parent)


def test_folder_of_only_bad_files_lists_them(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not a photo")
    (tmp_path / "broken.jpg").write_text("not a jpeg either")
    with pytest.raises(PhotoFolderError) as info:
        scan_photos(tmp_path)
    assert "notes.txt" in str(info.value) and "broken.jpg" in str(info.value)


def test_mixed_folder_keeps_good_photos_and_reports_the_rest(
    lund_dir: Path, tmp_path: Path
) -> None:
    for name in ("01.jpg", "02.jpg"):
        shutil.copy(lund_dir / name, tmp_path / name)
    shutil.copy(lund_dir / "03.jpg", tmp_path / "03.JPEG")  # upper-case suffix
    with Image.open(lund_dir / "04.jpg") as image:  # no EXIF at all: no GPS
        image.save(tmp_path / "04_nogps.png")
    (tmp_path / "notes.txt").write_text("trip notes")
    (tmp_path / "fake.jpg").write_text("<html>this is not a jpeg</html>")
    data = (lund_dir / "05.jpg").read_bytes()
    (tmp_path / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (tmp_path / ".DS_Store").write_bytes(b"\x00\x01")
    (tmp_path / "sub").mkdir()

    scan = scan_photos(tmp_path)

    assert [r.name for r in scan] == ["01.jpg", "02.jpg", "03.JPEG", "04_nogps.png"]
    reasons = {s.path.name: s.reason for s in scan.skipped}
    assert set(reasons) == {"notes.txt", "fake.jpg", "truncated.jpg"}
    assert "not a photo" in reasons["notes.txt"]
    assert "not an image" in reasons["fake.jpg"]
    assert "truncated" in reasons["truncated.jpg"]
    nogps = scan[3]
    assert nogps.lon is None and nogps.lat is None and nogps.alt is None and not nogps.has_gps
    assert (nogps.width, nogps.height) == (1024, 768)
    assert nogps.focal_px is None and nogps.captured_at is None
    assert [r.name for r in scan.geotagged] == ["01.jpg", "02.jpg", "03.JPEG"]
    frame, enu = gps_track_enu(scan)
    assert enu.shape == (3, 3)

    with pytest.raises(PhotoReadError, match="truncated"):
        read_photo(tmp_path / "truncated.jpg")
    with pytest.raises(ValueError, match="GPS"):
        gps_track_enu([nogps])
