"""The city's streets as an OpenStreetMap mapper would have drawn them: an OSM XML 0.6 extract.

What this models
----------------
A mapper traces the street grid from aerial imagery. The topology comes out right: one way per
street, or a street split into two ways somewhere mid-block as mappers often leave them, and a
node at every intersection shared by the crossing ways (so an OSM import such as SUMO's
``netconvert --osm-files`` builds a junction there), a node at each street end, and now and
then a node mid-block. The positions come out wrong by a few metres, in two parts:

* a constant shift of the whole area (a random direction, 1.5-2.5 m): the aerial imagery
  itself sits shifted against the true ground, and everything traced from it carries the same
  shift;
* small per-node tracing noise (normal, 0.3 m per axis), with each node's total error clipped
  to 1-3 m from the point it stands for.

:func:`osm_extract` gives the XML and the truth of the offset (the shift, the noise, and the
true city ENU position of every node), :func:`true_junctions` and :func:`true_segments` the
network it should import to.

Where the facts come from (OpenStreetMap wiki pages, by name)
--------------------------------------------------------------
* "Tag:highway=residential": a road in a residential area, as every street of the city is.
* "Key:lanes": the total number of traffic lanes of both directions, not counting parking
  lanes (those go in the street parking keys), so ``lanes=2`` with ``oneway=no``.
* "Key:width" and "Key:width:carriageway": on roads ``width`` is the carriageway from kerb to
  kerb, parking lanes included and sidewalks not: ``width=12`` (twice ``ROADWAY_HALF``).
* "Key:sidewalk": ``sidewalk=both`` for a sidewalk on either side, drawn as a property of the
  road rather than as separate ways.
* "Key:maxspeed": units other than km/h follow the number after a space, ``maxspeed=25 mph``;
  25 mph is California's prima facie limit in residence districts (California Vehicle Code
  section 22352).
* "Street parking" (``parking:both=lane`` with ``parking:both:orientation=parallel``): the
  current scheme; "Key:parking:lane" marks the older ``parking:lane:*`` keys as deprecated.
* "Using aerial imagery": imagery may be distorted and shifted relative to the true positions
  of objects, so roads traced from it are shifted too; "Imagery Offset Database": a shared
  store of the offsets mappers measured by aligning imagery to GPS traces.

Assumptions (not from a source): the 1.5-2.5 m shift (a well-aligned imagery layer; learnOSM's
"Correcting Imagery Offset" notes offsets of ten metres or more elsewhere), the 0.3 m tracing
noise, the 1-3 m bound on a node's error, how often ways are split and mid-block nodes added.
"""

from __future__ import annotations

from xml.etree import ElementTree as ET

import numpy as np

from citysplat.frames import LocalFrame
from citysplat.synthetic.layout import ROADWAY_HALF, Layout, Street

SHIFT_RANGE_M = (1.5, 2.5)  # the imagery's constant offset, magnitude
NODE_NOISE_SIGMA_M = 0.3  # tracing noise per node and axis
NODE_ERROR_RANGE_M = (1.0, 3.0)  # every node's total error is clipped into this range
SPLIT_RATE = 0.5  # chance that a street is drawn as two ways, split at a mid-block node

#: The tags a mapper gives a residential San Francisco street (see the module docstring).
STREET_TAGS: dict[str, str] = {
    "highway": "residential",
    "lanes": "2",
    "oneway": "no",
    "maxspeed": "25 mph",
    "sidewalk": "both",
    "width": f"{2 * ROADWAY_HALF:g}",
    "parking:both": "lane",
    "parking:both:orientation": "parallel",
}

Point = tuple[float, float]


def _street_cuts(street: Street, layout: Layout) -> list[Point]:
    """The street's start, its intersections in order along it, and its end (x, y)."""
    if street.axis == "ns":
        inner = [(float(street.a[0]), float(y)) for y in layout.streets_y]
    else:
        inner = [(float(x), float(street.a[1])) for x in layout.avenues_x]
    a = np.asarray(street.a)
    inner.sort(key=lambda p: float(np.dot(np.subtract(p, a), street.direction)))
    return [tuple(map(float, street.a)), *inner, tuple(map(float, street.b))]


def true_junctions(layout: Layout) -> list[Point]:
    """The grid's intersections (x, y) in city ENU metres: every avenue with every street."""
    return [(float(x), float(y)) for x in layout.avenues_x for y in layout.streets_y]


def true_segments(layout: Layout) -> list[tuple[Point, Point, str]]:
    """Every street cut at its intersections: (from, to, street name), the two end pieces that
    run past the outer intersections included."""
    out: list[tuple[Point, Point, str]] = []
    for street in layout.streets:
        cuts = _street_cuts(street, layout)
        out += [(p, q, street.name) for p, q in zip(cuts[:-1], cuts[1:])]
    return out


def _mapped_topology(layout: Layout, rng: np.random.Generator
                     ) -> tuple[list[Point], list[str], list[tuple[str, list[int]]]]:
    """What the mapper drew: the true point each node stands for, its kind (junction, end,
    shape) and the ways as (street name, node indices). Crossing streets share their
    intersection node; a street may be split in two at one of its mid-block nodes."""
    points: list[Point] = []
    kinds: list[str] = []
    index: dict[Point, int] = {}

    def node(p: Point, kind: str) -> int:
        if p not in index:  # intersections are the very same floats from either street
            index[p] = len(points)
            points.append(p)
            kinds.append(kind)
        return index[p]

    ways: list[tuple[str, list[int]]] = []
    for street in layout.streets:
        cuts = _street_cuts(street, layout)
        refs = [node(cuts[0], "end")]
        for i, (p, q) in enumerate(zip(cuts[:-1], cuts[1:])):
            for t in np.sort(rng.uniform(0.2, 0.8, int(rng.integers(0, 3)))):
                refs.append(node((p[0] + t * (q[0] - p[0]), p[1] + t * (q[1] - p[1])), "shape"))
            refs.append(node(q, "end" if i == len(cuts) - 2 else "junction"))
        mid = [k for k, r in enumerate(refs) if kinds[r] == "shape"]
        if mid and rng.random() < SPLIT_RATE:
            k = mid[int(rng.integers(len(mid)))]
            ways += [(street.name, refs[:k + 1]), (street.name, refs[k:])]
        else:
            ways.append((street.name, refs))
    return points, kinds, ways


def _node_errors(rng: np.random.Generator, shift: np.ndarray, n: int) -> np.ndarray:
    """(n, 2) errors: the shift plus tracing noise, each clipped to NODE_ERROR_RANGE_M."""
    err = shift + rng.normal(0.0, NODE_NOISE_SIGMA_M, (n, 2))
    norm = np.linalg.norm(err, axis=1, keepdims=True)
    return err * np.clip(norm, *NODE_ERROR_RANGE_M) / norm


def _xml(lonlat: np.ndarray, ways: list[tuple[str, list[int]]]) -> str:
    """The OSM XML 0.6 document: bounds, nodes (ids from 1), ways (ids from 1)."""
    root = ET.Element("osm", version="0.6", generator="citysplat synthetic city")
    lo, hi = lonlat.min(axis=0), lonlat.max(axis=0)
    ET.SubElement(root, "bounds", minlat=f"{lo[1]:.7f}", minlon=f"{lo[0]:.7f}",
                  maxlat=f"{hi[1]:.7f}", maxlon=f"{hi[0]:.7f}")
    for i, (lon, lat) in enumerate(lonlat):
        ET.SubElement(root, "node", id=str(i + 1), lat=f"{lat:.7f}", lon=f"{lon:.7f}",
                      version="1", visible="true")
    for j, (name, refs) in enumerate(ways):
        way = ET.SubElement(root, "way", id=str(j + 1), version="1", visible="true")
        for r in refs:
            ET.SubElement(way, "nd", ref=str(r + 1))
        for k, v in {**STREET_TAGS, "name": name}.items():
            ET.SubElement(way, "tag", k=k, v=v)
    ET.indent(root, space=" ")
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def osm_extract(layout: Layout, frame: LocalFrame, seed: int) -> tuple[str, dict]:
    """The streets as OSM XML 0.6, and the truth of their offset: ``shift_enu_m`` (the constant
    imagery shift, city ENU metres), ``node_noise_sigma_m``, ``max_node_error_m`` (the largest
    distance of a node from the point it stands for), ``node_error_range_m``, ``source`` and
    ``true_nodes_enu_m`` (node id -> the true (x, y) it stands for, and its kind)."""
    rng = np.random.default_rng([seed, 6])
    angle, size = rng.uniform(0.0, 2 * np.pi), rng.uniform(*SHIFT_RANGE_M)
    shift = size * np.array([np.cos(angle), np.sin(angle)])
    points, kinds, ways = _mapped_topology(layout, rng)
    err = _node_errors(rng, shift, len(points))
    mapped = np.asarray(points) + err
    lonlat = frame.to_lonlat(np.column_stack([mapped, np.zeros(len(mapped))]))[:, :2]
    truth = {
        "shift_enu_m": [round(float(v), 4) for v in shift],
        "node_noise_sigma_m": NODE_NOISE_SIGMA_M,
        "max_node_error_m": round(float(np.linalg.norm(err, axis=1).max()), 4),
        "node_error_range_m": list(NODE_ERROR_RANGE_M),
        "source": "synthetic: streets traced from aerial imagery shifted by shift_enu_m "
                  "(city ENU metres, x east, y north), plus per-node tracing noise",
        "true_nodes_enu_m": {str(i + 1): {"xy": [round(p[0], 4), round(p[1], 4)], "kind": k}
                             for i, (p, k) in enumerate(zip(points, kinds))},
    }
    return _xml(lonlat, ways), truth
