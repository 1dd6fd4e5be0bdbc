"""Enumerate every image of an area through Mapillary's z14 coverage tiles, then fetch metadata.

The bbox search (``/images?bbox=``) silently stops at 2000 results; Mapillary's own advice for
whole areas is the coverage tiles (``mly1_public`` / ``mly1_computed_public``, layer ``image``
at z14), then the entities by id in batches of 50. A tile that still fails after the retry budget
is reported as a failed :class:`TileResult` (a hole a later run can fill), never an exception.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import logging
import math
import os
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, NamedTuple

import mercantile
import numpy as np
import shapely
from mapbox_vector_tile.Mapbox import vector_tile_pb2
from shapely.geometry import MultiPolygon, Polygon, box, shape
from shapely.geometry.base import BaseGeometry
from shapely.validation import explain_validity

from citysplat.catalog.validate import IMAGE_ID, shown
from citysplat.mapillary._aio import bounded_as_completed
from citysplat.mapillary.client import MapillaryClient
from citysplat.mapillary.errors import AuthError, MapillaryError
from citysplat.progress import ProgressFn

log = logging.getLogger(__name__)

ZOOM = 14
"""Coverage tiles carry the ``image`` layer at z14 only."""
TILESETS = ("mly1_computed_public", "mly1_public")
Tileset = Literal["mly1_computed_public", "mly1_public"]
IMAGE_LAYER = "image"
CATALOG_FIELDS: tuple[str, ...] = (
    "id", "sequence", "captured_at", "geometry", "computed_geometry", "altitude",
    "computed_altitude", "compass_angle", "computed_compass_angle", "computed_rotation",
    "camera_type", "camera_parameters", "make", "model", "width", "height", "is_pano",
    "creator", "organization", "exif_orientation",
)  # fmt: skip
"""Every image field the catalog asks for. ``organization`` (an object with the id), not
``organization_id``, which the live API refused in 2026 (``docs/MAPILLARY_API.md``); a field the
API refuses is dropped for the run by the client, so its column stays empty."""
MAX_TILES = 25_000
"""Default cap on the z14 tiles of one area: half a day of Mapillary's published tile quota
(50,000 a day), about a country the size of Belgium. Larger areas need an explicit override."""
TILE_QUOTA_PER_DAY = 50_000

_POINT = 1
_EARTH_RADIUS = 6378137.0
_VALUE_FIELDS = (
    "string_value",
    "int_value",
    "uint_value",
    "sint_value",
    "double_value",
    "float_value",
    "bool_value",
)


# --------------------------------------------------------------------------------------------
# areas


@dataclass(frozen=True)
class Area:
    """A polygonal area in WGS84 lon/lat (a shapely Polygon or MultiPolygon)."""

    geometry: Polygon | MultiPolygon
    name: str | None = None

    @classmethod
    def from_bbox(cls, bbox: Sequence[float], name: str | None = None) -> Area:
        """From ``(west, south, east, north)`` in degrees; ValueError if malformed."""
        w, s, e, n = validate_bbox(bbox)
        return cls(box(w, s, e, n), name)

    @classmethod
    def from_geojson(
        cls, obj: Mapping[str, Any] | str | os.PathLike[str], name: str | None = None
    ) -> Area:
        """From a GeoJSON Polygon, MultiPolygon, Feature or FeatureCollection (a dict, JSON text
        or a file path); ValueError with the reason if it is not a valid lon/lat polygon."""
        return cls(polygon_from_geojson(obj), name)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """``(west, south, east, north)``."""
        w, s, e, n = self.geometry.bounds
        return w, s, e, n

    def tile_bound(self, zoom: int = ZOOM) -> int:
        """An upper bound of :meth:`tiles`' count (the tiles of each part's bounding box),
        computed without listing them."""
        total = 0
        for part in self._parts():
            w, s, e, n = part.bounds
            lo = mercantile.tile(w, min(n, 85.0511), zoom)
            hi = mercantile.tile(min(e, 180 - 1e-9), max(s, -85.0511), zoom)
            total += (hi.x - lo.x + 1) * (hi.y - lo.y + 1)
        return total

    def check_size(self, max_tiles: int | None = MAX_TILES, zoom: int = ZOOM) -> int:
        """The tile bound; :class:`AreaTooLargeError` when it exceeds ``max_tiles`` (None: no
        cap)."""
        bound = self.tile_bound(zoom)
        if max_tiles is not None and bound > max_tiles:
            raise AreaTooLargeError(bound, max_tiles)
        return bound

    def _parts(self) -> list[Polygon]:
        return (
            list(self.geometry.geoms)
            if isinstance(self.geometry, MultiPolygon)
            else [self.geometry]
        )

    def tiles(self, zoom: int = ZOOM) -> list[mercantile.Tile]:
        """The tiles at ``zoom`` that intersect the area (not just its bounding box), sorted."""
        parts = (
            list(self.geometry.geoms)
            if isinstance(self.geometry, MultiPolygon)
            else [self.geometry]
        )
        found: set[mercantile.Tile] = set()
        for part in parts:
            w, s, e, n = part.bounds
            candidates = list(mercantile.tiles(w, s, e, n, [zoom]))
            if not candidates:
                continue
            boxes = shapely.box(*np.array([tuple(mercantile.bounds(t)) for t in candidates]).T)
            shapely.prepare(part)
            hits = shapely.intersects(boxes, part)
            found.update(t for t, hit in zip(candidates, hits) if hit)
        return sorted(found, key=lambda t: (t.x, t.y))

    def contains(self, lons: Sequence[float], lats: Sequence[float]) -> np.ndarray:
        """Whether each point is inside the area or on its boundary."""
        shapely.prepare(self.geometry)
        return shapely.intersects_xy(
            self.geometry, np.asarray(lons, float), np.asarray(lats, float)
        )


class AreaTooLargeError(ValueError):
    """The area covers more z14 coverage tiles than the cap allows."""

    def __init__(self, tiles: int, cap: int) -> None:
        self.tiles, self.cap = tiles, cap
        days = tiles / TILE_QUOTA_PER_DAY
        super().__init__(
            f"the area covers up to {tiles:,} z14 coverage tiles (about {days:.1f} days of "
            f"Mapillary's tile quota of {TILE_QUOTA_PER_DAY:,} a day), over the cap of {cap:,}: "
            "split it into smaller areas, or raise the cap with --max-tiles"
        )


def validate_bbox(bbox: Sequence[float]) -> tuple[float, float, float, float]:
    """``(west, south, east, north)`` as floats; ValueError saying what is wrong."""
    if isinstance(bbox, str):
        bbox = bbox.split(",")  # type: ignore[assignment]
    try:
        values = [float(v) for v in bbox]
    except (TypeError, ValueError):
        raise ValueError(
            f"bbox must be four numbers (west, south, east, north), got {bbox!r}"
        ) from None
    if len(values) != 4:
        raise ValueError(f"bbox must be four numbers (west, south, east, north), got {len(values)}")
    w, s, e, n = values
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"bbox values must be finite numbers, got {values}")
    if not (-180 <= w <= 180 and -180 <= e <= 180):
        raise ValueError(
            f"bbox longitudes must be within -180..180 degrees, got west={w}, east={e}"
        )
    if not (-90 <= s <= 90 and -90 <= n <= 90):
        raise ValueError(f"bbox latitudes must be within -90..90 degrees, got south={s}, north={n}")
    if w > e:
        raise ValueError(
            f"bbox is inverted: west ({w}) is east of east ({e}); the order is west, south, east, "
            "north (areas across the antimeridian: split them in two)"
        )
    if s > n:
        raise ValueError(
            f"bbox is inverted: south ({s}) is north of north ({n}); the order is west, south, east, north"
        )
    if w == e or s == n:
        raise ValueError(f"bbox is empty (zero width or height): {values}")
    return w, s, e, n


def _load_geojson(obj: Mapping[str, Any] | str | os.PathLike[str]) -> Mapping[str, Any]:
    if isinstance(obj, Mapping):
        return obj
    text = str(obj)
    if isinstance(obj, os.PathLike) or not text.lstrip().startswith("{"):
        path = Path(obj)
        if not path.is_file():
            raise ValueError(f"GeoJSON: {text[:80]!r} is neither JSON text nor an existing file")
        text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"GeoJSON: not valid JSON ({exc})") from None
    except RecursionError:
        raise ValueError("GeoJSON: nested too deeply to be a GeoJSON file") from None
    if not isinstance(data, Mapping):
        raise ValueError("GeoJSON: expected a JSON object")
    return data


def _geometries(data: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    kind = data.get("type")
    if kind == "FeatureCollection":
        features = data.get("features")
        if not isinstance(features, list) or not features:
            raise ValueError("GeoJSON FeatureCollection has no features")
        out: list[Mapping[str, Any]] = []
        for i, feature in enumerate(features):
            if not isinstance(feature, Mapping) or feature.get("type") != "Feature":
                raise ValueError(f"GeoJSON FeatureCollection: item {i} is not a Feature")
            out.extend(_geometries(feature))
        return out
    if kind == "Feature":
        geometry = data.get("geometry")
        if not isinstance(geometry, Mapping):
            raise ValueError("GeoJSON Feature has no geometry")
        return _geometries(geometry)
    if kind == "GeometryCollection":
        return [g for item in data.get("geometries") or [] for g in _geometries(item)]
    if kind in ("Polygon", "MultiPolygon"):
        return [data]
    raise ValueError(
        f"GeoJSON type {kind!r} is not an area: expected a Polygon, MultiPolygon, Feature or "
        "FeatureCollection of polygons"
    )


def polygon_from_geojson(obj: Mapping[str, Any] | str | os.PathLike[str]) -> Polygon | MultiPolygon:
    """The (multi)polygon of a GeoJSON object; ValueError if it is not a valid lon/lat area."""
    parts: list[BaseGeometry] = []
    for geometry in _geometries(_load_geojson(obj)):
        try:
            geom = shape(geometry)
        except Exception as exc:  # noqa: BLE001 - shapely raises many types for bad coordinates
            raise ValueError(
                f"GeoJSON {geometry.get('type')}: malformed coordinates ({exc})"
            ) from None
        if geom.is_empty:
            raise ValueError(f"GeoJSON {geometry.get('type')} is empty")
        if not geom.is_valid:
            raise ValueError(
                f"GeoJSON {geometry.get('type')} is not a valid polygon: {explain_validity(geom)} "
                "(e.g. a self-intersecting ring; repair it with shapely.make_valid or in a GIS)"
            )
        w, s, e, n = geom.bounds
        if not (-180 <= w and e <= 180 and -90 <= s and n <= 90):
            raise ValueError(
                f"GeoJSON coordinates are out of lon/lat range (bounds {geom.bounds}): GeoJSON is "
                "WGS84 longitude, latitude in degrees (RFC 7946); reproject it first"
            )
        if e - w > 180:
            raise ValueError(
                f"GeoJSON {geometry.get('type')} spans {e - w:.1f} degrees of longitude: a "
                "polygon across the antimeridian (180 degrees) must be cut in two, one part on "
                "each side (RFC 7946, section 3.1.9), as a --bbox across it must be split"
            )
        parts.append(geom)
    if not parts:
        raise ValueError("GeoJSON holds no polygon (an empty GeometryCollection or Feature list)")
    merged = shapely.union_all(parts) if len(parts) > 1 else parts[0]
    if merged.area <= 0 or merged.geom_type not in ("Polygon", "MultiPolygon"):
        raise ValueError("GeoJSON area is empty (zero area)")
    return merged  # type: ignore[return-value]


# --------------------------------------------------------------------------------------------
# tiles


class TileImage(NamedTuple):
    """One image as the coverage tile shows it (position rounded to ~0.3 m)."""

    image_id: str
    lon: float
    lat: float
    tile: tuple[int, int, int]
    sequence_id: str | None = None
    captured_at: int | None = None
    compass_angle: float | None = None
    is_pano: bool | None = None
    creator_id: str | None = None
    organization_id: str | None = None


@dataclass(frozen=True)
class TileResult:
    """What one coverage tile said (``status="failed"`` with ``error`` when it could not be read)."""

    tileset: str
    z: int
    x: int
    y: int
    status: Literal["ok", "failed"]
    image_ids: list[str] = field(default_factory=list)
    fetched_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    content_sha256: str | None = None
    error: str | None = None
    images: list[TileImage] = field(default_factory=list, repr=False)
    unusable: list[tuple[str, str]] = field(default_factory=list, repr=False)
    """Features of the image layer that are not images: ``(feature, why)``."""

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def key(self) -> tuple[int, int, int]:
        return self.z, self.x, self.y


@dataclass
class AreaScan:
    """The tiles of an area and the images they list (clipped to the area)."""

    area: Area
    tileset: str
    tiles: list[TileResult]

    @functools.cached_property
    def images(self) -> dict[str, TileImage]:
        """Every image inside the area, by id, with its tile position."""
        out: dict[str, TileImage] = {}
        for t in self.tiles:
            for image in t.images:
                out.setdefault(image.image_id, image)
        return out

    @property
    def image_ids(self) -> set[str]:
        return set(self.images)

    @property
    def failed(self) -> list[TileResult]:
        return [t for t in self.tiles if not t.ok]

    @property
    def complete(self) -> bool:
        """Whether every tile was read."""
        return not self.failed

    def merged(self, newer: Iterable[TileResult]) -> AreaScan:
        """This scan with tiles replaced by ``newer`` results for the same tile (ok ones win)."""
        by_key = {t.key: t for t in self.tiles}
        for t in newer:
            if t.ok or not by_key.get(t.key, t).ok:
                by_key[t.key] = t
        return AreaScan(self.area, self.tileset, sorted(by_key.values(), key=lambda t: (t.x, t.y)))


def _str_or_none(value: Any) -> str | None:
    return None if value is None else str(value)


def _value(value: Any) -> Any:
    """A decoded MVT property value."""
    for name in _VALUE_FIELDS:
        if value.HasField(name):
            return getattr(value, name)
    return None


def _zigzag(n: int) -> int:
    return (n >> 1) ^ -(n & 1)


@dataclass(frozen=True)
class ImageLayer:
    """A decoded ``image`` layer: the usable points, and the features that could not be used
    (no image id in the ``id`` property, or one that is not decimal digits), with why."""

    images: list[TileImage] = field(default_factory=list)
    unusable: list[tuple[str, str]] = field(default_factory=list)
    """``(feature, why)`` for each feature that is not an image, e.g. ``("feature 3", "id ''")``."""

    def problem(self) -> str | None:
        """One line for a tile with unusable features (None when every feature was usable)."""
        if not self.unusable:
            return None
        total = len(self.images) + len(self.unusable)
        shown = "; ".join(f"{f}: {why}" for f, why in self.unusable[:3])
        shown += "; ..." if len(self.unusable) > 3 else ""
        return f"{len(self.unusable)} of {total} image features have no usable image id ({shown})"


def _image_id(value: Any) -> str | None:
    """The image id of an ``id`` property (an integer, or a string of digits), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value) if 0 <= value < 2**64 else None
    if isinstance(value, str) and IMAGE_ID.fullmatch(value):
        return value
    return None


def decode_image_layer(data: bytes, z: int, x: int, y: int) -> ImageLayer:
    """The points of a tile's ``image`` layer as lon/lat (no images for an empty tile).

    The image id is the ``id`` property: the feature id is a running number within the tile,
    not the image id (as recorded from the live API), so it is never used. A feature without a
    usable id is listed in :attr:`ImageLayer.unusable`, never turned into an image.

    Reads the protobuf directly and decodes only this layer's points (about 20 times faster than
    ``mapbox_vector_tile.decode``, which also decodes every sequence line)."""
    if not data:
        return ImageLayer()
    tile = vector_tile_pb2.tile()
    tile.ParseFromString(data)
    layer = next((layer for layer in tile.layers if layer.name == IMAGE_LAYER), None)
    if layer is None or not layer.features:
        return ImageLayer()
    keys = list(layer.keys)
    values = [_value(v) for v in layer.values]
    extent = float(layer.extent or 4096)
    ids: list[str] = []
    props: list[dict[str, Any]] = []
    us: list[int] = []
    vs: list[int] = []
    unusable: list[tuple[str, str]] = []
    for n, feature in enumerate(layer.features):
        geometry = feature.geometry
        if feature.type != _POINT or len(geometry) < 3 or geometry[0] & 0x7 != 1:
            continue  # not a point (MoveTo); the image layer has nothing else
        tags = feature.tags
        p = {keys[tags[k]]: values[tags[k + 1]] for k in range(0, len(tags) - 1, 2)}
        image_id = _image_id(p.get("id"))
        if image_id is None:
            raw = shown(p["id"], 24) if "id" in p else "missing"
            if "id" in p and isinstance(p["id"], str):
                raw = repr(raw)
            unusable.append((f"feature {feature.id if feature.HasField('id') else n}", f"id {raw}"))
            continue
        ids.append(image_id)
        props.append(p)
        us.append(_zigzag(geometry[1]))
        vs.append(_zigzag(geometry[2]))
    if not ids:
        return ImageLayer([], unusable)
    b = mercantile.xy_bounds(x, y, z)
    mx = b.left + np.asarray(us, float) / extent * (b.right - b.left)
    my = b.top - np.asarray(vs, float) / extent * (b.top - b.bottom)  # MVT y grows downwards
    lons = np.degrees(mx / _EARTH_RADIUS)
    lats = np.degrees(2 * np.arctan(np.exp(my / _EARTH_RADIUS)) - np.pi / 2)
    key = (z, x, y)
    images = [
        TileImage(
            i,
            float(lon),
            float(lat),
            key,
            _str_or_none(p.get("sequence_id")),
            p.get("captured_at"),
            p.get("compass_angle"),
            p.get("is_pano"),
            _str_or_none(p.get("creator_id")),
            _str_or_none(p.get("organization_id")),
        )
        for i, lon, lat, p in zip(ids, lons.tolist(), lats.tolist(), props)
    ]
    return ImageLayer(images, unusable)


async def fetch_tile(
    client: MapillaryClient, area: Area, tileset: str, tile: mercantile.Tile
) -> TileResult:
    """Fetch and decode one tile, keeping only the images inside ``area``. Failures (after the
    client's retry budget) come back as ``status="failed"``; a rejected token raises AuthError."""
    z, x, y = tile.z, tile.x, tile.y
    try:
        data = await client.tile(tileset, z, x, y)
    except AuthError:
        raise
    except MapillaryError as exc:
        log.warning("coverage tile %s/%d/%d/%d failed: %s", tileset, z, x, y, exc)
        return TileResult(tileset, z, x, y, "failed", error=str(exc))
    digest = hashlib.sha256(data).hexdigest()
    try:
        layer = await asyncio.to_thread(decode_image_layer, data, z, x, y)
    except Exception as exc:  # noqa: BLE001 - a corrupt tile is a hole, not a crash
        return TileResult(
            tileset, z, x, y, "failed", content_sha256=digest, error=f"undecodable tile: {exc}"
        )
    images = layer.images
    if images:
        inside = area.contains([i.lon for i in images], [i.lat for i in images])
        images = [i for i, keep in zip(images, inside) if keep]
    ids = [i.image_id for i in images]
    problem = layer.problem()
    if problem is not None:
        # a hole with a reason: the usable images still count, the tile is not complete
        log.warning("coverage tile %s/%d/%d/%d: %s", tileset, z, x, y, problem)
        return TileResult(tileset, z, x, y, "failed", ids, content_sha256=digest, error=problem,
                          images=images, unusable=layer.unusable)
    return TileResult(tileset, z, x, y, "ok", ids, content_sha256=digest, images=images)


async def scan_tiles(
    client: MapillaryClient,
    area: Area,
    tileset: str = "mly1_computed_public",
    *,
    tiles: Iterable[mercantile.Tile] | None = None,
    window: int | None = None,
) -> AsyncIterator[TileResult]:
    """Yield each tile's result as it arrives (bounded memory, for streaming into a catalog)."""
    if tileset not in TILESETS:
        raise ValueError(f"unknown tileset {tileset!r}; expected one of {TILESETS}")
    todo = area.tiles() if tiles is None else tiles
    jobs = (functools.partial(fetch_tile, client, area, tileset, t) for t in todo)
    async for result in bounded_as_completed(jobs, window or 2 * client.config.concurrency):
        yield result


async def enumerate_area(
    client: MapillaryClient,
    area: Area,
    tileset: str = "mly1_computed_public",
    *,
    progress: ProgressFn | None = None,
) -> AreaScan:
    """Every image in ``area`` from the z14 coverage tiles (fetched concurrently). Check
    :attr:`AreaScan.complete`; :func:`rescan_failed` fills the holes later."""
    tiles = area.tiles()
    results: list[TileResult] = []
    async for result in scan_tiles(client, area, tileset, tiles=tiles):
        results.append(result)
        if progress is not None:
            progress(len(results), len(tiles))
    scan = AreaScan(area, tileset, sorted(results, key=lambda t: (t.x, t.y)))
    if scan.failed:
        log.warning(
            "%d of %d coverage tiles failed; re-run to fill them", len(scan.failed), len(tiles)
        )
    return scan


async def rescan_failed(client: MapillaryClient, scan: AreaScan) -> AreaScan:
    """Fetch the failed tiles of ``scan`` again and merge what comes back."""
    tiles = [mercantile.Tile(t.x, t.y, t.z) for t in scan.failed]
    newer = [r async for r in scan_tiles(client, scan.area, scan.tileset, tiles=tiles)]
    return scan.merged(newer)


async def entities_for(
    client: MapillaryClient, ids: Iterable[str | int], fields: Sequence[str] = CATALOG_FIELDS
) -> dict[str, dict[str, Any]]:
    """The entities of ``ids`` (batches of 50, concurrent); ids the API no longer has are absent."""
    return await client.entities(ids, fields)
