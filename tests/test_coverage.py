"""The completeness report: holes, stale tiles, catalog and download state math, the PNG."""

from __future__ import annotations

import hashlib
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import mercantile
import pytest
from PIL import Image
from rich.console import Console
from shapely.geometry import Point, box

from citysplat.catalog import Catalog
from citysplat.coverage import coverage_report, plot_coverage, print_report

TILESET = "mly1_computed_public"
T0 = datetime(2026, 4, 1, tzinfo=UTC)


def _listings(entities: list[dict]) -> dict[tuple[int, int], list[str]]:
    """What the computed tileset lists per z14 tile (images without a computed pose: none)."""
    out: dict[tuple[int, int], list[str]] = defaultdict(list)
    for e in entities:
        if e.get("computed_geometry"):
            t = mercantile.tile(*e["computed_geometry"]["coordinates"], 14)
            out[(t.x, t.y)].append(e["id"])
    return dict(out)


def _result(x: int, y: int, ids: list[str] | None, when: datetime = T0) -> dict:
    if ids is None:
        return {"tileset": TILESET, "z": 14, "x": x, "y": y, "status": "failed",
                "image_ids": [], "fetched_at": when, "content_sha256": None,
                "error": "HTTP 500 after 5 tries"}
    return {"tileset": TILESET, "z": 14, "x": x, "y": y, "status": "ok", "image_ids": ids,
            "fetched_at": when, "content_sha256": hashlib.sha256(",".join(ids).encode())
            .hexdigest(), "error": None}


@pytest.fixture
def world(small_world, tmp_path: Path):
    """A catalog over the 40-image world, every tile listed except one (a failed fetch)."""
    entities = [w.meta for w in small_world]
    listings = _listings(entities)
    hole = max(listings, key=lambda k: len(listings[k]))  # the busiest tile fails
    path = tmp_path / "data" / "catalog.duckdb"
    with Catalog(path) as cat:
        cat.upsert_images(entities)
        cat.record_tiles([_result(x, y, None if (x, y) == hole else ids)
                          for (x, y), ids in listings.items()])
    return path, entities, listings, hole


def test_failed_tile_is_a_hole_until_listed(world, tmp_path):
    path, entities, listings, hole = world
    with Catalog(path, read_only=True) as cat:
        report = coverage_report(cat, path.parent)
        assert report.tileset == TILESET
        assert [(t.x, t.y) for t in report.holes] == [hole]
        by_tile = {(t.x, t.y): t for t in report.tiles}
        assert len(by_tile) == len(listings)
        h = by_tile[hole]
        assert h.status == "hole" and h.listed is None and h.missing is None
        assert h.catalog_here == len(listings[hole]) and h.error.startswith("HTTP 500")
        for key, ids in listings.items():
            if key != hole:
                t = by_tile[key]
                assert (t.status, t.listed, t.in_catalog, t.missing) == ("ok", len(ids),
                                                                         len(ids), 0)
                assert t.catalog_fraction == 1.0 and t.download_fraction == 0.0
        assert report.unplaced_images == 2  # no computed pose: in no computed tile
        png = plot_coverage(report, cat, tmp_path / "plots" / "coverage.png")
    with Image.open(png) as img:
        img.load()
        assert img.size[0] > 800 and img.size[1] > 400
        title = img.text["Title"]
    assert f"{len(listings)} tiles" in title and "1 hole," in title
    assert not list(png.parent.glob(".*.tmp"))  # written atomically, nothing left behind

    console = Console(record=True, width=200)
    print_report(report, console)
    text = console.export_text()
    assert "HOLE" in text and f"{hole[0]}" in text

    # a later good fetch fills the hole
    with Catalog(path) as cat:
        cat.record_tiles([_result(*hole, listings[hole], T0 + timedelta(hours=2))])
        report = coverage_report(cat, path.parent)
        assert report.holes == [] and report.totals()["ok"] == len(listings)
        assert report.totals()["listed"] == sum(map(len, listings.values()))


def test_stale_unfetched_and_missing(world):
    path, entities, listings, hole = world
    other = next(k for k in listings if k != hole)
    with Catalog(path) as cat:
        # the tile fetched fine once, then failed: its old listing still counts ("stale")
        cat.record_tiles([_result(*other, None, T0 + timedelta(days=1))])
        # a listing naming an image the catalog does not hold yet
        third = next(k for k in listings if k not in (hole, other))
        cat.record_tiles([_result(*third, [*listings[third], "999999999"])])
        # the catalog has images in a tile that was never fetched
        far = {**entities[0], "id": "123", "computed_geometry": {
            "type": "Point", "coordinates": [-122.30, 37.80]}}
        cat.upsert_images([far])
        report = coverage_report(cat, path.parent)
    by_tile = {(t.x, t.y): t for t in report.tiles}
    assert by_tile[other].status == "stale" and by_tile[other].listed == len(listings[other])
    assert by_tile[third].missing == 1 and by_tile[third].listed == len(listings[third]) + 1
    ft = mercantile.tile(-122.30, 37.80, 14)
    assert by_tile[(ft.x, ft.y)].status == "unfetched"
    assert by_tile[(ft.x, ft.y)].catalog_here == 1
    tot = report.totals()
    assert (tot["ok"], tot["stale"], tot["hole"], tot["unfetched"]) == (
        len(listings) - 2, 1, 1, 1)
    assert tot["missing"] == 1
    # an area restricts the report to the tiles it touches
    w, s, e, n = mercantile.bounds(*other, 14)
    inner = box(w + 1e-4, s + 1e-4, e - 1e-4, n - 1e-4)
    with Catalog(path, read_only=True) as cat:
        assert [(t.x, t.y) for t in coverage_report(cat, path.parent, area=inner).tiles] == [other]
        assert len(coverage_report(cat, path.parent, area=(w, s, e, n)).tiles) >= 1


def test_download_state_math(world):
    path, entities, listings, hole = world
    root = path.parent
    ok_tile = next(k for k in listings if k != hole)
    ids = listings[ok_tile]
    assert len(ids) >= 4
    records = []
    for k, image_id in enumerate(ids[:4]):
        rel = f"images/{image_id[:2]}/{image_id}.jpg"
        data = b"x" * (100 + k)
        if k != 1:  # k == 1: recorded done, file lost
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_bytes(data if k != 2 else data[:-1])  # k == 2: wrong size
        records.append({"image_id": image_id, "state": "done", "path": rel,
                        "size_label": "thumb_1024", "bytes": len(data),
                        "sha256": hashlib.sha256(data).hexdigest(), "error": None})
    records.append({"image_id": ids[4] if len(ids) > 4 else "0", "state": "failed",
                    "path": None, "size_label": "thumb_1024", "bytes": None, "sha256": None,
                    "error": "HTTP 404"})
    hole_ids = listings[hole][:2]
    for image_id in hole_ids:  # downloads in the hole still count, against the catalog there
        rel = f"images/{image_id}.jpg"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"abc")
        records.append({"image_id": image_id, "state": "done", "path": rel,
                        "size_label": "thumb_1024", "bytes": 3, "sha256": "", "error": None})
    with Catalog(path) as cat:
        cat.record_downloads(records)
        district = box(*mercantile.bounds(*ok_tile, 14))
        report = coverage_report(cat, root, districts={"one tile": district})
        assert len(cat.pending_download_ids()) == len(entities) - 6  # 6 "done" records
    by_tile = {(t.x, t.y): t for t in report.tiles}
    t = by_tile[ok_tile]
    assert t.downloaded == 2  # k = 0 and 3: present with the recorded size
    assert t.download_failed == (1 if len(ids) > 4 else 0)
    assert t.download_fraction == pytest.approx(2 / len(ids))
    assert by_tile[hole].downloaded == 2 and by_tile[hole].listed is None
    assert report.totals()["downloaded"] == 4
    (d,) = report.districts
    assert d.tiles >= 1 and d.holes == 0
    # images without a computed pose are placed by their GPS position in a district, but no
    # computed tile lists them
    inside = [e for e in entities if district.covers(Point(*(
        e.get("computed_geometry") or e["geometry"])["coordinates"]))]
    assert d.in_catalog == len(inside) and d.listed_in_catalog == len(ids)
    assert d.downloaded == 2 and d.download_fraction == pytest.approx(2 / len(inside))
    rows = report.table()
    assert {r["tile"] for r in rows} == {f"14/{x}/{y}" for x, y in listings}
    assert report.district_table()[0]["name"] == "one tile"


def test_district_names_from_catalog(world, tmp_path):
    path, entities, listings, hole = world
    poly = box(*mercantile.bounds(*hole, 14))
    with Catalog(path) as cat:
        ids = list(cat.images_in_polygon(poly)["id"])
        cat.set_district("hole district", poly, ids)
        report = coverage_report(cat, path.parent, districts=["hole district"])
        (d,) = report.districts
        assert d.holes == 1 and d.in_catalog == len(ids)
        assert d.missing_in_tiles == 0
        png = plot_coverage(report, cat, tmp_path / "d.png")
        with pytest.raises(KeyError):
            coverage_report(cat, path.parent, districts=["nope"])
    assert Image.open(png).format == "PNG"
