"""A reconstruction seen from above: where SfM put the cameras against where GPS said."""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np

from citysplat.sfm.inputs import SfmInput
from citysplat.sfm.output import SfmResult


def plot_reconstruction(result: SfmResult, inputs: Sequence[SfmInput], *, title: str = "",
                        max_points: int = 20_000, dpi: int = 110) -> bytes:
    """PNG: sparse points (grey), registered camera centres (coloured by sequence) joined to
    their position priors (black ticks), priors of images left out (red crosses). ENU metres
    when georeferenced."""
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 6.0), dpi=dpi)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    model = result.reconstruction
    points = np.array([p.xyz for p in model.points3D.values()]) if model.num_points3D() else None
    if points is not None and len(points):
        if len(points) > max_points:
            points = points[np.random.default_rng(0).choice(len(points), max_points, False)]
        ax.scatter(points[:, 0], points[:, 1], s=0.3, c="0.7", lw=0, rasterized=True)
    centres = result.camera_centers()
    by_name = {i.name: i for i in inputs}
    sequences = sorted({i.sequence or "" for i in inputs})
    cmap = colormaps["tab20"]
    colour = {s: cmap(k % 20) for k, s in enumerate(sequences)}
    if result.georeferenced:
        for name, c in centres.items():
            prior = by_name.get(name).prior_enu if name in by_name else None
            if prior is not None:
                ax.plot([c[0], prior[0]], [c[1], prior[1]], color="k", lw=0.4)
    if centres:
        xy = np.array(list(centres.values()))
        colours = [colour[(by_name[n].sequence or "") if n in by_name else ""] for n in centres]
        ax.scatter(xy[:, 0], xy[:, 1], s=10, c=colours, lw=0, zorder=3)
    left_out = [i.prior_enu for n, i in by_name.items()
                if n not in centres and i.prior_enu is not None]
    if left_out and result.georeferenced:
        lo = np.array(left_out)
        ax.scatter(lo[:, 0], lo[:, 1], marker="x", s=18, c="tab:red", lw=0.8, zorder=4,
                   label=f"not registered ({len(lo)})")
        ax.legend(loc="upper right", fontsize=7)
    if centres:  # frame the cameras, not far-away stray points
        xy = np.array(list(centres.values()))[:, :2]
        lo_, hi_ = xy.min(axis=0), xy.max(axis=0)
        pad = max(10.0, 0.1 * float((hi_ - lo_).max()))
        ax.set_xlim(lo_[0] - pad, hi_[0] + pad)
        ax.set_ylim(lo_[1] - pad, hi_[1] + pad)
    ax.set_aspect("equal", adjustable="box")
    unit = " (m)" if result.georeferenced else " (model units)"
    ax.set_xlabel("east" + unit if result.georeferenced else "x" + unit)
    ax.set_ylabel("north" + unit if result.georeferenced else "y" + unit)
    residual = result.gps_residual_median_m
    ax.set_title(f"{title + ': ' if title else ''}{result.registered_images}/"
                 f"{result.total_images} registered"
                 + (f", GPS residual median {residual:.2f} m" if residual is not None else ""),
                 fontsize=9)
    ax.grid(True, lw=0.3, alpha=0.5)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
