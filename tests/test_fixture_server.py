"""The Mapillary fixture server's Graph API, auth and thumbnails, over real HTTP."""

from __future__ import annotations

import io
import logging
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qs, quote, urlsplit

import httpx
import mapbox_vector_tile
import mercantile
import pytest
from PIL import Image

from citysplat.fixtures.server import MapillaryFixtureServer
from citysplat.fixtures.small_world import build_dense_world
from citysplat.fixtures.world import WorldImage

ALL_BBOX = "-122.505,37.748,-122.488,37.762"  # all of the small world, 0.00024 square degrees


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as client:
        yield client


def get(
    http: httpx.Client, server: MapillaryFixtureServer, path: str, **params: object
) -> httpx.Response:
    return http.get(server.url + path, params={"access_token": server.token, **params})


def iso_ms(text: str) -> int:
    return int(datetime.fromisoformat(text).astimezone(UTC).timestamp() * 1000)


def test_bbox_search_returns_what_is_inside_with_the_asked_fields(
    mapillary_server, small_world, http
):
    r = get(
        http, mapillary_server, "/images", bbox=ALL_BBOX, fields="id,geometry,captured_at,sequence"
    )
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/json")
    data = r.json()["data"]
    assert sorted(d["id"] for d in data) == sorted(i.id for i in small_world)
    by_id = {i.id: i.meta for i in small_world}
    for d in data:
        assert set(d) == {"id", "geometry", "captured_at", "sequence"}
        assert d["geometry"] == by_id[d["id"]]["geometry"]
        assert d["captured_at"] == by_id[d["id"]]["captured_at"]

    # only the images inside a smaller box, and only "id" without fields
    w, s, e, n = -122.4985, 37.7530, -122.4900, 37.7580
    inside = {
        i.id
        for i in small_world
        if w <= i.meta["geometry"]["coordinates"][0] <= e
        and s <= i.meta["geometry"]["coordinates"][1] <= n
    }
    r = get(http, mapillary_server, "/images", bbox=f"{w},{s},{e},{n}")
    assert 0 < len(inside) < len(small_world)
    assert {d["id"] for d in r.json()["data"]} == inside
    assert all(set(d) == {"id"} for d in r.json()["data"])


def test_search_caps_at_2000_with_a_deterministic_sample(make_mapillary_server, tmp_path, http):
    dense = build_dense_world(tmp_path, 2300)
    server = make_mapillary_server(dense)
    bbox = "-122.493,37.754,-122.487,37.760"
    first = get(http, server, "/images", bbox=bbox)
    ids = [d["id"] for d in first.json()["data"]]
    assert len(ids) == 2000 and len(set(ids)) == 2000
    assert sorted(ids) != sorted(i.id for i in dense)[:2000], "a sample, not the first 2000 by id"
    again = get(http, server, "/images", bbox=bbox)
    assert again.content == first.content
    assert len(get(http, server, "/images", bbox=bbox, limit=5000).json()["data"]) == 2000
    ten = [d["id"] for d in get(http, server, "/images", bbox=bbox, limit=10).json()["data"]]
    assert ten == ids[:10]
    assert get(http, server, "/images", bbox=bbox, limit=0).status_code == 400
    # another seed samples differently
    other = make_mapillary_server(dense, seed=7)
    assert {d["id"] for d in get(http, other, "/images", bbox=bbox).json()["data"]} != set(ids)


@pytest.mark.parametrize(
    "bbox",
    ["1,2,3", "a,b,c,d", "-122.49,37.76,-122.50,37.75", "-190,0,-189.99,0.01", "", "nan,1,2,3"],
)
def test_malformed_bbox_is_400(mapillary_server, http, bbox):
    r = get(http, mapillary_server, "/images", bbox=bbox)
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["type"] == "OAuthException" and isinstance(err["code"], int) and err["fbtrace_id"]


def test_bbox_over_the_area_cap_is_a_mapillary_error(make_mapillary_server, http):
    server = make_mapillary_server()
    r = get(http, server, "/images", bbox="-122.6,37.7,-122.4,37.8")  # 0.02 square degrees
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["type"] == "OAuthException" and err["code"] == 100 and "bbox" in err["message"]
    assert (
        get(http, server, "/images", bbox="-122.55,37.70,-122.45,37.80").status_code == 200
    )  # exactly 0.01
    strict = make_mapillary_server(bbox_area_cap_deg2=0.0001)
    assert get(http, strict, "/images", bbox=ALL_BBOX).status_code == 400


def test_search_filters(mapillary_server, small_world, http):
    def ids(**params: object) -> set[str]:
        r = get(http, mapillary_server, "/images", **params)
        assert r.status_code == 200, r.text
        return {d["id"] for d in r.json()["data"]}

    def where(pred) -> set[str]:
        return {i.id for i in small_world if pred(i.meta)}

    in_2022 = ids(
        bbox=ALL_BBOX,
        start_captured_at="2022-01-01T00:00:00Z",
        end_captured_at="2022-12-31T23:59:59Z",
    )
    assert in_2022 == where(
        lambda m: (
            iso_ms("2022-01-01T00:00:00+00:00")
            <= m["captured_at"]
            < iso_ms("2023-01-01T00:00:00+00:00")
        )
    )
    assert len(in_2022) == 10
    since = ids(bbox=ALL_BBOX, start_captured_at="2023-03-10T12:30:00Z")  # inclusive bound
    assert (
        since == where(lambda m: m["captured_at"] >= iso_ms("2023-03-10T12:30:00+00:00"))
        and len(since) == 20
    )
    assert ids(bbox=ALL_BBOX, is_pano="true") == where(lambda m: m["is_pano"]) != set()
    assert ids(bbox=ALL_BBOX, is_pano="false") == where(lambda m: not m["is_pano"])
    seqs = sorted({i.meta["sequence"] for i in small_world})[:2]
    assert ids(bbox=ALL_BBOX, sequence_ids=",".join(seqs)) == where(lambda m: m["sequence"] in seqs)
    assert ids(sequence_ids=seqs[0]) == where(lambda m: m["sequence"] == seqs[0])  # no bbox needed
    assert (
        get(
            http, mapillary_server, "/images", bbox=ALL_BBOX, start_captured_at="yesterday"
        ).status_code
        == 400
    )
    assert get(http, mapillary_server, "/images").status_code == 400


def test_entity_ids_and_image_ids(mapillary_server, small_world, http):
    image = small_world[5]
    r = get(
        http,
        mapillary_server,
        f"/{image.id}",
        fields="camera_type,camera_parameters,computed_geometry,width",
    )
    assert r.status_code == 200
    assert r.json() == {
        "id": image.id,
        **{
            k: image.meta[k]
            for k in ("camera_type", "camera_parameters", "computed_geometry", "width")
        },
    }
    assert get(http, mapillary_server, f"/{image.id}").json() == {"id": image.id}
    missing = get(http, mapillary_server, "/123456789", fields="id")
    assert missing.status_code in (400, 404) and missing.json()["error"]["code"] == 100
    unknown_field = get(http, mapillary_server, f"/{image.id}", fields="no_such_field")
    assert unknown_field.status_code == 400

    some = [i.id for i in small_world[:3]]
    r = get(http, mapillary_server, "/", ids=",".join(some), fields="sequence,is_pano")
    assert r.status_code == 200
    assert r.json() == {
        i.id: {"id": i.id, "sequence": i.meta["sequence"], "is_pano": i.meta["is_pano"]}
        for i in small_world[:3]
    }
    fifty = ",".join(str(10**14 + k) for k in range(50))
    assert get(http, mapillary_server, "/", ids=fifty).status_code == 200
    too_many = get(http, mapillary_server, "/", ids=fifty + ",1")
    assert too_many.status_code == 400 and too_many.json()["error"]["type"] == "OAuthException"

    seq = small_world[12].meta["sequence"]
    in_order = [
        i.id
        for i in sorted(
            (i for i in small_world if i.meta["sequence"] == seq),
            key=lambda i: i.meta["captured_at"],
        )
    ]
    r = get(http, mapillary_server, "/image_ids", sequence_id=seq)
    assert r.json() == {"data": [{"id": i} for i in in_order]}
    assert get(http, mapillary_server, "/image_ids").status_code == 400


def test_token_is_enforced_graph_both_ways_tiles_only_in_the_query(mapillary_server, small_world,
                                                                    http):
    """Graph requests take the token as access_token= or an OAuth header; coverage tiles only as
    access_token= (403 otherwise: mapillary-python-sdk #124/#131). A wrong token is code 190."""
    token = mapillary_server.token
    graph = [
        ("/images", {"bbox": ALL_BBOX}),
        (f"/{small_world[0].id}", {}),
        ("/", {"ids": small_world[0].id}),
        ("/image_ids", {"sequence_id": small_world[0].meta["sequence"]}),
    ]
    tiles = [
        ("/maps/vtp/mly1_public/2/14/2617/6333", {}),
        ("/maps/vtp/mly1_computed_public/2/10/163/395/", {}),  # the SDK's trailing slash
    ]

    def assert_bad_token(response, path):
        assert response.status_code == 401, path
        err = response.json()["error"]
        assert (err["type"], err["code"], err["error_data"]) == ("MLYApiException", 190, {})
        assert err["message"] == "Invalid OAuth 2.0 Access Token" and err["fbtrace_id"]

    for path, params in graph:
        url = mapillary_server.url + path
        assert_bad_token(http.get(url, params=params), path)
        assert_bad_token(http.get(url, params={**params, "access_token": "MLY|nope"}), path)
        assert_bad_token(http.get(url, params=params, headers={"Authorization": "OAuth MLY|nope"}),
                         path)
        assert http.get(url, params={**params, "access_token": token}).status_code == 200, path
        assert http.get(url, params=params,
                        headers={"Authorization": f"OAuth {token}"}).status_code == 200, path
    for path, params in tiles:
        url = mapillary_server.url + path
        for refused in (http.get(url, params=params),
                        http.get(url, params=params, headers={"Authorization": f"OAuth {token}"})):
            assert refused.status_code == 403 and refused.text == "Forbidden", path
        assert_bad_token(http.get(url, params={**params, "access_token": "MLY|nope"}), path)
        assert http.get(url, params={**params, "access_token": token}).status_code == 200, path


def test_token_never_appears_in_bodies_or_logs(mapillary_server, small_world, http, caplog):
    caplog.set_level(logging.DEBUG, logger="citysplat.fixtures.server")
    token = mapillary_server.token
    forms = {token, quote(token, safe=""), token.replace("|", "%7c")}
    requests = [
        ("/images", {"bbox": ALL_BBOX, "fields": "id,thumb_256_url,thumb_original_url"}),
        ("/images", {"bbox": "1,2,3"}),
        ("/images", {"bbox": ALL_BBOX, "fields": token}),
        ("/images", {"bbox": ALL_BBOX, "start_captured_at": token}),
        (f"/{small_world[0].id}", {"fields": f"id,{token}"}),
        ("/", {"ids": f"{small_world[0].id},{token}", "fields": "thumb_1024_url"}),
        (f"/{quote(token, safe='')}", {}),
        ("/maps/vtp/nope/2/1/1/1", {}),
        ("/maps/vtp/mly1_public/2/15/1/1", {}),
    ]
    bodies = []
    for path, params in requests:
        bodies.append(get(http, mapillary_server, path, **params).text)
        bodies.append(
            http.get(
                mapillary_server.url + path,
                params=params,
                headers={"Authorization": f"OAuth {token}"},
            ).text
        )
    bodies.append(
        http.get(mapillary_server.url + "/images", params={"access_token": token + "x"}).text
    )
    thumb = get(http, mapillary_server, "/images", bbox=ALL_BBOX, fields="thumb_256_url").json()[
        "data"
    ][0]["thumb_256_url"]
    bodies.append(http.get(thumb + "0").text)
    assert any("[redacted]" in b or "nonexisting" in b for b in bodies)
    for body in bodies:
        assert not any(f in body for f in forms), body
    assert caplog.records, "the server logs requests at DEBUG"
    assert not any(f in caplog.text for f in forms)


def test_thumbnails_are_resized_signed_and_need_no_token(mapillary_server, small_world, http):
    fields = "width,height,is_pano,thumb_256_url,thumb_1024_url,thumb_2048_url,thumb_original_url"
    data = get(http, mapillary_server, "/images", bbox=ALL_BBOX, fields=fields).json()["data"]
    by_id = {i.id: i for i in small_world}
    seen_pano = False
    for d in data[:12]:
        original = Path(by_id[d["id"]].jpeg_path).read_bytes()
        for name, size in (
            ("thumb_256_url", 256),
            ("thumb_1024_url", 1024),
            ("thumb_2048_url", 2048),
        ):
            assert (
                d[name].startswith(mapillary_server.url + "/thumbs/")
                and "access_token" not in d[name]
            )
            r = http.get(d[name])
            assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
            with Image.open(io.BytesIO(r.content)) as im:
                w, h = im.size
            assert max(w, h) == min(size, max(d["width"], d["height"]))
            assert abs(w / h - d["width"] / d["height"]) < 0.02
            if size >= max(d["width"], d["height"]):
                assert r.content == original
        assert http.get(d["thumb_original_url"]).content == original
        seen_pano |= d["is_pano"]
    assert seen_pano or any(by_id[d["id"]].meta["is_pano"] for d in data)

    url = data[0]["thumb_256_url"]
    parts = urlsplit(url)
    q = parse_qs(parts.query)
    forged = (
        f"{parts.scheme}://{parts.netloc}{parts.path}?oe={q['oe'][0]}&oh={'0' * len(q['oh'][0])}"
    )
    later = f"{parts.scheme}://{parts.netloc}{parts.path}?oe={int(q['oe'][0], 16) + 3600:x}&oh={q['oh'][0]}"
    other_image = url.replace(data[0]["id"], data[1]["id"])
    for bad in (forged, later, other_image, f"{parts.scheme}://{parts.netloc}{parts.path}"):
        assert http.get(bad).status_code == 403


def test_thumbnail_urls_expire(make_mapillary_server, http):
    server = make_mapillary_server(thumb_ttl_s=1)
    url = get(http, server, "/images", bbox=ALL_BBOX, fields="thumb_256_url", limit=1).json()[
        "data"
    ][0]["thumb_256_url"]
    assert http.get(url).status_code == 200
    expiry = int(parse_qs(urlsplit(url).query)["oe"][0], 16)
    time.sleep(max(0.0, expiry - time.time()) + 0.05)
    r = http.get(url)
    assert r.status_code == 403 and "expired" in r.text
    fresh = get(http, server, "/images", bbox=ALL_BBOX, fields="thumb_256_url", limit=1).json()[
        "data"
    ][0]["thumb_256_url"]
    assert http.get(fresh).status_code == 200


def test_added_images_show_up_everywhere_at_once(mapillary_server, tmp_path, http):
    new = build_dense_world(tmp_path, 3, center=(-122.4950, 37.7550), span_deg=0.0005, seed=5)
    bbox = "-122.4960,37.7540,-122.4940,37.7560"
    before = {d["id"] for d in get(http, mapillary_server, "/images", bbox=bbox).json()["data"]}
    mapillary_server.add_images(new)
    after = {d["id"] for d in get(http, mapillary_server, "/images", bbox=bbox).json()["data"]}
    assert after - before == {i.id for i in new}
    assert (
        get(http, mapillary_server, f"/{new[0].id}", fields="geometry").json()["geometry"]
        == new[0].meta["geometry"]
    )
    assert set(get(http, mapillary_server, "/", ids=",".join(i.id for i in new)).json()) == {
        i.id for i in new
    }
    seq = new[0].meta["sequence"]
    assert [
        d["id"] for d in get(http, mapillary_server, "/image_ids", sequence_id=seq).json()["data"]
    ] == [i.id for i in new]
    t = mercantile.tile(*new[0].meta["geometry"]["coordinates"], 14)
    tile = get(http, mapillary_server, f"/maps/vtp/mly1_public/2/14/{t.x}/{t.y}")
    tile_ids = {
        f["properties"]["id"] for f in mapbox_vector_tile.decode(tile.content)["image"]["features"]
    }
    assert {int(i.id) for i in new} <= tile_ids


def test_same_world_and_seed_give_byte_identical_json(make_mapillary_server, small_world, http):
    a, b = make_mapillary_server(seed=3), make_mapillary_server(seed=3)
    requests = [
        (
            "/images",
            {
                "bbox": ALL_BBOX,
                "fields": "id,geometry,computed_geometry,captured_at,creator,sequence,camera_parameters",
            },
        ),
        ("/images", {"bbox": ALL_BBOX, "limit": 7, "is_pano": "false"}),
        (f"/{small_world[3].id}", {"fields": "camera_type,make,model,altitude"}),
        ("/", {"ids": ",".join(i.id for i in small_world[:9]), "fields": "sequence,compass_angle"}),
        ("/image_ids", {"sequence_id": small_world[0].meta["sequence"]}),
        ("/images", {"bbox": "1,2,3"}),
        ("/maps/vtp/mly1_public/2/14/2617/6333", {}),
    ]
    for path, params in requests:
        ra, rb = get(http, a, path, **params), get(http, b, path, **params)
        assert ra.status_code == rb.status_code
        assert ra.content == rb.content, path
        assert get(http, a, path, **params).content == ra.content


def test_both_front_ends_answer_the_same(make_mapillary_server, small_world, http):
    threaded = make_mapillary_server(seed=5)
    evented = make_mapillary_server(seed=5, frontend="asyncio")
    requests = [
        ("/images", {"bbox": ALL_BBOX, "fields": "id,geometry,captured_at,sequence"}),
        ("/", {"ids": ",".join(i.id for i in small_world[:9]), "fields": "sequence,geometry"}),
        (f"/{small_world[3].id}", {"fields": "camera_type,make,model"}),
        ("/images", {"bbox": "1,2,3"}),
        ("/maps/vtp/mly1_computed_public/2/14/2617/6333", {}),
        ("/nowhere/at/all", {}),
    ]
    for path, params in requests:
        a, b = get(http, threaded, path, **params), get(http, evented, path, **params)
        assert (a.status_code, a.headers["content-type"]) == (
            b.status_code,
            b.headers["content-type"],
        ), path
        assert a.content == b.content, path
    for server in (threaded, evented):  # signed URLs differ (own key, own port); bytes do not
        assert http.get(server.url + "/images", params={"bbox": ALL_BBOX}).status_code == 401
        url = get(http, server, f"/{small_world[0].id}", fields="thumb_1024_url").json()
        server.thumb = http.get(url["thumb_1024_url"])
    assert threaded.thumb.status_code == evented.thumb.status_code == 200
    assert threaded.thumb.content == evented.thumb.content
    assert evented.stats.snapshot() == threaded.stats.snapshot()
    with pytest.raises(ValueError, match="frontend must be one of threads, asyncio"):
        MapillaryFixtureServer(small_world, frontend="twisted")


def test_stats_count_requests_by_kind_and_status(mapillary_server, small_world, http):
    get(http, mapillary_server, "/images", bbox=ALL_BBOX)
    get(http, mapillary_server, "/images", bbox="x")
    get(http, mapillary_server, f"/{small_world[0].id}")
    get(http, mapillary_server, "/maps/vtp/mly1_public/2/14/2617/6333")
    http.get(mapillary_server.url + "/images", params={"bbox": ALL_BBOX})
    stats = mapillary_server.stats
    assert (
        stats.count("images", 200) == 1
        and stats.count("images", 400) == 1
        and stats.count("images", 401) == 1
    )
    assert stats.count("entity") == 1 and stats.count("tiles", 200) == 1 and stats.total == 5
    assert stats.snapshot()["images"] == {200: 1, 400: 1, 401: 1}
    stats.reset()
    assert stats.total == 0


@pytest.mark.parametrize("frontend", ["threads", "asyncio"])
def test_server_lifecycle(small_world: list[WorldImage], http, frontend):
    server = MapillaryFixtureServer(small_world, frontend=frontend)
    with pytest.raises(RuntimeError):
        _ = server.url
    with server:
        assert server.graph_url == server.url and server.tiles_url == server.url + "/maps/vtp"
        assert server.url.startswith("http://127.0.0.1:") and server.port > 0
        assert get(http, server, f"/{small_world[0].id}").status_code == 200
        url = server.url
    with pytest.raises(httpx.TransportError):
        http.get(url + "/images", params={"bbox": ALL_BBOX})


def test_serve_forever_until_stopped(small_world, http):
    server = MapillaryFixtureServer(small_world)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            if get(http, server, "/image_ids", sequence_id="none").status_code == 200:
                break
        except (RuntimeError, httpx.TransportError):
            time.sleep(0.01)
    else:
        pytest.fail("serve_forever did not come up")
    server.stop()
    thread.join(5)
    assert not thread.is_alive()


def test_a_server_in_a_child_process(small_world, http):
    """The benchmarks' server: another process (its own GIL), aiohttp's front end by default."""
    from citysplat.fixtures.remote import serve

    with serve(small_world, latency_ms=5) as server:
        assert server.url.startswith("http://127.0.0.1:")
        before = server.cpu_seconds()
        ids = ",".join(i.id for i in small_world[:20])
        r = http.get(server.url + "/", params={"ids": ids, "fields": "id"})
        assert r.status_code == 401  # the token is still needed
        r = get(http, server, "/", ids=ids, fields="id,thumb_256_url")
        assert sorted(r.json()) == sorted(ids.split(","))
        thumb = http.get(r.json()[small_world[0].id]["thumb_256_url"])
        assert Image.open(io.BytesIO(thumb.content)).size[0] <= 256
        assert server.stats() == {"ids": {200: 1, 401: 1}, "thumbs": {200: 1}}
        assert server.cpu_seconds() > before
