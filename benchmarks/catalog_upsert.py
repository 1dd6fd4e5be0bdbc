"""Catalog benchmark: bulk upsert of a synthetic city and district queries, against naive
baselines measured in the same run.

    .venv/bin/python benchmarks/catalog_upsert.py --rows 1000000 --repeats 5

* upsert: ``Catalog.upsert_images`` of ``--rows`` entities into a fresh file, then the same
  entities again (all unchanged). Baseline: a row-by-row ``executemany`` upsert (each entity
  hashed from its JSON in Python, one ``INSERT ... ON CONFLICT`` per row) of ``--naive-rows``
  entities, extrapolated linearly to ``--rows``.
* query: ``Catalog.images_in_polygon`` for ``--repeats`` district polygons (about 400 m across)
  at random image positions. Baseline: a full scan of the entity list in Python (bbox test, then
  shapely ``covers`` per point). Both must return the same ids.

Entities are made with numpy (sequences as random walks, no rendering); their generation is
timed separately and not counted in the upsert.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import math
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import numpy as np
from shapely.geometry import Point, Polygon

import citysplat  # noqa: F401  (zlib before anything that might pull pycolmap)
from citysplat.catalog import Catalog
from citysplat.catalog.schema import images_ddl

CENTER = (-122.44, 37.76)
M_PER_DEG_LAT = 111_320.0


def synthetic_entities(n: int, seed: int = 0, city_km: float = 20.0) -> list[dict]:
    """``n`` API v4 image entities in sequences of 50-400 images walking a ``city_km`` square
    (steps of 2-5 m, gentle turns); 3% have no computed pose, 5% are panoramas."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(50, 400, size=n // 50 + 10)
    lengths = lengths[: np.searchsorted(np.cumsum(lengths), n) + 1]
    lengths[-1] -= lengths.sum() - n
    seq_index = np.repeat(np.arange(len(lengths)), lengths)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    m_per_deg_lon = M_PER_DEG_LAT * math.cos(math.radians(CENTER[1]))
    half = city_km * 500.0
    heading = rng.uniform(0, 2 * math.pi, len(lengths))[seq_index] + np.cumsum(
        rng.normal(0, 0.05, n))
    step = rng.uniform(2, 5, n)
    dx, dy = step * np.sin(heading), step * np.cos(heading)
    cx, cy = np.cumsum(dx), np.cumsum(dy)
    x0 = rng.uniform(-half, half, len(lengths))[seq_index] + cx - cx[starts][seq_index]
    y0 = rng.uniform(-half, half, len(lengths))[seq_index] + cy - cy[starts][seq_index]
    lon = CENTER[0] + x0 / m_per_deg_lon
    lat = CENTER[1] + y0 / M_PER_DEG_LAT
    glon = lon + rng.normal(0, 4, n) / m_per_deg_lon
    glat = lat + rng.normal(0, 4, n) / M_PER_DEG_LAT
    compass = np.degrees(heading) % 360
    ids = (10**14 + rng.choice(10**12, size=n, replace=False)).astype(str).tolist()
    seq_ids = [f"seq{i:07d}" for i in range(len(lengths))]
    captured = (1_600_000_000_000 + rng.integers(0, 10**11, len(lengths))[seq_index]
                + (np.arange(n) - starts[seq_index]) * 2000)
    pano = (rng.random(len(lengths)) < 0.05)[seq_index]
    computed = rng.random(n) >= 0.03
    creators = [(str(100000 + i), f"user{i}") for i in range(500)]
    creator_of = rng.integers(0, 500, len(lengths))[seq_index]
    focal = np.round(rng.uniform(0.6, 1.0, n), 6)
    cols = dict(
        lon=np.round(lon, 8).tolist(), lat=np.round(lat, 8).tolist(),
        glon=np.round(glon, 8).tolist(), glat=np.round(glat, 8).tolist(),
        compass=np.round(compass, 3).tolist(),
        alt=np.round(rng.normal(30, 5, n), 3).tolist(),
        rx=np.round(rng.normal(0, 1, n), 6).tolist(),
        seq=seq_index.tolist(), cap=captured.tolist(), pano=pano.tolist(),
        computed=computed.tolist(), creator=creator_of.tolist(), focal=focal.tolist(),
    )
    out: list[dict] = []
    append = out.append
    for i, image_id in enumerate(ids):
        is_pano = cols["pano"][i]
        e = {
            "id": image_id,
            "sequence": seq_ids[cols["seq"][i]],
            "captured_at": cols["cap"][i],
            "geometry": {"type": "Point", "coordinates": [cols["glon"][i], cols["glat"][i]]},
            "altitude": cols["alt"][i],
            "compass_angle": cols["compass"][i],
            "camera_type": "spherical" if is_pano else "perspective",
            "camera_parameters": [] if is_pano else [cols["focal"][i], -0.01, 0.002],
            "make": "GoPro" if is_pano else "Apple",
            "model": "MAX" if is_pano else "iPhone 12",
            "width": 2048 if is_pano else 1024,
            "height": 1024 if is_pano else 768,
            "is_pano": is_pano,
            "creator": {"id": creators[cols["creator"][i]][0],
                        "username": creators[cols["creator"][i]][1]},
            "organization_id": None,
            "exif_orientation": 1,
        }
        if cols["computed"][i]:
            e["computed_geometry"] = {"type": "Point",
                                      "coordinates": [cols["lon"][i], cols["lat"][i]]}
            e["computed_altitude"] = cols["alt"][i]
            e["computed_compass_angle"] = cols["compass"][i]
            e["computed_rotation"] = [cols["rx"][i], 0.1, -0.2]
        append(e)
    return out


def district_polygon(lon: float, lat: float, rng: np.random.Generator,
                     radius_m: float = 200.0) -> Polygon:
    """An irregular octagon about ``2 * radius_m`` across."""
    m_per_deg_lon = M_PER_DEG_LAT * math.cos(math.radians(lat))
    angles = np.sort(rng.uniform(0, 2 * math.pi, 8))
    radii = radius_m * rng.uniform(0.7, 1.0, 8)
    return Polygon([(lon + r * math.cos(a) / m_per_deg_lon, lat + r * math.sin(a) / M_PER_DEG_LAT)
                    for a, r in zip(angles, radii)])


def naive_upsert(path: Path, entities: list[dict]) -> float:
    """Row-by-row baseline: JSON-hash each entity in Python, one upsert statement per row."""
    con = duckdb.connect(str(path))
    con.execute(images_ddl())
    cols = ("id, sequence_id, captured_at_ms, lon, lat, computed_lon, computed_lat, altitude, "
            "computed_altitude, compass_angle, computed_compass_angle, computed_rotation, "
            "camera_type, camera_parameters, make, model, width, height, is_pano, "
            "exif_orientation, creator_id, creator_username, organization_id, content_hash, "
            "first_seen_at, updated_at")
    marks = ", ".join("?" * len(cols.split(",")))
    sql = (f"INSERT INTO images ({cols}) VALUES ({marks}) ON CONFLICT (id) DO UPDATE SET "
           "content_hash = excluded.content_hash, updated_at = excluded.updated_at "
           "WHERE images.content_hash <> excluded.content_hash")
    ts = datetime.now(UTC)
    t0 = time.perf_counter()
    rows = []
    for e in entities:
        g = e.get("geometry") or {}
        cg = e.get("computed_geometry") or {}
        c = e.get("creator") or {}
        h = hashlib.md5(json.dumps(e, sort_keys=True).encode()).hexdigest()
        rows.append((e["id"], e.get("sequence"), e.get("captured_at"),
                     *(g.get("coordinates") or (None, None)),
                     *(cg.get("coordinates") or (None, None)),
                     e.get("altitude"), e.get("computed_altitude"), e.get("compass_angle"),
                     e.get("computed_compass_angle"), e.get("computed_rotation"),
                     e.get("camera_type"), e.get("camera_parameters"), e.get("make"),
                     e.get("model"), e.get("width"), e.get("height"), e.get("is_pano"),
                     e.get("exif_orientation"), c.get("id"), c.get("username"),
                     e.get("organization_id"), h, ts, ts))
    con.executemany(sql, rows)
    elapsed = time.perf_counter() - t0
    con.close()
    return elapsed


def python_scan(entities: list[dict], polygon: Polygon) -> set[str]:
    """Full-scan baseline: every entity's best position against the polygon."""
    w, s, e, n = polygon.bounds
    out = set()
    for ent in entities:
        g = ent.get("computed_geometry") or ent.get("geometry")
        x, y = g["coordinates"]
        if w <= x <= e and s <= y <= n and polygon.covers(Point(x, y)):
            out.add(ent["id"])
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--repeats", type=int, default=5, help="district queries (and baselines)")
    ap.add_argument("--naive-rows", type=int, default=2_000,
                    help="rows for the row-by-row baseline (about 20 ms a row here)")
    ap.add_argument("--dir", type=Path, default=None, help="where to write (default: a tmp dir)")
    args = ap.parse_args(argv)
    rng = np.random.default_rng(1)
    work = Path(tempfile.mkdtemp(prefix="catalog-bench-", dir=args.dir))
    print(f"duckdb {duckdb.__version__}, rows {args.rows:,}, repeats {args.repeats}, "
          f"{os.cpu_count()} cpus, load average {os.getloadavg()[0]:.1f} (other processes slow "
          f"every number down)")

    t0 = time.perf_counter()
    entities = synthetic_entities(args.rows)
    print(f"generate entities          {time.perf_counter() - t0:8.2f} s (not counted)")

    gc.collect()
    gc.freeze()  # the ingest streams batches; a million live dicts would only make the GC busy
    path = work / "catalog.duckdb"
    with Catalog(path) as cat:
        t0, c0 = time.perf_counter(), time.process_time()
        stats = cat.upsert_images(entities)
        upsert_s, upsert_cpu = time.perf_counter() - t0, time.process_time() - c0
        assert stats.inserted == args.rows, stats
        t0 = time.perf_counter()
        again = cat.upsert_images(entities)
        again_s = time.perf_counter() - t0
        assert again.unchanged == args.rows and again.updated == 0, again
        counts = cat.counts()
    size_mb = path.stat().st_size / 2**20
    print(f"upsert (fresh)             {upsert_s:8.2f} s  {args.rows / upsert_s:10,.0f} rows/s  "
          f"cpu {upsert_cpu:.1f} s")
    print(f"upsert (again, unchanged)  {again_s:8.2f} s  {args.rows / again_s:10,.0f} rows/s")
    print(f"catalog file               {size_mb:8.1f} MiB, {counts['sequences']:,} sequences")

    naive_n = min(args.naive_rows, args.rows)
    naive_s = naive_upsert(work / "naive.duckdb", entities[:naive_n])
    naive_full = naive_s * args.rows / naive_n
    print(f"naive row-by-row upsert    {naive_s:8.2f} s for {naive_n:,} rows -> "
          f"{naive_full:8.1f} s extrapolated to {args.rows:,}")
    print(f"  speed-up                 {naive_full / upsert_s:8.1f} x")

    picks = rng.choice(len(entities), size=args.repeats, replace=False)
    polygons = []
    for k in picks:
        g = entities[k].get("computed_geometry") or entities[k]["geometry"]
        polygons.append(district_polygon(*g["coordinates"], rng))
    expected, slow_ms = [], []
    for poly in polygons:
        t0 = time.perf_counter()
        expected.append(python_scan(entities, poly))
        slow_ms.append((time.perf_counter() - t0) * 1e3)
    slow = statistics.median(slow_ms)
    sizes = [len(e) for e in expected]
    print(f"python full-scan baseline  median {slow:8.1f} ms; images per district median "
          f"{statistics.median(sizes):.0f} (min {min(sizes)}, max {max(sizes)})")

    def queries(label: str) -> float:
        with Catalog(path, read_only=True) as cat:
            cat.images_in_polygon(polygons[0])  # warm the buffer manager once
            fast_ms, ids_ms = [], []
            for poly, want in zip(polygons, expected):
                t0 = time.perf_counter()
                frame = cat.images_in_polygon(poly)
                fast_ms.append((time.perf_counter() - t0) * 1e3)
                assert set(frame["id"]) == want, (len(frame), len(want))
                t0 = time.perf_counter()
                ids = cat.images_in_polygon(poly, columns=["id"])
                ids_ms.append((time.perf_counter() - t0) * 1e3)
                assert len(ids) == len(want)
        fast = statistics.median(fast_ms)
        print(f"district query, {label:<10} all columns median {fast:6.1f} ms (min "
              f"{min(fast_ms):.1f}, max {max(fast_ms):.1f}); id only median "
              f"{statistics.median(ids_ms):6.1f} ms; {slow / fast:6.1f}x the full scan")
        return fast

    fast = queries("as loaded")
    with Catalog(path) as cat:
        t0 = time.perf_counter()
        cat.optimize()
        print(f"optimize (re-sort images)  {time.perf_counter() - t0:8.2f} s")
    fast = min(fast, queries("optimized"))
    ok = upsert_s <= 30 * args.rows / 1_000_000 and fast <= 50
    print(f"targets (upsert <= 30 s per 1M rows, district query <= 50 ms): "
          f"{'met' if ok else 'NOT met'}; load average now {os.getloadavg()[0]:.1f}")
    print(f"files left in {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
