"""Pictures of districts: one district's images in its ENU frame, and the map of all."""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import shapely

from citysplat.districts.model import District
from citysplat.io import atomic_write_bytes

if TYPE_CHECKING:
    from citysplat.districts.stage import DistrictsResult


def plot_district(district: District, points: pd.DataFrame | None, dpi: int = 110) -> bytes:
    """PNG of a district: its images in ENU metres coloured by sequence (borrowed ones
    hollow), and its outline."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 6.0), dpi=dpi)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    frame = district.frame
    for poly in shapely.get_parts(district.polygon):
        for ring in [poly.exterior, *poly.interiors]:
            c = np.asarray(ring.coords)
            e = frame.to_enu(c[:, 0], c[:, 1])
            ax.plot(e[:, 0], e[:, 1], color="0.25", lw=1.2)
    n_seq = 0
    if points is not None and len(points):
        pts = points[np.isfinite(points["lon"]) & np.isfinite(points["lat"])]
        e = frame.to_enu(pts["lon"].to_numpy(), pts["lat"].to_numpy())
        seq_codes, seq_names = pd.factorize(pts["sequence_id"], sort=True)
        n_seq = len(seq_names)
        borrowed = pts["id"].isin(set(district.borrowed_ids)).to_numpy()
        colors = np.asarray(_palette(max(n_seq, 1)))[np.maximum(seq_codes, 0)]
        size = float(np.clip(3000 / max(len(pts), 1), 2, 14))
        ax.scatter(e[~borrowed, 0], e[~borrowed, 1], s=size, c=colors[~borrowed], lw=0)
        if borrowed.any():
            ax.scatter(e[borrowed, 0], e[borrowed, 1], s=size * 1.6, facecolors="none",
                       edgecolors=colors[borrowed], lw=0.7)
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_xlabel("east (m)")
    ax.set_ylabel("north (m)")
    title = f"{district.name}: {len(district.image_ids)} images, {n_seq} sequences"
    if district.borrowed_ids:
        title += f", {len(district.borrowed_ids)} borrowed (hollow)"
    ax.set_title(title, fontsize=9)
    ax.grid(True, lw=0.3, alpha=0.5)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _palette(n: int) -> list[tuple[float, float, float, float]]:
    from matplotlib import colormaps

    cmap = colormaps["tab20"]
    return [cmap(i % 20) for i in range(n)]


def plot_districts(result: DistrictsResult, path: Path, dpi: int = 110) -> Path:
    """A map of the districts: each one's outline and images in its colour (lon/lat scaled
    to metres at the city's latitude), written atomically to ``path``."""
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.0, 6.4), dpi=dpi)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    cmap = colormaps["tab10"]
    lat0 = np.mean([d.frame.lat0 for d in result.districts]) if result.districts else 0.0
    for k, d in enumerate(result.districts):
        colour = cmap(k % 10)
        for poly in shapely.get_parts(d.polygon):
            c = np.asarray(poly.exterior.coords)
            ax.plot(c[:, 0], c[:, 1], color=colour, lw=1.2)
        if d.points is not None and len(d.points):
            ax.scatter(d.points["lon"], d.points["lat"], s=4, color=colour, lw=0)
        c = d.polygon.representative_point()
        ax.annotate(d.name, (c.x, c.y), fontsize=8, ha="center", color="k")
    ax.set_aspect(1.0 / max(math.cos(math.radians(lat0)), 1e-6), adjustable="datalim")
    ax.set_xlabel("longitude")
    ax.set_ylabel("latitude")
    ax.set_title(f"{len(result.districts)} districts ({result.method}), "
                 f"{result.images} catalogued images", fontsize=9)
    ax.grid(True, lw=0.3, alpha=0.5)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, buf.getvalue())
    return path
