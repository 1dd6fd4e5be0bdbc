"""Bring your own photos: a folder of photos -> :func:`citysplat.sfm.reconstruct.reconstruct`
(what ``citysplat reconstruct-folder`` runs).

Photos are read with :func:`citysplat.photos.scan_photos`; names COLMAP cannot take are made
safe (:func:`safe_names`), photos stored sideways get an upright copy in the work folder
(:func:`upright_copy`), and an input error undoes what the run created
(:func:`undone_on_input_error`).
"""

from __future__ import annotations

import contextlib
import re
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path

from citysplat.io import atomic_open
from citysplat.layout import SfmLayout, SfmWorkLayout
from citysplat.sfm.inputs import NotEnoughImagesError, SfmInput, SfmInputError
from citysplat.sfm.output import SfmResult
from citysplat.sfm.reconstruct import reconstruct
from citysplat.sfm.workdir import claim_work_dir

UPRIGHT_DIR = "upright"
"""The work folder's upright copies of photos stored sideways (not a name of
:class:`citysplat.layout.SfmWorkLayout` yet)."""


def safe_names(names: Sequence[str]) -> dict[str, str]:
    """Photo name -> a name COLMAP can list in a pair file (whitespace -> '_'), unique."""
    out: dict[str, str] = {}
    taken: set[str] = set()
    for name in names:
        safe = re.sub(r"\s+", "_", name)
        stem, dot, suffix = safe.rpartition(".")
        candidate, k = safe, 1
        while candidate in taken:
            k += 1
            candidate = f"{stem}_{k}.{suffix}" if dot else f"{safe}_{k}"
        taken.add(candidate)
        out[name] = candidate
    return out


def upright_copy(record, target: Path) -> Path:
    """An upright copy of a photo whose EXIF orientation is not 1 (COLMAP reads raw pixels);
    kept while newer than the photo."""
    from citysplat.photos import load_oriented

    if target.exists() and target.stat().st_mtime_ns >= Path(record.path).stat().st_mtime_ns:
        return target
    image = load_oriented(record.path)
    with atomic_open(target) as handle:
        if target.suffix.lower() in (".jpg", ".jpeg"):
            image.convert("RGB").save(handle, format="JPEG", quality=95)
        else:
            image.save(handle, format="PNG")
    return target


@contextlib.contextmanager
def undone_on_input_error(work_dir: Path) -> Iterator[list[Path]]:
    """Undo what the block creates for ``work_dir`` when it raises an input error
    (:class:`SfmInputError`, :class:`citysplat.photos.PhotoFolderError`): the topmost folder of
    ``work_dir``'s path that did not exist yet (e.g. ``--out`` itself), or, in a work folder
    kept from an earlier run, the marker, the upright copies and the files listed in the
    yielded list. Other errors leave the scratch in place for a re-run."""
    from citysplat.photos import PhotoFolderError

    work = SfmWorkLayout(Path(work_dir).absolute())
    upright = work.dir / UPRIGHT_DIR
    created_top = None
    for candidate in (work.dir, *work.dir.parents):
        if candidate.exists():
            break
        created_top = candidate
    marker_existed = work.marker.exists()
    upright_existed = upright.exists()
    written: list[Path] = []
    try:
        yield written
    except (SfmInputError, PhotoFolderError):
        if created_top is not None:
            shutil.rmtree(created_top, ignore_errors=True)
        else:
            for path in written:
                path.unlink(missing_ok=True)
            if not upright_existed:
                shutil.rmtree(upright, ignore_errors=True)
            if not marker_existed:
                work.marker.unlink(missing_ok=True)
        raise


def reconstruct_folder(folder: str | Path, out_dir: str | Path, *,
                       work_dir: str | Path | None = None, recursive: bool = False,
                       **kwargs) -> SfmResult:
    """Reconstruct a folder of your own photos into ``out_dir`` (the files of an
    :class:`citysplat.layout.SfmLayout`: ``sparse/``, ``metrics.json``, ``frame.json``, ...).

    Photos are read with :func:`citysplat.photos.scan_photos` (files it cannot read are
    reported as unusable); EXIF orientation is applied (upright copies in ``work_dir``); the
    EXIF focal length is the intrinsics prior; the ENU frame is centred on the GPS track
    (:func:`citysplat.photos.gps_track_enu`). Photos without GPS still reconstruct, in COLMAP's
    arbitrary frame: ``georeferenced`` is then False and the messages say why. ``work_dir``
    (default: the layout's work folder, ``out_dir/work``) keeps the features and matches for
    re-runs. Other keyword arguments go to :func:`reconstruct` (``pairs``, ``mapper``,
    ``seed``, ``options``).

    Raises :class:`citysplat.photos.PhotoFolderError` for a missing folder or one without
    photos and :class:`NotEnoughImagesError` for fewer than 3 usable photos (both
    ``ValueError``).
    """
    from citysplat.photos import gps_track_enu, scan_photos

    folder, out = Path(folder), SfmLayout(Path(out_dir))
    work = SfmWorkLayout(Path(work_dir) if work_dir is not None else out.work_dir)
    scan = scan_photos(folder, recursive=recursive)
    if len(scan) < 3:
        skipped = "; ".join(f"{s.path.name}: {s.reason}" for s in scan.skipped[:3])
        raise NotEnoughImagesError(
            f"only {len(scan)} usable photo(s) in {folder}"
            + (f" (skipped {skipped})" if skipped else "")
            + ": SfM needs at least 3 overlapping photos of the same place; add more photos "
            "to the folder")
    with undone_on_input_error(work.dir) as written:
        claim_work_dir(work)  # before the upright copies go in
        names = safe_names([record.name for record in scan]
                           + [s.path.relative_to(folder).as_posix() for s in scan.skipped])
        frame = None
        if scan.geotagged:
            frame, _ = gps_track_enu(scan)
        inputs = []
        for record in scan:
            path = record.path
            if record.exif_orientation != 1:
                target = work.dir / UPRIGHT_DIR / names[record.name]
                if not target.exists():
                    written.append(target)
                path = upright_copy(record, target)
            inputs.append(SfmInput.from_photo(record, frame, path=path,
                                              name=names[record.name]))
        for skipped in scan.skipped:
            name = names[skipped.path.relative_to(folder).as_posix()]
            inputs.append(SfmInput(name=name, path=skipped.path, unusable=skipped.reason))
        result = reconstruct(inputs, work, out, frame=frame, **kwargs)
    notes = []
    renamed = {a: b for a, b in names.items() if a != b}
    if renamed:
        notes.append(f"{len(renamed)} photo name(s) with spaces renamed in the model "
                     f"(e.g. {next(iter(renamed))!r} -> {next(iter(renamed.values()))!r})")
    if not scan.geotagged:
        notes.append("none of the photos carries a GPS position: cannot georeference; the "
                     "model is in COLMAP's arbitrary frame (enable location tagging in the "
                     "camera app, or geotag the photos, e.g. from a GPX track)")
    elif len(scan.geotagged) < 3:
        notes.append(f"only {len(scan.geotagged)} photo(s) carry a GPS position: cannot "
                     "georeference (3 are needed)")
    if notes:
        result.messages[:0] = notes
        result.metrics["messages"] = result.messages
        result.metrics["renamed"] = renamed
        result.save_metrics()
    return result
