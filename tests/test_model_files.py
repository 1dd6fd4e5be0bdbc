"""COLMAP sparse models are checked before pycolmap reads them.

pycolmap trusts a binary model's record counts: a truncated ``images.bin`` ended ``train-model``
in an ``IndexError`` traceback, a truncated ``points3D.bin`` sent it to gigabytes of memory.
:func:`citysplat.sfm.model_files.check_sparse_model` walks the record headers instead and
refuses a cut or corrupt file in one line naming it, in bounded time and memory.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

import citysplat  # noqa: F401  (loads zlib before pycolmap)
from citysplat.sfm.model_files import (
    SparseModelError,
    check_sparse_model,
    read_sparse_model,
)
from citysplat.splat.data import SceneDataError, load_scene

pycolmap = pytest.importorskip("pycolmap")

CLI = Path(sys.executable).with_name("citysplat")
FILES = ("cameras.bin", "images.bin", "points3D.bin", "frames.bin", "rigs.bin")


def _reconstruction(num_images: int = 4, num_points: int = 6):
    """A small model: one SIMPLE_RADIAL camera, images along x, points seen by every image."""
    rng = np.random.default_rng(0)
    model = pycolmap.Reconstruction()
    camera = pycolmap.Camera.create_from_model_name(1, "SIMPLE_RADIAL", 60.0, 64, 48)
    model.add_camera_with_trivial_rig(camera)
    for k in range(1, num_images + 1):
        pose = pycolmap.Rigid3d(pycolmap.Rotation3d(np.eye(3)), np.array([-0.5 * k, 0.0, 0.0]))
        image = pycolmap.Image(name=f"{k:02d}.png", keypoints=rng.uniform(0, 40, (num_points, 2)),
                               camera_id=1, image_id=k)
        model.add_image_with_trivial_frame(image, pose)
    for p in range(num_points):
        track = pycolmap.Track()
        for k in range(1, num_images + 1):
            track.add_element(k, p)
        model.add_point3D(np.array([p - 2.0, 0.5, 5.0]), track, np.array([200, 100, 50], np.uint8))
    return model


@pytest.fixture()
def model_dir(tmp_path) -> Path:
    folder = tmp_path / "sparse"
    folder.mkdir()
    _reconstruction().write_binary(folder)
    return folder


@pytest.fixture()
def text_model_dir(tmp_path) -> Path:
    folder = tmp_path / "sparse_text"
    folder.mkdir()
    _reconstruction().write_text(folder)
    return folder


def _one_line(exc: BaseException) -> str:
    message = str(exc)
    assert "\n" not in message and message, message
    return message


def _patch_u64(path: Path, offset: int, value: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset:offset + 8] = struct.pack("<Q", value)
    path.write_bytes(bytes(data))


def test_a_whole_model_passes_and_loads(model_dir, text_model_dir):
    found = check_sparse_model(model_dir)
    assert (found.format, found.cameras, found.images, found.points3D) == ("binary", 1, 4, 6)
    text = check_sparse_model(text_model_dir)
    assert (text.format, text.cameras, text.images, text.points3D) == ("text", 1, 4, 6)
    for folder in (model_dir, text_model_dir):
        model = read_sparse_model(folder)
        assert model.num_reg_images() == 4 and model.num_points3D() == 6


def test_a_cut_images_bin_is_an_error_not_an_index_error(model_dir):
    """The defect: pycolmap read past the end and failed with an unrelated IndexError (not
    run here: what it reads past the end is undefined and may be a huge count)."""
    data = (model_dir / "images.bin").read_bytes()
    (model_dir / "images.bin").write_bytes(data[: len(data) // 2])
    with pytest.raises(SparseModelError, match="images.bin is truncated") as caught:
        read_sparse_model(model_dir)
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize("name", FILES)
def test_every_cut_of_every_file_is_refused_naming_the_file(model_dir, name):
    path = model_dir / name
    data = path.read_bytes()
    for cut in range(len(data)):
        path.write_bytes(data[:cut])
        with pytest.raises(SparseModelError) as caught:
            check_sparse_model(model_dir)
        message = _one_line(caught.value)
        assert str(path) in message and "truncated" in message, (cut, message)
        assert message.endswith("re-run the reconstruction or copy the model again")
    path.write_bytes(data)
    check_sparse_model(model_dir)


def test_the_reported_message_names_the_record(model_dir):
    path = model_dir / "images.bin"
    data = path.read_bytes()
    path.write_bytes(data[:-5])  # the last image's observations are cut short
    with pytest.raises(SparseModelError) as caught:
        check_sparse_model(model_dir)
    assert _one_line(caught.value) == (
        f"{path} is truncated (record 4 of 4 images runs past the end of the file): "
        "re-run the reconstruction or copy the model again")


def test_bytes_after_the_last_record_are_refused(model_dir):
    for name in FILES:
        path = model_dir / name
        data = path.read_bytes()
        path.write_bytes(data + b"\0" * 9)
        with pytest.raises(SparseModelError, match="bytes follow its last record") as caught:
            check_sparse_model(model_dir)
        assert str(path) in _one_line(caught.value)
        path.write_bytes(data)


def _image_record_offsets(path: Path) -> list[int]:
    """Where each record of images.bin starts (a reference walk for the tests)."""
    data = path.read_bytes()
    (count,) = struct.unpack_from("<Q", data)
    offsets, pos = [], 8
    for _ in range(count):
        offsets.append(pos)
        end = data.index(b"\0", pos + 64)
        (n,) = struct.unpack_from("<Q", data, end + 1)
        pos = end + 1 + 8 + 24 * n
    return offsets


HUGE = 10**12


@pytest.mark.parametrize("where", ["points_count", "track_length", "images_count",
                                   "points2d_count", "cameras_count", "frames_count"])
def test_a_huge_count_is_refused_at_once_without_allocating(model_dir, where):
    """A count of 10**12 (a corrupt header) is refused in well under a second, allocating
    nothing per the count (pycolmap reserves memory for it)."""
    if where == "points_count":
        path, offset = model_dir / "points3D.bin", 0
    elif where == "track_length":
        path, offset = model_dir / "points3D.bin", 8 + 43  # the first point's track length
    elif where == "images_count":
        path, offset = model_dir / "images.bin", 0
    elif where == "points2d_count":
        path = model_dir / "images.bin"
        second = _image_record_offsets(path)[1]
        offset = path.read_bytes().index(b"\0", second + 64) + 1
    elif where == "cameras_count":
        path, offset = model_dir / "cameras.bin", 0
    else:
        path, offset = model_dir / "frames.bin", 0
    _patch_u64(path, offset, HUGE)
    tracemalloc.start()
    started = time.perf_counter()
    try:
        with pytest.raises(SparseModelError) as caught:
            check_sparse_model(model_dir)
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    message = _one_line(caught.value)
    assert str(path) in message, message
    assert elapsed < 1.0 and peak < 1_000_000, (elapsed, peak)
    with pytest.raises(SceneDataError, match=path.name):  # what train / train-model get
        load_scene(model_dir, model_dir)


def test_an_unknown_camera_model_and_mixed_up_files_are_refused(model_dir, tmp_path):
    cameras = model_dir / "cameras.bin"
    data = bytearray(cameras.read_bytes())
    data[12:16] = struct.pack("<i", 999)  # model id of the first camera
    cameras.write_bytes(bytes(data))
    with pytest.raises(SparseModelError, match="unknown camera model id 999"):
        check_sparse_model(model_dir)
    # images.bin of another model, whose images use camera 7
    other = tmp_path / "other"
    other.mkdir()
    model = pycolmap.Reconstruction()
    model.add_camera_with_trivial_rig(
        pycolmap.Camera.create_from_model_name(7, "SIMPLE_PINHOLE", 60.0, 64, 48))
    for k in (1, 2):
        model.add_image_with_trivial_frame(
            pycolmap.Image(name=f"{k}.png", keypoints=np.zeros((0, 2)), camera_id=7, image_id=k),
            pycolmap.Rigid3d())
    model.write_binary(other)
    _reconstruction().write_binary(model_dir)
    shutil.copyfile(other / "images.bin", model_dir / "images.bin")
    with pytest.raises(SparseModelError, match="names camera 7, which cameras.bin lacks"):
        check_sparse_model(model_dir)


def test_missing_files_are_named(model_dir, tmp_path):
    (model_dir / "points3D.bin").unlink()
    (model_dir / "cameras.bin").unlink()
    with pytest.raises(SparseModelError, match=r"lacks cameras.bin, points3D.bin"):
        check_sparse_model(model_dir)
    with pytest.raises(SparseModelError, match="holds no COLMAP model"):
        check_sparse_model(tmp_path / "nowhere")


def test_a_cut_text_model_is_refused(text_model_dir):
    points = text_model_dir / "points3D.txt"
    text = points.read_text()
    points.write_text(text[: text.rindex("\n", 0, len(text) - 1) + 1])  # the last point lost
    with pytest.raises(SparseModelError, match=r"points3D.txt is truncated \(its header says 6"):
        check_sparse_model(text_model_dir)
    points.write_text(text[:-6])  # cut inside the last line
    with pytest.raises(SparseModelError, match="points3D.txt is corrupt or truncated"):
        check_sparse_model(text_model_dir)
    points.write_text(text)
    images = text_model_dir / "images.txt"
    lines = images.read_text().splitlines(keepends=True)
    images.write_text("".join(lines[:-1]))  # the last image loses its POINTS2D line
    with pytest.raises(SparseModelError, match="images.txt is truncated") as caught:
        check_sparse_model(text_model_dir)
    _one_line(caught.value)
    images.write_text("".join(lines))
    check_sparse_model(text_model_dir)


def test_train_model_on_a_cut_images_bin_exits_2_in_one_line(model_dir, tmp_path):
    if not CLI.exists():
        pytest.skip(f"{CLI} is not installed")
    images = tmp_path / "images"
    images.mkdir()
    path = model_dir / "images.bin"
    path.write_bytes(path.read_bytes()[:300])
    env = {**os.environ, "COLUMNS": "80", "NO_COLOR": "1"}
    done = subprocess.run([str(CLI), "train-model", str(model_dir), str(images), "--out",
                           str(tmp_path / "out"), "--steps", "2"],
                          capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert str(path) in lines[0] and "is truncated (record" in lines[0], lines[0]
    assert not (tmp_path / "out").exists()
