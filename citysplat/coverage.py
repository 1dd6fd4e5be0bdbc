"""Completeness: what Mapillary's z14 coverage tiles say exists, against what the catalog holds
and what is downloaded and verified, per tile and per district.

Per z14 tile of one tileset (``mly1_computed_public`` positions images by
``computed_geometry``, ``mly1_public`` by ``geometry``):

* ``listed``: the ids of the tile's last good listing (``tile_listings``); unknown (None) when
  the tile was never listed successfully: a failed fetch with no earlier good listing is a
  **hole**, and a tile the catalog has images in but that was never fetched is **unfetched**;
* ``in_catalog``: listed ids the catalog holds; ``missing`` = listed - in_catalog;
* ``catalog_here``: catalog images whose position (for this tileset) lies in the tile;
* ``downloaded``: listed ids (or, for a tile without a listing, the catalog's images there)
  whose download is 'done' and whose file is present under the data root with the recorded
  size; ``download_failed``: those whose last download failed.

A tile whose last fetch failed but that has an earlier good listing is **stale**: its numbers
use that listing. Districts (polygons) get the tiles they touch, the catalog images inside them
and the downloads of those; listed ids the catalog lacks have no known position, so a district
reports those of the tiles it touches (``missing_in_tiles``, an upper bound).

The report only reads the catalog: open it read-only (:func:`citysplat.catalog.read_only_snapshot`)
unless this runs inside the writer.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import mercantile
import numpy as np
import pandas as pd
import shapely
from shapely.geometry import box, mapping
from shapely.geometry.base import BaseGeometry

from citysplat.catalog import Catalog, as_geometry
from citysplat.io import atomic_write_bytes

ZOOM = 14
TILESETS = ("mly1_computed_public", "mly1_public")
STATUSES = ("ok", "stale", "hole", "unfetched")
"""Tile states: listed at the last fetch / last fetch failed, an older listing is used / fetch
failed and nothing was ever listed / the catalog has images there but the tile was never
fetched."""


@dataclass(frozen=True)
class TileCoverage:
    """Completeness of one z14 tile."""

    tileset: str
    x: int
    y: int
    status: str
    listed: int | None
    in_catalog: int
    catalog_here: int
    downloaded: int
    download_failed: int
    fetched_at: datetime | None = None
    last_ok_at: datetime | None = None
    error: str | None = None
    z: int = ZOOM

    @property
    def missing(self) -> int | None:
        """Listed ids the catalog lacks (None when the listing is unknown)."""
        return None if self.listed is None else self.listed - self.in_catalog

    @property
    def catalog_fraction(self) -> float | None:
        """in_catalog / listed (1.0 for an empty listing; None when unknown)."""
        if self.listed is None:
            return None
        return 1.0 if self.listed == 0 else self.in_catalog / self.listed

    @property
    def download_fraction(self) -> float | None:
        """downloaded / listed (1.0 for an empty listing; None when unknown)."""
        if self.listed is None:
            return None
        return 1.0 if self.listed == 0 else self.downloaded / self.listed

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(west, south, east, north) in lon/lat."""
        b = mercantile.bounds(self.x, self.y, self.z)
        return (b.west, b.south, b.east, b.north)


@dataclass(frozen=True)
class DistrictCoverage:
    """Completeness of one district polygon."""

    name: str
    tiles: int
    holes: int
    stale: int
    unfetched: int
    in_catalog: int
    listed_in_catalog: int
    downloaded: int
    download_failed: int
    missing_in_tiles: int
    geometry: dict[str, Any] = field(repr=False, default_factory=dict)

    @property
    def download_fraction(self) -> float | None:
        """downloaded / in_catalog (None without images)."""
        return None if self.in_catalog == 0 else self.downloaded / self.in_catalog


@dataclass
class CoverageReport:
    """The per-tile (and per-district) completeness of one tileset."""

    tileset: str
    tiles: list[TileCoverage]
    districts: list[DistrictCoverage]
    generated_at: datetime
    catalog_images: int
    unplaced_images: int
    """Catalog images without a position in this tileset (no computed pose, for the computed
    tileset): they belong to no tile."""
    rejected: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(
        columns=["source", "record", "reason", "seen_at"]))
    """Records the ingest kept out of the catalog, with their reasons (the ``rejected`` table)."""

    @property
    def holes(self) -> list[TileCoverage]:
        return [t for t in self.tiles if t.status == "hole"]

    def totals(self) -> dict[str, int]:
        """Sums over the tiles (listed counts only where a listing is known)."""
        known = [t for t in self.tiles if t.listed is not None]
        return {
            "tiles": len(self.tiles),
            **{s: sum(t.status == s for t in self.tiles) for s in STATUSES},
            "listed": sum(t.listed or 0 for t in known),
            "in_catalog": sum(t.in_catalog for t in known),
            "missing": sum(t.missing or 0 for t in known),
            "catalog_here": sum(t.catalog_here for t in self.tiles),
            "downloaded": sum(t.downloaded for t in self.tiles),
            "download_failed": sum(t.download_failed for t in self.tiles),
        }

    def table(self) -> list[dict[str, Any]]:
        """One row per tile (dicts, for printing, JSON or Dagster metadata)."""
        rows = []
        for t in self.tiles:
            row = {k: v for k, v in asdict(t).items() if k not in ("fetched_at", "last_ok_at")}
            row["tile"] = f"{t.z}/{t.x}/{t.y}"
            row["missing"] = t.missing
            row["catalog_fraction"] = t.catalog_fraction
            row["download_fraction"] = t.download_fraction
            row["fetched_at"] = None if t.fetched_at is None else t.fetched_at.isoformat()
            rows.append(row)
        return rows

    def district_table(self) -> list[dict[str, Any]]:
        """One row per district."""
        return [{**{k: v for k, v in asdict(d).items() if k != "geometry"},
                 "download_fraction": d.download_fraction} for d in self.districts]


# ------------------------------------------------------------------------------------------
def _area_geometry(area: Any) -> BaseGeometry | None:
    if area is None:
        return None
    if isinstance(area, (tuple, list)) and len(area) == 4 and not isinstance(area[0], Iterable):
        return box(*map(float, area))
    return as_geometry(area)


def _tile_boxes(xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    n = float(2**ZOOM)
    west = xs / n * 360.0 - 180.0
    east = (xs + 1) / n * 360.0 - 180.0
    north = np.degrees(np.arctan(np.sinh(np.pi * (1 - 2 * ys / n))))
    south = np.degrees(np.arctan(np.sinh(np.pi * (1 - 2 * (ys + 1) / n))))
    return shapely.box(west, south, east, north)


def _verified(frame: pd.DataFrame, root: Path) -> np.ndarray:
    """Per 'done' download row: is the file there, with the recorded size?"""
    ok = np.zeros(len(frame), dtype=bool)
    for k, (path, size) in enumerate(zip(frame["path"], frame["bytes"])):
        if not isinstance(path, str) or not path:
            continue
        try:
            st = os.stat(root / path)
        except OSError:
            continue
        ok[k] = size is None or pd.isna(size) or st.st_size == int(size)
    return ok


def _pick_tileset(catalog: Catalog) -> str:
    rows = catalog.con.execute("SELECT tileset, count(*) FROM tiles WHERE z = ? GROUP BY tileset "
                               "ORDER BY count(*) DESC, tileset", [ZOOM]).fetchall()
    return rows[0][0] if rows else TILESETS[0]


def _district_geometries(catalog: Catalog, districts: Any) -> dict[str, BaseGeometry]:
    if districts is None:
        return {}
    if isinstance(districts, Mapping):
        return {str(k): as_geometry(v) for k, v in districts.items()}
    known = catalog.districts()
    out = {}
    for name in districts:
        if name not in known:
            raise KeyError(f"no district {name!r} in the catalog")
        out[name] = as_geometry(known[name])
    return out


def coverage_report(catalog: Catalog, data_root: str | Path | None = None, area: Any = None,
                    districts: Any = None, tileset: str | None = None) -> CoverageReport:
    """Compare tile listings, catalog and verified downloads per z14 tile (and per district).

    ``area``: None (every tile known), a (w, s, e, n) box or a geometry: only tiles that
    intersect it. ``districts``: {name: geometry} or names of districts in the catalog.
    ``tileset``: default, the tileset with the most recorded z14 tiles. ``data_root`` (default:
    the catalog's folder) is where download paths are resolved."""
    root = Path(data_root) if data_root is not None else catalog.root
    tileset = tileset or _pick_tileset(catalog)
    computed = "computed" in tileset
    tx, ty = ("computed_tile_x", "computed_tile_y") if computed else ("tile_x", "tile_y")
    con = catalog.con
    with catalog._lock:
        tiles = con.execute("SELECT x, y, status, fetched_at, last_ok_at, error FROM tiles "
                            "WHERE tileset = ? AND z = ?", [tileset, ZOOM]).df()
        listings = con.execute(
            "SELECT l.x, l.y, l.image_id, i.id IS NOT NULL AS in_catalog FROM tile_listings l "
            "LEFT JOIN images i ON i.id = l.image_id WHERE l.tileset = ? AND l.z = ?",
            [tileset, ZOOM]).df()
        placed = con.execute(f"SELECT id, {tx} AS x, {ty} AS y FROM images "
                             f"WHERE {tx} IS NOT NULL").df()
        n_images, n_unplaced = con.execute(
            f"SELECT count(*), count(*) FILTER (WHERE {tx} IS NULL) FROM images").fetchone()
        downloads = con.execute("SELECT image_id, state, path, bytes FROM downloads").df()

    # which tiles: recorded ones and those the catalog has images in, within the area
    keys = pd.concat([tiles[["x", "y"]], placed[["x", "y"]].drop_duplicates()],
                     ignore_index=True).drop_duplicates().astype({"x": "int64", "y": "int64"})
    area_geom = _area_geometry(area)
    if area_geom is not None and len(keys):
        boxes = _tile_boxes(keys["x"].to_numpy(float), keys["y"].to_numpy(float))
        keys = keys[shapely.intersects(boxes, area_geom)]
    keyset = set(zip(keys["x"].tolist(), keys["y"].tolist()))

    def in_area(frame: pd.DataFrame) -> pd.DataFrame:
        if area_geom is None:
            return frame
        mask = [(x, y) in keyset for x, y in zip(frame["x"].tolist(), frame["y"].tolist())]
        return frame[np.array(mask, dtype=bool)] if len(frame) else frame

    all_listings = listings
    listings, placed = in_area(listings), in_area(placed)
    district_geoms = _district_geometries(catalog, districts)
    district_ids = {name: set(catalog.images_in_polygon(geom, computed=computed,
                                                        columns=["id"])["id"])
                    for name, geom in district_geoms.items()}

    # verified downloads, only for the ids that matter here
    relevant = set(listings["image_id"]) | set(placed["id"])
    for ids in district_ids.values():
        relevant |= ids
    downloads = downloads[downloads["image_id"].isin(relevant)]
    done = downloads[downloads["state"] == "done"]
    verified = set(done["image_id"][_verified(done, root)])
    failed = set(downloads["image_id"][downloads["state"] == "failed"])

    listings = listings.assign(verified=listings["image_id"].isin(verified),
                               failed=listings["image_id"].isin(failed))
    placed = placed.assign(verified=placed["id"].isin(verified), failed=placed["id"].isin(failed))
    by_listing = listings.groupby(["x", "y"]).agg(
        listed=("image_id", "size"), in_catalog=("in_catalog", "sum"),
        downloaded=("verified", "sum"), download_failed=("failed", "sum"))
    by_catalog = placed.groupby(["x", "y"]).agg(
        catalog_here=("id", "size"), downloaded=("verified", "sum"),
        download_failed=("failed", "sum"))
    recorded = {(int(r.x), int(r.y)): r for r in tiles.itertuples(index=False)}

    def ts(value: Any) -> datetime | None:
        return None if value is None or pd.isna(value) else pd.Timestamp(value).to_pydatetime()

    tile_status = {k: ("ok" if r.status == "ok" else
                       "stale" if ts(r.last_ok_at) is not None else "hole")
                   for k, r in recorded.items()}
    out: list[TileCoverage] = []
    for x, y in sorted(keyset):
        rec = recorded.get((x, y))
        status = tile_status.get((x, y), "unfetched")
        here = by_catalog.loc[(x, y)] if (x, y) in by_catalog.index else None
        catalog_here = int(here["catalog_here"]) if here is not None else 0
        if status in ("ok", "stale"):
            lst = by_listing.loc[(x, y)] if (x, y) in by_listing.index else None
            listed = int(lst["listed"]) if lst is not None else 0
            in_cat = int(lst["in_catalog"]) if lst is not None else 0
            downloaded = int(lst["downloaded"]) if lst is not None else 0
            dl_failed = int(lst["download_failed"]) if lst is not None else 0
        else:
            listed, in_cat = None, 0
            downloaded = int(here["downloaded"]) if here is not None else 0
            dl_failed = int(here["download_failed"]) if here is not None else 0
        out.append(TileCoverage(
            tileset=tileset, x=x, y=y, status=status, listed=listed, in_catalog=in_cat,
            catalog_here=catalog_here, downloaded=downloaded, download_failed=dl_failed,
            fetched_at=ts(rec.fetched_at) if rec is not None else None,
            last_ok_at=ts(rec.last_ok_at) if rec is not None else None,
            error=(None if rec is None or rec.error is None or pd.isna(rec.error)
                   else str(rec.error))))

    report = CoverageReport(tileset=tileset, tiles=out, districts=[], rejected=catalog.rejected(),
                            generated_at=datetime.now(UTC), catalog_images=int(n_images),
                            unplaced_images=int(n_unplaced))
    for name, geom in district_geoms.items():
        report.districts.append(_district(name, geom, district_ids[name], tile_status,
                                          all_listings, verified, failed))
    return report


def _district(name: str, geom: BaseGeometry, ids: set[str],
              tile_status: dict[tuple[int, int], str],
              listings: pd.DataFrame, verified: set[str], failed: set[str]
              ) -> DistrictCoverage:
    w, s, e, n = geom.bounds
    candidates = sorted({(t.x, t.y) for t in mercantile.tiles(w, s, e, n, zooms=ZOOM)})
    touched: set[tuple[int, int]] = set()
    if candidates:
        xs, ys = zip(*candidates)
        boxes = _tile_boxes(np.array(xs, float), np.array(ys, float))
        touched = {k for k, hit in zip(candidates, shapely.intersects(boxes, geom)) if hit}
    states = [tile_status.get(k, "unfetched") for k in touched]
    listed = listings[[(int(x), int(y)) in touched
                       for x, y in zip(listings["x"], listings["y"])]] if len(listings) else listings
    missing = int((~listed["in_catalog"].astype(bool)).sum()) if len(listed) else 0
    return DistrictCoverage(
        name=name, tiles=len(touched), holes=states.count("hole"), stale=states.count("stale"),
        unfetched=states.count("unfetched"), in_catalog=len(ids),
        listed_in_catalog=len(ids & set(listed["image_id"])) if len(listed) else 0,
        downloaded=len(ids & verified), download_failed=len(ids & failed),
        missing_in_tiles=missing, geometry=mapping(geom))


# ------------------------------------------------------------------------------------------
_STATUS_STYLE = {"ok": "green", "stale": "dark_orange", "hole": "bold red", "unfetched": "grey50"}


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.0f}%"


def _num(value: int | None) -> str:
    return "?" if value is None else f"{value:,}"


def print_report(report: CoverageReport, console: Any = None, max_rows: int = 40) -> None:
    """Print the report as rich tables: a summary, the tiles (holes and incomplete tiles
    first, at most ``max_rows``), and the districts."""
    from rich import box
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = console or Console()
    tot = report.totals()
    console.print(
        f"[bold]Coverage of {report.tileset}[/]: {_plural(tot['tiles'], 'tile')} "
        f"({tot['ok']} ok, {tot['stale']} stale, [red]{_plural(tot['hole'], 'hole')}[/], "
        f"{tot['unfetched']} unfetched); {tot['listed']:,} listed, {tot['in_catalog']:,} in the "
        f"catalog, {tot['missing']:,} missing; {tot['downloaded']:,} downloaded and verified, "
        f"{tot['download_failed']:,} failed; {report.unplaced_images:,} catalog images have no "
        f"position in this tileset")
    table = Table(title=f"z{ZOOM} tiles ({report.tileset})", box=box.SIMPLE_HEAD,
                  collapse_padding=True, pad_edge=False,
                  caption="listed: ids in the tile's last good listing; cat: of those in the "
                          "catalog; here: catalog images placed in the tile; dl: downloaded "
                          "and verified")
    table.add_column("tile", no_wrap=True, min_width=12)
    table.add_column("status", no_wrap=True)
    for col in ("listed", "cat", "missing", "here", "dl", "dl failed", "cat%", "dl%"):
        table.add_column(col, justify="right", no_wrap=True)
    severity = {"hole": 0, "stale": 1, "unfetched": 2, "ok": 3}
    rows = sorted(report.tiles, key=lambda t: (severity[t.status], t.download_fraction or 0,
                                               t.x, t.y))
    for t in rows[:max_rows]:
        style = _STATUS_STYLE[t.status]
        name = t.status.upper() if t.status == "hole" else t.status
        table.add_row(f"{t.z}/{t.x}/{t.y}", f"[{style}]{name}[/]", _num(t.listed),
                      f"{t.in_catalog:,}", _num(t.missing), f"{t.catalog_here:,}",
                      f"{t.downloaded:,}", f"{t.download_failed:,}", _pct(t.catalog_fraction),
                      _pct(t.download_fraction))
    if len(rows) > max_rows:
        table.add_row(f"... {len(rows) - max_rows} more", "", *[""] * 8)
    console.print(table)
    for t in rows:
        if t.error and t.status in ("hole", "stale"):
            when = f" last fetch {t.fetched_at:%Y-%m-%d %H:%M}" if t.fetched_at else ""
            console.print(Text.assemble("  ", (f"{t.z}/{t.x}/{t.y}", _STATUS_STYLE[t.status]),
                                        f"{when} failed: {t.error}"))  # a server's words: text
    if report.districts:
        dt = Table(title="districts", box=box.SIMPLE_HEAD, collapse_padding=True,
                   pad_edge=False, caption="images: catalog images inside; listed: of those, "
                   "listed by a tile; missing: ids its tiles list that the catalog lacks")
        dt.add_column("district", overflow="fold", min_width=12)
        for col in ("tiles", "holes", "images", "listed", "dl", "failed", "dl%", "missing"):
            dt.add_column(col, justify="right")
        for d in report.districts:
            notes = ", ".join(f"{n} {w}" for n, w in ((d.stale, "stale"),
                                                     (d.unfetched, "unfetched")) if n)
            dt.add_row(Text(d.name), f"{d.tiles}" + (f" ({notes})" if notes else ""),
                       f"[red]{d.holes}[/]" if d.holes else "0", f"{d.in_catalog:,}",
                       f"{d.listed_in_catalog:,}", f"{d.downloaded:,}", f"{d.download_failed:,}",
                       _pct(d.download_fraction), f"{d.missing_in_tiles:,}")
        console.print(dt)
    if len(report.rejected):
        console.print(Text(f"{len(report.rejected):,} records were rejected by the ingest "
                           "(kept in the catalog's rejected table):", style="yellow"))
        for r in report.rejected.head(5).itertuples():
            console.print(Text(f"  {r.source} {r.record}: {r.reason}"))


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}" + ("" if n == 1 else "s")


def plot_title(report: CoverageReport) -> str:
    """The figure title: tileset, tile count and holes, listed / catalog / downloaded."""
    tot = report.totals()
    return (f"Coverage of {report.tileset}: {_plural(tot['tiles'], 'tile')} ({tot['ok']} ok, "
            f"{_plural(tot['hole'], 'hole')}, {tot['stale']} stale, {tot['unfetched']} unfetched)"
            f" | {tot['listed']:,} listed, {tot['in_catalog']:,} in catalog, "
            f"{tot['downloaded']:,} downloaded and verified")


def plot_coverage(report: CoverageReport, catalog: Catalog, out_png: str | Path,
                  max_points: int = 200_000, dpi: int = 110) -> Path:
    """Two maps side by side (lon/lat): tiles coloured by catalog/listed and by
    downloaded/listed, holes hatched red and labelled, stale and unfetched tiles marked, the
    catalog's image positions as points, district outlines; written atomically as a PNG whose
    title (also in the PNG's ``Title`` text chunk) gives the tile and hole counts."""
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch, Rectangle

    out_png = Path(out_png)
    cmap = colormaps["RdYlGn"]
    norm = Normalize(0.0, 1.0)
    tiles = report.tiles
    if tiles:
        bounds = np.array([t.bounds for t in tiles])
        w, s = bounds[:, 0].min(), bounds[:, 1].min()
        e, n = bounds[:, 2].max(), bounds[:, 3].max()
    else:
        w, s, e, n = -180.0, -85.0, 180.0, 85.0
    computed = "computed" in report.tileset
    points = catalog.images_in_bbox(w, s, e, n, computed=computed, columns=["id"]) \
        if tiles else pd.DataFrame({"pos_lon": [], "pos_lat": []})
    if len(points) > max_points:
        points = points.sample(max_points, random_state=0)
    title = plot_title(report)

    fig = Figure(figsize=(15, 7.5), dpi=dpi, layout="constrained")
    axes = fig.subplots(1, 2, sharex=True, sharey=True)
    panels = (("catalog / listed", "catalog_fraction"),
              ("downloaded and verified / listed", "download_fraction"))
    for ax, (label, attr) in zip(axes, panels):
        for t in tiles:
            tw, ts_, te, tn = t.bounds
            frac = getattr(t, attr)
            if t.status == "hole":
                patch = Rectangle((tw, ts_), te - tw, tn - ts_, facecolor="#fde0dd",
                                  edgecolor="red", hatch="///", linewidth=1.5, zorder=1)
            elif t.status == "unfetched":
                patch = Rectangle((tw, ts_), te - tw, tn - ts_, facecolor="0.85",
                                  edgecolor="0.4", linestyle="--", linewidth=1.0, zorder=1)
            else:
                patch = Rectangle((tw, ts_), te - tw, tn - ts_, facecolor=cmap(norm(frac)),
                                  edgecolor="darkorange" if t.status == "stale" else "0.3",
                                  hatch=".." if t.status == "stale" else None,
                                  alpha=0.75, linewidth=1.0, zorder=1)
            ax.add_patch(patch)
            cx, cy = (tw + te) / 2, (ts_ + tn) / 2
            if t.status == "hole":
                text = f"HOLE\n{t.x}/{t.y}\nfetch failed\n{t.catalog_here:,} in catalog"
                color = "red"
            elif t.listed is not None:
                text, color = f"{t.x}/{t.y}\n{_pct(frac)}\n{t.listed:,} listed", "black"
            else:
                text, color = f"{t.x}/{t.y}\nnot listed\n{t.catalog_here:,} in catalog", "black"
            ax.text(cx, cy, text, ha="center", va="center", fontsize=7, color=color,
                    fontweight="bold" if t.status == "hole" else "normal", zorder=4)
        if len(points):
            ax.scatter(points["pos_lon"], points["pos_lat"], s=2 if len(points) > 5000 else 6,
                       color="#1f3a93", alpha=0.6, linewidths=0, zorder=2)
        for d in report.districts:
            geom = as_geometry(d.geometry)
            for poly in getattr(geom, "geoms", [geom]):
                xs, ys = poly.exterior.xy if hasattr(poly, "exterior") else poly.xy
                ax.plot(xs, ys, color="purple", linewidth=1.5, zorder=3)
            c = geom.representative_point()
            ax.text(c.x, c.y, d.name, color="purple", fontsize=8, ha="center", zorder=5)
        ax.set_xlim(w, e)
        ax.set_ylim(s, n)
        ax.set_aspect(1 / np.cos(np.radians((s + n) / 2)))
        ax.set_title(label)
        ax.set_xlabel("longitude")
        ax.ticklabel_format(useOffset=False)
        ax.tick_params(axis="x", labelrotation=30)
    axes[0].set_ylabel("latitude")
    tot = report.totals()
    handles = [
        Patch(facecolor=cmap(1.0), edgecolor="0.3", label="complete"),
        Patch(facecolor=cmap(0.5), edgecolor="0.3", label="partial"),
        Patch(facecolor="#fde0dd", edgecolor="red", hatch="///",
              label=f"hole: fetch failed, nothing listed ({tot['hole']})"),
        Patch(facecolor=cmap(0.8), edgecolor="darkorange", hatch="..",
              label=f"stale: last fetch failed, older listing ({tot['stale']})"),
        Patch(facecolor="0.85", edgecolor="0.4", linestyle="--",
              label=f"not fetched, images in catalog ({tot['unfetched']})"),
        Line2D([], [], marker="o", linestyle="", color="#1f3a93", markersize=4,
               label=f"images ({len(points):,}{' sampled' if len(points) == max_points else ''})"),
    ]
    if report.districts:
        handles.append(Line2D([], [], color="purple", label="districts"))
    fig.legend(handles=handles, loc="outside lower center", ncol=4, fontsize=8,
               title=f"{tot['tiles']} z{ZOOM} tiles")
    fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=axes, shrink=0.7, label="fraction of listed images")
    fig.suptitle(title, fontsize=11)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Title": title, "Software": "citysplat"})
    atomic_write_bytes(out_png, buf.getvalue())
    return out_png
