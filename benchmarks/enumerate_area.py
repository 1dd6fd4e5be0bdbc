"""Enumerating an area: z14 coverage tiles + entity batches vs a naive sequential bbox-grid crawl.

Two worlds, each served by the fixture server (in a child process) with ``--latency-ms``:

* ``sample city``: the generated demo city (about 235 images; rendered once, then cached);
* ``dense``: ``--dense`` images without rendering (:func:`build_dense_world`): 75 % in a
  0.004-degree core, 25 % over a 0.012-degree square around it, so some grid cells of the
  crawl hold more than the 2000 images a bbox search returns, and the search silently caps.

Methods, each asked for every catalog field of every image:

* ``tiles``: :func:`enumerate_area` (concurrent z14 tiles) then :func:`entities_for` (batches
  of 50, concurrent);
* ``crawl``: a grid of ``--cell-deg`` cells over the area's bbox, one ``/images?bbox=`` each
  with all catalog fields, one after the other (what a user without the tiles writes).

Prints requests, wall time and recall against the ground truth per world, method and repeat,
then one SUMMARY line with medians over ``--repeats``. Run: ``python benchmarks/enumerate_area.py``.
"""

from __future__ import annotations

import argparse
import math
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import citysplat  # noqa: F401 - first: loads zlib before anything else
from citysplat import event_loop
from citysplat.fixtures.remote import serve
from citysplat.fixtures.server import FRONTENDS
from citysplat.fixtures.small_world import build_dense_world
from citysplat.fixtures.world import WorldImage
from citysplat.mapillary import (
    CATALOG_FIELDS,
    Area,
    MapillaryClient,
    MapillaryConfig,
    entities_for,
    enumerate_area,
)

SEARCH_CAP = 2000


# -- the fixture server in a child process (its threads would otherwise share our GIL) ---------




# -- worlds and methods -----------------------------------------------------------------------------


def dense_world(dest: Path, n: int) -> list[WorldImage]:
    """``n`` images: 75 % in a 0.004-degree core, the rest over 0.012 degrees around it."""
    core = build_dense_world(dest / "core", int(n * 0.75), span_deg=0.004, seed=1)
    rim = build_dense_world(dest / "rim", n - len(core), span_deg=0.012, seed=2)
    seen = {i.id for i in core}
    return core + [i for i in rim if i.id not in seen]


def bbox_of(images: list[WorldImage], margin: float = 1e-4) -> tuple[float, float, float, float]:
    points = [
        i.meta[g]["coordinates"]
        for i in images
        for g in ("geometry", "computed_geometry")
        if i.meta.get(g)
    ]
    lons, lats = [p[0] for p in points], [p[1] for p in points]
    return min(lons) - margin, min(lats) - margin, max(lons) + margin, max(lats) + margin


def grid(
    bbox: tuple[float, float, float, float], cell: float
) -> list[tuple[float, float, float, float]]:
    w, s, e, n = bbox
    nx, ny = math.ceil((e - w) / cell), math.ceil((n - s) / cell)
    return [
        (w + i * cell, s + j * cell, min(e, w + (i + 1) * cell), min(n, s + (j + 1) * cell))
        for i in range(nx)
        for j in range(ny)
    ]


@dataclass
class Outcome:
    method: str
    requests: int
    seconds: float
    found: int
    recall: float
    exact: bool
    capped_cells: int = 0


def config_for(server: Any, concurrency: int) -> MapillaryConfig:
    return server.client_config(concurrency=concurrency)


def truth_of(images: list[WorldImage]) -> dict[str, dict[str, Any]]:
    return {
        i.id: {k: v for k, v in i.meta.items() if k in CATALOG_FIELDS and v is not None}
        for i in images
    }


async def by_tiles(
    server: Any, bbox: tuple[float, ...], truth: dict[str, dict], concurrency: int
) -> Outcome:
    async with MapillaryClient(config_for(server, concurrency)) as client:
        start = time.perf_counter()
        scan = await enumerate_area(client, Area.from_bbox(bbox))
        entities = await entities_for(client, scan.image_ids)
        seconds = time.perf_counter() - start
        requests = client.stats.total
    found = set(entities) & set(truth)
    exact = all(entities.get(i) == e for i, e in truth.items())
    return Outcome("tiles", requests, seconds, len(entities), len(found) / len(truth), exact)


async def by_crawl(
    server: Any, bbox: tuple[float, ...], truth: dict[str, dict], cell: float
) -> Outcome:
    async with MapillaryClient(config_for(server, 1)) as client:
        start = time.perf_counter()
        entities: dict[str, dict] = {}
        capped = 0
        for box in grid(bbox, cell):
            data = await client.search_bbox(box, fields=CATALOG_FIELDS)
            capped += len(data) >= SEARCH_CAP
            entities.update({d["id"]: d for d in data})
        seconds = time.perf_counter() - start
        requests = client.stats.total
    found = set(entities) & set(truth)
    exact = all(entities.get(i) == e for i, e in truth.items())
    return Outcome(
        "crawl", requests, seconds, len(entities), len(found) / len(truth), exact, capped
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--dense", type=int, default=20_000, help="images in the dense world")
    parser.add_argument(
        "--city-cell-deg", type=float, default=0.0005, help="crawl cell in the sample city (~50 m)"
    )
    parser.add_argument(
        "--dense-cell-deg", type=float, default=0.002, help="crawl cell in the dense world (~200 m)"
    )
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--skip-city", action="store_true", help="only the dense world (no rendering)"
    )
    parser.add_argument(
        "--in-process", action="store_true", help="serve from this process (shares the GIL)"
    )
    parser.add_argument(
        "--server-frontend",
        choices=FRONTENDS,
        default="asyncio",
        help="the fixture server's front end (threads: http.server, the tests' server)",
    )
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="citysplat-bench-enum-"))
    worlds: list[tuple[str, list[WorldImage], float]] = []
    try:
        if not args.skip_city:
            from citysplat.synthetic.city import generate_city
            from citysplat.synthetic.spec import preset

            worlds.append(
                ("sample_city", generate_city(preset("default")).world_images(), args.city_cell_deg)
            )
        worlds.append(("dense", dense_world(work, args.dense), args.dense_cell_deg))
        print(
            f"server latency {args.latency_ms:g} ms ({args.server_frontend} front end), tiles "
            f"concurrency {args.concurrency}, {args.repeats} repeats"
        )
        summary: list[str] = []
        for name, images, cell in worlds:
            bbox = bbox_of(images)
            truth = truth_of(images)
            cells = len(grid(bbox, cell))
            print(
                f"\n{name}: {len(images)} images, bbox {bbox[2] - bbox[0]:.4f} x {bbox[3] - bbox[1]:.4f} deg, "
                f"{len(Area.from_bbox(bbox).tiles())} z14 tiles, crawl grid {cells} cells of {cell:g} deg"
            )
            runs: dict[str, list[Outcome]] = {"tiles": [], "crawl": []}
            with serve(
                images,
                in_process=args.in_process,
                latency_ms=args.latency_ms,
                frontend=args.server_frontend,
            ) as server:
                for r in range(args.repeats):
                    tiles = event_loop.run(by_tiles(server, bbox, truth, args.concurrency))
                    crawl = event_loop.run(by_crawl(server, bbox, truth, cell))
                    runs["tiles"].append(tiles)
                    runs["crawl"].append(crawl)
                    for o in (tiles, crawl):
                        print(
                            f"  repeat {r + 1} {o.method:5s}: {o.requests:5d} requests {o.seconds:7.2f} s  "
                            f"found {o.found:6d}  recall {o.recall:6.1%}  entities exact: {o.exact}"
                            + (
                                f"  capped cells {o.capped_cells}/{cells}"
                                if o.method == "crawl"
                                else ""
                            )
                        )
                    print(
                        f"  repeat {r + 1} ratio: crawl/tiles wall {crawl.seconds / tiles.seconds:5.1f}x, "
                        f"requests {crawl.requests / tiles.requests:5.2f}x"
                    )
            med = {m: (statistics.median(o.seconds for o in os_), statistics.median(o.recall for o in os_),
                       statistics.median(o.requests for o in os_)) for m, os_ in runs.items()}  # fmt: skip
            summary.append(
                f"{name}: tiles {med['tiles'][0]:.2f}s/{med['tiles'][2]:.0f}req recall {med['tiles'][1]:.1%} | "
                f"crawl {med['crawl'][0]:.2f}s/{med['crawl'][2]:.0f}req recall {med['crawl'][1]:.1%} | "
                f"speedup {med['crawl'][0] / med['tiles'][0]:.1f}x"
            )
        print(
            f"\nSUMMARY enumerate_area latency_ms={args.latency_ms:g} medians over {args.repeats}: "
            + " ; ".join(summary)
        )
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
