"""Atomically written files get the mode a plain ``open()`` gives, and crash-safety holds.

``tempfile.mkstemp`` creates 0600 files (``mkdtemp``: 0700 folders) and the rename kept that
mode, so point_cloud.ply, metrics.json, frame.json and sparse/ were unreadable to another user
(a viewer, a Dagster user). Every helper of :mod:`citysplat.io`, and the SfM model writer, now
follows the process umask: ``0o666 & ~umask`` for files, ``0o777 & ~umask`` for folders.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

import citysplat  # noqa: F401  (loads zlib before pycolmap)
from citysplat.io import atomic_open, atomic_write_bytes, atomic_write_text, make_temp_dir

UMASKS = (0o022, 0o077, 0o002)


@contextmanager
def _umask(mask: int):
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _write_with_open(path: Path) -> None:
    with atomic_open(path) as handle:
        handle.write(b"ply\n")


WRITERS = {
    "atomic_write_text": lambda path: atomic_write_text(path, '{"psnr": 21.0}\n'),
    "atomic_write_bytes": lambda path: atomic_write_bytes(path, b"\x00\x01"),
    "atomic_open": _write_with_open,
}


@pytest.mark.parametrize("mask", UMASKS)
@pytest.mark.parametrize("writer", sorted(WRITERS))
def test_atomic_files_follow_the_umask_like_open(tmp_path, writer, mask):
    expected = 0o666 & ~mask
    with _umask(mask):
        target = tmp_path / "out" / "metrics.json"
        WRITERS[writer](target)
        plain = tmp_path / "plain.json"
        with open(plain, "w") as handle:  # what the helpers must match
            handle.write("{}")
        assert _mode(plain) == expected
        assert _mode(target) == expected, oct(_mode(target))
        # a file that was written 0600 before is replaced by one with the umask's mode
        target.chmod(0o600)
        WRITERS[writer](target)
        assert _mode(target) == expected
    assert sorted(p.name for p in target.parent.iterdir()) == ["metrics.json"]  # no temp left


@pytest.mark.parametrize("mask", (0o022, 0o077))
def test_temporary_folders_follow_the_umask_like_mkdir(tmp_path, mask):
    with _umask(mask):
        folder = make_temp_dir(tmp_path / "district", ".sparse.")
    assert folder.is_dir() and folder.parent == tmp_path / "district"
    assert folder.name.startswith(".sparse.") and not any(folder.iterdir())
    assert _mode(folder) == 0o777 & ~mask
    assert make_temp_dir(tmp_path / "district", ".sparse.") != folder


@pytest.mark.parametrize("writer", sorted(WRITERS))
def test_an_error_mid_write_leaves_the_old_file_and_no_temporary(tmp_path, writer):
    target = tmp_path / "frame.json"
    atomic_write_text(target, "old\n")

    class Crash(Exception):
        pass

    with pytest.raises(Crash):
        with atomic_open(target) as handle:
            handle.write(b"half of the new")
            raise Crash
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["frame.json"]
    fresh = tmp_path / "new.json"
    with pytest.raises(Crash):
        with atomic_open(fresh) as handle:
            handle.write(b"{")
            raise Crash
    assert not fresh.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["frame.json"]
    WRITERS[writer](target)  # the helper itself still works after a failed write
    assert target.read_bytes() != b"old\n"


def test_a_killed_writer_leaves_no_partial_file(tmp_path):
    """kill -9 in the middle of a write: the target holds the old content, never half."""
    target = tmp_path / "point_cloud.ply"
    atomic_write_bytes(target, b"old")
    child = textwrap.dedent(f"""
        import os, signal
        from citysplat.io import atomic_open
        with atomic_open({str(target)!r}) as handle:
            handle.write(b"x" * 100000)
            handle.flush()
            os.kill(os.getpid(), signal.SIGKILL)
    """)
    done = subprocess.run([sys.executable, "-c", child], cwd=Path(__file__).parents[1],
                          capture_output=True, timeout=120)
    assert done.returncode == -9, done.stderr
    assert target.read_bytes() == b"old"
    leftovers = [p for p in tmp_path.iterdir() if p != target]
    assert all(p.name.startswith(".point_cloud.ply.") and p.name.endswith(".tmp")
               for p in leftovers), leftovers  # a killed process cannot clean up its temp


@pytest.mark.parametrize("mask", (0o022, 0o077))
def test_the_sparse_model_folder_follows_the_umask(tmp_path, mask):
    """sparse/ was renamed from a mkdtemp folder: 0700, unreadable to anyone else."""
    pycolmap = pytest.importorskip("pycolmap")
    from citysplat.sfm.output import write_model_atomically

    model = pycolmap.Reconstruction()
    model.add_camera_with_trivial_rig(
        pycolmap.Camera.create_from_model_name(1, "SIMPLE_PINHOLE", 60.0, 64, 48))
    model.add_image_with_trivial_frame(
        pycolmap.Image(name="a.png", keypoints=np.zeros((0, 2)), camera_id=1, image_id=1),
        pycolmap.Rigid3d())
    sparse = tmp_path / "district" / "sparse"
    with _umask(mask):
        write_model_atomically(model, sparse)
        write_model_atomically(model, sparse)  # replacing a model keeps the mode too
    assert _mode(sparse) == 0o777 & ~mask
    assert {_mode(p) for p in sparse.iterdir()} == {0o666 & ~mask}
    assert sorted(p.name for p in sparse.parent.iterdir()) == ["sparse"]
