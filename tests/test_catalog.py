"""The DuckDB catalog: round trips, idempotent upserts, locking, spatial queries, ledgers."""

from __future__ import annotations

import copy
import json
import math
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import mercantile
import numpy as np
import pandas as pd
import pytest
from shapely.geometry import Point, Polygon, box

from citysplat.catalog import Catalog, CatalogLockedError, read_only_snapshot, tile_xy
from citysplat.catalog.normalize import hilbert_index

LOCK_MESSAGE = ("catalog.duckdb is being written by another process (ingest or a Dagster run); "
                "wait for it, or open read-only")


@pytest.fixture
def cat_path(tmp_path: Path) -> Path:
    return tmp_path / "catalog.duckdb"


def _expected_columns(e: dict) -> dict:
    """What the images row of entity ``e`` must hold, column by column."""
    g = (e.get("geometry") or {}).get("coordinates") or [None, None]
    cg = (e.get("computed_geometry") or {}).get("coordinates") or [None, None]
    creator = e.get("creator") or {}
    tile = mercantile.tile(*g, 14) if g[0] is not None else (None, None)
    ctile = mercantile.tile(*cg, 14) if cg[0] is not None else (None, None)
    return {
        "id": e["id"], "sequence_id": e.get("sequence"), "captured_at_ms": e.get("captured_at"),
        "captured_at": datetime.fromtimestamp(e["captured_at"] / 1000, UTC),
        "lon": g[0], "lat": g[1], "computed_lon": cg[0], "computed_lat": cg[1],
        "altitude": e.get("altitude"), "computed_altitude": e.get("computed_altitude"),
        "compass_angle": e.get("compass_angle"),
        "computed_compass_angle": e.get("computed_compass_angle"),
        "computed_rotation": e.get("computed_rotation"), "camera_type": e.get("camera_type"),
        "camera_parameters": e.get("camera_parameters"), "make": e.get("make"),
        "model": e.get("model"), "width": e.get("width"), "height": e.get("height"),
        "is_pano": e.get("is_pano"), "exif_orientation": e.get("exif_orientation"),
        "creator_id": creator.get("id"), "creator_username": creator.get("username"),
        "organization_id": e.get("organization_id"),
        # fields without a column of their own (merge_cc) are kept, exactly, as JSON
        "extra": json.dumps({"merge_cc": e["merge_cc"]}) .replace(" ", "")
        if "merge_cc" in e else None,
        "tile_x": tile[0], "tile_y": tile[1], "computed_tile_x": ctile[0],
        "computed_tile_y": ctile[1],
        "pos_lon": cg[0] if cg[0] is not None else g[0],
        "pos_lat": cg[1] if cg[0] is not None else g[1],
    }


def _same(actual, expected) -> bool:
    if expected is None:
        return actual is None or (isinstance(actual, float) and math.isnan(actual)) \
            or actual is pd.NaT or actual is pd.NA
    if isinstance(expected, list):
        return actual is not None and list(np.asarray(actual, dtype=float)) == expected
    if isinstance(expected, datetime):
        return pd.Timestamp(actual) == pd.Timestamp(expected)
    if isinstance(expected, bool):
        return bool(actual) is expected
    return actual == expected


def test_upsert_round_trips_every_field(tiny_city, cat_path):
    entities = tiny_city.metadata
    with Catalog(cat_path) as cat:
        stats = cat.upsert_images(entities)
        assert (stats.inserted, stats.updated, stats.unchanged) == (len(entities), 0, 0)
        assert cat.image_ids() == {e["id"] for e in entities}
        rows = {r["id"]: r for r in cat.images().to_dict("records")}
        for e in entities:
            row = rows[e["id"]]
            for column, value in _expected_columns(e).items():
                assert _same(row[column], value), (e["id"], column, row[column], value)
            assert row["content_hash"] and row["first_seen_at"] == row["updated_at"]
        # and back to API v4 entities, exactly
        assert cat.entities() == sorted(entities, key=lambda e: e["id"])


def test_upsert_twice_changes_nothing(tiny_city, cat_path):
    entities = tiny_city.metadata
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    with Catalog(cat_path) as cat:
        cat.upsert_images(entities, now=t0)
        before = cat.images()
        seq_before = cat.sequences()
        stats = cat.upsert_images(copy.deepcopy(entities), now=t0 + timedelta(days=1))
        assert (stats.inserted, stats.updated, stats.unchanged) == (0, 0, len(entities))
        pd.testing.assert_frame_equal(cat.images(), before)
        pd.testing.assert_frame_equal(cat.sequences(), seq_before)
        assert cat.counts()["images"] == len(entities)


def test_changed_entity_updates_only_that_row(tiny_city, cat_path):
    entities = copy.deepcopy(tiny_city.metadata)
    t0, t1 = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 2, 1, tzinfo=UTC)
    with Catalog(cat_path) as cat:
        cat.upsert_images(entities, now=t0)
        before = cat.images().set_index("id")
        changed = entities[5]
        changed["computed_compass_angle"] = (changed["computed_compass_angle"] + 10) % 360
        # thumbnail URLs expire and change on every fetch: they are neither stored nor hashed
        for e in entities:
            e["thumb_1024_url"] = "https://scontent.example/t.jpg?access_token=SECRET123"
        stats = cat.upsert_images(entities, now=t1)
        assert (stats.inserted, stats.updated, stats.unchanged) == (0, 1, len(entities) - 1)
        after = cat.images().set_index("id")
        moved = after.index == changed["id"]
        assert (after.loc[moved, "updated_at"] == pd.Timestamp(t1)).all()
        assert (after.loc[~moved, "updated_at"] == pd.Timestamp(t0)).all()
        assert (after["first_seen_at"] == pd.Timestamp(t0)).all()
        assert after.loc[changed["id"], "computed_compass_angle"] == \
            changed["computed_compass_angle"]
        assert after.loc[changed["id"], "content_hash"] != before.loc[changed["id"],
                                                                      "content_hash"]
        assert not after["extra"].str.contains("thumb|SECRET").any()
    assert b"SECRET123" not in cat_path.read_bytes()


def test_unprocessed_images_and_extra_fields(small_world, cat_path):
    entities = [dict(w.meta) for w in small_world]
    entities[0] = {**entities[0], "quality_score": 0.7, "thumb_256_url": "https://x/y?token=1"}
    with Catalog(cat_path) as cat:
        cat.upsert_images(entities)
        rows = cat.images().set_index("id")
        bare = [e for e in entities if "computed_geometry" not in e]
        assert len(bare) == 2
        for e in bare:
            r = rows.loc[e["id"]]
            assert pd.isna(r["computed_lon"]) and pd.isna(r["computed_tile_x"])
            assert r["pos_lon"] == e["geometry"]["coordinates"][0]
            assert _same(r["computed_rotation"], None)
        merge_cc = entities[0]["merge_cc"]
        assert rows.loc[entities[0]["id"], "extra"] == \
            f'{{"merge_cc":{merge_cc},"quality_score":0.7}}'
        back = {e["id"]: e for e in cat.entities()}
        assert back[entities[0]["id"]]["quality_score"] == 0.7
        assert "thumb_256_url" not in back[entities[0]["id"]]
        assert cat.counts()["images_without_computed"] == 2


def test_batches_duplicates_and_sequences(tiny_city, cat_path):
    entities = copy.deepcopy(tiny_city.metadata)
    dup = {**entities[3], "compass_angle": 1.0}
    with Catalog(cat_path) as cat:
        stats = cat.upsert_images([*entities, dup], batch_size=10)  # many pipelined batches
        assert stats.inserted == len(entities) and stats.updated == 1
        assert cat.images([dup["id"]])["compass_angle"].item() == 1.0
        seqs = cat.sequences().set_index("id")
        truth = tiny_city.sequences()
        assert set(seqs.index) == set(truth)
        for sid, ids in truth.items():
            assert seqs.loc[sid, "image_count"] == len(ids)
        # move an image to a new sequence: both sequences are refreshed
        moved = {**entities[0], "sequence": "NEWSEQ"}
        cat.upsert_images([moved])
        seqs = cat.sequences().set_index("id")
        assert seqs.loc["NEWSEQ", "image_count"] == 1
        assert seqs.loc[entities[0]["sequence"], "image_count"] == \
            len(truth[entities[0]["sequence"]]) - 1
        assert cat.refresh_sequences() == len(truth) + 1
        # re-sorting the table keeps every row, and the primary key still guards upserts
        before = cat.images()
        cat.optimize()
        pd.testing.assert_frame_equal(cat.images(), before)
        assert cat.upsert_images([moved]).unchanged == 1
        assert cat.upsert_images([{**moved, "compass_angle": 2.0}]).updated == 1


_HOLDER = textwrap.dedent("""
    import sys
    import citysplat
    from citysplat.catalog import Catalog
    with Catalog(sys.argv[1]) as cat:
        print("ready", flush=True)
        sys.stdin.readline()
""")


def test_second_writer_gets_a_clear_lock_error(cat_path):
    Catalog(cat_path).close()
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(cat_path)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        with pytest.raises(CatalogLockedError) as err:
            Catalog(cat_path)
        assert str(err.value) == LOCK_MESSAGE
        assert "lock" in err.value.detail.lower()
        with pytest.raises(CatalogLockedError, match="being written by another process"):
            Catalog(cat_path, read_only=True)
        with pytest.raises(CatalogLockedError):
            Catalog(cat_path, wait_s=0.3)  # waits a little, then gives up
    finally:
        holder.stdin.write("\n")
        holder.stdin.flush()
        holder.wait(timeout=30)
    with read_only_snapshot(cat_path, wait_s=5) as cat:  # the writer is gone
        assert cat.counts()["images"] == 0


def test_read_only_opens(tiny_city, cat_path):
    with pytest.raises(FileNotFoundError):
        Catalog(cat_path, read_only=True)
    with Catalog(cat_path) as cat:
        cat.upsert_images(tiny_city.metadata)
    with Catalog.open_read_only(cat_path) as a, Catalog(cat_path, read_only=True) as b:
        assert a.counts() == b.counts()
        assert len(a.images_in_bbox(-180, -90, 180, 90)) == len(tiny_city.metadata)
        with pytest.raises(PermissionError):
            a.upsert_images(tiny_city.metadata)
    with Catalog(cat_path) as cat:  # readers closed: writable again
        assert cat.upsert_images(tiny_city.metadata).unchanged == len(tiny_city.metadata)


def _brute(entities: list[dict], geom, computed: bool) -> set[str]:
    out = set()
    for e in entities:
        g = e.get("computed_geometry") if computed and e.get("computed_geometry") \
            else e["geometry"]
        if geom.covers(Point(*g["coordinates"])):
            out.add(e["id"])
    return out


def test_polygon_and_bbox_queries_match_brute_force(tiny_city, small_world, cat_path):
    entities = tiny_city.metadata + [w.meta for w in small_world]
    rng = np.random.default_rng(7)
    with Catalog(cat_path) as cat:
        cat.upsert_images(entities)
        for k in range(25):
            anchor = entities[int(rng.integers(len(entities)))]
            lon, lat = anchor["geometry"]["coordinates"]
            r = rng.uniform(0.0005, 0.004)
            angles = np.sort(rng.uniform(0, 2 * np.pi, 7))
            poly = Polygon([(lon + r * np.cos(a) * rng.uniform(0.5, 1.5),
                             lat + r * np.sin(a) * rng.uniform(0.5, 1.5)) for a in angles])
            poly = poly if poly.is_valid else poly.convex_hull
            computed = bool(k % 2)
            got = cat.images_in_polygon(poly, computed=computed)
            assert set(got["id"]) == _brute(entities, poly, computed)
            assert list(got["id"]) == sorted(got["id"])
            as_geojson = {"type": "Feature", "geometry": poly.__geo_interface__}
            assert list(cat.images_in_polygon(as_geojson, computed=computed,
                                              columns=["sequence_id"])["id"]) == list(got["id"])
            w, s, e, n = poly.bounds
            in_box = cat.images_in_bbox(w, s, e, n, computed=computed)
            assert set(in_box["id"]) == _brute(entities, box(w, s, e, n), computed)


def test_tile_listings_survive_failed_fetches(cat_path):
    t0 = datetime(2026, 3, 1, tzinfo=UTC)
    ok = SimpleNamespace(tileset="mly1_computed_public", z=14, x=2616, y=6333, status="ok",
                         image_ids=["3", "1", "2", "1"], fetched_at=t0, content_sha256="abc",
                         error=None)
    failed = SimpleNamespace(tileset="mly1_computed_public", z=14, x=2616, y=6333,
                             status="failed", image_ids=[], fetched_at=t0 + timedelta(hours=1),
                             content_sha256=None, error="HTTP 500")
    with Catalog(cat_path) as cat:
        assert cat.record_tiles([ok]) == 1
        assert cat.tile_listing("mly1_computed_public", 14, 2616, 6333) == ["1", "2", "3"]
        cat.record_tiles([failed])
        row = cat.tiles().iloc[0]
        assert row["status"] == "failed" and row["error"] == "HTTP 500"
        assert row["image_count"] == 3 and row["content_sha256"] == "abc"
        assert row["last_ok_at"] == pd.Timestamp(t0)
        assert row["fetched_at"] == pd.Timestamp(t0 + timedelta(hours=1))
        assert cat.tile_listing("mly1_computed_public", 14, 2616, 6333) == ["1", "2", "3"]
        # a new good listing replaces the old one
        cat.record_tiles([{**vars(ok), "image_ids": ["4"], "fetched_at": t0 + timedelta(days=1)}])
        assert cat.tile_listing("mly1_computed_public", 14, 2616, 6333) == ["4"]
        assert cat.tiles().iloc[0]["error"] is None
        assert cat.listed_ids() == {"4"}
        with pytest.raises(ValueError):
            cat.record_tiles([{**vars(ok), "status": "maybe"}])


def test_downloads_ledger(tiny_city, cat_path):
    ids = sorted(e["id"] for e in tiny_city.metadata)
    root = cat_path.parent
    with Catalog(cat_path) as cat:
        cat.upsert_images(tiny_city.metadata)
        cat.record_downloads([
            SimpleNamespace(image_id=ids[0], state="done", path=f"images/{ids[0][:2]}/{ids[0]}.jpg",
                            size_label="thumb_1024", bytes=1234, sha256="aa", error=None),
            {"image_id": ids[1], "state": "done", "path": root / "images" / f"{ids[1]}.jpg",
             "size_label": "thumb_1024", "bytes": 99, "sha256": "bb", "error": None},
            {"image_id": ids[2], "state": "failed", "path": None, "size_label": "thumb_1024",
             "bytes": None, "sha256": None, "error": "HTTP 404"},
        ])
        done = cat.done(ids[:4])
        assert done == {ids[0]: (f"images/{ids[0][:2]}/{ids[0]}.jpg", "aa", 1234),
                        ids[1]: (f"images/{ids[1]}.jpg", "bb", 99)}
        assert cat.pending_download_ids() == ids[2:]
        assert cat.pending_download_ids([ids[0], ids[2], "999"]) == [ids[2], "999"]
        # a retry that succeeds replaces the failure (record() is the ledger alias)
        cat.record([{"image_id": ids[2], "state": "done", "path": f"images/{ids[2]}.jpg",
                     "size_label": "thumb_1024", "bytes": 5, "sha256": "cc", "error": None}])
        assert set(cat.done()) == set(ids[:3])
        counts = cat.counts()
        assert counts["downloads_done"] == 3 and counts["downloads_failed"] == 0
        with pytest.raises(ValueError, match="outside the data root"):
            cat.record([{"image_id": ids[3], "state": "done", "path": "/elsewhere/x.jpg"}])


def test_districts(tiny_city, cat_path):
    poly = box(-122.505, 37.759, -122.502, 37.762)
    with Catalog(cat_path) as cat:
        cat.upsert_images(tiny_city.metadata)
        inside = list(cat.images_in_polygon(poly)["id"])
        cat.set_district("block", poly, inside)
        assert cat.district_image_ids("block") == sorted(inside)
        assert cat.districts()["block"]["type"] == "Polygon"
        cat.set_district("block", poly.__geo_interface__, inside[:2])
        assert cat.district_image_ids("block") == sorted(inside[:2])
        assert cat.district_image_ids("nowhere") == []
        assert cat.counts()["districts"] == 1


def test_tiles_and_spatial_key_helpers():
    rng = np.random.default_rng(3)
    lon = rng.uniform(-179.9, 179.9, 2000)
    lat = rng.uniform(-84, 84, 2000)
    tx, ty = tile_xy(lon, lat)
    for a, b, x, y in zip(lon, lat, tx, ty):
        t = mercantile.tile(a, b, 14)
        assert (t.x, t.y) == (int(x), int(y))
    # the Hilbert index is a bijection of the grid whose consecutive cells are neighbours
    g = np.arange(16)
    xs, ys = np.meshgrid(g, g)
    d = hilbert_index(xs.ravel(), ys.ravel(), 4)
    assert sorted(d) == list(range(256))
    order = np.argsort(d)
    steps = np.abs(np.diff(xs.ravel()[order])) + np.abs(np.diff(ys.ravel()[order]))
    assert (steps == 1).all()
