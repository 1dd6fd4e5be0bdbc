"""Fault injection of the fixture server: each fault happens when asked, never otherwise, and
retries get through."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from citysplat.fixtures.faults import FaultInjector, FaultSpec, decide

BBOX = "-122.505,37.748,-122.488,37.762"
both_frontends = pytest.mark.parametrize("frontend", ["threads", "asyncio"])
"""Faults that the HTTP front end carries out itself (cut bodies, resets, latency, headers)."""


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as client:
        yield client


def outcome(http: httpx.Client, url: str, **params: object) -> int | str:
    """The status, or the name of the transport error."""
    try:
        return http.get(url, params=params).status_code
    except httpx.TransportError as exc:
        return type(exc).__name__


def graph_urls(server, small_world, n: int = 200) -> list[tuple[str, dict]]:
    """``n`` different Graph requests (entity lookups with varying fields)."""
    fields = ["id", "geometry", "captured_at", "sequence", "compass_angle"]
    out = []
    for k in range(n):
        image = small_world[k % len(small_world)]
        out.append(
            (
                f"{server.url}/{image.id}",
                {"access_token": server.token, "fields": fields[k // len(small_world) % 5]},
            )
        )
    return out


# -- the spec -------------------------------------------------------------------------------


def test_parse_grammar():
    spec = FaultSpec.parse(
        "rate_limit=20/s,query_timeout=0.05,server_error=0.05,reset=0.02,truncate=0.05,latency_ms=50,drop_tiles=0.1"
    )
    assert spec.rate_limit == 20 and spec.query_timeout == 0.05 and spec.server_error == 0.05
    assert (
        spec.reset == 0.02
        and spec.truncate == 0.05
        and spec.latency_ms == 50
        and spec.drop_tiles == 0.1
    )
    assert FaultSpec.parse(str(spec)) == spec
    assert FaultSpec.parse("rate_limit=600/min").rate_limit == 10
    assert FaultSpec.parse(" reset = 0.5 , , drop_tiles_for=4 ").drop_tiles_for == 4
    assert FaultSpec.parse("") == FaultSpec.none() and not FaultSpec.none().active


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("reset=0.1,bogus=1", "bogus"),
        ("server_error=1.5", "server_error"),
        ("query_timeout=-0.1", "query_timeout"),
        ("rate_limit=abc/s", "rate_limit"),
        ("rate_limit=5/fortnight", "rate_limit"),
        ("rate_limit=0", "rate_limit"),
        ("truncate", "truncate"),
        ("latency_ms=fast", "latency_ms"),
        ("drop_tiles_for=0.5", "drop_tiles_for"),
        ("reset=0.1,reset=0.2", "reset"),
    ],
)
def test_parse_errors_name_the_bad_item(text, named):
    with pytest.raises(ValueError, match=named):
        FaultSpec.parse(text)


def test_decisions_depend_only_on_seed_kind_key_and_count():
    spec = FaultSpec(server_error=0.3, reset=0.1)
    first = [decide(spec, 1, "graph", f"/k{i}", n) for i in range(50) for n in range(4)]
    assert first == [decide(spec, 1, "graph", f"/k{i}", n) for i in range(50) for n in range(4)]
    assert first != [decide(spec, 2, "graph", f"/k{i}", n) for i in range(50) for n in range(4)]
    never = FaultSpec(
        server_error=0.0, query_timeout=0.0, reset=0.0, truncate=0.0, empty_data=0.0, drop_tiles=0.0
    )
    assert all(decide(never, s, e, f"/k{i}", n) is None for s in range(3) for e in ("search", "graph", "tile", "thumb")
               for i in range(100) for n in range(3))  # fmt: skip


def test_injector_streak_bound_lets_a_retry_through():
    injector = FaultInjector(FaultSpec(query_timeout=1.0, max_streak=3), seed=0)
    kinds = [injector.next("graph", "/same") for _ in range(8)]
    assert [k is not None for k in kinds] == [True, True, True, False, True, True, True, False]


# -- over HTTP ----------------------------------------------------------------------------------


def test_no_faults_when_not_configured(make_mapillary_server, small_world, http):
    for spec in (
        None,
        FaultSpec.none(),
        FaultSpec.parse("query_timeout=0,server_error=0,reset=0,truncate=0,drop_tiles=0"),
    ):
        server = make_mapillary_server(faults=spec)
        results = Counter(
            outcome(http, url, **params) for url, params in graph_urls(server, small_world)
        )
        results.update(outcome(http, f"{server.tiles_url}/mly1_public/2/14/{2616 + k % 2}/{6333 + k // 2 % 2}",
                               access_token=server.token) for k in range(40))  # fmt: skip
        assert results == Counter({200: 240})
        assert server.stats.faults == {}


def test_query_timeouts_are_transient_400s(make_mapillary_server, small_world, http):
    server = make_mapillary_server(faults=FaultSpec.parse("query_timeout=0.3"), seed=1)
    errors = []
    for url, params in graph_urls(server, small_world):
        r = http.get(url, params=params)
        if r.status_code != 200:
            errors.append(r)
    assert 30 <= len(errors) <= 90
    for r in errors:
        err = r.json()["error"]
        assert r.status_code == 400 and err["message"] == "Query Timeout" and err["code"] == -2
        assert err["type"] == "OAuthException"
    assert server.stats.faults["query_timeout"] == len(errors)


def test_server_errors_are_500_502_503(make_mapillary_server, small_world, http):
    server = make_mapillary_server(faults=FaultSpec.parse("server_error=0.3"))
    results = Counter(
        outcome(http, url, **params) for url, params in graph_urls(server, small_world)
    )
    assert set(results) == {200, 500, 502, 503}
    assert 30 <= results[500] + results[502] + results[503] <= 90


@both_frontends
def test_resets_cut_the_connection_mid_body(make_mapillary_server, small_world, http, frontend):
    server = make_mapillary_server(faults=FaultSpec.parse("reset=0.2"), frontend=frontend)
    results = Counter(
        outcome(http, url, **params) for url, params in graph_urls(server, small_world)
    )
    assert set(results) == {200, "ReadError"}
    assert 15 <= results["ReadError"] <= 70
    assert server.stats.faults["reset"] == results["ReadError"]


@both_frontends
def test_truncated_thumbnails(make_mapillary_server, http, frontend):
    server = make_mapillary_server(faults=FaultSpec.parse("truncate=0.3"), frontend=frontend)
    r = http.get(
        f"{server.url}/images",
        params={
            "access_token": server.token,
            "bbox": BBOX,
            "fields": "thumb_256_url,thumb_original_url",
        },
    )
    assert r.status_code == 200  # truncation only hits the CDN
    urls = [d[f] for d in r.json()["data"] for f in ("thumb_256_url", "thumb_original_url")]
    results = Counter()
    for url in urls + urls[:40]:
        try:
            with http.stream("GET", url) as resp:
                declared = int(resp.headers["content-length"])
                body = resp.read()
                assert len(body) == declared
                results["ok"] += 1
        except httpx.RemoteProtocolError:
            results["truncated"] += 1
    assert results["truncated"] >= 10 and results["ok"] >= 40


@both_frontends
def test_rate_limit_answers_429_with_retry_after(make_mapillary_server, small_world, http, frontend):
    server = make_mapillary_server(faults=FaultSpec.parse("rate_limit=20/s"), frontend=frontend)
    statuses = []
    for url, params in graph_urls(server, small_world, 60):
        r = http.get(url, params=params)
        statuses.append(r.status_code)
        if r.status_code == 429:
            err = r.json()["error"]
            assert err["message"] == "Application request limit reached" and err["code"] == 4
            assert int(r.headers["Retry-After"]) >= 1
    assert 15 <= statuses.count(200) <= 45 and statuses.count(429) >= 15
    tile = f"{server.tiles_url}/mly1_public/2/14/2617/6333"
    tile_statuses = [
        http.get(tile, params={"access_token": server.token}).status_code for _ in range(10)
    ]
    assert 429 in tile_statuses  # tiles share the bucket
    time.sleep(0.3)
    assert http.get(tile, params={"access_token": server.token}).status_code == 200


@both_frontends
def test_latency_is_added(make_mapillary_server, small_world, http, frontend):
    server = make_mapillary_server(faults=FaultSpec.parse("latency_ms=40"), latency_ms=10, frontend=frontend)
    start = time.perf_counter()
    for url, params in graph_urls(server, small_world, 5):
        assert http.get(url, params=params).status_code == 200
    assert time.perf_counter() - start >= 5 * 0.05


def test_empty_data_incidents(make_mapillary_server, http):
    server = make_mapillary_server(faults=FaultSpec.parse("empty_data=0.5"))
    sizes = Counter()
    for k in range(40):
        r = http.get(
            f"{server.url}/images",
            params={"access_token": server.token, "bbox": BBOX, "limit": 100 + k},
        )
        sizes["empty" if r.json()["data"] == [] else "full"] += 1
    assert sizes["empty"] >= 8 and sizes["full"] >= 8


@both_frontends
def test_retries_eventually_succeed(make_mapillary_server, small_world, http, frontend):
    spec = FaultSpec.parse("query_timeout=0.2,server_error=0.2,reset=0.2")
    server = make_mapillary_server(faults=spec, seed=4, frontend=frontend)
    attempts = []
    for url, params in graph_urls(server, small_world, 100):
        for attempt in range(1, 10):  # noqa: B007 - read after the loop
            if outcome(http, url, **params) == 200:
                break
        attempts.append(attempt)
    assert max(attempts) <= spec.max_streak + 1
    assert sum(a > 1 for a in attempts) >= 20
    always = make_mapillary_server(faults=FaultSpec.parse("server_error=1"))
    url, params = graph_urls(always, small_world, 1)[0]
    assert [outcome(http, url, **params) != 200 for _ in range(4)] == [True, True, True, False]


def test_same_seed_same_faults_whatever_the_interleaving(make_mapillary_server, small_world):
    spec = FaultSpec.parse("query_timeout=0.2,server_error=0.2")

    def run(server, workers: int) -> Counter:
        requests = graph_urls(server, small_world, 80) * 3
        with httpx.Client(timeout=10) as client, ThreadPoolExecutor(workers) as pool:
            statuses = list(
                pool.map(lambda rp: client.get(rp[0], params=rp[1]).status_code, requests)
            )
        return Counter(
            (rp[0].rsplit("/", 1)[1], rp[1]["fields"], s)
            for rp, s in zip(requests, statuses, strict=True)
        )

    sequential = run(make_mapillary_server(faults=spec, seed=9), 1)
    concurrent = run(make_mapillary_server(faults=spec, seed=9), 8)
    assert sequential == concurrent
    assert run(make_mapillary_server(faults=spec, seed=10), 1) != sequential


def test_dropped_tiles_fail_for_their_first_requests_then_fill(make_mapillary_server, http):
    server = make_mapillary_server(faults=FaultSpec.parse("drop_tiles=0.3,drop_tiles_for=2"))
    tiles = [(2600 + i, 6320 + j) for i in range(8) for j in range(8)]

    def sweep() -> dict[tuple[int, int], int]:
        return {
            (x, y): http.get(
                f"{server.tiles_url}/mly1_public/2/14/{x}/{y}",
                params={"access_token": server.token},
            ).status_code
            for x, y in tiles
        }

    first, second, third = sweep(), sweep(), sweep()
    holes = {t for t, s in first.items() if s == 503}
    assert 8 <= len(holes) <= 32
    assert set(first.values()) == {200, 503}
    assert {t for t, s in second.items() if s == 503} == holes, "the same tiles stay dropped"
    assert set(third.values()) == {200}, "a later run fills the holes"
    assert server.stats.faults["drop_tiles"] == 2 * len(holes)
