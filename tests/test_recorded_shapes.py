"""Answers shaped like the live API's recorded ones (``docs/MAPILLARY_API.md``), not like our
fixture's: the client must read them, and report what it cannot use instead of cataloguing it.

The data is our own, written with the recordings' layers, property names, value types and
quirks (JOSM's recorded z14 tiles and Graph responses): every tile value a string, empty image
ids, feature ids that are a running counter, ``organization_id`` on some features only; entities
with ``organization`` objects, a ``merge_cc`` beyond 2**53, spherical images without
``camera_parameters``; the request-limit body as 403 and a bad token answered as 500. A small
HTTP server on 127.0.0.1 serves them.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import mapbox_vector_tile
import mercantile
import pytest

from citysplat.catalog import Catalog
from citysplat.ingest import ingest_area
from citysplat.mapillary import (
    Area,
    AuthError,
    MapillaryClient,
    MapillaryConfig,
    RateLimitError,
    decode_image_layer,
)

TOKEN = "MLY|2718281828|recorded-shape-token"
LON, LAT = -122.4978, 37.7536
TILE = mercantile.tile(LON, LAT, 14)
EXTENT = 4096


def _units(lon: float, lat: float) -> tuple[int, int]:
    """Tile units (y up, ``mapbox_vector_tile``'s default) of a point in :data:`TILE`."""
    b = mercantile.xy_bounds(TILE)
    x, y = mercantile.xy(lon, lat)
    return (round((x - b.left) / (b.right - b.left) * EXTENT),
            round((y - b.bottom) / (b.top - b.bottom) * EXTENT))


# Image ids as a recorded tile may carry them: usable (a number, or digits as a string) or not.
USABLE = {"4000000000000001": 4000000000000001, "4000000000000002": "4000000000000002"}
UNUSABLE = ["", "abc", "../../x", None]  # None: the feature has no id property at all


def recorded_tile() -> bytes:
    """A z14 coverage tile in the recordings' shape: a `sequence` layer then an `image` layer,
    every value a string, feature ids a running counter over both layers."""
    points = [(LON + k * 1e-4, LAT + k * 5e-5) for k in range(len(USABLE) + len(UNUSABLE))]
    sequence = {
        "geometry": "LINESTRING(" + ", ".join("{} {}".format(*_units(*p)) for p in points) + ")",
        "properties": {"captured_at": "", "id": "molgqe2gsdmg96rqw4jjmg", "image_id": "",
                       "is_pano": ""},
        "id": 0,
    }
    ids = [*USABLE.values(), *UNUSABLE]
    images = []
    for n, (image_id, point) in enumerate(zip(ids, points), start=1):
        props = {"captured_at": "", "compass_angle": "", "is_pano": "",
                 "sequence_id": "molgqe2gsdmg96rqw4jjmg"}
        if image_id is not None:
            props["id"] = image_id
        if n % 2:  # on some features only, as recorded
            props["organization_id"] = ""
        images.append({"geometry": "POINT({} {})".format(*_units(*point)), "properties": props,
                       "id": n})
    return mapbox_vector_tile.encode(
        [{"name": "sequence", "features": [sequence]}, {"name": "image", "features": images}],
        default_options={"extents": EXTENT})


def recorded_entity(image_id: str, k: int) -> dict:
    """A Graph entity in the recordings' shape (JSON types as JOSM's responses show them)."""
    entity = {
        "id": image_id,
        "sequence": "molgqe2gsdmg96rqw4jjmg",
        "captured_at": 1563721072184 + k,
        "geometry": {"type": "Point", "coordinates": [LON + k * 1e-4, LAT + k * 5e-5]},
        "compass_angle": 301.37,
        "camera_type": "spherical" if k else "perspective",
        "creator": {"username": "someone", "id": "104214208486349"},
        "organization": {"id": "1805883732926354"},
        "merge_cc": 4546427159383000123,
        "width": 2048,
        "height": 1024 if k else 1536,
    }
    if not k:  # spherical images omit camera_parameters
        entity["camera_parameters"] = [0.85, -0.01, 0.002]
    return entity


class RecordedApi(ThreadingHTTPServer):
    """Serves the recorded-shape tile and entities, with Mapillary's auth rules; an optional
    ``override`` answers every Graph request with a fixed (status, body)."""

    daemon_threads = True

    def __init__(self) -> None:
        self.tile = recorded_tile()
        self.entities = {i: recorded_entity(i, k) for k, i in enumerate(USABLE)}
        self.override: tuple[int, dict] | None = None
        self.requests: list[str] = []
        super().__init__(("127.0.0.1", 0), _RecordedHandler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def config(self, **overrides) -> MapillaryConfig:
        return MapillaryConfig(**{"token": TOKEN, "graph_url": self.url,
                                  "tiles_url": f"{self.url}/maps/vtp", "backoff_initial_s": 0.01,
                                  "backoff_max_s": 0.05, **overrides})


class _RecordedHandler(BaseHTTPRequestHandler):
    server: RecordedApi

    def do_GET(self) -> None:  # noqa: N802
        parts = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        self.server.requests.append(parts.path)
        if parts.path.startswith("/maps/vtp/"):
            if query.get("access_token") != TOKEN:  # tiles: the query parameter only
                return self._send(403, b"Forbidden", "text/plain")
            wanted = f"/maps/vtp/mly1_public/2/14/{TILE.x}/{TILE.y}"
            return self._send(200, self.server.tile if parts.path == wanted else b"",
                              "application/x-protobuf")
        if self.headers.get("Authorization") != f"OAuth {TOKEN}":
            return self._json(500, {"error": {"message": "Invalid OAuth 2.0 Access Token",
                                              "type": "MLYApiException", "code": 190,
                                              "error_data": {}, "fbtrace_id": "Arecorded"}})
        if self.server.override is not None:
            return self._json(*self.server.override)
        ids = query.get("ids", "").split(",")
        self._json(200, {i: self.server.entities[i] for i in ids if i in self.server.entities})

    def _json(self, status: int, body: dict) -> None:
        self._send(status, json.dumps(body).encode(), "application/json; charset=UTF-8")

    def _send(self, status: int, body: bytes, kind: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def recorded_api() -> Iterator[RecordedApi]:
    server = RecordedApi()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_the_decoder_reads_ids_from_the_id_property_and_lists_the_unusable():
    layer = decode_image_layer(recorded_tile(), 14, TILE.x, TILE.y)
    assert sorted(i.image_id for i in layer.images) == sorted(USABLE)  # never a feature id
    assert len(layer.unusable) == len(UNUSABLE)
    assert layer.unusable == [("feature 3", "id ''"), ("feature 4", "id 'abc'"),
                              ("feature 5", "id '../../x'"), ("feature 6", "id missing")]
    assert layer.problem().startswith("4 of 6 image features have no usable image id")
    assert all(i.sequence_id == "molgqe2gsdmg96rqw4jjmg" for i in layer.images)


def test_a_tile_with_id_less_images_is_a_hole_with_a_reason_and_the_rest_is_catalogued(
    recorded_api, tmp_path: Path
):
    w, s, e, n = mercantile.bounds(TILE)
    area = Area.from_bbox((w + 1e-6, s + 1e-6, e - 1e-6, n - 1e-6))  # this tile alone
    result = ingest_area(area, recorded_api.config(), tmp_path / "catalog.duckdb",
                         data_root=tmp_path)
    assert result.tiles == 1 and result.tiles_failed == 1 and not result.complete
    with Catalog.open_read_only(tmp_path / "catalog.duckdb") as catalog:
        assert catalog.image_ids() == set(USABLE)
        tiles = catalog.sql("SELECT status, error FROM tiles")
        assert tiles["status"].tolist() == ["failed"]
        assert "4 of 6 image features have no usable image id" in tiles["error"][0]
        stored = {e["id"]: e for e in catalog.entities()}
    perspective, spherical = (stored[i] for i in USABLE)
    assert perspective["organization_id"] == spherical["organization_id"] == "1805883732926354"
    assert perspective["camera_parameters"] == [0.85, -0.01, 0.002]
    assert "camera_parameters" not in spherical and spherical["camera_type"] == "spherical"
    assert perspective["creator"] == {"id": "104214208486349", "username": "someone"}


def test_recorded_error_bodies_are_classified_by_code_not_status(recorded_api):
    async def call(config: MapillaryConfig):
        async with MapillaryClient(config) as client:
            return await client.entities(list(USABLE), ["id"]), client.stats.snapshot()

    # the request limit seen as 403: retried as a rate limit, never taken for anything else
    recorded_api.override = (403, {"error": {"message": "Application request limit reached",
                                             "type": "MLYApiException", "is_transient": True,
                                             "code": 4, "fbtrace_id": "Arecorded"}})
    with pytest.raises(RateLimitError) as limited:
        asyncio.run(call(recorded_api.config(max_attempts=3)))
    assert limited.value.status == 403 and limited.value.attempts == 3
    # a bad token answered as 500 with code 190: an auth error at once, not five retries
    recorded_api.override = None
    recorded_api.requests.clear()
    with pytest.raises(AuthError) as rejected:
        asyncio.run(call(recorded_api.config(token="MLY|1|wrong", max_attempts=5)))
    assert rejected.value.code == 190 and len(recorded_api.requests) == 1
    assert "MLY|1|wrong" not in str(rejected.value)
    # and the good answer: merge_cc exact
    entities, stats = asyncio.run(call(recorded_api.config()))
    assert set(entities) == set(USABLE) and stats["retries"] == {}


def test_merge_cc_stays_exact(recorded_api):
    async def main() -> dict:
        async with MapillaryClient(recorded_api.config()) as client:
            return await client.entities(list(USABLE), ["id", "merge_cc"])

    got = asyncio.run(main())
    assert {e["merge_cc"] for e in got.values()} == {4546427159383000123}  # > 2**53, exact
    assert float(4546427159383000123) != 4546427159383000123
