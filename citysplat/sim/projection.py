"""A district's ENU frame as a SUMO network projection, so that SUMO x, y *are* east, north.

SUMO stores a network's projection as a PROJ string in ``<location projParameter=...>``, and
``sumolib`` (``Net.convertXY2LonLat``) and ``traci.simulation.convertGeo`` invert it after
subtracting ``netOffset`` (SUMO's "Geo-Coordinates" documentation). With
``--offset.disable-normalization`` the offset stays 0, so x, y are the projection's own.

The projection: a transverse Mercator about the district origin. Near the origin it equals the
topocentric ENU plane of ``frame.json`` to third order in distance, but for one thing: ENU
measures at the origin's height and the Mercator on the ellipsoid, so lengths differ by
``h / R`` (3.4 ppm at 22 m; 2.5 mm per kilometre at sea level is nothing, 250 ppm at 1,600 m is
not). The scale factor ``k = 1 + h / R`` with the Gaussian mean radius ``R`` at the origin's
latitude takes that out; :func:`frame_disagreement_m` measures what is left.
"""

from __future__ import annotations

import math

import numpy as np
from pyproj import Proj

from citysplat.frames import LocalFrame

WGS84_A = 6378137.0
WGS84_F = 1 / 298.257223563


def gaussian_radius(lat_deg: float) -> float:
    """The Gaussian mean radius of curvature of WGS84 at a latitude (metres)."""
    e2 = WGS84_F * (2 - WGS84_F)
    s2 = math.sin(math.radians(lat_deg)) ** 2
    meridian = WGS84_A * (1 - e2) / (1 - e2 * s2) ** 1.5
    normal = WGS84_A / math.sqrt(1 - e2 * s2)
    return math.sqrt(meridian * normal)


def sumo_projection(frame: LocalFrame) -> str:
    """The PROJ string whose x, y equal ``frame``'s east, north on the ground."""
    k = 1.0 + frame.alt0 / gaussian_radius(frame.lat0)
    return (f"+proj=tmerc +lat_0={frame.lat0!r} +lon_0={frame.lon0!r} +k={k!r} "
            "+x_0=0 +y_0=0 +ellps=WGS84 +units=m +no_defs")


def location_attributes(frame: LocalFrame, bounds: tuple[float, float, float, float]
                        ) -> dict[str, str]:
    """The attributes of a plain-XML ``<location>``: no offset, the district's projection, the
    boundary in x, y and in lon/lat."""
    xmin, ymin, xmax, ymax = bounds
    corners = frame.to_lonlat([[xmin, ymin, 0.0], [xmax, ymax, 0.0]])
    return {"netOffset": "0.00,0.00",
            "convBoundary": f"{xmin:.2f},{ymin:.2f},{xmax:.2f},{ymax:.2f}",
            "origBoundary": (f"{corners[0, 0]:.7f},{corners[0, 1]:.7f},"
                             f"{corners[1, 0]:.7f},{corners[1, 1]:.7f}"),
            "projParameter": sumo_projection(frame)}


def frame_disagreement_m(frame: LocalFrame, xy: np.ndarray, proj_parameter: str | None = None,
                         net_offset: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """For SUMO points ``xy``, how far (metres) SUMO's own lon/lat (the projection inverted,
    as sumolib does it) lies from ``frame.json``'s lon/lat of the same ENU east, north."""
    xy = np.atleast_2d(np.asarray(xy, np.float64))
    proj = Proj(proj_parameter or sumo_projection(frame))
    lon, lat = proj(xy[:, 0] - net_offset[0], xy[:, 1] - net_offset[1], inverse=True)
    enu_of_sumo = frame.to_enu(lon, lat, frame.to_lonlat(
        np.column_stack([xy, np.zeros(len(xy))]))[:, 2])
    return np.hypot(enu_of_sumo[:, 0] - xy[:, 0], enu_of_sumo[:, 1] - xy[:, 1])
