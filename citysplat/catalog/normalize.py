"""Image entities (Mapillary API v4 dicts) to typed columns, vectorised over a batch.

Everything here works column by column (one list comprehension per field, numpy for the tile and
Morton arithmetic) so a batch of 10^5 entities costs a fraction of a second; nothing is done per
entity beyond reading its fields. The content hash is computed by DuckDB from the normalised
columns (see :mod:`citysplat.catalog.store`), not here: serialising 10^6 dicts to JSON in Python
costs over 30 s on a small machine.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from itertools import chain, repeat
from typing import Any

import numpy as np
import pandas as pd

INDEX_ZOOM = 14
"""Zoom of Mapillary's coverage tiles (layer ``image``): each image lies in one z14 tile."""

SPATIAL_KEY_BITS = 24
"""Bits per axis of the Hilbert key the images table is ordered by (cells of about 2.4 m)."""

MAX_LIST = 16
"""Longest list field kept (``camera_parameters`` and ``computed_rotation`` have 3 items)."""

_EPSILON = 1e-14  # as mercantile: points within EPSILON of a tile's right/bottom edge go next door

KNOWN_FIELDS = frozenset({
    "id", "sequence", "captured_at", "geometry", "computed_geometry", "altitude",
    "computed_altitude", "compass_angle", "computed_compass_angle", "computed_rotation",
    "camera_type", "camera_parameters", "make", "model", "width", "height", "is_pano",
    "creator", "organization", "organization_id", "exif_orientation",
})
"""Entity fields with a typed column of their own; any other field goes to ``extra`` (JSON).
``organization`` (``{"id": ...}``, what current clients ask for) and ``organization_id`` (the
older name) both fill the ``organization_id`` column."""


def is_secret_field(key: str) -> bool:
    """Fields never stored: URLs (thumbnails expire and may carry tokens) and tokens."""
    k = key.lower()
    return k.startswith("thumb_") or "url" in k or "token" in k


# ------------------------------------------------------------------------------------------
# tiles and z-order keys (numpy, matching mercantile.tile exactly away from float ulps)

def mercator_unit(lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Web-mercator coordinates scaled to [0, 1) (x east, y south), as ``mercantile._xy``."""
    lon = np.asarray(lon, dtype=np.float64)
    lat = np.asarray(lat, dtype=np.float64)
    x = lon / 360.0 + 0.5
    with np.errstate(divide="ignore", invalid="ignore"):
        sinlat = np.sin(np.radians(lat))
        y = 0.5 - 0.25 * np.log((1.0 + sinlat) / (1.0 - sinlat)) / math.pi
    return x, y


def _tile_index(u: np.ndarray, zoom: int) -> np.ndarray:
    z2 = float(2**zoom)
    with np.errstate(invalid="ignore"):
        t = np.floor((u + _EPSILON) * z2)
        t = np.where(u <= 0, 0.0, t)
        t = np.where(u >= 1, z2 - 1, t)
    return t  # float, NaN where the position is missing


def tile_xy(lon: np.ndarray, lat: np.ndarray, zoom: int = INDEX_ZOOM
            ) -> tuple[np.ndarray, np.ndarray]:
    """The ``zoom`` tile (x, y) of each position as float arrays (NaN where lon/lat is NaN);
    the same tiles as ``mercantile.tile``."""
    x, y = mercator_unit(lon, lat)
    return _tile_index(x, zoom), _tile_index(y, zoom)


def hilbert_index(x: np.ndarray, y: np.ndarray, bits: int) -> np.ndarray:
    """Index of each integer cell (x, y) (0 <= x, y < 2**bits) along the Hilbert curve that
    fills the 2**bits square; cells close on the curve are close in space, and any run of the
    curve is one connected region (unlike Z-order)."""
    x = np.asarray(x, dtype=np.int64).copy()
    y = np.asarray(y, dtype=np.int64).copy()
    n = 1 << bits
    d = np.zeros(x.shape, dtype=np.int64)
    s = n >> 1
    while s > 0:
        rx = (x & s) > 0
        ry = (y & s) > 0
        d += np.int64(s) * np.int64(s) * ((3 * rx.astype(np.int64)) ^ ry.astype(np.int64))
        flip = ~ry & rx
        x = np.where(flip, n - 1 - x, x)
        y = np.where(flip, n - 1 - y, y)
        swap = ~ry
        x, y = np.where(swap, y, x), np.where(swap, x, y)
        s >>= 1
    return d


def spatial_key(lon: np.ndarray, lat: np.ndarray, bits: int = SPATIAL_KEY_BITS) -> np.ndarray:
    """Hilbert index of each position on a 2**bits grid of web-mercator cells (0 where
    missing): the images table is ordered by it, so nearby images sit in nearby rows and
    DuckDB's zonemaps skip most row groups of a bbox scan."""
    x, y = mercator_unit(lon, lat)
    n = float(2**bits)
    with np.errstate(invalid="ignore"):
        xi = np.clip(np.nan_to_num(x * n, nan=0.0), 0, n - 1).astype(np.int64)
        yi = np.clip(np.nan_to_num(y * n, nan=0.0), 0, n - 1).astype(np.int64)
    return hilbert_index(xi, yi, bits)


# ------------------------------------------------------------------------------------------
# entity batch -> staging DataFrame (fast paths for plain dicts; exact fallbacks otherwise)

_NAN = math.nan


def _floats(values: list[Any]) -> np.ndarray:
    """A float64 array, NaN for None (DuckDB reads NaN in a pandas float column as NULL)."""
    try:
        return np.array(values, dtype=np.float64)
    except (TypeError, ValueError):
        return np.array([_to_float(v) for v in values], dtype=np.float64)


def _to_float(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return _NAN


def _get(ents: Sequence[dict], key: str) -> list[Any]:
    """``[e.get(key) for e in ents]`` at C speed."""
    return list(map(dict.get, ents, repeat(key)))


_PLAIN_STR_TYPES = frozenset({str, type(None)})
_LIST_TYPES = frozenset({list, tuple, type(None)})


def _str_or_none(values: list[Any]) -> list[str | None]:
    if set(map(type, values)) <= _PLAIN_STR_TYPES:
        return values
    return [v if v is None or v.__class__ is str else str(v) for v in values]


def _lengths(values: list[Any]) -> np.ndarray | None:
    """Lengths of ``values`` (lists/tuples, or None -> -1), or None if some value is neither."""
    if not set(map(type, values)) <= _LIST_TYPES:
        return None
    return np.fromiter((-1 if v is None else len(v) for v in values), dtype=np.int64,
                       count=len(values))


def _flat(values: list[Any], lengths: np.ndarray) -> np.ndarray | None:
    """All list items in order as float64 (None items -> NaN), or None if some are not
    numbers."""
    total = int(lengths[lengths > 0].sum())
    try:
        return np.fromiter(chain.from_iterable(v for v in values if v), dtype=np.float64,
                           count=total)
    except (TypeError, ValueError):
        flat = list(chain.from_iterable(v for v in values if v))
        try:
            return np.array(flat, dtype=np.float64)
        except (TypeError, ValueError):
            return None


def _point(ents: Sequence[dict], key: str) -> tuple[np.ndarray, np.ndarray]:
    geoms = _get(ents, key)
    try:
        coords = [None if g is None else g["coordinates"] for g in geoms]
    except (TypeError, KeyError, IndexError):
        coords = None
    if coords is not None:
        lengths = _lengths(coords)
        if lengths is not None and bool(np.all((lengths == 2) | (lengths == -1))):
            flat = _flat(coords, lengths)
            if flat is not None:
                lon = np.full(len(coords), _NAN)
                lat = np.full(len(coords), _NAN)
                has = lengths == 2
                lon[has], lat[has] = flat[0::2], flat[1::2]
                return lon, lat
    coords = []
    for g in geoms:
        c = g.get("coordinates") if isinstance(g, Mapping) else None
        coords.append(c if c is not None and len(c) >= 2 else None)
    lon = _floats([None if c is None else c[0] for c in coords])
    lat = _floats([None if c is None else c[1] for c in coords])
    return lon, lat


def _list_columns(prefix: str, values: list[Any], out: dict[str, Any]) -> int:
    """Flatten a ragged list field into ``<prefix>_n`` and ``<prefix>0..k-1`` float columns
    (rebuilt into a DOUBLE[] in SQL); returns k. Values that are not lists count as missing,
    items that are not numbers as NULL."""
    lengths = _lengths(values)
    if lengths is None:
        values = [v if isinstance(v, (list, tuple)) else None for v in values]
        lengths = _lengths(values)
    full_lengths = lengths
    if lengths.max(initial=0) > MAX_LIST:  # such rows are rejected (by their _n): not flattened
        values = [None if v is not None and len(v) > MAX_LIST else v for v in values]
        lengths = _lengths(values)
    flat = _flat(values, lengths)
    if flat is None:
        values = [None if v is None else [_to_float(x) for x in v] for v in values]
        flat = _flat(values, lengths)
    n = full_lengths.astype(np.float64)
    n[full_lengths < 0] = _NAN
    out[f"{prefix}_n"] = n
    width = int(lengths.max(initial=0))
    if width <= 0:
        return 0
    has = lengths > 0
    rows = np.repeat(np.flatnonzero(has), lengths[has])
    starts = np.cumsum(lengths[has]) - lengths[has]
    cols = np.arange(len(flat)) - np.repeat(starts, lengths[has])
    table = np.full((len(values), width), _NAN)
    table[rows, cols] = flat
    for j in range(width):
        out[f"{prefix}{j}"] = table[:, j]
    return width


def _extra(e: Mapping[str, Any]) -> str | None:
    keys = [k for k in e if k not in KNOWN_FIELDS and not is_secret_field(k)]
    if not keys:
        return None
    return json.dumps({k: e[k] for k in keys}, sort_keys=True, separators=(",", ":"),
                      default=str)


def _creator_fields(creators: list[Any]) -> tuple[list[Any], list[Any]]:
    try:
        return ([None if c is None else c.get("id") for c in creators],
                [None if c is None else c.get("username") for c in creators])
    except AttributeError:
        cs = [c if isinstance(c, Mapping) else None for c in creators]
        return ([None if c is None else c.get("id") for c in cs],
                [None if c is None else c.get("username") for c in cs])


def _organization_ids(ents: Sequence[dict]) -> list[Any]:
    """``organization.id`` where the entity has ``organization``, else ``organization_id``."""
    ids = _get(ents, "organization_id")
    orgs = _get(ents, "organization")
    if not any(o is not None for o in orgs):
        return ids
    return [o.get("id") if isinstance(o, Mapping) else (o if o is not None else i)
            for o, i in zip(orgs, ids)]


_KNOWN_SUPERSET = KNOWN_FIELDS.issuperset


def staging_frame(ents: Sequence[Mapping[str, Any]]) -> tuple[pd.DataFrame, dict[str, int]]:
    """The batch as a DataFrame of raw typed columns (casts happen in SQL) and the widths of
    the flattened list fields (``{"rot": k, "cp": k}``)."""
    ents = [e if e.__class__ is dict else dict(e) for e in ents]
    cols: dict[str, Any] = {}
    cols["id"] = _str_or_none(_get(ents, "id"))
    if any(i is None for i in cols["id"]):
        raise ValueError("an image entity has no id")
    cols["sequence_id"] = _str_or_none(_get(ents, "sequence"))
    cols["captured_at_ms"] = _floats(_get(ents, "captured_at"))
    lon, lat = _point(ents, "geometry")
    clon, clat = _point(ents, "computed_geometry")
    cols["lon"], cols["lat"], cols["computed_lon"], cols["computed_lat"] = lon, lat, clon, clat
    for key in ("altitude", "computed_altitude", "compass_angle", "computed_compass_angle",
                "width", "height", "exif_orientation", "is_pano"):
        cols[key] = _floats(_get(ents, key))
    for key in ("camera_type", "make", "model"):
        cols[key] = _str_or_none(_get(ents, key))
    cols["organization_id"] = _str_or_none(_organization_ids(ents))
    ids, names = _creator_fields(_get(ents, "creator"))
    cols["creator_id"], cols["creator_username"] = _str_or_none(ids), _str_or_none(names)
    widths = {
        "rot": _list_columns("rot", _get(ents, "computed_rotation"), cols),
        "cp": _list_columns("cp", _get(ents, "camera_parameters"), cols),
    }
    plain = list(map(_KNOWN_SUPERSET, ents))
    cols["extra"] = [None if ok else _extra(e) for ok, e in zip(plain, ents)]
    tx, ty = tile_xy(lon, lat)
    ctx, cty = tile_xy(clon, clat)
    cols["tile_x"], cols["tile_y"] = tx, ty
    cols["computed_tile_x"], cols["computed_tile_y"] = ctx, cty
    has_c = ~np.isnan(clon) & ~np.isnan(clat)
    cols["pos_lon"] = np.where(has_c, clon, lon)
    cols["pos_lat"] = np.where(has_c, clat, lat)
    cols["spatial_key"] = spatial_key(cols["pos_lon"], cols["pos_lat"])  # < 2**48
    # text columns stay Python objects: with pyarrow installed, pandas 3 would otherwise store
    # them as Arrow strings, which refuse the lone surrogates JSON can carry before the
    # catalog gets to reject the rows that hold them (catalog.validate)
    frame = pd.DataFrame({k: pd.Series(v, dtype=object) if isinstance(v, list) else v
                          for k, v in cols.items()}, copy=False)
    return frame, widths


def dedupe_last(ents: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """``ents`` with only the last entity of each id (one statement may not update a row
    twice)."""
    ids = [str(e["id"]) for e in ents]
    if len(set(ids)) == len(ids):
        return list(ents)
    last = {i: k for k, i in enumerate(ids)}
    return [ents[k] for k in sorted(last.values())]
