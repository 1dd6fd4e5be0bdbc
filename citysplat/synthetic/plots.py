"""Pictures of a generated city, for people who would rather look than read."""

from __future__ import annotations

import io
from pathlib import Path

import geopandas as gpd
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from citysplat.io import atomic_write_bytes  # noqa: E402
from citysplat.synthetic.city import SyntheticCity  # noqa: E402

_KIND_STYLE = {"car": ("tab:blue", "car"), "walk": ("tab:green", "walking"),
               "pano": ("tab:purple", "360 panorama")}


def plot_city_map(city: SyntheticCity, out: Path) -> Path:
    """Building footprints, walkable area, and every capture (true position, heading arrow;
    reported GPS as grey dots) in lon/lat; written as a PNG."""
    truth = city.root / "truth"
    fig, ax = plt.subplots(figsize=(9, 9), dpi=110)
    gpd.read_file(truth / "walkable.geojson").plot(ax=ax, color="#e8e2d0", zorder=0)
    gpd.read_file(truth / "buildings.geojson").plot(ax=ax, color="#b9b3a8", edgecolor="#7d776c",
                                                    linewidth=0.4, zorder=1)
    gps = np.array([m["geometry"]["coordinates"] for m in city.metadata])
    ax.scatter(gps[:, 0], gps[:, 1], s=4, color="0.55", zorder=2, label="reported GPS")
    cams = list(city.cameras.values())
    for kind, (color, label) in _KIND_STYLE.items():
        sel = [c for c in cams if c["kind"] == kind]
        if not sel:
            continue
        lon = np.array([c["lon"] for c in sel])
        lat = np.array([c["lat"] for c in sel])
        fwd = np.array([[c["rotation_c2w"][0][2], c["rotation_c2w"][1][2]] for c in sel])
        ax.quiver(lon, lat, fwd[:, 0], fwd[:, 1], color=color, scale=40, width=0.003,
                  zorder=3, label=f"{label} ({len(sel)})")
    bad = [c for c in cams if c["quality"] != "ok"]
    if bad:
        ax.scatter([c["lon"] for c in bad], [c["lat"] for c in bad], s=60, facecolors="none",
                   edgecolors="red", zorder=4, label=f"bad images ({len(bad)})")
    ax.set_aspect(1 / np.cos(np.radians(city.spec.lat)))
    ax.set_xlabel("longitude")
    ax.set_ylabel("latitude")
    ax.set_title(f"Generated city, seed {city.spec.seed}: {len(cams)} images")
    ax.legend(loc="upper right", fontsize=8)
    ax.ticklabel_format(useOffset=False)
    ax.tick_params(axis="x", labelrotation=30)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(Path(out), buf.getvalue())
    return Path(out)
