"""Checks of a COLMAP sparse model's files before pycolmap reads them.

pycolmap trusts the record counts of a binary model: a truncated ``images.bin`` ends in an
``IndexError`` from deep inside COLMAP, and a truncated or corrupt ``points3D.bin`` makes it
reserve memory for whatever count it read (gigabytes). :func:`check_sparse_model` walks the
record headers with :mod:`struct` over a memory map (nothing is allocated per a claimed count)
and verifies that every record fits in its file, that the counts are plausible for the file
sizes and that no bytes trail the last record. Text models get a minimal parse (token counts
per line, the ``# Number of ...`` header against the lines found). :func:`read_sparse_model`
checks, then loads with pycolmap, turning its remaining errors into :class:`SparseModelError`.

The binary layout (little-endian) is COLMAP's ``reconstruction_io_binary.cc``:
``rigs.bin`` and ``frames.bin`` (optional, COLMAP >= 3.12), ``cameras.bin``, ``images.bin``,
``points3D.bin``, each a ``uint64`` record count followed by the records.
"""

from __future__ import annotations

import mmap
import os
import re
import struct
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pycolmap

REQUIRED = ("cameras", "images", "points3D")
FIX = "re-run the reconstruction or copy the model again"

# COLMAP camera model id -> number of parameters (CameraModelNumParams); ids pycolmap knows
# beyond these are looked up in pycolmap
_CAMERA_PARAMS = {0: 3, 1: 4, 2: 4, 3: 5, 4: 8, 5: 8, 6: 12, 7: 5, 8: 4, 9: 5, 10: 12, 11: 16,
                  12: 4, 13: 5, 14: 3, 15: 4, 16: 6, 17: 2}
_U8, _U64 = struct.Struct("<B"), struct.Struct("<Q")
_RIG_HEAD = struct.Struct("<II")  # rig_id, num_sensors
_CAMERA_HEAD = struct.Struct("<IiQQ")  # camera_id, model_id, width, height
_IMAGE_HEAD = struct.Struct("<I7dI")  # image_id, qvec, tvec, camera_id
_FRAME_HEAD = struct.Struct("<II7dI")  # frame_id, rig_id, rig_from_world, num_data_ids
_DATA_ID = struct.Struct("<iIQ")  # sensor type, sensor id, data id
_POINT_HEAD_SIZE = 8 + 24 + 3 + 8  # point3D_id, xyz, rgb, error
_SENSOR_CAMERA = 0


class SparseModelError(ValueError):
    """A COLMAP sparse model's files are missing, truncated or corrupt."""


@dataclass(frozen=True)
class SparseModelFiles:
    """What :func:`check_sparse_model` found: the format and the record counts."""

    folder: Path
    format: str  # "binary" or "text"
    cameras: int
    images: int
    points3D: int


def _camera_params(model_id: int) -> int | None:
    """Number of parameters of COLMAP camera model ``model_id``; None for an unknown id."""
    if model_id in _CAMERA_PARAMS:
        return _CAMERA_PARAMS[model_id]
    try:
        import pycolmap

        model = pycolmap.CameraModelId(model_id)
        if model.name == "INVALID":
            return None
        camera = pycolmap.Camera.create_from_model_id(1, model, 1.0, 1, 1)
        return len(camera.params)
    except Exception:  # noqa: BLE001 - any failure means pycolmap does not know the id
        return None


class _Reader:
    """Bounds-checked reads of one binary model file through a memory map."""

    def __init__(self, path: Path, data: Any, kind: str) -> None:
        self.path, self.data, self.kind = path, data, kind
        self.size = len(data)
        self.pos = 0
        self.record = 0  # 1-based number of the record being read
        self.count = 0

    def fail(self, problem: str, fix: str = FIX) -> SparseModelError:
        return SparseModelError(f"{self.path} {problem}: {fix}")

    def truncated(self) -> SparseModelError:
        return self.fail(f"is truncated (record {self.record} of {self.count} {self.kind} "
                         "runs past the end of the file)")

    def take(self, size: int) -> int:
        """Skip ``size`` bytes of the current record; returns where they start."""
        start = self.pos
        if size > self.size - start:
            raise self.truncated()
        self.pos = start + size
        return start

    def unpack(self, fmt: struct.Struct) -> tuple:
        return fmt.unpack_from(self.data, self.take(fmt.size))

    def header(self, min_record: int) -> int:
        """The record count, checked against what the file's size can hold."""
        if self.size < 8:
            raise self.fail(f"is truncated ({self.size} bytes, shorter than the 8-byte count "
                            "it starts with)")
        (count,) = self.unpack(_U64)
        most = (self.size - 8) // min_record
        if count > most:
            raise self.fail(f"is corrupt or truncated (it claims {count:,} {self.kind} but "
                            f"its {self.size:,} bytes can hold at most {most:,})")
        self.count = count
        return count

    def records(self) -> Iterator[int]:
        for k in range(self.count):
            self.record = k + 1
            yield k

    def finish(self) -> None:
        extra = self.size - self.pos
        if extra:
            raise self.fail(f"is corrupt ({extra:,} bytes follow its last record, "
                            f"{self.count:,} {self.kind})")


@contextmanager
def _mapped(path: Path, kind: str) -> Iterator[_Reader]:
    """A :class:`_Reader` over ``path`` (an empty file gets an empty buffer: mmap refuses)."""
    try:
        with open(path, "rb") as handle:
            if os.fstat(handle.fileno()).st_size == 0:
                yield _Reader(path, b"", kind)
                return
            with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
                yield _Reader(path, data, kind)
    except OSError as exc:
        raise SparseModelError(f"{path} cannot be read ({exc.strerror or exc}): check the "
                               "file's permissions, or copy the model again") from None


def _check_rigs(path: Path) -> int:
    with _mapped(path, "rigs") as r:
        r.header(8)
        for _ in r.records():
            _, num_sensors = r.unpack(_RIG_HEAD)
            if num_sensors > 0:
                r.take(8)  # reference sensor: type, id
            for _ in range(max(0, num_sensors - 1)):
                r.take(8)
                (has_pose,) = r.unpack(_U8)
                if has_pose:
                    r.take(56)
        r.finish()
        return r.count


def _check_frames(path: Path) -> tuple[int, set[int]]:
    """(number of frames, the image ids they hold): COLMAP looks up each image of images.bin
    in its frame."""
    images: set[int] = set()
    with _mapped(path, "frames") as r:
        r.header(_FRAME_HEAD.size)
        for _ in r.records():
            num_data = r.unpack(_FRAME_HEAD)[-1]
            if num_data > (r.size - r.pos) // _DATA_ID.size:
                raise r.truncated()
            for _ in range(num_data):
                sensor_type, _, data_id = r.unpack(_DATA_ID)
                if sensor_type == _SENSOR_CAMERA:
                    images.add(data_id)
        r.finish()
        return r.count, images


def _check_cameras(path: Path) -> set[int]:
    ids: set[int] = set()
    with _mapped(path, "cameras") as r:
        r.header(_CAMERA_HEAD.size + 8 * min(_CAMERA_PARAMS.values()))
        for _ in r.records():
            camera_id, model_id, _, _ = r.unpack(_CAMERA_HEAD)
            params = _camera_params(model_id)
            if params is None:
                raise r.fail(f"is corrupt (camera record {r.record} of {r.count} has the "
                             f"unknown camera model id {model_id})")
            r.take(8 * params)
            ids.add(camera_id)
        r.finish()
    return ids


def _check_images(path: Path, cameras: set[int], frame_images: set[int] | None,
                  frames_file: str) -> int:
    """Walk images.bin; ``frame_images``: the image ids of the frames (None for a model
    without rigs and frames, where COLMAP makes one frame per image)."""
    refetch = "copy the whole sparse folder again, or re-run the reconstruction"
    with _mapped(path, "images") as r:
        r.header(_IMAGE_HEAD.size + 1 + 8)
        for _ in r.records():
            head = r.unpack(_IMAGE_HEAD)
            image_id, camera_id = head[0], head[-1]
            end = r.data.find(b"\0", r.pos)
            if end < 0:
                raise r.truncated()
            r.take(end + 1 - r.pos)
            (num_points2d,) = r.unpack(_U64)
            if num_points2d > (r.size - r.pos) // 24:
                raise r.truncated()
            r.take(24 * num_points2d)
            where = f"image {image_id}, record {r.record} of {r.count}"
            if camera_id not in cameras:
                raise r.fail(f"is corrupt or does not belong with cameras.bin ({where}, names "
                             f"camera {camera_id}, which cameras.bin lacks)", refetch)
            if frame_images is not None and image_id not in frame_images:
                raise r.fail(f"is corrupt or does not belong with {frames_file} ({where}, is in "
                             "no frame)", refetch)
        r.finish()
        return r.count


def _check_points(path: Path) -> int:
    track_length = _U64
    with _mapped(path, "points") as r:
        r.header(_POINT_HEAD_SIZE + 8)
        data, size = r.data, r.size
        pos = r.pos
        for k in range(r.count):
            if pos + _POINT_HEAD_SIZE + 8 > size:
                r.record, r.pos = k + 1, pos
                raise r.truncated()
            (length,) = track_length.unpack_from(data, pos + _POINT_HEAD_SIZE)
            pos += _POINT_HEAD_SIZE + 8
            if length > (size - pos) // 8:
                r.record, r.pos = k + 1, pos
                raise r.truncated()
            pos += 8 * length
        r.pos, r.record = pos, r.count
        r.finish()
        return r.count


def _check_binary(folder: Path) -> SparseModelFiles:
    rigs = _check_rigs(folder / "rigs.bin") if (folder / "rigs.bin").is_file() else 0
    frames, frame_images = 0, set()
    if (folder / "frames.bin").is_file():
        frames, frame_images = _check_frames(folder / "frames.bin")
    legacy = rigs == 0 and frames == 0  # COLMAP then makes a rig per camera, a frame per image
    frames_file = "frames.bin" if (folder / "frames.bin").is_file() else "rigs.bin (no frames.bin)"
    cameras = _check_cameras(folder / "cameras.bin")
    images = _check_images(folder / "images.bin", cameras, None if legacy else frame_images,
                           frames_file)
    points = _check_points(folder / "points3D.bin")
    return SparseModelFiles(folder, "binary", len(cameras), images, points)


_NUMBER_OF = re.compile(r"#\s*Number of \w+:\s*(\d+)")


def _count_text(path: Path, kind: str, valid: Callable[[list[str]], bool], *,
                pairs: bool = False) -> int:
    """Records of a text model file, each data line checked by ``valid(tokens)``; with
    ``pairs`` (images.txt) each record is that line and the POINTS2D line right after it
    (possibly empty; X, Y, POINT3D_ID triples). A ``# Number of ...: N`` header above the
    records that the file falls short of means the file was cut."""
    declared, count, open_record = None, 0, None
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            for number, line in enumerate(handle, start=1):
                text = line.strip()
                if open_record is not None:
                    if len(text.split()) % 3:
                        raise SparseModelError(f"{path} is corrupt or truncated (line {number}"
                                               f" is not a valid POINTS2D line): {FIX}")
                    open_record, count = None, count + 1
                    continue
                if not text:
                    continue
                if text.startswith("#"):
                    match = _NUMBER_OF.match(text)
                    declared = int(match.group(1)) if match else declared
                    continue
                if not valid(text.split()):
                    raise SparseModelError(f"{path} is corrupt or truncated (line {number} is "
                                           f"not a valid {kind} record): {FIX}")
                if pairs:
                    open_record = number
                else:
                    count += 1
    except OSError as exc:
        raise SparseModelError(f"{path} cannot be read ({exc.strerror or exc}): check the "
                               "file's permissions, or copy the model again") from None
    if open_record is not None:
        raise SparseModelError(f"{path} is truncated (the image on line {open_record} has no "
                               f"POINTS2D line after it): {FIX}")
    if declared is not None and declared > count:
        raise SparseModelError(f"{path} is truncated (its header says {declared:,} {kind}, "
                               f"it holds {count:,}): {FIX}")
    return count


def _valid_camera(tokens: list[str]) -> bool:
    return (len(tokens) >= 5 and tokens[0].isdigit() and tokens[2].isdigit()
            and tokens[3].isdigit())


def _valid_frame(tokens: list[str]) -> bool:
    return len(tokens) >= 10 and tokens[9].isdigit() and len(tokens) == 10 + 3 * int(tokens[9])


def _check_text(folder: Path) -> SparseModelFiles:
    cameras = _count_text(folder / "cameras.txt", "cameras", _valid_camera)
    images = _count_text(folder / "images.txt", "images", lambda t: len(t) >= 10, pairs=True)
    points = _count_text(folder / "points3D.txt", "points",
                         lambda t: len(t) >= 8 and (len(t) - 8) % 2 == 0)
    if (folder / "rigs.txt").is_file():
        _count_text(folder / "rigs.txt", "rigs", lambda t: len(t) >= 2)
    if (folder / "frames.txt").is_file():
        _count_text(folder / "frames.txt", "frames", _valid_frame)
    return SparseModelFiles(folder, "text", cameras, images, points)


def check_sparse_model(sparse_dir: str | Path) -> SparseModelFiles:
    """Check the COLMAP model in ``sparse_dir`` (binary, else text, as COLMAP picks) without
    loading it; returns its format and counts. Raises :class:`SparseModelError` (one line,
    naming the file and the fix) for a missing file or a truncated or corrupt one."""
    folder = Path(sparse_dir)
    if all((folder / f"{name}.bin").is_file() for name in REQUIRED):
        return _check_binary(folder)
    if all((folder / f"{name}.txt").is_file() for name in REQUIRED):
        return _check_text(folder)
    ext = "txt" if any((folder / f"{n}.txt").is_file() for n in REQUIRED) \
        and not any((folder / f"{n}.bin").is_file() for n in REQUIRED) else "bin"
    missing = [f"{n}.{ext}" for n in REQUIRED if not (folder / f"{n}.{ext}").is_file()]
    if len(missing) == len(REQUIRED):
        raise SparseModelError(f"{folder} holds no COLMAP model (cameras, images and points3D "
                               ".bin or .txt): give the sparse/ folder of a reconstruction")
    raise SparseModelError(f"{folder} lacks {', '.join(missing)} of its COLMAP model: copy the "
                           "whole sparse folder again, or re-run the reconstruction")


def read_sparse_model(sparse_dir: str | Path) -> pycolmap.Reconstruction:
    """:func:`check_sparse_model`, then the model as a ``pycolmap.Reconstruction``; an error
    pycolmap still raises becomes a one-line :class:`SparseModelError`."""
    import pycolmap

    check_sparse_model(sparse_dir)
    try:
        return pycolmap.Reconstruction(str(sparse_dir))
    except (IndexError, ValueError, RuntimeError, MemoryError, OverflowError) as exc:
        detail = (str(exc).strip().splitlines() or [type(exc).__name__])[-1]
        detail = detail.replace("[", "(").replace("]", ")")[:200]
        raise SparseModelError(f"{sparse_dir} is corrupt: pycolmap cannot read it ({detail}): "
                               f"{FIX}") from None
