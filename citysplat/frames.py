"""Local East-North-Up frames about a district origin, and their round trip to WGS84.

Every district stores its sparse model, splat and meshes in metres about an origin on the
ground (``frame.json``); this module turns lon/lat/alt into that frame and back with pyproj's
topocentric conversion (geodetic -> geocentric -> topocentric), so no hand-written geodesy.
"""

from __future__ import annotations

import json
import math
import numbers
from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
from pyproj import Transformer

from citysplat.io import atomic_write_text


@dataclass(frozen=True)
class LocalFrame:
    """An East-North-Up frame in metres about ``(lon0, lat0, alt0)`` on the WGS84 ellipsoid."""

    lon0: float
    lat0: float
    alt0: float = 0.0
    crs: str = "EPSG:4979"

    def __post_init__(self) -> None:
        values = (self.lon0, self.lat0, self.alt0)
        if not all(isinstance(v, numbers.Real) and math.isfinite(v) for v in values):
            raise ValueError(f"ENU frame origin {values} is not three finite numbers: give "
                             "lon, lat (degrees) and altitude (metres)")
        if not (-180 <= self.lon0 <= 180 and -90 <= self.lat0 <= 90):
            raise ValueError(f"ENU frame origin lon {self.lon0}, lat {self.lat0} is out of "
                             "range: longitude is -180..180 and latitude -90..90 degrees")

    @cached_property
    def _to_enu(self) -> Transformer:
        pipeline = (
            "+proj=pipeline +step +proj=unitconvert +xy_in=deg +xy_out=rad "
            "+step +proj=cart +ellps=WGS84 "
            f"+step +proj=topocentric +ellps=WGS84 +lon_0={self.lon0!r} +lat_0={self.lat0!r} "
            f"+h_0={self.alt0!r}"
        )
        return Transformer.from_pipeline(pipeline)

    def to_enu(self, lon, lat, alt=None) -> np.ndarray:
        """lon/lat (degrees) and ellipsoidal altitude (metres) -> (N, 3) east, north, up."""
        lon = np.atleast_1d(np.asarray(lon, dtype=np.float64))
        lat = np.atleast_1d(np.asarray(lat, dtype=np.float64))
        alt = np.zeros_like(lon) if alt is None else np.atleast_1d(np.asarray(alt, np.float64))
        e, n, u = self._to_enu.transform(lon, lat, alt)
        return np.stack([e, n, u], axis=-1)

    def to_lonlat(self, enu) -> np.ndarray:
        """(N, 3) east, north, up -> (N, 3) lon, lat (degrees), ellipsoidal altitude (metres)."""
        enu = np.atleast_2d(np.asarray(enu, dtype=np.float64))
        lon, lat, alt = self._to_enu.transform(
            enu[:, 0], enu[:, 1], enu[:, 2], direction="INVERSE"
        )
        return np.stack([lon, lat, alt], axis=-1)

    def to_json(self) -> str:
        return json.dumps({"type": "enu", **asdict(self)}, indent=2)

    def save(self, path: Path) -> None:
        atomic_write_text(Path(path), self.to_json() + "\n")

    @classmethod
    def load(cls, path: Path) -> LocalFrame:
        data = json.loads(Path(path).read_text())
        data.pop("type", None)
        return cls(**data)
