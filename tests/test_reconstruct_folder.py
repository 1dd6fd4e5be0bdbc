"""Bring your own photos: ``citysplat.sfm.reconstruct_folder`` on good and bad folders.

Bad input fails early with a one-line ``ValueError`` naming the fix; photos without GPS still
reconstruct, in COLMAP's frame, and say that they cannot be georeferenced; EXIF orientation is
applied (COLMAP reads raw pixels); unreadable files are reported, not fatal.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import ExifTags, Image

import citysplat  # noqa: F401  (loads zlib before pycolmap)
from citysplat.layout import SfmLayout, SfmWorkLayout
from citysplat.photos import PhotoFolderError
from citysplat.sfm.folder import UPRIGHT_DIR, reconstruct_folder, safe_names
from citysplat.sfm.inputs import NotEnoughImagesError, SfmInputError

pycolmap = pytest.importorskip("pycolmap")


def _one_line(exc: Exception) -> str:
    message = str(exc)
    assert "\n" not in message, message
    return message


def test_photo_names_with_spaces_get_unique_safe_names():
    names = safe_names(["a b.jpg", "a_b.jpg", "a  b.jpg", "c d", "plain.jpg"])
    assert names == {"a b.jpg": "a_b.jpg", "a_b.jpg": "a_b_2.jpg", "a  b.jpg": "a_b_3.jpg",
                     "c d": "c_d", "plain.jpg": "plain.jpg"}


def test_empty_folder_is_a_clear_error(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "notes.txt").write_text("not a photo")
    with pytest.raises(PhotoFolderError) as caught:
        reconstruct_folder(folder, tmp_path / "out")
    assert isinstance(caught.value, ValueError)
    assert "no photos in" in _one_line(caught.value) and ".jpg" in str(caught.value)
    with pytest.raises(PhotoFolderError, match="does not exist"):
        reconstruct_folder(tmp_path / "missing", tmp_path / "out")


def test_two_photos_are_not_enough(shared_data, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("01.jpg", "02.jpg"):
        shutil.copyfile(shared_data / "lund" / "images" / name, folder / name)
    with pytest.raises(NotEnoughImagesError) as caught:
        reconstruct_folder(folder, tmp_path / "out")
    assert isinstance(caught.value, SfmInputError) and isinstance(caught.value, ValueError)
    message = _one_line(caught.value)
    assert "at least 3" in message and "add more photos" in message
    assert not SfmLayout(tmp_path / "out").sparse_dir.exists()


def test_three_photos_of_which_two_are_broken(shared_data, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    shutil.copyfile(shared_data / "lund" / "images" / "01.jpg", folder / "01.jpg")
    data = (shared_data / "lund" / "images" / "02.jpg").read_bytes()
    (folder / "02.jpg").write_bytes(data[: len(data) // 3])  # truncated download
    Image.new("RGB", (1024, 768), (128, 128, 128)).save(folder / "03.jpg")  # featureless
    with pytest.raises(NotEnoughImagesError) as caught:
        reconstruct_folder(folder, tmp_path / "out")
    message = _one_line(caught.value)
    assert "usable" in message and "02.jpg" in message


def test_a_work_folder_with_other_files_is_refused(shared_data, tmp_path):
    """The work folder's images/ and database are rewritten: never someone's photo folder."""
    photos = tmp_path / "lund"
    shutil.copytree(shared_data / "lund" / "images", photos / "images")
    with pytest.raises(SfmInputError, match="work folder") as caught:
        reconstruct_folder(photos / "images", tmp_path / "out", work_dir=photos)
    _one_line(caught.value)
    assert len(list((photos / "images").iterdir())) == 29


@pytest.mark.slow
def test_photos_without_gps_reconstruct_but_are_not_georeferenced(shared_data, tmp_path):
    """Six lund photos with the GPS taken out of their EXIF, one of them stored sideways with
    an EXIF orientation tag, one with a space in its name, plus a broken file."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for k, name in enumerate(("10.jpg", "11.jpg", "12.jpg", "13.jpg", "14.jpg", "15.jpg")):
        image = Image.open(shared_data / "lund" / "images" / name)
        exif = image.getexif()
        exif.get_ifd(ExifTags.IFD.Exif)  # loaded, so that it is written back (focal length)
        del exif[ExifTags.IFD.GPSInfo]
        target = folder / ("photo 11.jpg" if name == "11.jpg" else name)
        if k == 3:  # stored rotated, displayed upright thanks to Orientation=6
            exif[ExifTags.Base.Orientation] = 6
            image = image.transpose(Image.Transpose.ROTATE_90)
        image.save(target, quality=95, exif=exif)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    out = SfmLayout(tmp_path / "out")
    result = reconstruct_folder(folder, out.dir)
    print(f"\nno-GPS folder: {result.registered_images}/{result.total_images} registered, "
          f"{result.seconds:.1f} s; {result.messages}")
    assert not result.georeferenced
    assert any("cannot georeference" in m and "GPS" in m for m in result.messages)
    assert result.registered_images >= 5
    assert "photo_11.jpg" in result.registered  # renamed: COLMAP pair lists split on spaces
    assert "broken.jpg" in result.unusable
    assert (out.work_dir / UPRIGHT_DIR / "13.jpg").exists()  # the sideways photo, turned upright
    assert "13.jpg" in result.registered
    assert {c["source"] for c in result.metrics["cameras"].values()} == {"exif"}
    assert len(result.metrics["cameras"]) == 1  # the upright copy shares the others' camera
    metrics = json.loads(out.sfm_metrics.read_text())
    assert metrics["georeferenced"] is False and metrics["gps_residual_median_m"] is None
    assert not out.frame_json.exists()
    model = pycolmap.Reconstruction(out.sparse_dir)
    assert model.num_reg_images() == result.registered_images

    # a second run reuses the features and matches kept in out/work
    again = reconstruct_folder(folder, out.dir)
    assert again.timings["features"] < 0.5 and again.timings["matching"] < 0.5
    assert again.registered == result.registered


def _two_photos_and_a_blank(shared_data, folder):
    """Three readable photos, one of them featureless: the folder scan accepts them, the SfM
    screening then finds 2 usable, after the work folder (and an upright copy) was made."""
    folder.mkdir()
    image = Image.open(shared_data / "lund" / "images" / "01.jpg")
    exif = image.getexif()
    exif[ExifTags.Base.Orientation] = 6  # stored sideways: reconstruct_folder turns it upright
    image.transpose(Image.Transpose.ROTATE_90).save(folder / "01.jpg", quality=95, exif=exif)
    shutil.copyfile(shared_data / "lund" / "images" / "02.jpg", folder / "02.jpg")
    Image.new("RGB", (1024, 768), (128, 128, 128)).save(folder / "03.jpg")


def test_an_input_error_leaves_nothing_it_created(shared_data, tmp_path):
    folder = tmp_path / "photos"
    _two_photos_and_a_blank(shared_data, folder)
    out = tmp_path / "new" / "out"
    with pytest.raises(NotEnoughImagesError, match="2 usable image"):
        reconstruct_folder(folder, out)
    assert not (tmp_path / "new").exists()  # neither out/work nor the folders above it

    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "notes.txt").write_text("mine")
    with pytest.raises(NotEnoughImagesError):
        reconstruct_folder(folder, existing)
    assert [p.name for p in existing.iterdir()] == ["notes.txt"]  # --out stays, as it was

    # a work folder kept from an earlier run keeps its features; what this run added goes
    kept = tmp_path / "kept"
    work = SfmWorkLayout(SfmLayout(kept).work_dir)
    work.dir.mkdir(parents=True)
    work.marker.touch()
    work.database.write_bytes(b"features of an earlier run")
    with pytest.raises(NotEnoughImagesError):
        reconstruct_folder(folder, kept)
    assert sorted(p.name for p in work.dir.iterdir()) == [work.marker.name, work.database.name]


def test_reconstruct_folder_cli_input_error_leaves_no_out_folder(shared_data, tmp_path):
    cli = Path(sys.executable).with_name("citysplat")
    if not cli.exists():
        pytest.skip(f"{cli} is not installed")
    folder = tmp_path / "photos"
    _two_photos_and_a_blank(shared_data, folder)
    empty = tmp_path / "empty"
    empty.mkdir()
    for photos in (folder, empty):
        out = tmp_path / "out"
        done = subprocess.run([str(cli), "reconstruct-folder", str(photos), "--out", str(out)],
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 2, done.stderr
        assert len(done.stderr.splitlines()) == 1 and "Traceback" not in done.stderr
        assert not out.exists(), sorted(p.name for p in out.rglob("*"))
