"""The Mapillary client against the fixture server over real HTTP: auth, typed errors, retries,
rate limits, and that the token never leaks into logs, errors or reprs."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from typing import Any
from urllib.parse import quote

import pytest

from citysplat.fixtures.faults import FaultSpec
from citysplat.fixtures.server import MapillaryFixtureServer
from citysplat.fixtures.small_world import build_dense_world
from citysplat.mapillary import (
    CATALOG_FIELDS,
    Area,
    AuthError,
    MapillaryClient,
    MapillaryConfig,
    MissingTokenError,
    NotFoundError,
    RateLimit,
    TransientError,
    entities_for,
    enumerate_area,
)

SECRET = "MLY|4242|s3cr3t-token-do-not-log"


def config_for(server: MapillaryFixtureServer, **overrides: Any) -> MapillaryConfig:
    """A config pointing at the fixture server, with fast backoff for tests."""
    return server.client_config(**{"backoff_initial_s": 0.01, "backoff_max_s": 0.1, **overrides})


def truth_entity(meta: dict[str, Any]) -> dict[str, Any]:
    """What the API returns for the catalog fields: null fields are left out, the organization
    comes as ``organization: {"id": ...}``."""
    out = {k: v for k, v in meta.items() if k in CATALOG_FIELDS and v is not None}
    if meta.get("organization_id") is not None:
        out["organization"] = {"id": str(meta["organization_id"])}
    return out


def city_bbox(metadata: list[dict[str, Any]], margin: float = 1e-4) -> tuple[float, ...]:
    points = [
        m[g]["coordinates"] for m in metadata for g in ("geometry", "computed_geometry") if m.get(g)
    ]
    lons, lats = [p[0] for p in points], [p[1] for p in points]
    return min(lons) - margin, min(lats) - margin, max(lons) + margin, max(lats) + margin


async def _enumerate_and_fetch(
    config: MapillaryConfig, bbox: tuple[float, ...]
) -> tuple[set[str], dict]:
    async with MapillaryClient(config) as client:
        scan = await enumerate_area(client, Area.from_bbox(bbox))
        assert scan.complete, scan.failed
        entities = await entities_for(client, scan.image_ids)
    return scan.image_ids, entities


# -- configuration -----------------------------------------------------------------------------


def test_config_reads_the_environment_and_never_shows_the_token(monkeypatch):
    monkeypatch.setenv("MAPILLARY_ACCESS_TOKEN", SECRET)
    monkeypatch.setenv("CITYSPLAT_GRAPH_URL", "http://127.0.0.1:9/")
    monkeypatch.setenv("CITYSPLAT_TILES_URL", "http://127.0.0.1:9/maps/vtp")
    config = MapillaryConfig.from_env(concurrency=4)
    assert config.graph_url == "http://127.0.0.1:9"
    assert config.tiles_url == "http://127.0.0.1:9/maps/vtp"
    assert config.token.get_secret_value() == SECRET
    assert config.concurrency == 4
    assert config.entity_rate == RateLimit(max_rate=60_000, period_s=60)
    assert config.tiles_rate.per_s == pytest.approx(50_000 / 86_400)
    client = MapillaryClient(config)
    for text in (repr(config), str(config), config.model_dump_json(), repr(client), str(client)):
        assert SECRET not in text and "s3cr3t" not in text
    # overrides win over the environment
    assert (
        MapillaryConfig.from_env(graph_url="https://example.org").graph_url == "https://example.org"
    )


def test_missing_token_says_what_to_set(monkeypatch):
    monkeypatch.delenv("MAPILLARY_ACCESS_TOKEN", raising=False)
    with pytest.raises(MissingTokenError, match="MAPILLARY_ACCESS_TOKEN"):
        MapillaryConfig.from_env()
    monkeypatch.setenv("MAPILLARY_ACCESS_TOKEN", "   ")
    with pytest.raises(MissingTokenError, match="MAPILLARY_ACCESS_TOKEN"):
        MapillaryConfig.from_env()


# -- typed errors --------------------------------------------------------------------------------


def test_a_rejected_token_raises_auth_error_without_retrying(make_mapillary_server, small_world):
    server = make_mapillary_server(token="MLY|right|token")
    config = config_for(server, token=SECRET)

    async def main() -> list[Exception]:
        errors: list[Exception] = []
        async with MapillaryClient(config) as client:
            for call in (
                client.entity(small_world[0].id, ["id"]),
                client.entities([i.id for i in small_world], ["id"]),
                client.tile("mly1_public", 14, 2616, 6333),
                enumerate_area(client, Area.from_bbox((-122.505, 37.748, -122.488, 37.762))),
            ):
                with pytest.raises(AuthError) as info:
                    await call
                errors.append(info.value)
        return errors

    errors = asyncio.run(main())
    # no retries: one request per call (enumerate stops at the first tile's 401, of 4)
    assert server.stats.count(status=401) == server.stats.total <= 3 + 4
    for exc in errors:
        assert "access token" in str(exc) and "MAPILLARY_ACCESS_TOKEN" in str(exc)
        assert exc.status == 401 and exc.code == 190
        assert SECRET not in str(exc) and SECRET not in repr(exc)


def test_a_refused_field_is_dropped_with_one_warning_and_other_bad_requests_raise(
    mapillary_server, small_world, caplog
):
    config = config_for(mapillary_server)
    first = small_world[0]

    async def main() -> None:
        async with MapillaryClient(config) as client:
            fields = ["id", "no_such_field", "captured_at"]
            got = await client.entity(first.id, fields)
            assert got == {"id": first.id, "captured_at": first.meta["captured_at"]}
            assert list(client.rejected_fields) == ["no_such_field"]
            assert "nonexisting field (no_such_field)" in client.rejected_fields["no_such_field"]
            batch = await client.entities([i.id for i in small_world[:3]], fields)  # not asked again
            assert {k: set(v) for k, v in batch.items()} == {
                i.id: {"id", "captured_at"} for i in small_world[:3]}
            with pytest.raises(NotFoundError) as info:
                await client.entity("999999999999", ["id"])
            assert info.value.status == 400 and not isinstance(info.value, TransientError)
            assert await client.entities(["999999999999"], ["id"]) == {}

    with caplog.at_level(logging.WARNING, logger="citysplat.mapillary"):
        asyncio.run(main())
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "'no_such_field'" in warnings[0]
    # refused once, then asked without it: 2 + 1 batch + not found + empty batch
    assert mapillary_server.stats.total == 5
    assert mapillary_server.stats.count(status=400) == 2


# -- methods ---------------------------------------------------------------------------------------


def test_entities_go_in_concurrent_batches_of_50(make_mapillary_server, tmp_path):
    dense = build_dense_world(tmp_path, 120)
    server = make_mapillary_server(dense)
    ids = [i.id for i in dense]

    async def main() -> dict:
        async with MapillaryClient(config_for(server)) as client:
            got = await client.entities(ids + ids[:10], CATALOG_FIELDS)
            assert client.stats.requests["entity"] == 3
            return got

    got = asyncio.run(main())
    assert server.stats.count("ids") == 3
    assert got == {i.id: truth_entity(i.meta) for i in dense}


def test_sequences_and_single_entities(mapillary_server, small_world):
    by_sequence: dict[str, list[Any]] = {}
    for image in small_world:
        by_sequence.setdefault(image.meta["sequence"], []).append(image)

    async def main() -> None:
        async with MapillaryClient(config_for(mapillary_server)) as client:
            for sid, images in by_sequence.items():
                expected = [i.id for i in sorted(images, key=lambda i: i.meta["captured_at"])]
                assert await client.sequence_image_ids(sid) == expected
            first = small_world[0]
            assert await client.entity(first.id, CATALOG_FIELDS) == truth_entity(first.meta)
            thumb = await client.entity(first.id, ["thumb_256_url"])
            assert (await client.fetch_bytes(thumb["thumb_256_url"]))[:2] == b"\xff\xd8"

    asyncio.run(main())


def test_bbox_search_silently_caps_at_2000(make_mapillary_server, tmp_path):
    dense = build_dense_world(tmp_path, 2100)
    server = make_mapillary_server(dense)

    async def main() -> list[dict]:
        async with MapillaryClient(config_for(server)) as client:
            return await client.search_bbox((-122.493, 37.754, -122.487, 37.760), is_pano=False)

    found = asyncio.run(main())
    assert len(found) == 2000 < len(dense)


# -- faults ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "faults",
    [
        "query_timeout=0.4",
        "server_error=0.4",
        "reset=0.3",
        "latency_ms=5,server_error=0.2,reset=0.2",
    ],
)
def test_transient_faults_are_survived_with_exact_results(make_mapillary_server, tiny_city, faults):
    server = make_mapillary_server(tiny_city.world_images(), faults=FaultSpec.parse(faults))
    config = config_for(server, max_attempts=5)

    async def main() -> tuple[set[str], dict, list[dict]]:
        async with MapillaryClient(config) as client:
            scan = await enumerate_area(client, Area.from_bbox(city_bbox(tiny_city.metadata)))
            assert scan.complete
            batch = await entities_for(client, scan.image_ids)
            singles = await asyncio.gather(
                *(client.entity(i, CATALOG_FIELDS) for i in sorted(scan.image_ids))
            )
            assert client.stats.retries.total() > 0
            return scan.image_ids, batch, singles

    ids, batch, singles = asyncio.run(main())
    truth = {m["id"]: truth_entity(m) for m in tiny_city.metadata}
    assert ids == set(truth)
    assert batch == truth
    assert {e["id"]: e for e in singles} == truth
    assert sum(server.stats.faults.values()) > 0


def test_429_retry_after_is_honoured(make_mapillary_server, small_world):
    server = make_mapillary_server(faults=FaultSpec.parse("rate_limit=20/s,rate_burst=20"))
    ids = [i.id for i in small_world[:30]]

    async def main() -> list[dict]:
        async with MapillaryClient(config_for(server, max_attempts=4)) as client:
            got = await asyncio.gather(*(client.entity(i, ["id", "sequence"]) for i in ids))
            assert client.stats.errors["entity:429"] > 0
            return got

    start = time.perf_counter()
    got = asyncio.run(main())
    elapsed = time.perf_counter() - start
    assert [g["id"] for g in got] == ids
    assert server.stats.faults["rate_limit"] > 0
    assert server.stats.count("entity", 429) > 0
    assert elapsed >= 1.0  # Retry-After: 1 was waited out, not hammered through by backoff


def test_the_client_rate_limiter_keeps_under_the_server_limit(make_mapillary_server, small_world):
    server = make_mapillary_server(faults=FaultSpec.parse("rate_limit=20/s,rate_burst=2"))
    config = config_for(server, entity_rate=RateLimit.per_second(15))

    async def main() -> None:
        async with MapillaryClient(config) as client:
            await asyncio.gather(*(client.entity(i.id, ["id"]) for i in small_world[:10]))

    start = time.perf_counter()
    asyncio.run(main())
    assert server.stats.count(status=429) == 0
    assert time.perf_counter() - start >= 9 / 15 * 0.9


def test_retry_budget_spent_raises_a_transient_error(make_mapillary_server, small_world):
    server = make_mapillary_server(faults=FaultSpec(server_error=1.0, max_streak=10))

    async def main() -> None:
        async with MapillaryClient(config_for(server, max_attempts=3)) as client:
            with pytest.raises(TransientError, match="gave up after 3 attempts") as info:
                await client.entity(small_world[0].id, ["id"])
            assert info.value.attempts == 3
            assert client.stats.failures["entity"] == 1 and client.stats.retries["entity"] == 2

    asyncio.run(main())
    assert server.stats.count("entity") == 3


# -- no token anywhere -----------------------------------------------------------------------------


def test_the_token_never_appears_in_logs_errors_or_urls(make_mapillary_server, small_world, caplog):
    caplog.set_level(logging.DEBUG)
    for name in ("httpx", "httpcore", "citysplat", "citysplat.mapillary", "citysplat.download"):
        caplog.set_level(logging.DEBUG, logger=name)
    server = make_mapillary_server(
        token=SECRET,
        faults=FaultSpec.parse(
            "query_timeout=0.3,server_error=0.3,reset=0.2,drop_tiles=1,drop_tiles_for=9"
        ),
    )
    texts: list[str] = []

    async def main() -> None:
        async with MapillaryClient(config_for(server, max_attempts=4)) as client:
            scan = await enumerate_area(
                client, Area.from_bbox((-122.505, 37.748, -122.488, 37.762))
            )
            texts.extend(t.error or "" for t in scan.tiles)
            assert not scan.complete
            await client.entities([i.id for i in small_world], CATALOG_FIELDS)
            await client.search_bbox((-122.505, 37.748, -122.488, 37.762))
            logging.getLogger("httpx").info(  # as a library would log a tile URL
                "HTTP Request: GET %s", f"{server.tiles_url}/mly1_public/2/14/1/1?access_token="
                + quote(SECRET, safe=""))
            for bad in (
                client.entity(small_world[0].id, ["nope"]),
                client.entity("123456789", ["id"]),
            ):
                try:
                    await bad
                except Exception as exc:  # noqa: BLE001
                    texts.extend([str(exc), repr(exc)])
            texts.append(repr(client))
        async with MapillaryClient(
            config_for(server, token="MLY|wrong|" + SECRET[::-1])
        ) as bad_client:
            try:
                await bad_client.entity(small_world[0].id, ["id"])
            except AuthError as exc:
                texts.extend([str(exc), repr(exc)])

    asyncio.run(main())
    assert any("HTTP Request: GET" in r.getMessage() for r in caplog.records), "httpx did log"
    assert any("retrying" in r.getMessage() for r in caplog.records), "our retries logged"
    everything = caplog.text + "\n".join(r.getMessage() for r in caplog.records) + "\n".join(texts)
    assert SECRET not in everything and SECRET[::-1] not in everything
    assert "s3cr3t" not in everything
    assert "access_token=[redacted]" in everything  # the library's tile URL, redacted
    assert not re.search(r"access_token=(?!\[redacted\])", everything)


def test_one_attempt_allowed_means_no_retry(make_mapillary_server, small_world):
    server = make_mapillary_server(faults=FaultSpec(server_error=1.0, max_streak=10))

    async def main() -> None:
        async with MapillaryClient(config_for(server, max_attempts=1)) as client:
            with pytest.raises(TransientError) as info:
                await client.entities([i.id for i in small_world[:3]], ["id"])
            assert info.value.attempts == 1
            assert client.stats.failures["entity"] == 1 and client.stats.retries["entity"] == 0

    asyncio.run(main())
    assert server.stats.count("ids") == 1


def test_errors_never_hold_the_token_from_a_closed_port_or_a_server_echoing_it(caplog):
    """The tile token is in the URL now: a 500 whose body echoes the request (URL and headers)
    and a port where nothing listens must still give errors and logs without it."""
    import socket
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from citysplat.mapillary.redaction import token_forms

    class Echo(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            body = f"{self.path} {self.headers.get('Authorization')}".encode()
            self.send_response(500)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    echo = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    threading.Thread(target=echo.serve_forever, daemon=True).start()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]  # nothing listens once the socket is closed
    texts: list[str] = []

    async def main() -> None:
        for base in (f"http://127.0.0.1:{echo.server_address[1]}", f"http://127.0.0.1:{closed}"):
            config = MapillaryConfig(token=SECRET, graph_url=base, tiles_url=f"{base}/maps/vtp",
                                     max_attempts=2, backoff_initial_s=0.01, backoff_max_s=0.02)
            async with MapillaryClient(config) as client:
                for call in (client.tile("mly1_public", 14, 2616, 6333),
                             client.entity("1", ["id"]), client.search_bbox((0, 0, 0.01, 0.01))):
                    with pytest.raises(TransientError) as info:
                        await call
                    texts.extend([str(info.value), repr(info.value)])

    with caplog.at_level(logging.DEBUG):
        try:
            asyncio.run(main())
        finally:
            echo.shutdown()
            echo.server_close()
    assert any("access_token=[redacted]" in t for t in texts)  # the echo really came back
    everything = "\n".join(texts) + caplog.text
    assert not any(form in everything for form in token_forms(SECRET))
