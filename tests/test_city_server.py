"""The generated city served through the Mapillary fixture server, read the way a client reads
Mapillary: coverage tiles, entities by id in batches of 50, thumbnails and originals."""

from __future__ import annotations

import io
import math
from collections.abc import Iterator

import httpx
import mapbox_vector_tile
import mercantile
import pytest
from PIL import Image

from citysplat.fixtures.tiles import tile_to_lonlat
from citysplat.fixtures.world import WorldImage
from citysplat.synthetic.city import SyntheticCity

TILESETS = {"mly1_public": "geometry", "mly1_computed_public": "computed_geometry"}
THUMBS = {"thumb_256_url": 256, "thumb_1024_url": 1024, "thumb_2048_url": 2048,
          "thumb_original_url": None}
FIELDS = [
    "id", "sequence", "captured_at", "geometry", "computed_geometry", "altitude",
    "computed_altitude", "compass_angle", "computed_compass_angle", "computed_rotation",
    "camera_type", "camera_parameters", "make", "model", "width", "height", "is_pano",
    "exif_orientation", "creator", "organization", "merge_cc",
]  # fmt: skip


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=30) as client:
        yield client


@pytest.fixture
def server(make_mapillary_server, tiny_city: SyntheticCity):
    return make_mapillary_server(images=tiny_city.world_images())


def city_tiles(city: SyntheticCity) -> list[mercantile.Tile]:
    """The z14 tiles under the city (images, both positions, and its roads), plus one ring of
    neighbours around them."""
    lonlats = [m[f]["coordinates"] for m in city.metadata for f in TILESETS.values()]
    lons, lats = [p[0] for p in lonlats], [p[1] for p in lonlats]
    core = set(mercantile.tiles(min(lons), min(lats), max(lons), max(lats), [14]))
    ring = {mercantile.Tile(t.x + dx, t.y + dy, 14) for t in core
            for dx in (-1, 0, 1) for dy in (-1, 0, 1)}
    return sorted(ring)


def metres(a, b) -> float:
    """Ground distance between two nearby lon/lat points (equirectangular, metres)."""
    lat = math.radians((a[1] + b[1]) / 2)
    dx = math.radians(a[0] - b[0]) * math.cos(lat) * 6_371_000
    dy = math.radians(a[1] - b[1]) * 6_371_000
    return math.hypot(dx, dy)


@pytest.mark.parametrize("tileset", sorted(TILESETS))
def test_z14_tiles_list_exactly_the_images_inside_them(server, tiny_city, http, tileset):
    field = TILESETS[tileset]
    meta = {int(m["id"]): m for m in tiny_city.metadata}
    listed: dict[int, mercantile.Tile] = {}
    tiles = city_tiles(tiny_city)
    assert len(tiles) >= 9
    for t in tiles:
        r = http.get(f"{server.tiles_url}/{tileset}/2/14/{t.x}/{t.y}",
                     params={"access_token": server.token})
        assert r.status_code == 200
        expected = {i for i, m in meta.items()
                    if mercantile.tile(*m[field]["coordinates"], 14) == t}
        layers = mapbox_vector_tile.decode(r.content) if r.content else {}
        if not expected:
            assert "image" not in layers, t
            continue
        features = layers["image"]["features"]
        ids = [f["properties"]["id"] for f in features]
        assert sorted(ids) == sorted(expected), t
        for f in features:
            image_id = f["properties"]["id"]
            assert image_id not in listed, "an image is in one z14 tile only"
            listed[image_id] = t
            m = meta[image_id]
            where = tile_to_lonlat(*f["geometry"]["coordinates"], 14, t.x, t.y)
            assert metres(where, m[field]["coordinates"]) < 0.5
            assert f["properties"]["sequence_id"] == m["sequence"]
            assert f["properties"]["captured_at"] == m["captured_at"]
            assert f["properties"]["is_pano"] == m["is_pano"]
        sequences = {f["properties"]["id"] for f in layers["sequence"]["features"]}
        assert sequences == {meta[i]["sequence"] for i in expected}
    assert set(listed) == set(meta), "every image of the city is in some tile"
    # the city is placed on a corner of z14 tiles (spec.py), so tile borders are crossed
    assert len(set(listed.values())) >= 2


def test_entities_by_id_in_batches_of_50(server, tiny_city, http):
    meta = {m["id"]: m for m in tiny_city.metadata}
    ids = sorted(meta)
    assert len(ids) > 50, "more than one batch"
    got: dict[str, dict] = {}
    for k in range(0, len(ids), 50):
        batch = ids[k:k + 50]
        r = http.get(server.graph_url + "/", params={
            "access_token": server.token, "ids": ",".join(batch), "fields": ",".join(FIELDS)})
        assert r.status_code == 200, r.text
        body = r.json()
        assert sorted(body) == batch
        got.update(body)
    assert sorted(got) == ids
    for image_id, entity in got.items():
        expected = {k: v for k, v in meta[image_id].items()
                    if v is not None and k != "organization_id"}
        if meta[image_id]["organization_id"] is not None:  # served as organization: {id}
            expected["organization"] = {"id": str(meta[image_id]["organization_id"])}
        assert entity == expected
        assert type(entity["merge_cc"]) is int and entity["merge_cc"] > 2**53  # exact
    refused = http.get(server.graph_url + "/", params={
        "access_token": server.token, "ids": ids[0], "fields": "id,organization_id"})
    assert refused.status_code == 400  # as the live API answered in 2026
    assert refused.json()["error"]["message"].startswith(
        "Tried accessing nonexisting field (organization_id)")
    too_many = http.get(server.graph_url + "/", params={
        "access_token": server.token, "ids": ",".join(ids[:51])})
    assert too_many.status_code == 400


def test_thumbnails_and_originals_download(server, tiny_city, http):
    meta = {m["id"]: m for m in tiny_city.metadata}
    quality = {i: c["quality"] for i, c in tiny_city.cameras.items()}
    ids = sorted(meta)
    for k in range(0, len(ids), 50):
        r = http.get(server.graph_url + "/", params={
            "access_token": server.token, "ids": ",".join(ids[k:k + 50]),
            "fields": ",".join(["width", "height", *THUMBS])})
        assert r.status_code == 200
        for image_id, entity in r.json().items():
            on_disk = tiny_city.image_path(image_id).read_bytes()
            w, h = meta[image_id]["width"], meta[image_id]["height"]
            for name, size in THUMBS.items():
                if quality[image_id] == "truncated" and name != "thumb_original_url":
                    continue  # damaged at the source: served as stored (see below)
                got = http.get(entity[name])  # signed URL: no token
                assert got.status_code == 200, (image_id, name, got.status_code)
                assert got.headers["content-type"] == "image/jpeg"
                if size is None or max(w, h) <= size:
                    assert got.content == on_disk, (image_id, name)
                    continue
                with Image.open(io.BytesIO(got.content)) as im:
                    im.load()
                    assert im.format == "JPEG"
                    assert max(im.size) == size
                    assert abs(im.size[0] / im.size[1] - w / h) < 0.02
            if quality[image_id] != "truncated":
                with Image.open(io.BytesIO(on_disk)) as im:
                    im.load()
                    assert im.size == (w, h)


def test_a_truncated_image_still_has_downloadable_thumbnails(make_mapillary_server, tiny_city,
                                                             tmp_path, http):
    """The city serves truncated JPEGs on purpose; the client, not the CDN, must notice them."""
    meta = next(m for m in tiny_city.metadata if not m["is_pano"])
    data = tiny_city.image_path(meta["id"]).read_bytes()
    path = tmp_path / f"{meta['id']}.jpg"
    path.write_bytes(data[: int(len(data) * 0.55)])  # as the generator truncates bad images
    server = make_mapillary_server(images=[WorldImage(dict(meta), path)])
    entity = http.get(f"{server.graph_url}/{meta['id']}", params={
        "access_token": server.token, "fields": ",".join(THUMBS)}).json()
    assert http.get(entity["thumb_original_url"]).content == path.read_bytes()
    for name in THUMBS:
        got = http.get(entity[name])
        assert got.status_code == 200, (name, got.status_code)
        assert got.content[:2] == b"\xff\xd8", name
