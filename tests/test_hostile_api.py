"""A hostile or broken Mapillary, and bad input: the valid records go through, the bad ones are
rejected with a reason, memory and time stay bounded, and where a run cannot go on the user sees
one line and a non-zero exit.

``HostileApi`` is our own small server on 127.0.0.1 answering what a broken or malicious
Mapillary might: impossible values, answers under other ids, ids that are paths, endless or
dripping bodies, a Retry-After of a day, JSON nested 200,000 deep, messages full of brackets.
It follows Mapillary's authentication rules (``docs/MAPILLARY_API.md``) so the client's normal
path is what meets the hostility.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import mapbox_vector_tile
import mercantile
import pytest
from PIL import Image

from citysplat.catalog import Catalog
from citysplat.ingest import ingest_area
from citysplat.mapillary import Area, MapillaryClient, MapillaryConfig

CLI = str(Path(sys.executable).with_name("citysplat"))
TOKEN = "MLY|31337|hostile-test-token"
LON, LAT = -122.4978, 37.7536
TILE = mercantile.tile(LON, LAT, 14)
W, S, E, N = mercantile.bounds(TILE)
BBOX = f"{W + 1e-5:.6f},{S + 1e-5:.6f},{E - 1e-5:.6f},{N - 1e-5:.6f}"  # this one tile
GOOD = [str(4_000_000_000_000_000 + k) for k in range(1, 4)]
MAX_BODY_SECONDS = 30  # every endless or dripping body stops by itself after this long


def jpeg(k: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 48), (40 * k % 256, 90, 160)).save(out, "JPEG")
    return out.getvalue()


def entity(image_id: str, k: int, **changes: Any) -> dict[str, Any]:
    """A well-formed image entity inside :data:`TILE`, with ``changes`` applied."""
    e = {"id": image_id, "sequence": "hostileseq0000000000001", "captured_at": 1_700_000_000_000 + k,
         "geometry": {"type": "Point", "coordinates": [LON + k * 1e-5, LAT + k * 1e-5]},
         "compass_angle": 10.0 * k, "camera_type": "perspective",
         "camera_parameters": [0.8, 0.0, 0.0], "width": 64, "height": 48, "is_pano": False}
    e.update(changes)
    return e


class HostileApi(ThreadingHTTPServer):
    """A Mapillary look-alike whose answers each test shapes (see the module docstring)."""

    daemon_threads = True

    def __init__(self, entities: dict[str, dict[str, Any]], tile_ids: list[Any] | None = None):
        self.entities = entities
        self.tile_ids = list(entities) if tile_ids is None else tile_ids
        self.answer: Callable[[list[str]], bytes | dict] | None = None
        self.tile_mode = "normal"    # normal | endless | drip
        self.thumb_mode: dict[str, str] = {}  # image id -> endless
        self.error: tuple[int, dict] | None = None  # answer every request with this
        self.retry_after: str | None = None  # the first Graph request: 429 with this header
        self.seen: Counter[str] = Counter()
        super().__init__(("127.0.0.1", 0), _Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def config(self, **changes: Any) -> MapillaryConfig:
        return MapillaryConfig(**{"token": TOKEN, "graph_url": self.url,
                                  "tiles_url": f"{self.url}/maps/vtp", "backoff_initial_s": 0.01,
                                  "backoff_max_s": 0.05, "max_attempts": 2, **changes})

    def env(self, home: Path) -> dict[str, str]:
        return {**os.environ, "CITYSPLAT_HOME": str(home), "MAPILLARY_ACCESS_TOKEN": TOKEN,
                "CITYSPLAT_GRAPH_URL": self.url, "CITYSPLAT_TILES_URL": f"{self.url}/maps/vtp",
                "COLUMNS": "250"}

    def tile(self) -> bytes:
        features = []
        for n, raw in enumerate(self.tile_ids):
            e = self.entities.get(str(raw)) or entity("0", n + 7)
            lon, lat = e["geometry"]["coordinates"][:2]
            if not (abs(lon - LON) < 0.01 and abs(lat - LAT) < 0.01):  # the tile's own position
                lon, lat = LON + n * 1e-5, LAT
            x, y = mercantile.xy(lon, lat)
            b = mercantile.xy_bounds(TILE)
            u = max(0, min(4095, round((x - b.left) / (b.right - b.left) * 4096)))
            v = max(0, min(4095, round((y - b.bottom) / (b.top - b.bottom) * 4096)))
            props = {"captured_at": 1_700_000_000_000, "sequence_id": "hostileseq0000000000001",
                     "is_pano": False, "compass_angle": 0}
            if raw is not None:
                props["id"] = raw
            features.append({"geometry": f"POINT({u} {v})", "properties": props, "id": n})
        return mapbox_vector_tile.encode([{"name": "image", "features": features}])


class _Handler(BaseHTTPRequestHandler):
    server: HostileApi
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802
        api = self.server
        parts = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        kind = "tiles" if parts.path.startswith("/maps/vtp/") else \
            "thumbs" if parts.path.startswith("/thumbs/") else "graph"
        api.seen[kind] += 1
        if api.error is not None:
            return self._json(*api.error)
        if kind == "tiles":
            if query.get("access_token") != TOKEN:
                return self._send(403, b"Forbidden", "text/plain")
            if api.tile_mode == "endless":
                return self._endless("application/x-protobuf")
            if api.tile_mode == "drip":
                return self._drip()
            wanted = f"/maps/vtp/mly1_public/2/14/{TILE.x}/{TILE.y}"
            return self._send(200, api.tile() if parts.path == wanted else b"",
                              "application/x-protobuf")
        if kind == "thumbs":
            image_id = parts.path.rsplit("/", 1)[-1].removesuffix(".jpg")
            if api.thumb_mode.get(image_id) == "endless":
                return self._endless("image/jpeg")
            return self._send(200, jpeg(int(image_id) % 7), "image/jpeg")
        if self.headers.get("Authorization") != f"OAuth {TOKEN}":
            return self._json(401, {"error": {"message": "Invalid OAuth 2.0 Access Token",
                                              "type": "MLYApiException", "code": 190}})
        if api.retry_after is not None and api.seen["graph"] == 1:
            return self._json(429, {"error": {"message": "Application request limit reached",
                                              "type": "MLYApiException", "code": 4,
                                              "is_transient": True}},
                              (("Retry-After", api.retry_after),))
        ids = [i for i in query.get("ids", "").split(",") if i]
        answer = api.answer(ids) if api.answer else {
            i: {**api.entities[i], **self._thumbs(i)} for i in ids if i in api.entities}
        if isinstance(answer, bytes):
            return self._send(200, answer, "application/json")
        return self._json(200, answer)

    def _thumbs(self, image_id: str) -> dict[str, str]:
        url = f"{self.server.url}/thumbs/{image_id}.jpg"
        return {f"thumb_{s}_url": url for s in ("256", "1024", "2048", "original")}

    def _json(self, status: int, body: Any, headers: tuple = ()) -> None:
        self._send(status, json.dumps(body).encode(), "application/json", headers)

    def _send(self, status: int, body: bytes, kind: str, headers: tuple = ()) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _endless(self, kind: str) -> None:
        """A body that never ends (no Content-Length), until the client hangs up or the bound."""
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Connection", "close")
        self.end_headers()
        chunk = b"\x1a" * 65536
        stop = time.monotonic() + MAX_BODY_SECONDS
        try:
            while time.monotonic() < stop:
                self.wfile.write(chunk)
        except OSError:
            pass
        self.close_connection = True

    def _drip(self) -> None:
        """One byte every 2 s of a body announced as 100 bytes."""
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "100")
        self.end_headers()
        stop = time.monotonic() + MAX_BODY_SECONDS
        try:
            while time.monotonic() < stop:
                self.wfile.write(b"\x1a")
                self.wfile.flush()
                time.sleep(2)
        except OSError:
            pass
        self.close_connection = True

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def hostile() -> Iterator[Callable[..., HostileApi]]:
    servers: list[HostileApi] = []

    def make(entities: dict[str, dict[str, Any]], tile_ids: list[Any] | None = None):
        server = HostileApi(entities, tile_ids)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.shutdown()
        server.server_close()


def good_entities() -> dict[str, dict[str, Any]]:
    return {i: entity(i, k) for k, i in enumerate(GOOD)}


def area() -> Area:
    return Area.from_bbox([float(v) for v in BBOX.split(",")])


def rejected(root: Path) -> dict[str, str]:
    with Catalog.open_read_only(root / "catalog.duckdb") as catalog:
        frame = catalog.rejected()
    return dict(zip(frame["record"], frame["reason"]))


def stored(root: Path) -> set[str]:
    with Catalog.open_read_only(root / "catalog.duckdb") as catalog:
        return catalog.image_ids()


def one_line_failure(result: subprocess.CompletedProcess, needle: str, code: int = 2) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == code, result.stderr + result.stdout
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert needle in lines[0], lines[0]
    return lines[0]


def run_cli(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([CLI, *args], env=env, capture_output=True, text=True, timeout=timeout)


# -- 1, 2, 3: what comes in is checked -----------------------------------------------------------


@pytest.mark.parametrize("bad", [{"captured_at": 1e300}, {"captured_at": -9e18},
                                 {"width": 1e20}, {"height": -5},
                                 {"geometry": {"type": "Point", "coordinates": [500, 95]}},
                                 {"compass_angle": float("inf")}, {"make": "x" * 5000},
                                 {"camera_parameters": [0.8] * 10_000}])
def test_one_impossible_value_rejects_that_record_and_nothing_else(hostile, tmp_path, bad):
    entities = good_entities()
    bad_id = "4000000000000099"
    entities[bad_id] = entity(bad_id, 9, **bad)
    api = hostile(entities)
    for attempt in range(2):  # a re-run meets the same record and still goes on
        result = ingest_area(area(), api.config(), tmp_path / "catalog.duckdb",
                             data_root=tmp_path, download=True, size=256)
        assert stored(tmp_path) == set(GOOD), attempt
        assert result.downloads.downloaded + result.downloads.skipped == len(GOOD)
        assert result.rejected == 1 and not result.missing and result.complete
    reasons = rejected(tmp_path)
    assert list(reasons) == [bad_id] and reasons[bad_id]


def test_answers_are_matched_to_the_ids_asked_for(hostile, tmp_path):
    entities = good_entities()
    swapped, extra = GOOD[0], "4000000000000777"

    def answer(ids: list[str]) -> dict:
        out = {i: entities[i] for i in ids if i in entities and i != swapped}
        if swapped in ids:  # the listed image answered with another image's entity
            out[swapped] = entities[GOOD[1]]
        out[extra] = entity(extra, 7)  # and one nobody asked for
        return out

    api = hostile(entities)
    api.answer = answer
    result = ingest_area(area(), api.config(), tmp_path / "catalog.duckdb", data_root=tmp_path)
    assert stored(tmp_path) == set(GOOD[1:])  # neither the impostor nor the stowaway
    assert result.missing == [swapped] and not result.complete  # asked twice, then a hole
    reasons = rejected(tmp_path)
    assert reasons[extra] == "answered but not asked for"
    assert reasons[swapped].startswith("answered with the entity of id")


def test_ids_that_are_not_digits_are_rejected_and_the_rest_downloads(hostile, tmp_path):
    hostile_ids = ["../../x", "a/b", "x\x00y", ".", "..", ""]
    api = hostile(good_entities(), tile_ids=[*GOOD, *hostile_ids])
    result = ingest_area(area(), api.config(), tmp_path / "catalog.duckdb", data_root=tmp_path,
                         download=True, size=256)
    assert stored(tmp_path) == set(GOOD)
    assert result.downloads.downloaded == len(GOOD) and not result.downloads.failures
    assert result.tiles_failed == 1  # a hole with its reason: the tile is not fully readable
    assert result.rejected == len(hostile_ids)
    with Catalog.open_read_only(tmp_path / "catalog.duckdb") as catalog:
        tiles = catalog.sql("SELECT status, error FROM tiles")
        frame = catalog.rejected()
    assert "6 of 9 image features have no usable image id" in tiles["error"][0]
    assert set(frame["source"]) == {f"tile mly1_public/14/{TILE.x}/{TILE.y}"}
    assert not (tmp_path.parent / "x").exists()
    files = [p.relative_to(tmp_path).as_posix() for p in (tmp_path / "images").rglob("*.jpg")]
    assert sorted(files) == sorted(f"images/{i[:2]}/{i}.jpg" for i in GOOD)


def test_the_catalog_rejects_malformed_entities_and_keeps_the_rest(tmp_path):
    good = entity(GOOD[0], 0)
    with Catalog(tmp_path / "catalog.duckdb") as catalog:
        stats = catalog.upsert_images([good, {"id": "../../x"}, {"id": "."}, {"sequence": "s"},
                                       "not an entity", {"id": True}, {"id": "4000000000000005",
                                       "sequence": "\ud800"}])
        assert catalog.image_ids() == {GOOD[0]}
        assert stats.inserted == 1 and stats.rejected == 6
        reasons = dict(zip(catalog.rejected()["record"], catalog.rejected()["reason"]))
    assert reasons["../../x"] == "the image id is not decimal digits"
    assert reasons["4000000000000005"].startswith("sequence_id is not text")


# -- 4: every resource bounded -------------------------------------------------------------------


def test_a_world_sized_bbox_is_refused_at_once_with_the_override_named(tmp_path):
    started = time.monotonic()
    result = run_cli("ingest", "--bbox=-180,-85,180,85", env={
        **os.environ, "CITYSPLAT_HOME": str(tmp_path), "MAPILLARY_ACCESS_TOKEN": TOKEN})
    line = one_line_failure(result, "--max-tiles")
    assert "z14 coverage tiles" in line and time.monotonic() - started < 30
    assert not (tmp_path / "catalog.duckdb").exists()


def test_a_geojson_across_the_antimeridian_is_refused_as_the_bbox_is(tmp_path):
    polygon = {"type": "Polygon", "coordinates": [[[179.5, -17], [-179.5, -17], [-179.5, -16],
                                                    [179.5, -16], [179.5, -17]]]}
    path = tmp_path / "fiji.geojson"
    path.write_text(json.dumps(polygon))
    result = run_cli("ingest", f"--geojson={path}", env={
        **os.environ, "CITYSPLAT_HOME": str(tmp_path), "MAPILLARY_ACCESS_TOKEN": TOKEN})
    one_line_failure(result, "antimeridian")


def test_endless_bodies_are_cut_at_their_cap_in_bounded_memory(hostile, tmp_path):
    api = hostile(good_entities())
    api.thumb_mode[GOOD[1]] = "endless"
    home = tmp_path / "home"
    # the CLI runs under a small launcher that reports the peak memory of its own child
    launcher = ("import resource, subprocess, sys; done = subprocess.run(sys.argv[1:]); "
                "print('PEAK_KIB', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); "
                "sys.exit(done.returncode)")
    result = subprocess.run([sys.executable, "-c", launcher, CLI, "ingest", f"--bbox={BBOX}",
                             "--download", "--size=256"], env=api.env(home),
                            capture_output=True, text=True, timeout=MAX_BODY_SECONDS * 3)
    assert result.returncode == 1, result.stderr  # incomplete: one image could not be had
    assert "Traceback" not in result.stderr
    assert stored(home) == set(GOOD)
    with Catalog.open_read_only(home / "catalog.duckdb") as catalog:
        downloads = catalog.downloads().set_index("image_id")
    assert downloads.loc[GOOD[1], "state"] == "failed"
    assert "larger than" in downloads.loc[GOOD[1], "error"]
    assert (downloads.loc[[GOOD[0], GOOD[2]], "state"] == "done").all()
    peak_kib = int(result.stdout.split("PEAK_KIB")[1].split()[0])
    assert 0 < peak_kib < 1024 * 1024, f"{peak_kib} KiB"

    api.thumb_mode.clear()
    api.tile_mode = "endless"
    started = time.monotonic()
    scan = ingest_area(area(), api.config(), tmp_path / "catalog.duckdb", data_root=tmp_path)
    assert scan.tiles_failed == 1 and time.monotonic() - started < MAX_BODY_SECONDS
    with Catalog.open_read_only(tmp_path / "catalog.duckdb") as catalog:
        assert "larger than" in catalog.sql("SELECT error FROM tiles")["error"][0]


def test_a_dripping_server_meets_the_deadline_of_each_request(hostile, tmp_path):
    api = hostile(good_entities())
    api.tile_mode = "drip"  # one byte every 2 s
    started = time.monotonic()
    result = ingest_area(area(), api.config(timeout_s=3, max_attempts=2),
                         tmp_path / "catalog.duckdb", data_root=tmp_path)
    elapsed = time.monotonic() - started
    assert result.tiles_failed == 1 and elapsed < 3 * 2 + 3, elapsed  # 2 attempts of 3 s


def test_a_retry_after_of_a_day_is_capped_and_announced(hostile, tmp_path, caplog):
    api = hostile(good_entities())
    api.retry_after = "100000"
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="citysplat.mapillary"):
        result = ingest_area(area(), api.config(max_retry_after_s=1.5),
                             tmp_path / "catalog.duckdb", data_root=tmp_path)
    assert result.complete and stored(tmp_path) == set(GOOD)
    assert time.monotonic() - started < 10
    announced = [r.getMessage() for r in caplog.records if "rate limited" in r.getMessage()]
    assert announced and "asked for 100000 s" in announced[0] and "waiting 2 s" in announced[0]


def test_json_nested_200000_deep_is_a_failed_batch_not_a_crash(hostile, tmp_path):
    api = hostile(good_entities())
    api.answer = lambda ids: b"[" * 200_000 + b"]" * 200_000

    async def fetch() -> tuple[dict, dict]:
        async with MapillaryClient(api.config()) as client:
            got = await client.entities(GOOD, ["id"], skip_failed=True)
            return got, dict(client.failed_ids)

    got, failed = asyncio.run(fetch())
    assert got == {} and set(failed) == set(GOOD)
    assert all("nested too deeply" in why for why in failed.values())
    result = run_cli("ingest", f"--bbox={BBOX}", env=api.env(tmp_path / "home"))
    assert result.returncode == 1 and "Traceback" not in result.stderr + result.stdout
    assert "incomplete" in result.stdout or "not fetched" in result.stdout


# -- 5, 6: one line, as it is --------------------------------------------------------------------


def test_brackets_in_a_server_message_are_printed_as_they_are(hostile, tmp_path):
    api = hostile(good_entities())
    message = "bad [/x] request [red]here[/red] [redacted] [nan, 1.0]"
    api.error = (400, {"error": {"message": message, "type": "MLYApiException", "code": 100}})
    result = run_cli("ingest", f"--bbox={BBOX}", env=api.env(tmp_path))
    assert message in one_line_failure(result, "HTTP 400")


def test_brackets_in_a_path_are_printed_as_they_are(tmp_path):
    folder = tmp_path / "[red]areas[" / "x]"  # the path reads ".../[red]areas[/x]/..."
    folder.mkdir(parents=True)
    path = folder / "empty [nan, 1].geojson"
    path.write_text(json.dumps({"type": "GeometryCollection", "geometries": []}))
    result = run_cli("ingest", f"--geojson={path}", env={
        **os.environ, "CITYSPLAT_HOME": str(tmp_path / "home"), "MAPILLARY_ACCESS_TOKEN": TOKEN})
    one_line_failure(result, "holds no polygon")
    result = run_cli("coverage", "--out", str(folder), env={
        **os.environ, "CITYSPLAT_HOME": str(tmp_path / "home")})
    one_line_failure(result, f"--out {folder}")


def test_a_data_root_that_cannot_be_written_is_one_line(hostile, tmp_path):
    api = hostile(good_entities())
    result = run_cli("ingest", f"--bbox={BBOX}", env=api.env(Path("/proc/citysplat-data")))
    one_line_failure(result, "cannot use /proc/citysplat-data")


def test_a_damaged_catalog_or_a_folder_in_its_place_is_one_line(hostile, tmp_path):
    api = hostile(good_entities())
    (tmp_path / "folder" / "catalog.duckdb").mkdir(parents=True)
    (tmp_path / "damaged").mkdir()
    (tmp_path / "damaged" / "catalog.duckdb").write_bytes(b"not a database" * 1000)
    for home, needle in ((tmp_path / "folder", "is a folder, not a catalog file"),
                         (tmp_path / "damaged", "is not a DuckDB catalog")):
        for args in (("ingest", f"--bbox={BBOX}"), ("coverage",)):
            one_line_failure(run_cli(*args, env=api.env(home)), needle)


def test_coverage_waits_for_an_ingest_that_holds_the_catalog(tmp_path):
    env = {**os.environ, "CITYSPLAT_HOME": str(tmp_path)}
    writer = Catalog(tmp_path / "catalog.duckdb")  # as an ingest holds it
    try:
        one_line_failure(run_cli("coverage", env=env), "--wait", code=3)
        threading.Timer(2.0, writer.close).start()
        waited = run_cli("coverage", "--wait", "60", env=env)
    finally:
        writer.close()
    assert waited.returncode == 0, waited.stderr
    assert "Coverage of" in waited.stdout


def _mount_tmpfs(where: Path, size: str, *options: str) -> None:
    where.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", ",".join([f"size={size}", *options]),
                           "tmpfs", str(where)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small file system here: {done.stderr.strip()}")


@pytest.fixture
def small_disk(tmp_path) -> Iterator[Path]:
    """A real file system of 2 MiB (tmpfs), unmounted afterwards."""
    where = tmp_path / "disk"
    _mount_tmpfs(where, "2m")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def test_a_full_disk_says_so(hostile, small_disk):
    entities = {str(5_000_000_000_000_000 + k): entity(str(5_000_000_000_000_000 + k), k)
                for k in range(40)}
    api = hostile(entities)
    api.thumb_mode = {}
    noise = Image.frombytes("RGB", (400, 300), os.urandom(400 * 300 * 3))
    out = io.BytesIO()
    noise.save(out, "JPEG", quality=95)
    big = out.getvalue()  # real JPEGs, together far more than the disk holds
    assert len(big) * len(entities) > 4 * 2**20

    def answer(ids: list[str]) -> dict:
        return {i: {**entities[i], "thumb_256_url": f"{api.url}/thumbs/{i}.jpg"} for i in ids}

    api.answer = answer
    original_jpeg = globals()["jpeg"]
    globals()["jpeg"] = lambda k: big if k >= 0 else original_jpeg(k)
    try:
        result = run_cli("ingest", f"--bbox={BBOX}", "--download", "--size=256",
                         env=api.env(small_disk))
    finally:
        globals()["jpeg"] = original_jpeg
    assert result.returncode != 0 and "Traceback" not in result.stderr + result.stdout
    assert "the disk is full" in result.stdout + result.stderr


def test_a_read_only_data_root_is_one_line(hostile, small_disk):
    api = hostile(good_entities())
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    result = run_cli("ingest", f"--bbox={BBOX}", env=api.env(small_disk / "home"))
    one_line_failure(result, "read-only")
