"""What the catalog lets in: every image entity is checked at its door, in one place.

Mapillary ids are decimal digits; positions are finite and on the globe; integers fit their
column; times are plausible; strings and lists are bounded. A record that fails is *rejected*:
counted, kept aside with its reason (the ``rejected`` table) and reported, never a reason to stop
the other records of its batch. The checks run column by column over the staging frame (numpy),
so a batch of 10^5 entities costs milliseconds; only the cheap shape checks look at each entity.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

IMAGE_ID = re.compile(r"[0-9]{1,20}")
"""A Mapillary image id: decimal digits (a 64-bit integer as a string)."""
MAX_TEXT = 256
"""Longest string kept in a text column (sequence ids are 22 characters, names are short)."""
MAX_LIST = 16
"""Longest ``camera_parameters`` / ``computed_rotation`` list (3 are used)."""
MAX_EXTRA_JSON = 65_536
"""Largest JSON of the fields without a column of their own, per entity."""
CAPTURED_AT_RANGE_MS = (-2_208_988_800_000, 4_102_444_800_000)
"""1900-01-01 to 2100-01-01: anything else is not a capture time."""
INT32_MAX = 2**31 - 1
_TEXT_COLUMNS = ("sequence_id", "camera_type", "make", "model", "creator_id",
                 "creator_username", "organization_id")
_FLOAT_COLUMNS = ("altitude", "computed_altitude", "compass_angle", "computed_compass_angle")
_INT_COLUMNS = ("width", "height", "exif_orientation")
_POSITIONS = (("lon", "lat", "geometry"), ("computed_lon", "computed_lat", "computed_geometry"))


class Rejection(NamedTuple):
    """One record kept out of the catalog: where it came from, its id as served, and why."""

    source: str
    record: str
    reason: str


def shown(value: Any, limit: int = 40) -> str:
    """A record's id as it can be shown and stored: printable, at most ``limit`` characters."""
    text = value if isinstance(value, str) else repr(value)
    text = "".join(c if c.isprintable() else f"\\x{ord(c) & 0xFF:02x}" for c in text[:limit + 1])
    return text if len(text) <= limit else text[:limit - 1] + "…"


def screen_entities(ents: Sequence[Any]) -> tuple[list[Mapping[str, Any]], list[Rejection]]:
    """The entities shaped like image entities (a mapping with an id of digits, short lists),
    and a rejection for each other one. Cheap: a few lookups per entity."""
    kept: list[Mapping[str, Any]] = []
    rejected: list[Rejection] = []
    for e in ents:
        if not isinstance(e, Mapping):
            rejected.append(Rejection("entity", shown(e), "not a JSON object"))
            continue
        image_id = e.get("id")
        if not isinstance(image_id, (str, int)) or isinstance(image_id, bool) \
                or not IMAGE_ID.fullmatch(str(image_id)):
            rejected.append(Rejection("entity", shown(image_id),
                                      "the image id is not decimal digits"))
            continue
        reason = _list_problem(e, "camera_parameters") or _list_problem(e, "computed_rotation")
        if reason:
            rejected.append(Rejection("entity", str(image_id), reason))
            continue
        kept.append(e)
    return kept, rejected


def _list_problem(e: Mapping[str, Any], key: str) -> str | None:
    value = e.get(key)
    if value is None or not isinstance(value, (list, tuple)):
        return None
    if len(value) > MAX_LIST:
        return f"{key} has {len(value)} items (at most {MAX_LIST})"
    return None


def row_problems(frame: pd.DataFrame) -> np.ndarray:
    """Per staging-frame row, the first reason to reject it (an object array, None where the
    row is fine). Missing values (NaN, None) are fine: only present, impossible ones fail."""
    n = len(frame)
    reasons = np.full(n, None, dtype=object)

    def flag(mask: np.ndarray, reason: str | np.ndarray) -> None:
        todo = mask & (reasons == None)  # noqa: E711 - elementwise on an object array
        if todo.any():
            reasons[todo] = reason if isinstance(reason, str) else reason[todo]

    captured = frame["captured_at_ms"].to_numpy(dtype=np.float64)
    lo, hi = CAPTURED_AT_RANGE_MS
    with np.errstate(invalid="ignore"):
        flag(~np.isnan(captured) & ~((captured >= lo) & (captured <= hi)),
             "captured_at is not a time between 1900 and 2100 (ms since the epoch)")
        for lon_col, lat_col, name in _POSITIONS:
            lon = frame[lon_col].to_numpy(dtype=np.float64)
            lat = frame[lat_col].to_numpy(dtype=np.float64)
            present = ~np.isnan(lon) | ~np.isnan(lat)
            flag(present & ~((np.abs(lon) <= 180) & (np.abs(lat) <= 90)),
                 f"{name} is not a longitude, latitude on the globe")
        for col in _FLOAT_COLUMNS:
            v = frame[col].to_numpy(dtype=np.float64)
            flag(np.isinf(v), f"{col} is not a finite number")
        for col in _INT_COLUMNS:
            v = frame[col].to_numpy(dtype=np.float64)
            flag(~np.isnan(v) & ~((v >= 0) & (v <= INT32_MAX)),
                 f"{col} is not an integer from 0 to {INT32_MAX}")
    for col in _TEXT_COLUMNS:
        values = frame[col].tolist()
        if _texts_fine(values):
            continue  # the common case, checked at C speed
        bad = np.fromiter((_text_problem(v) for v in values), dtype=bool, count=n)
        flag(bad, f"{col} is not text of at most {MAX_TEXT} characters")
    extra = frame["extra"]
    too_big = np.fromiter((v is not None and len(v) > MAX_EXTRA_JSON for v in extra),
                          dtype=bool, count=n)
    flag(too_big, f"the fields without a column of their own exceed {MAX_EXTRA_JSON} bytes")
    return reasons


def _texts_fine(values: list[Any]) -> bool:
    """Whether every value is None or storable text of at most :data:`MAX_TEXT` characters
    (one pass in C over the column; the per-value check runs only when this says no)."""
    texts = [v for v in values if v.__class__ is str]
    if len(texts) != sum(v is not None for v in values):
        return False
    if texts and max(map(len, texts)) > MAX_TEXT:
        return False
    joined = "".join(texts)
    if "\x00" in joined:
        return False
    try:
        joined.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _text_problem(value: Any) -> bool:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return False
    if len(value) > MAX_TEXT:
        return True
    try:
        value.encode("utf-8")  # lone surrogates (possible in JSON) cannot be stored
    except UnicodeEncodeError:
        return True
    return "\x00" in value
