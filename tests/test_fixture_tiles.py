"""Coverage vector tiles of the fixture server: what a client decoding them gets back."""

from __future__ import annotations

import math
from collections.abc import Iterator

import httpx
import mapbox_vector_tile
import mercantile
import pytest

from citysplat.fixtures.tiles import INDEX_ZOOM, morton, tile_key_range, tile_to_lonlat
from citysplat.fixtures.world import WorldImage

GEOMETRY_FIELD = {"mly1_public": "geometry", "mly1_computed_public": "computed_geometry"}


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as client:
        yield client


def fetch(http, server, tileset: str, z: int, x: int, y: int) -> httpx.Response:
    return http.get(
        f"{server.tiles_url}/{tileset}/2/{z}/{x}/{y}", params={"access_token": server.token}
    )


def metres_apart(a: tuple[float, float], b: tuple[float, float]) -> float:
    lat = math.radians((a[1] + b[1]) / 2)
    dx = math.radians(a[0] - b[0]) * math.cos(lat) * 6_371_000
    dy = math.radians(a[1] - b[1]) * 6_371_000
    return math.hypot(dx, dy)


def positions(world: list[WorldImage], tileset: str) -> dict[int, tuple[float, float]]:
    field = GEOMETRY_FIELD[tileset]
    return {int(i.id): tuple(i.meta[field]["coordinates"]) for i in world if field in i.meta}


@pytest.mark.parametrize("tileset", ["mly1_public", "mly1_computed_public"])
def test_z14_image_layer_lists_exactly_the_images_of_the_tile(
    mapillary_server, small_world, http, tileset
):
    where = positions(small_world, tileset)
    by_tile: dict[mercantile.Tile, set[int]] = {}
    for image_id, (lon, lat) in where.items():
        by_tile.setdefault(mercantile.tile(lon, lat, 14), set()).add(image_id)
    assert len(by_tile) >= 2
    meta = {int(i.id): i.meta for i in small_world}
    seen: set[int] = set()
    for t, expected in by_tile.items():
        r = fetch(http, mapillary_server, tileset, 14, t.x, t.y)
        assert r.status_code == 200 and r.headers["content-type"] == "application/x-protobuf"
        layers = mapbox_vector_tile.decode(r.content)
        assert set(layers) == {"image", "sequence"} and layers["image"]["extent"] == 4096
        features = layers["image"]["features"]
        assert {f["properties"]["id"] for f in features} == expected
        assert len(features) == len(expected)
        # feature ids are a running number over the tile's layers, as in recorded tiles
        n_sequences = len(layers["sequence"]["features"])
        assert [f["id"] for f in layers["sequence"]["features"]] == list(range(n_sequences))
        assert [f["id"] for f in features] == list(range(n_sequences, n_sequences + len(features)))
        for f in features:
            props, image_id = f["properties"], f["properties"]["id"]
            assert isinstance(image_id, int)
            # the documented properties with their documented types, and nothing else
            assert set(props) <= {"captured_at", "compass_angle", "id", "is_pano",
                                  "organization_id", "sequence_id"}
            assert isinstance(props["captured_at"], int) and isinstance(props["is_pano"], bool)
            assert isinstance(props["compass_angle"], int) and 0 <= props["compass_angle"] < 360
            assert isinstance(props["sequence_id"], str)
            assert f["geometry"]["type"] == "Point"
            assert (
                metres_apart(
                    tile_to_lonlat(*f["geometry"]["coordinates"], 14, t.x, t.y), where[image_id]
                )
                < 0.5
            )
            m = meta[image_id]
            assert (
                props["sequence_id"] == m["sequence"] and props["captured_at"] == m["captured_at"]
            )
            compass = m["computed_compass_angle" if tileset == "mly1_computed_public"
                        else "compass_angle"]
            assert props["is_pano"] == m["is_pano"]
            assert abs((props["compass_angle"] - compass + 180) % 360 - 180) <= 0.5
            assert ("organization_id" in props) == (m["organization_id"] is not None)
            if "organization_id" in props:
                assert props["organization_id"] == int(m["organization_id"])
        seen |= expected
    assert seen == set(where)
    if tileset == "mly1_computed_public":
        assert len(seen) == len(small_world) - 2  # two images have no computed pose


def test_decoding_with_xy_bounds_by_hand_gives_lonlat_back(mapillary_server, small_world, http):
    image = small_world[7]
    lon, lat = image.meta["geometry"]["coordinates"]
    t = mercantile.tile(lon, lat, 14)
    layers = mapbox_vector_tile.decode(
        fetch(http, mapillary_server, "mly1_public", 14, t.x, t.y).content
    )
    (u, v) = next(
        f["geometry"]["coordinates"]
        for f in layers["image"]["features"]
        if f["properties"]["id"] == int(image.id)
    )
    b = mercantile.xy_bounds(t)
    back = mercantile.lnglat(
        b.left + u / 4096 * (b.right - b.left), b.bottom + v / 4096 * (b.top - b.bottom)
    )
    assert metres_apart(back, (lon, lat)) < 0.5


@pytest.mark.parametrize("zoom", [14, 12, 8, 6])
def test_sequence_layer_has_each_sequence_with_images_in_the_tile(
    mapillary_server, small_world, http, zoom
):
    lon, lat = small_world[0].meta["geometry"]["coordinates"]
    t = mercantile.tile(lon, lat, zoom)
    in_tile = [
        i for i in small_world if mercantile.tile(*i.meta["geometry"]["coordinates"], zoom) == t
    ]
    layers = mapbox_vector_tile.decode(
        fetch(http, mapillary_server, "mly1_public", zoom, t.x, t.y).content
    )
    assert ("image" in layers) == (zoom == 14)
    sequences = {f["properties"]["id"]: f for f in layers["sequence"]["features"]}
    assert set(sequences) == {i.meta["sequence"] for i in in_tile}
    for sid, f in sequences.items():
        members = sorted(
            (i for i in small_world if i.meta["sequence"] == sid),
            key=lambda i: i.meta["captured_at"],
        )
        assert f["geometry"]["type"] in ("LineString", "MultiLineString")
        assert f["properties"]["image_id"] == int(members[0].id)
        assert f["properties"]["captured_at"] == members[0].meta["captured_at"]
        assert f["properties"]["is_pano"] == members[0].meta["is_pano"]


def test_overview_layer_at_low_zoom(mapillary_server, small_world, http):
    ids = {int(i.id) for i in small_world}
    for zoom in (0, 3, 5):
        t = mercantile.tile(-122.49, 37.757, zoom)
        layers = mapbox_vector_tile.decode(
            fetch(http, mapillary_server, "mly1_public", zoom, t.x, t.y).content
        )
        assert set(layers) == {"overview"}
        features = layers["overview"]["features"]
        assert features and {f["properties"]["id"] for f in features} <= ids
        for f in features:
            lonlat = tile_to_lonlat(*f["geometry"]["coordinates"], zoom, t.x, t.y)
            one_unit_m = 40_075_016 / 2**zoom / 4096  # quantization: half a unit per axis
            assert metres_apart(lonlat, (-122.495, 37.756)) < one_unit_m + 1500


def test_empty_and_invalid_tiles(mapillary_server, http):
    empty = fetch(http, mapillary_server, "mly1_public", 14, 0, 0)
    assert empty.status_code == 200 and empty.content == b""
    assert fetch(http, mapillary_server, "mly1_public", 15, 5234, 12666).status_code in range(
        400, 500
    )
    assert fetch(http, mapillary_server, "mly1_nope", 14, 2617, 6333).status_code in range(400, 500)
    assert fetch(http, mapillary_server, "mly1_public", 3, 8, 1).status_code in range(400, 500)
    assert fetch(http, mapillary_server, "mly1_public", 14, -1, 3).status_code in range(400, 500)


def test_morton_ranges_nest_like_mercantile_parents():
    for lon, lat in [
        (-122.49, 37.757),
        (0.0, 0.0),
        (179.99, -84.9),
        (-179.99, 84.9),
        (13.19, 55.7),
    ]:
        t14 = mercantile.tile(lon, lat, INDEX_ZOOM)
        key = morton(t14.x, t14.y, INDEX_ZOOM)
        for z in range(INDEX_ZOOM + 1):
            parent = mercantile.parent(t14, zoom=z) if z < INDEX_ZOOM else t14
            lo, hi = tile_key_range(z, parent.x, parent.y)
            assert lo <= key < hi
            sibling = mercantile.Tile((parent.x + 1) % 2**z, parent.y, z) if z else None
            if sibling is not None and sibling != parent:
                slo, shi = tile_key_range(z, sibling.x, sibling.y)
                assert not slo <= key < shi
