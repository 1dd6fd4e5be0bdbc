"""A peer client reads the fixture server: Mapillary's official Python SDK (``mapillary`` 1.0.16).

The fixture server is our model of the live API; the SDK was written against the live API by
Mapillary. Whatever the SDK cannot read from the fixture is a fixture bug. Its hosts are
hard-coded (``https://graph.mapillary.com``, ``https://tiles.mapillary.com``), so the test
redirects them to the fixture on 127.0.0.1 at the transport level (``requests.Session.send``):
the SDK builds its URLs, headers and token placement itself, unchanged.

Two SDK bugs shape the assertions (both reproduced, see ``docs/MAPILLARY_API.md``):
``images_in_bbox`` drops panoramas unless asked for ``image_type="pano"``, and a tile request
leaves ``access_token`` in a shared default dict that later Graph calls reuse.
"""

from __future__ import annotations

import io
import json
import logging
import os
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from haversine import Unit, haversine
from PIL import Image

from citysplat.fixtures.server import MapillaryFixtureServer
from citysplat.fixtures.world import WorldImage

os.environ.setdefault("LOG_LEVEL", "WARNING")  # the SDK prints every URL, tokens included
import mapillary as mly  # noqa: E402
from mapillary.models.client import Client  # noqa: E402

SDK_HOSTS = {"graph.mapillary.com", "tiles.mapillary.com"}
TOKEN = "MLY|31415926|sdk-peer-token"


@pytest.fixture
def sdk(make_mapillary_server, monkeypatch) -> Iterator[MapillaryFixtureServer]:
    """The official SDK, authenticated, talking to a fixture server through its own URLs."""
    server = make_mapillary_server(token=TOKEN)
    seen: list[tuple[str, str, str, str | None]] = []
    real_send = requests.Session.send

    def send(session: requests.Session, request: requests.PreparedRequest, **kwargs: Any):
        parts = urllib.parse.urlsplit(request.url)
        if parts.hostname in SDK_HOSTS:
            seen.append((parts.hostname, parts.path, parts.query,
                         request.headers.get("Authorization")))
            request.url = urllib.parse.urlunsplit(
                ("http", f"127.0.0.1:{server.port}", parts.path, parts.query, ""))
            kwargs["proxies"] = {}
        return real_send(session, request, **kwargs)

    monkeypatch.setattr(requests.Session, "send", send)
    logging.getLogger("mapillary.utils.client").setLevel(logging.WARNING)
    assert mly.interface.set_access_token(TOKEN) == {"token": "SUCCESS"}
    server.sdk_requests = seen  # type: ignore[attr-defined]
    try:
        yield server
    finally:
        Client._Client__access_token = ""  # the SDK keeps both on the class
        Client.get.__defaults__[1].clear()


def _lonlat(image: WorldImage) -> tuple[float, float]:
    lon, lat = image.meta["geometry"]["coordinates"]
    return float(lon), float(lat)


def _metres(a: tuple[float, float], b: tuple[float, float]) -> float:
    return haversine((a[1], a[0]), (b[1], b[0]), unit=Unit.METERS)


def test_the_sdk_lists_a_bbox_through_the_tiles_with_the_token_in_the_query(sdk, small_world):
    lons, lats = zip(*(_lonlat(i) for i in small_world))
    bbox = {"west": min(lons) - 1e-4, "south": min(lats) - 1e-4,
            "east": max(lons) + 1e-4, "north": max(lats) + 1e-4}
    flat = json.loads(mly.interface.images_in_bbox(bbox))["features"]
    panos = json.loads(mly.interface.images_in_bbox(bbox, image_type="pano"))["features"]
    by_id = {str(i.id): i for i in small_world}
    got = {str(f["properties"]["id"]): f for f in flat + panos}
    assert set(got) == set(by_id)  # every image, once: flat ones and panoramas
    assert all(f["properties"]["is_pano"] for f in panos)
    for image_id, feature in got.items():
        meta, props = by_id[image_id].meta, feature["properties"]
        assert props["captured_at"] == meta["captured_at"]
        assert props["sequence_id"] == meta["sequence"]
        assert _metres(tuple(feature["geometry"]["coordinates"]), _lonlat(by_id[image_id])) < 0.5
    tiles = [r for r in sdk.sdk_requests if r[0] == "tiles.mapillary.com"]
    assert tiles and all(
        urllib.parse.parse_qs(query)["access_token"] == [TOKEN] and auth is None
        for _, _, query, auth in tiles)
    assert sdk.stats.count("tiles", 200) == len(tiles) and sdk.stats.count("tiles", 403) == 0


def test_the_sdk_finds_the_images_close_to_a_point(sdk, small_world):
    centre = next(i for i in small_world if not i.meta["is_pano"])
    lon, lat = _lonlat(centre)
    radius = 30.0
    found = mly.interface.get_image_close_to(latitude=lat, longitude=lon, radius=radius)
    got = {str(f["properties"]["id"]) for f in found.to_dict()["features"]}
    import mercantile

    tile = mercantile.tile(lon, lat, 14)
    near = {i.id: _metres(_lonlat(i), (lon, lat)) for i in small_world
            if mercantile.tile(*_lonlat(i), 14) == tile}
    assert centre.id in got
    assert {i for i, d in near.items() if d < radius - 1} <= got  # tile positions: +-0.3 m
    assert got <= {i for i, d in near.items() if d < radius + 1}
    everything = mly.interface.get_image_close_to(latitude=lat, longitude=lon).to_dict()
    assert {str(f["properties"]["id"]) for f in everything["features"]} == set(near)


def test_the_sdk_reads_entities_and_thumbnails(sdk, small_world):
    image = next(i for i in small_world if not i.meta["is_pano"])
    fields = ["captured_at", "sequence", "compass_angle", "camera_parameters", "merge_cc"]
    feature = json.loads(mly.interface.image_from_key(image.id, fields=fields))["features"]
    props = feature["properties"]
    assert props["id"] == image.id
    assert {k: props[k] for k in fields} == {k: image.meta[k] for k in fields}
    assert props["merge_cc"] > 2**53 and isinstance(props["merge_cc"], int)  # exact, not a double
    url = mly.interface.image_thumbnail(image.id, 256)
    assert urllib.parse.urlsplit(url).path == f"/thumbs/{image.id}/256.jpg"
    response = requests.get(url, timeout=10)
    assert response.status_code == 200
    with Image.open(io.BytesIO(response.content)) as jpeg:
        assert jpeg.format == "JPEG" and max(jpeg.size) == 256
    graph = [r for r in sdk.sdk_requests if r[0] == "graph.mapillary.com"]
    assert graph and all(auth == f"OAuth {TOKEN}" for *_, auth in graph)
    # what the SDK asked for is all documented: no request was refused as a nonexisting field
    assert sdk.stats.count("entity", 400) == 1  # the SDK's token check asks for an unknown id
