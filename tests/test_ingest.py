"""Ingest acceptance: with every fault on, the catalog equals the ground truth; crashes lose
nothing; holes show and re-runs fill them; the token never lands anywhere."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from citysplat.catalog import Catalog
from citysplat.coverage import coverage_report
from citysplat.demo import city_area
from citysplat.ingest import ingest_area
from citysplat.layout import DataLayout
from citysplat.mapillary import MapillaryConfig
from citysplat.mapillary.redaction import token_forms

CLI = str(Path(sys.executable).with_name("citysplat"))
ALL_FAULTS = ("rate_limit=200/s,query_timeout=0.05,server_error=0.05,reset=0.03,"
              "truncate=0.08,empty_data=0.05")


def _config(server, **kw) -> MapillaryConfig:
    return server.client_config(backoff_initial_s=0.05, backoff_max_s=0.5, **kw)


def _truth_ok(city) -> set[str]:
    return {i for i, c in city.cameras.items() if c["quality"] != "truncated"}


def _check_store(root: Path, catalog: Catalog, expect_done: set[str]) -> None:
    frame = catalog.downloads()
    done = frame[frame["state"] == "done"]
    assert set(done["image_id"]) == expect_done
    for row in done.itertuples():
        data = (root / row.path).read_bytes()
        assert hashlib.sha256(data).hexdigest() == row.sha256
        with Image.open(root / row.path) as im:
            im.load()  # decodes fully
    leftovers = [p for p in root.rglob("*") if p.is_file()
                 and (".partial" in p.parts or p.name.endswith(".tmp"))]
    assert leftovers == []


@pytest.mark.parametrize("limit_status", [429, 403])  # the live API answers the limit as either
def test_all_faults_on_the_catalog_equals_the_ground_truth(tiny_city, make_mapillary_server,
                                                           tmp_path, limit_status):
    server = make_mapillary_server(tiny_city.world_images(), seed=3, thumb_ttl_s=2,
                                   faults=ALL_FAULTS.replace("200/s", "20/s,rate_burst=3")
                                   + f",rate_limit_status={limit_status}")
    result = ingest_area(city_area(tiny_city), _config(server), tmp_path / "catalog.duckdb",
                         data_root=tmp_path, download=True, size="original")
    assert server.stats.faults  # faults really happened
    assert server.stats.faults.get("rate_limit", 0) > 0  # answered with limit_status
    truth = {m["id"] for m in tiny_city.metadata}
    with Catalog.open_read_only(tmp_path / "catalog.duckdb") as catalog:
        ids = catalog.sql("SELECT id FROM images")["id"].tolist()
        assert len(ids) == len(set(ids))  # no duplicates
        assert set(ids) == truth
        stored = {e["id"]: e for e in catalog.entities()}
        for meta in tiny_city.metadata:
            for key, value in meta.items():
                if value is not None and key != "merge_cc":  # merge_cc is not catalogued
                    assert stored[meta["id"]][key] == value, key
        _check_store(tmp_path, catalog, _truth_ok(tiny_city))
    assert result.tiles_failed == 0 and not result.missing
    # the city's deliberately truncated JPEGs are reported, not hidden
    assert set(result.downloads.failures) == truth - _truth_ok(tiny_city)


def test_running_ingest_twice_changes_nothing(tiny_city, make_mapillary_server, tmp_path):
    server = make_mapillary_server(tiny_city.world_images())
    args = (city_area(tiny_city), _config(server), tmp_path / "catalog.duckdb")
    first = ingest_area(*args, data_root=tmp_path, download=True, size=256)
    with Catalog.open_read_only(tmp_path / "catalog.duckdb") as catalog:
        before = catalog.sql("SELECT id, content_hash, updated_at FROM images ORDER BY id")
    second = ingest_area(*args, data_root=tmp_path, download=True, size=256, refresh=True)
    with Catalog.open_read_only(tmp_path / "catalog.duckdb") as catalog:
        after = catalog.sql("SELECT id, content_hash, updated_at FROM images ORDER BY id")
    assert first.upsert.inserted == len(tiny_city.metadata)
    assert second.upsert.inserted == 0 and second.upsert.updated == 0
    assert second.upsert.unchanged == len(tiny_city.metadata)
    assert before.equals(after)
    assert second.downloads.downloaded == 0


def test_a_dropped_tile_is_a_hole_until_a_rerun_fills_it(tiny_city, make_mapillary_server,
                                                         tmp_path):
    server = make_mapillary_server(tiny_city.world_images(), faults="drop_tiles=0.5,"
                                   "drop_tiles_for=3", seed=1)
    area = city_area(tiny_city)
    path = tmp_path / "catalog.duckdb"
    first = ingest_area(area, _config(server, max_attempts=2), path, data_root=tmp_path)
    assert first.tiles_failed >= 1
    with Catalog.open_read_only(path) as catalog:
        report = coverage_report(catalog, tmp_path, area=area.geometry)
        assert len(report.holes) == first.tiles_failed
        assert catalog.image_ids() < {m["id"] for m in tiny_city.metadata}
    second = ingest_area(area, _config(server, max_attempts=3), path, data_root=tmp_path)
    assert second.tiles_failed == 0
    with Catalog.open_read_only(path) as catalog:
        assert coverage_report(catalog, tmp_path, area=area.geometry).holes == []
        assert catalog.image_ids() == {m["id"] for m in tiny_city.metadata}


def _env(server, home: Path) -> dict[str, str]:
    return {**os.environ, "CITYSPLAT_HOME": str(home), "MAPILLARY_ACCESS_TOKEN": server.token,
            "CITYSPLAT_GRAPH_URL": server.graph_url, "CITYSPLAT_TILES_URL": server.tiles_url,
            "COLUMNS": "200"}


def _bbox(city) -> str:
    return ",".join(f"{v:.7f}" for v in city_area(city).bounds)


@pytest.mark.slow
def test_kill_9_during_download_then_rerun_completes(sample_city, make_mapillary_server,
                                                     tmp_path):
    server = make_mapillary_server(sample_city.world_images(), latency_ms=40)
    env = _env(server, tmp_path)
    cmd = [CLI, "ingest", f"--bbox={_bbox(sample_city)}", "--download", "--size", "original"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline and len(list((tmp_path / "images").glob("*/*.jpg"))) < 20:
        assert proc.poll() is None, proc.stderr.read().decode()
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    partial = len(list((tmp_path / "images").glob("*/*.jpg")))
    assert 20 <= partial < len(sample_city.metadata)  # killed mid-download

    rerun = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    truth = {m["id"] for m in sample_city.metadata}
    with Catalog.open_read_only(tmp_path / "catalog.duckdb") as catalog:
        ids = catalog.sql("SELECT id FROM images")["id"].tolist()
        assert len(ids) == len(set(ids)) and set(ids) == truth
        _check_store(tmp_path, catalog, _truth_ok(sample_city))
    files = list((tmp_path / "images").glob("*/*.jpg"))
    assert len(files) == len(_truth_ok(sample_city))  # nothing doubled, nothing partial


def test_the_token_never_lands_in_logs_catalog_or_metadata(tiny_city, make_mapillary_server,
                                                           tmp_path):
    import dagster as dg

    from assets.ingest import downloaded_images, image_catalog, image_coverage
    from assets.resources import CitysplatStorage, IngestArea, MapillaryApi

    token = "MLY|4242424242|sEcReT-tOkEn-do-not-leak"
    server = make_mapillary_server(tiny_city.world_images(), token=token,
                                   faults="query_timeout=0.1,server_error=0.1")
    home = tmp_path / "cli"
    cli = subprocess.run([CLI, "-v", "ingest", f"--bbox={_bbox(tiny_city)}", "--download"],
                         env=_env(server, home), capture_output=True, text=True, timeout=300)
    assert cli.returncode in (0, 1), cli.stderr  # 1: the city's truncated JPEG
    assert "GET" in cli.stderr or "HTTP" in cli.stderr  # verbose logging really ran
    forms = token_forms(token)  # plain and URL-encoded: tile URLs carry it as access_token=
    assert not any(f in cli.stdout + cli.stderr for f in forms)

    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir()
    instance = dg.DagsterInstance.local_temp(str(dagster_home))
    result = dg.materialize(
        [image_catalog, image_coverage, downloaded_images], instance=instance,
        resources={
            "mapillary": MapillaryApi(graph_url=server.graph_url, tiles_url=server.tiles_url,
                                      access_token=token),
            "area": IngestArea(bbox=_bbox(tiny_city)),
            "storage": CitysplatStorage(root=str(tmp_path / "dagster_data")),
        },
    )
    assert result.success
    events = "\n".join(repr(e) for e in result.all_events)
    assert "images_in_catalog" in events and not any(f in events for f in forms)
    secrets = [f.encode() for f in forms]
    scanned = 0
    for root in (home, tmp_path / "dagster_data", dagster_home):
        for path in root.rglob("*"):
            if path.is_file():
                scanned += 1
                data = path.read_bytes()
                assert not any(s in data for s in secrets), path
    assert scanned > len(tiny_city.metadata)  # images, catalogs, run storage, compute logs


def test_a_field_the_api_refuses_is_named_once_and_left_empty(tiny_city, make_mapillary_server,
                                                              tmp_path):
    """Field names drift (the live API refused organization_id in 2026): ingest goes on without
    the refused field, says so once, and fills every other column."""
    server = make_mapillary_server(tiny_city.world_images(), refused_fields={"make"})
    home = tmp_path / "home"
    cli = subprocess.run([CLI, "ingest", f"--bbox={_bbox(tiny_city)}"], env=_env(server, home),
                         capture_output=True, text=True, timeout=300)
    assert cli.returncode == 0, cli.stderr
    warnings = [line for line in cli.stderr.splitlines() if "'make'" in line]
    assert len(warnings) == 1 and "continuing without it" in warnings[0], cli.stderr
    assert "fields the API refused" in cli.stdout and "make" in cli.stdout
    with Catalog.open_read_only(home / "catalog.duckdb") as catalog:
        stored = {e["id"]: e for e in catalog.entities()}
    assert set(stored) == {m["id"] for m in tiny_city.metadata}
    for meta in tiny_city.metadata:
        assert "make" not in stored[meta["id"]]
        assert stored[meta["id"]]["model"] == meta["model"]
        assert stored[meta["id"]]["captured_at"] == meta["captured_at"]


def test_downloaded_images_downloads_the_catalog_without_enumerating_the_area_again(
        tiny_city, make_mapillary_server, tmp_path):
    """One new-imagery run: ``image_catalog`` reads the coverage tiles once, and
    ``downloaded_images`` downloads what the catalog holds for the area with no tile request
    of its own (its only Graph requests are the fresh thumbnail URLs of each batch)."""
    import dagster as dg

    from assets.ingest import downloaded_images, image_catalog
    from assets.resources import CitysplatStorage, IngestArea, MapillaryApi

    server = make_mapillary_server(tiny_city.world_images())
    resources = {
        "mapillary": MapillaryApi(graph_url=server.graph_url, tiles_url=server.tiles_url,
                                  access_token=server.token),
        "area": IngestArea(bbox=_bbox(tiny_city)),
        "storage": CitysplatStorage(root=str(tmp_path / "data")),
    }
    instance = dg.DagsterInstance.ephemeral()
    assert dg.materialize([image_catalog], instance=instance, resources=resources).success
    tiles = server.stats.count("tiles")
    assert tiles > 0
    result = dg.materialize([image_catalog, downloaded_images], instance=instance,
                            resources=resources, selection=[downloaded_images])
    assert result.success
    assert server.stats.count("tiles") == tiles
    metadata = result.asset_materializations_for_node("downloaded_images")[0].metadata
    with Catalog.open_read_only(DataLayout(tmp_path / "data").catalog_path) as catalog:
        done = catalog.done()
    assert metadata["downloaded"].value == len(done) == len(_truth_ok(tiny_city))
