"""Bring your own photos: read a folder of JPEG/PNG photos into typed records.

Everything later stages need from a user's photos comes from the file itself: the pixel size
after EXIF orientation, the GPS position (WGS84 lon/lat, altitude above sea level), the capture
time, the camera make/model and a focal length prior in pixels. Pillow reads the EXIF
(``Image.getexif()``, ``get_ifd(IFD.Exif)``, ``get_ifd(IFD.GPSInfo)``); nothing here decodes more
of an image than it must.

Photos taken with the Mapillary app (e.g. ``shared/data/lund``) carry their make, model, capture
time and compass heading only in a JSON ``ImageDescription`` (``MAPDeviceMake``,
``MAPCaptureTime``, ``MAPCompassHeading``...); those are used when the standard EXIF tags are
absent.

``scan_photos`` never raises for one bad file: it lists it in ``.skipped`` with the reason. It
raises :class:`PhotoFolderError` only when the folder itself is unusable (missing, not a
folder, or holding no readable photo), with a message that names the folder and the fix.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from citysplat.frames import LocalFrame

__all__ = [
    "IMAGE_SUFFIXES",
    "PhotoFolderError",
    "PhotoReadError",
    "PhotoRecord",
    "PhotoScan",
    "SkippedFile",
    "gps_track_enu",
    "load_oriented",
    "read_photo",
    "scan_photos",
]

IMAGE_SUFFIXES: frozenset[str] = frozenset({".jpg", ".jpeg", ".png"})
"""File suffixes (compared case-insensitively) that :func:`scan_photos` treats as photos."""

# Width of 35 mm film (the longer side of the 36x24 mm frame): FocalLengthIn35mmFilm / 36 is the
# focal length as a fraction of the image's longer side (the convention OpenSfM uses).
_FILM_35MM_WIDTH_MM = 36.0
_MM_PER_RESOLUTION_UNIT = {2: 25.4, 3: 10.0, 4: 1.0, 5: 1e-3}  # inch, cm, mm, micrometre


class PhotoFolderError(ValueError):
    """The photo folder itself is unusable (missing, not a folder, or holds no photos)."""


class PhotoReadError(ValueError):
    """One file could not be read as a photo (not an image, truncated, unsupported format)."""


@dataclass(frozen=True)
class PhotoRecord:
    """What one photo says about itself. Sizes are as displayed, i.e. after EXIF orientation.

    ``alt`` is the EXIF GPS altitude: metres above mean sea level (negative below it), not
    ellipsoidal height. ``focal_px`` is a prior in pixels of the oriented image, or None when
    the EXIF gives no way to estimate it; ``focal_px_source`` says how it was obtained.
    """

    path: Path
    name: str
    width: int
    height: int
    exif_orientation: int = 1
    lon: float | None = None
    lat: float | None = None
    alt: float | None = None
    captured_at: datetime | None = None
    make: str | None = None
    model: str | None = None
    focal_length_mm: float | None = None
    focal_35mm: float | None = None
    focal_px: float | None = None
    focal_px_source: str | None = None
    heading_deg: float | None = None
    issues: tuple[str, ...] = ()

    @property
    def has_gps(self) -> bool:
        """True when the photo carries a usable latitude and longitude."""
        return self.lon is not None and self.lat is not None


@dataclass(frozen=True)
class SkippedFile:
    """A file of the folder that is not in the scan, and why."""

    path: Path
    reason: str


class PhotoScan(list[PhotoRecord]):
    """The photos of a folder (a list of :class:`PhotoRecord`, sorted by name), plus
    ``folder`` and ``skipped``: the files that were left out, each with its reason."""

    def __init__(
        self,
        records: Iterable[PhotoRecord] = (),
        folder: Path | None = None,
        skipped: Iterable[SkippedFile] = (),
    ) -> None:
        super().__init__(records)
        self.folder = folder
        self.skipped: list[SkippedFile] = list(skipped)

    @property
    def geotagged(self) -> list[PhotoRecord]:
        """The records that carry a GPS position, in scan order."""
        return [record for record in self if record.has_gps]


# --------------------------------------------------------------------------- EXIF helpers


def _to_float(value: Any) -> float | None:
    """An EXIF number (int, float, IFDRational, (num, den)) -> finite float, else None."""
    if isinstance(value, tuple) and len(value) == 2 and all(isinstance(v, int) for v in value):
        value = value[0] / value[1] if value[1] else math.nan
    try:
        out = float(value)
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    return out if math.isfinite(out) else None


def _to_text(value: Any) -> str | None:
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    if not isinstance(value, str):
        return None
    value = value.replace("\x00", "").strip()
    return value or None


def _to_int(value: Any) -> int | None:
    if isinstance(value, bytes):
        return value[0] if value else None
    if isinstance(value, (tuple, list)):
        return _to_int(value[0]) if value else None
    number = _to_float(value)
    return int(number) if number is not None else None


def _dms_to_degrees(value: Any) -> float | None:
    """GPS (degrees, minutes, seconds) rationals -> decimal degrees (unsigned)."""
    if not isinstance(value, (tuple, list)):
        return _to_float(value)
    parts = [_to_float(v) for v in value[:3]]
    if not parts or any(p is None for p in parts):
        return None
    return sum(p / 60.0**i for i, p in enumerate(parts))  # type: ignore[operator]


def _parse_exif_datetime(
    text: str | None, subsec: str | None, offset: str | None
) -> datetime | None:
    """EXIF ``YYYY:MM:DD HH:MM:SS`` (+ SubSecTime, OffsetTime) -> datetime (aware with offset)."""
    if not text or text.strip(" :0") == "":
        return None
    try:
        stamp = datetime.strptime(text.strip()[:19], "%Y:%m:%d %H:%M:%S")
    except ValueError:
        return None
    if subsec and subsec.isdigit():
        stamp = stamp.replace(microsecond=int((subsec + "000000")[:6]))
    if offset:
        try:
            sign = -1 if offset.strip().startswith("-") else 1
            hours, minutes = offset.strip().lstrip("+-").split(":")
            delta = timedelta(hours=int(hours), minutes=int(minutes))
            stamp = stamp.replace(tzinfo=timezone(sign * delta))
        except ValueError:
            pass
    return stamp


def _mapillary_description(ifd0: Mapping[int, Any]) -> dict[str, Any]:
    """The Mapillary app's JSON ImageDescription (``MAP*`` keys), or {}."""
    text = _to_text(ifd0.get(ExifTags.Base.ImageDescription))
    if not text or not text.startswith("{") or "MAP" not in text:
        return {}
    try:
        data = json.loads(text)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _parse_map_capture_time(text: Any) -> datetime | None:
    """Mapillary ``MAPCaptureTime`` (``YYYY_MM_DD_HH_MM_SS_mmm``, UTC) -> aware datetime."""
    if not isinstance(text, str):
        return None
    for fmt in ("%Y_%m_%d_%H_%M_%S_%f", "%Y_%m_%d_%H_%M_%S"):
        try:
            return datetime.strptime(text, fmt).replace(tzinfo=UTC)
        except ValueError:
            continue
    return None


def _read_gps(gps: Mapping[int, Any], issues: list[str]) -> tuple[float | None, ...]:
    """GPS IFD -> (lon, lat, alt, heading); None where absent or unusable."""
    lat = _dms_to_degrees(gps.get(ExifTags.GPS.GPSLatitude))
    lon = _dms_to_degrees(gps.get(ExifTags.GPS.GPSLongitude))
    if lat is not None and lon is not None:
        lat_ref = (_to_text(gps.get(ExifTags.GPS.GPSLatitudeRef)) or "N").upper()
        lon_ref = (_to_text(gps.get(ExifTags.GPS.GPSLongitudeRef)) or "E").upper()
        lat = -lat if lat_ref.startswith("S") else lat
        lon = -lon if lon_ref.startswith("W") else lon
        if lat == 0.0 and lon == 0.0:
            issues.append("GPS position is 0,0 (no fix when the photo was taken): ignored")
            lat = lon = None
        elif not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0):
            issues.append(f"GPS position out of range (lat {lat}, lon {lon}): ignored")
            lat = lon = None
    else:
        lat = lon = None
    alt = _to_float(gps.get(ExifTags.GPS.GPSAltitude))
    if alt is not None and _to_int(gps.get(ExifTags.GPS.GPSAltitudeRef)) == 1:
        alt = -alt  # AltitudeRef 1: below sea level
    heading = _to_float(gps.get(ExifTags.GPS.GPSImgDirection))
    return lon, lat, alt, heading


def _focal_prior(
    *,
    focal_35mm: float | None,
    focal_mm: float | None,
    make: str | None,
    model: str | None,
    exif_ifd: Mapping[int, Any],
    raw_size: tuple[int, int],
    sensor_widths_mm: Mapping[str, float] | None,
) -> tuple[float | None, str | None]:
    """Focal length in pixels of the photo, and how it was estimated."""
    longer_side = float(max(raw_size))
    if focal_35mm and focal_35mm > 0:
        return focal_35mm / _FILM_35MM_WIDTH_MM * longer_side, "exif_35mm"
    if not focal_mm or focal_mm <= 0:
        return None, None
    if sensor_widths_mm:
        key = " ".join(p for p in (make, model) if p).strip().lower()
        table = {k.strip().lower(): v for k, v in sensor_widths_mm.items()}
        width_mm = table.get(key) or table.get((model or "").strip().lower())
        if width_mm and width_mm > 0:
            return focal_mm / width_mm * longer_side, "sensor_width"
    # FocalPlaneXResolution: pixels per unit on the sensor, at the ExifImageWidth resolution.
    x_res = _to_float(exif_ifd.get(ExifTags.Base.FocalPlaneXResolution))
    unit = _to_int(exif_ifd.get(ExifTags.Base.FocalPlaneResolutionUnit)) or 2
    if x_res and x_res > 0 and unit in _MM_PER_RESOLUTION_UNIT:
        exif_width = _to_int(exif_ifd.get(ExifTags.Base.ExifImageWidth)) or raw_size[0]
        sensor_x_mm = exif_width / x_res * _MM_PER_RESOLUTION_UNIT[unit]
        if sensor_x_mm > 0:
            return focal_mm / sensor_x_mm * raw_size[0], "focal_plane_resolution"
    return None, None


# --------------------------------------------------------------------------- public API


def read_photo(
    path: str | Path,
    *,
    verify: bool = True,
    name: str | None = None,
    sensor_widths_mm: Mapping[str, float] | None = None,
) -> PhotoRecord:
    """Read one photo's size, orientation, GPS, time, camera and focal prior.

    ``verify`` decodes the image (at 1/8 scale for JPEG, so it is cheap) to catch truncated or
    corrupt files that would only fail later in feature extraction. ``sensor_widths_mm`` maps
    ``"Make Model"`` (or ``"Model"``) to the sensor's longer side in mm, used for ``focal_px``
    when the EXIF has no 35 mm equivalent. Raises :class:`PhotoReadError` for a file that is not
    a readable JPEG/PNG.
    """
    path = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow's "Corrupt EXIF data" and bomb warnings
            with Image.open(path) as image:
                if image.format not in {"JPEG", "PNG", "MPO"}:
                    raise PhotoReadError(
                        f"{path.name}: {image.format} image, expected JPEG or PNG"
                    )
                raw_size = image.size
                issues: list[str] = []
                try:
                    exif = image.getexif()
                    exif_ifd = exif.get_ifd(ExifTags.IFD.Exif)
                    gps_ifd = exif.get_ifd(ExifTags.IFD.GPSInfo)
                except Exception as exc:  # noqa: BLE001 - a broken EXIF must not lose the photo
                    issues.append(f"EXIF unreadable ({exc}): no GPS, time or focal length")
                    exif, exif_ifd, gps_ifd = Image.Exif(), {}, {}
                if verify:
                    if image.format in ("JPEG", "MPO"):
                        image.draft("RGB", (max(1, raw_size[0] // 8), max(1, raw_size[1] // 8)))
                    image.load()
    except PhotoReadError:
        raise
    except FileNotFoundError as exc:
        raise PhotoReadError(f"{path}: no such file") from exc
    except UnidentifiedImageError as exc:
        raise PhotoReadError(f"{path.name}: not an image Pillow can read") from exc
    except Image.DecompressionBombError as exc:
        raise PhotoReadError(f"{path.name}: too many pixels ({exc})") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise PhotoReadError(f"{path.name}: corrupt or truncated image ({exc})") from exc

    orientation = _to_int(exif.get(ExifTags.Base.Orientation)) or 1
    if not 1 <= orientation <= 8:
        issues.append(f"EXIF orientation {orientation} is not 1-8: treated as 1")
        orientation = 1
    width, height = raw_size
    if orientation in (5, 6, 7, 8):  # transposed / rotated by 90 degrees
        width, height = height, width

    mapillary = _mapillary_description(exif)
    lon, lat, alt, heading = _read_gps(gps_ifd, issues)
    if heading is None:
        compass = mapillary.get("MAPCompassHeading")
        if isinstance(compass, dict):
            heading = _to_float(compass.get("TrueHeading"))

    captured_at = _parse_exif_datetime(
        _to_text(exif_ifd.get(ExifTags.Base.DateTimeOriginal)),
        _to_text(exif_ifd.get(ExifTags.Base.SubsecTimeOriginal)),
        _to_text(exif_ifd.get(ExifTags.Base.OffsetTimeOriginal)),
    ) or _parse_map_capture_time(mapillary.get("MAPCaptureTime"))

    make = _to_text(exif.get(ExifTags.Base.Make)) or _to_text(mapillary.get("MAPDeviceMake"))
    model = _to_text(exif.get(ExifTags.Base.Model)) or _to_text(mapillary.get("MAPDeviceModel"))
    focal_mm = _to_float(exif_ifd.get(ExifTags.Base.FocalLength))
    focal_35mm = _to_float(exif_ifd.get(ExifTags.Base.FocalLengthIn35mmFilm))
    focal_px, focal_source = _focal_prior(
        focal_35mm=focal_35mm,
        focal_mm=focal_mm,
        make=make,
        model=model,
        exif_ifd=exif_ifd,
        raw_size=raw_size,
        sensor_widths_mm=sensor_widths_mm,
    )
    return PhotoRecord(
        path=path,
        name=name if name is not None else path.name,
        width=int(width),
        height=int(height),
        exif_orientation=orientation,
        lon=lon,
        lat=lat,
        alt=alt,
        captured_at=captured_at,
        make=make,
        model=model,
        focal_length_mm=focal_mm if focal_mm and focal_mm > 0 else None,
        focal_35mm=focal_35mm if focal_35mm and focal_35mm > 0 else None,
        focal_px=focal_px,
        focal_px_source=focal_source,
        heading_deg=heading,
        issues=tuple(issues),
    )


def _no_photos_message(folder: Path, skipped: Sequence[SkippedFile]) -> str:
    message = f"no photos in {folder}: put .jpg, .jpeg or .png photos directly in that folder"
    subfolders = sorted(
        p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")
    )
    if subfolders:
        found = ", ".join(subfolders[:5])
        message += f" (subfolders are not searched unless recursive=True; found {found}"
        if "images" in subfolders:
            message += f"; did you mean {folder / 'images'}?"
        message += ")"
    if skipped:
        shown = "; ".join(f"{s.path.name}: {s.reason}" for s in skipped[:5])
        more = f" and {len(skipped) - 5} more" if len(skipped) > 5 else ""
        message += f". Skipped {len(skipped)} file(s): {shown}{more}"
    return message


def scan_photos(
    folder: str | Path,
    *,
    recursive: bool = False,
    verify: bool = True,
    sensor_widths_mm: Mapping[str, float] | None = None,
) -> PhotoScan:
    """Read every .jpg/.jpeg/.png (any case) in ``folder`` into a :class:`PhotoScan`.

    Records are sorted by name (the path relative to ``folder``, with ``/``). Files that are
    not photos or cannot be read are listed in ``.skipped`` with the reason; hidden files are
    ignored. Raises :class:`PhotoFolderError` when the folder is missing, is not a folder, or
    holds no readable photo.
    """
    folder = Path(folder)
    if not folder.exists():
        raise PhotoFolderError(
            f"photo folder {folder} does not exist: pass the folder that holds your "
            ".jpg/.jpeg/.png photos (check the path and the working directory)"
        )
    if not folder.is_dir():
        raise PhotoFolderError(
            f"{folder} is a file, not a folder: pass the folder that holds your photos "
            f"(here, probably {folder.parent})"
        )
    candidates = folder.rglob("*") if recursive else folder.iterdir()
    records: list[PhotoRecord] = []
    skipped: list[SkippedFile] = []
    for path in sorted(candidates, key=lambda p: p.relative_to(folder).as_posix()):
        relative = path.relative_to(folder)
        if any(part.startswith(".") for part in relative.parts) or path.is_dir():
            continue
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            skipped.append(SkippedFile(path, f"not a photo: suffix {path.suffix or '(none)'!r} "
                                             "is not .jpg, .jpeg or .png"))
            continue
        try:
            records.append(read_photo(path, verify=verify, name=relative.as_posix(),
                                      sensor_widths_mm=sensor_widths_mm))
        except PhotoReadError as exc:
            skipped.append(SkippedFile(path, str(exc)))
        except OSError as exc:  # permissions, vanished files...
            skipped.append(SkippedFile(path, f"cannot open: {exc}"))
    if not records:
        raise PhotoFolderError(_no_photos_message(folder, skipped))
    return PhotoScan(records, folder=folder, skipped=skipped)


def load_oriented(path: str | Path) -> Image.Image:
    """Load a photo's pixels upright (EXIF orientation applied), fully decoded."""
    with Image.open(path) as image:
        upright = ImageOps.exif_transpose(image)
        upright.load()
        return upright if upright is not image else image.copy()


def gps_track_enu(records: Iterable[PhotoRecord]) -> tuple[LocalFrame, np.ndarray]:
    """East-North-Up positions (metres) of the geotagged photos about their median position.

    Returns the frame (origin: median lon, lat and altitude of the geotagged photos) and an
    (N, 3) array whose rows follow ``[r for r in records if r.has_gps]``. Photos without an
    altitude are put at the origin's altitude. EXIF altitudes are above mean sea level, so the
    frame's ``alt0`` is too (not ellipsoidal height: the geoid offset, tens of metres, shifts
    absolute heights only; the ENU offsets between photos are unaffected). Raises ValueError
    when no record is geotagged.
    """
    tagged = [r for r in records if r.has_gps]
    if not tagged:
        raise ValueError(
            "none of the photos carries a GPS position: enable location tagging in the camera "
            "app, or geotag the photos (e.g. from a GPX track) before building an ENU track"
        )
    lon = np.array([r.lon for r in tagged], dtype=np.float64)
    lat = np.array([r.lat for r in tagged], dtype=np.float64)
    alts = [r.alt for r in tagged if r.alt is not None]
    alt0 = float(np.median(alts)) if alts else 0.0
    alt = np.array([alt0 if r.alt is None else r.alt for r in tagged], dtype=np.float64)
    frame = LocalFrame(float(np.median(lon)), float(np.median(lat)), alt0)
    return frame, frame.to_enu(lon, lat, alt)
