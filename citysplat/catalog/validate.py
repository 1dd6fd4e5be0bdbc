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
from itertools import repeat
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from citysplat.catalog.normalize import MAX_LIST

IMAGE_ID = re.compile(r"[0-9]{1,20}")
"""A Mapillary image id: decimal digits (a 64-bit integer as a string)."""
MAX_TEXT = 256
"""Longest string kept in a text column (sequence ids are 22 characters, names are short)."""
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
    """The entities that are objects with an id, and a rejection for each other record. A batch
    of dicts that all have an id passes in two passes at C speed; the values themselves are
    checked by :func:`row_problems`."""
    if set(map(type, ents)) <= {dict} and None not in map(dict.get, ents, repeat("id")):
        return list(ents), []
    kept: list[Mapping[str, Any]] = []
    rejected: list[Rejection] = []
    for e in ents:
        if not isinstance(e, Mapping):
            rejected.append(Rejection("entity", shown(e), "not a JSON object"))
        elif e.get("id") is None:
            rejected.append(Rejection("entity", shown(e.get("id")), "the entity has no id"))
        else:
            kept.append(e)
    return kept, rejected


def row_problems(frame: pd.DataFrame) -> np.ndarray:
    """Per staging-frame row, the first reason to reject it (an object array, None where the
    row is fine). Missing values (NaN, None) are fine: only present, impossible ones fail."""
    n = len(frame)
    reasons = np.full(n, None, dtype=object)
    flagged = np.zeros(n, dtype=bool)

    def flag(mask: np.ndarray, reason: str) -> None:
        if mask.any():
            todo = mask & ~flagged
            reasons[todo] = reason
            flagged[todo] = True

    ids = frame["id"].tolist()
    joined = "".join(ids)
    if not (joined.isascii() and joined.isdigit() and min(map(len, ids), default=1) >= 1
            and max(map(len, ids), default=0) <= 20):
        bad = np.fromiter((not IMAGE_ID.fullmatch(i) for i in ids), dtype=bool, count=n)
        flag(bad, "the image id is not decimal digits")
    for prefix, name in (("cp", "camera_parameters"), ("rot", "computed_rotation")):
        counts = frame[f"{prefix}_n"].to_numpy(dtype=np.float64)
        with np.errstate(invalid="ignore"):
            flag(counts > MAX_LIST, f"{name} has more than {MAX_LIST} items")
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
    return reasons


def text_checks_sql() -> str:
    """A DuckDB expression over the staged columns: why a row's text cannot be kept (too long,
    or holding NUL characters), or NULL. DuckDB checks the text columns at C++ speed; text it
    cannot even read (lone surrogates) fails the batch, which then goes through
    :func:`text_problems`."""
    cases = [f"WHEN length({c}) > {MAX_TEXT} OR contains({c}, chr(0)) THEN "
             f"'{c} is not text of at most {MAX_TEXT} characters'" for c in _TEXT_COLUMNS]
    cases.append(f"WHEN length(extra) > {MAX_EXTRA_JSON} THEN 'the fields without a column of "
                 f"their own exceed {MAX_EXTRA_JSON} bytes'")
    return "CASE " + " ".join(cases) + " END"


def text_problems(frame: pd.DataFrame) -> np.ndarray:
    """Per row, why its text cannot be stored (including lone surrogates), or None: the slow,
    per-value path for a batch DuckDB refused."""
    n = len(frame)
    reasons = np.full(n, None, dtype=object)
    for col in (*_TEXT_COLUMNS, "extra"):
        limit = MAX_EXTRA_JSON if col == "extra" else MAX_TEXT
        for k, value in enumerate(frame[col].tolist()):
            if reasons[k] is None and _text_problem(value, limit):
                reasons[k] = f"{col} is not text of at most {limit} characters"
    return reasons


def _text_problem(value: Any, limit: int = MAX_TEXT) -> bool:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return False
    if len(value) > limit:
        return True
    try:
        value.encode("utf-8")  # lone surrogates (possible in JSON) cannot be stored
    except UnicodeEncodeError:
        return True
    return "\x00" in value
