"""Areas (bbox / GeoJSON), their z14 tiles, and enumeration through the coverage tiles against
the fixture server, compared with the generated cities' ground truth."""

from __future__ import annotations

import asyncio
import json
import math
from typing import Any

import mapbox_vector_tile
import mercantile
import pytest
from shapely.geometry import Point, Polygon, mapping

from citysplat.fixtures.faults import FaultSpec
from citysplat.fixtures.server import MapillaryFixtureServer
from citysplat.mapillary import (
    Area,
    AreaScan,
    ImageLayer,
    MapillaryClient,
    MapillaryConfig,
    TileResult,
    decode_image_layer,
    enumerate_area,
    rescan_failed,
)

SMALL_WORLD_BBOX = (-122.505, 37.748, -122.488, 37.762)


def config_for(server: MapillaryFixtureServer, **overrides: Any) -> MapillaryConfig:
    """A config pointing at the fixture server, with fast backoff for tests."""
    return server.client_config(**{"backoff_initial_s": 0.01, "backoff_max_s": 0.05,
                                   **overrides})


def city_bbox(metadata: list[dict[str, Any]], margin: float = 1e-4) -> tuple[float, ...]:
    points = [
        m[g]["coordinates"] for m in metadata for g in ("geometry", "computed_geometry") if m.get(g)
    ]
    lons, lats = [p[0] for p in points], [p[1] for p in points]
    return min(lons) - margin, min(lats) - margin, max(lons) + margin, max(lats) + margin


def scan(
    server: MapillaryFixtureServer, area: Area, tileset: str = "mly1_computed_public", **kw: Any
) -> AreaScan:
    async def main() -> AreaScan:
        async with MapillaryClient(config_for(server, **kw)) as client:
            return await enumerate_area(client, area, tileset)

    return asyncio.run(main())


# -- areas ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bbox", "message"),
    [
        ((1, 2, 3), "four numbers"),
        (("a", 1, 2, 3), "four numbers"),
        ((0, 0, math.nan, 1), "finite"),
        ((-190, 0, 1, 1), "longitudes"),
        ((0, -91, 1, 1), "latitudes"),
        ((10, 0, 5, 1), "inverted: west"),
        ((0, 10, 1, 5), "inverted: south"),
        ((1, 1, 1, 2), "empty"),
    ],
)
def test_bad_bboxes_are_refused_with_a_clear_message(bbox, message):
    with pytest.raises(ValueError, match=message):
        Area.from_bbox(bbox)


SQUARE = {"type": "Polygon", "coordinates": [[[0, 0], [0.01, 0], [0.01, 0.01], [0, 0.01], [0, 0]]]}


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        ({"type": "Point", "coordinates": [0, 0]}, "not an area"),
        (
            {"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]},
            "not a valid polygon: Self-intersection",
        ),
        (
            {
                "type": "Polygon",
                "coordinates": [
                    [[500000, 4000000], [500100, 4000000], [500100, 4000100], [500000, 4000000]]
                ],
            },
            "out of lon/lat range",
        ),
        ({"type": "FeatureCollection", "features": []}, "no features"),
        ({"type": "Feature", "geometry": None}, "no geometry"),
        (
            {
                "type": "FeatureCollection",
                "features": [
                    {
                        "type": "Feature",
                        "geometry": {"type": "LineString", "coordinates": [[0, 0], [1, 1]]},
                    }
                ],
            },
            "not an area",
        ),
        ({"type": "Polygon", "coordinates": [[[0, 0], [1]]]}, "malformed coordinates"),
        ("{not json", "not valid JSON"),
        ("no/such/file.geojson", "neither JSON text nor an existing file"),
    ],
)
def test_bad_geojson_is_refused_with_a_clear_message(obj, message):
    with pytest.raises(ValueError, match=message):
        Area.from_geojson(obj)


def test_geojson_forms_give_the_same_area(tmp_path):
    feature = {"type": "Feature", "properties": {}, "geometry": SQUARE}
    path = tmp_path / "area.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [feature]}))
    areas = [
        Area.from_geojson(SQUARE),
        Area.from_geojson(feature),
        Area.from_geojson(json.dumps(feature)),
        Area.from_geojson(path),
        Area.from_geojson(str(path)),
        Area.from_geojson({"type": "MultiPolygon", "coordinates": [SQUARE["coordinates"]]}),
        Area.from_bbox((0, 0, 0.01, 0.01)),
    ]
    for area in areas:
        assert area.geometry.equals(areas[0].geometry)
        assert area.bounds == (0, 0, 0.01, 0.01)


def test_tiles_are_those_that_touch_the_polygon_not_its_bbox():
    # two small squares far apart: their bbox spans ~180 z14 tiles, they touch 2 to 4
    a = Point(-122.45, 37.70).buffer(0.0005)
    b = Point(-122.15, 37.90).buffer(0.0005)
    area = Area.from_geojson(
        {
            "type": "MultiPolygon",
            "coordinates": [mapping(a)["coordinates"], mapping(b)["coordinates"]],
        }
    )
    tiles = area.tiles()
    w, s, e, n = area.bounds
    assert len(list(mercantile.tiles(w, s, e, n, [14]))) > 100
    assert 2 <= len(tiles) <= 4
    assert {mercantile.tile(-122.45, 37.70, 14), mercantile.tile(-122.15, 37.90, 14)} <= set(tiles)
    # a thin diagonal strip keeps the tiles along the diagonal only
    strip = Polygon([(-122.50, 37.70), (-122.30, 37.90), (-122.2999, 37.90), (-122.4999, 37.70)])
    diagonal = Area(strip).tiles()
    w, s, e, n = strip.bounds
    assert len(diagonal) < len(list(mercantile.tiles(w, s, e, n, [14]))) / 4


# -- enumeration --------------------------------------------------------------------------------------


def test_enumerating_the_tiny_city_finds_exactly_its_images(make_mapillary_server, tiny_city):
    server = make_mapillary_server(tiny_city.world_images())
    area = Area.from_bbox(city_bbox(tiny_city.metadata))
    truth = {m["id"] for m in tiny_city.metadata}
    for tileset in ("mly1_computed_public", "mly1_public"):
        result = scan(server, area, tileset)
        assert result.complete and result.image_ids == truth
        assert all(
            isinstance(t, TileResult) and t.status == "ok" and t.content_sha256
            for t in result.tiles
        )
    # tile positions are the entity positions to within a metre (tile units round to ~0.3 m)
    by_id = {m["id"]: m for m in tiny_city.metadata}
    for image_id, image in result.images.items():
        lon, lat = by_id[image_id]["geometry"]["coordinates"]
        dx = (image.lon - lon) * 111_320 * math.cos(math.radians(lat))
        dy = (image.lat - lat) * 111_320
        assert math.hypot(dx, dy) < 1.0
        assert image.sequence_id == by_id[image_id]["sequence"]
        assert image.tile == (14, *mercantile.tile(lon, lat, 14)[:2])
    assert server.stats.count("tiles") == 2 * len(area.tiles())


def test_enumeration_clips_to_the_polygon(make_mapillary_server, tiny_city):
    server = make_mapillary_server(tiny_city.world_images())
    w, s, e, n = city_bbox(tiny_city.metadata)
    mid = (w + e) / 2
    triangle = Polygon([(w, s), (mid, s), (mid + 0.2 * (e - w), n), (w, n)])  # the western half
    result = scan(server, Area(triangle))
    inside, outside = set(), set()
    near = 2e-5  # ~2 m: tile positions are rounded, so the boundary itself is fuzzy
    for m in tiny_city.metadata:
        point = Point(m["computed_geometry"]["coordinates"])
        if triangle.buffer(-near).contains(point):
            inside.add(m["id"])
        elif not triangle.buffer(near).contains(point):
            outside.add(m["id"])
    assert inside and outside
    assert inside <= result.image_ids
    assert not (outside & result.image_ids)


def test_tiles_follow_the_tileset_positions(make_mapillary_server, small_world):
    # two images of the small world have no computed pose: absent from mly1_computed_public
    server = make_mapillary_server()
    area = Area.from_bbox(SMALL_WORLD_BBOX)
    computed = scan(server, area, "mly1_computed_public")
    public = scan(server, area, "mly1_public")
    assert len(computed.tiles) == 4 and computed.complete
    assert public.image_ids == {i.id for i in small_world}
    assert computed.image_ids == {i.id for i in small_world if i.meta.get("computed_geometry")}
    assert len(computed.image_ids) == len(small_world) - 2
    with pytest.raises(ValueError, match="unknown tileset"):
        scan(server, area, "mly1_private")


def test_a_dropped_tile_is_a_hole_that_a_rerun_fills(make_mapillary_server, small_world):
    # seed 0: one of the four tiles answers 503 to its first 3 requests
    server = make_mapillary_server(
        faults=FaultSpec.parse("drop_tiles=0.5,drop_tiles_for=3"), seed=0
    )
    area = Area.from_bbox(SMALL_WORLD_BBOX)
    first = scan(server, area, "mly1_public", max_attempts=2)
    assert not first.complete
    assert len(first.failed) == 1 and len(first.tiles) == 4
    hole = first.failed[0]
    assert hole.status == "failed" and hole.image_ids == [] and "503" in (hole.error or "")
    assert first.image_ids < {i.id for i in small_world}

    async def refill() -> AreaScan:
        async with MapillaryClient(config_for(server, max_attempts=3)) as client:
            filled = await rescan_failed(client, first)
            assert client.stats.requests["tiles"] == 2  # only the hole: one more 503, then 200
            return filled

    second = asyncio.run(refill())
    assert second.complete and second.image_ids == {i.id for i in small_world}
    assert [t.key for t in second.tiles] == [t.key for t in first.tiles]
    # and a plain re-run sees everything too
    assert scan(server, area, "mly1_public", max_attempts=2).image_ids == second.image_ids


def test_the_tile_decoder_agrees_with_mapbox_vector_tile(small_world):
    from citysplat.fixtures.tiles import TileIndex, encode_tile, point_from_meta, tile_to_lonlat

    index = TileIndex(p for i in small_world for p in [point_from_meta(i.meta, "mly1_public")] if p)
    tiles = {mercantile.tile(*i.meta["geometry"]["coordinates"], 14) for i in small_world}
    assert len(tiles) == 4
    for t in tiles:
        data = encode_tile(index, 14, t.x, t.y)
        reference = {
            str(f["properties"]["id"]): (
                tile_to_lonlat(*f["geometry"]["coordinates"], 14, t.x, t.y),
                f["properties"],
            )
            for f in mapbox_vector_tile.decode(data)["image"]["features"]
        }
        layer = decode_image_layer(data, 14, t.x, t.y)
        decoded = layer.images
        assert sorted(i.image_id for i in decoded) == sorted(reference) and not layer.unusable
        for image in decoded:
            (lon, lat), props = reference[image.image_id]
            assert image.lon == pytest.approx(lon, abs=1e-12) and image.lat == pytest.approx(
                lat, abs=1e-12
            )
            assert image.tile == (14, t.x, t.y)
            assert (image.sequence_id, image.captured_at, image.is_pano) == (
                props["sequence_id"],
                props["captured_at"],
                props["is_pano"],
            )
            assert image.compass_angle == props["compass_angle"]
    assert decode_image_layer(b"", 14, 0, 0) == ImageLayer()
