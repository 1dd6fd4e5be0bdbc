"""``citysplat demo``: the pipeline end to end on the offline sample city.

Today the demo renders the sample city, serves it over a Mapillary-compatible API on 127.0.0.1,
reads it back the way the ingest stage will (coverage tiles, then entities by id), and draws a
map of what it holds. Each later stage extends it.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import httpx
import mapbox_vector_tile
import mercantile
from rich.console import Console
from rich.table import Table

from citysplat.config import data_root
from citysplat.fixtures.server import MapillaryFixtureServer
from citysplat.synthetic.city import SyntheticCity
from citysplat.synthetic.plots import plot_city_map


def _tile_ids(client: httpx.Client, tiles_url: str, bounds) -> set[str]:
    ids: set[str] = set()
    for t in mercantile.tiles(*bounds, zooms=14):
        r = client.get(f"{tiles_url}/mly1_public/2/{t.z}/{t.x}/{t.y}")
        r.raise_for_status()
        if r.content:
            layers = mapbox_vector_tile.decode(r.content)
            ids |= {str(f["properties"]["id"]) for f in layers.get("image", {}).get("features", [])}
    return ids


def run_demo(city: SyntheticCity, console: Console, out_dir: Path | None = None) -> dict:
    """Serve ``city``, read it back through the API, print a summary; returns the figures."""
    out_dir = Path(out_dir) if out_dir else data_root() / "demo"
    out_dir.mkdir(parents=True, exist_ok=True)
    lons = [m["geometry"]["coordinates"][0] for m in city.metadata]
    lats = [m["geometry"]["coordinates"][1] for m in city.metadata]
    bounds = (min(lons), min(lats), max(lons), max(lats))
    with MapillaryFixtureServer(city.world_images()) as server, httpx.Client(
        headers={"Authorization": f"OAuth {server.token}"}, timeout=30
    ) as client:
        ids = _tile_ids(client, server.tiles_url, bounds)
        entities: dict[str, dict] = {}
        ordered = sorted(ids)
        for k in range(0, len(ordered), 50):
            r = client.get(server.graph_url, params={
                "ids": ",".join(ordered[k:k + 50]),
                "fields": "id,sequence,captured_at,camera_type,is_pano,computed_geometry"})
            r.raise_for_status()
            entities.update(r.json())
        requests = server.stats.total

    kinds = Counter(c["kind"] for c in city.cameras.values())
    quality = Counter(c["quality"] for c in city.cameras.values())
    table = Table(title=f"Sample city {city.spec.key()} (seed {city.spec.seed})")
    table.add_column("what")
    table.add_column("count", justify="right")
    table.add_row("images served", str(len(city.metadata)))
    table.add_row("images found through z14 coverage tiles", str(len(ids)))
    table.add_row("entities fetched by id (batches of 50)", str(len(entities)))
    table.add_row("sequences", str(len(city.sequences())))
    for k in ("car", "walk", "pano"):
        table.add_row(f"  {k} images", str(kinds.get(k, 0)))
    table.add_row("bad images (blurred, over-exposed, truncated)",
                  str(sum(v for q, v in quality.items() if q != "ok")))
    table.add_row("ground-truth co-visible image pairs", str(len(city.covisible)))
    table.add_row("API requests made", str(requests))
    console.print(table)
    map_png = plot_city_map(city, out_dir / "sample_city_map.png")
    console.print(f"Map of the sample city: {map_png}")
    return {"served": len(city.metadata), "found": len(ids), "fetched": len(entities),
            "map": str(map_png)}
