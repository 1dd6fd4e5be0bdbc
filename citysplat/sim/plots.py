"""The picture of a district's traffic: the splat seen from above, the network's lanes, and the
vehicles and pedestrians of one moment, all in the district's ENU metres, so a glance tells
whether the roads lie on the roads."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.collections import PolyCollection  # noqa: E402

SH_C0 = 0.28209479177387814


def splat_top_down(ply: Path | None, bounds: tuple[float, float, float, float],
                   max_points: int = 400_000) -> tuple[np.ndarray, np.ndarray] | None:
    """The splat's Gaussians inside ``bounds`` seen from above: (N, 2) positions and (N, 4)
    RGBA (base colour, opacity), drawn lowest first so roofs and trees cover the street."""
    if ply is None or not Path(ply).is_file():
        return None
    from citysplat.splat.export import read_ply

    s = read_ply(ply)
    xyz = np.asarray(s.means, np.float64)
    xmin, ymin, xmax, ymax = bounds
    keep = (xyz[:, 0] > xmin) & (xyz[:, 0] < xmax) & (xyz[:, 1] > ymin) & (xyz[:, 1] < ymax)
    idx = np.flatnonzero(keep)
    if len(idx) > max_points:
        idx = np.random.default_rng(0).choice(idx, max_points, replace=False)
    idx = idx[np.argsort(xyz[idx, 2])]
    rgb = np.clip(0.5 + SH_C0 * np.asarray(s.sh0, np.float64).reshape(len(xyz), -1)[idx, :3],
                  0, 1)
    alpha = 1 / (1 + np.exp(-np.asarray(s.opacities_logit, np.float64).reshape(-1)[idx]))
    return xyz[idx, :2], np.column_stack([rgb, alpha])


def _lane_polygons(net) -> tuple[list[np.ndarray], list[str]]:
    polys, kinds = [], []
    for edge in net.getEdges(withInternal=True):
        function = edge.getFunction()
        for lane in edge.getLanes():
            shape = np.asarray(lane.getShape(), np.float64)[:, :2]
            if len(shape) < 2:
                continue
            d = np.gradient(shape, axis=0)
            d /= np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-9)
            n = np.column_stack([-d[:, 1], d[:, 0]]) * lane.getWidth() / 2
            polys.append(np.vstack([shape + n, (shape - n)[::-1]]))
            if function == "crossing":
                kinds.append("crossing")
            elif function == "walkingarea":
                kinds.append("walkingarea")
            elif lane.allows("pedestrian") and not lane.allows("passenger"):
                kinds.append("sidewalk")
            else:
                kinds.append("road")
    return polys, kinds


_COLOURS = {"road": (0.25, 0.25, 0.30, 0.45), "sidewalk": (0.95, 0.80, 0.45, 0.45),
            "crossing": (1.0, 1.0, 1.0, 0.8), "walkingarea": (0.95, 0.80, 0.45, 0.3)}


def busiest_moment(fcd: pd.DataFrame) -> float | None:
    """The time with the most agents on the network."""
    if fcd is None or fcd.empty:
        return None
    return float(fcd.groupby("time").size().idxmax())


def plot_traffic(net, out: Path, *, splat_ply: Path | None = None,
                 fcd: pd.DataFrame | None = None, at: float | None = None,
                 tracks: list[np.ndarray] | None = None, title: str = "") -> Path:
    """``out`` (PNG): the splat from above, the lanes, the agents at ``at`` (default: the
    busiest moment) and the capture tracks."""
    (xmin, ymin), (xmax, ymax) = net.getBoundary()[:2], net.getBoundary()[2:]
    pad = 10.0
    bounds = (xmin - pad, ymin - pad, xmax + pad, ymax + pad)
    fig, ax = plt.subplots(figsize=(9, 9 * (bounds[3] - bounds[1]) / max(bounds[2] - bounds[0],
                                                                         1.0) + 0.6))
    top = splat_top_down(splat_ply, bounds)
    if top is not None:
        ax.scatter(top[0][:, 0], top[0][:, 1], c=top[1], s=1.0, marker="s", linewidths=0,
                   rasterized=True)
    polys, kinds = _lane_polygons(net)
    ax.add_collection(PolyCollection(polys, facecolors=[_COLOURS[k] for k in kinds],
                                     edgecolors="none"))
    for edge in net.getEdges(withInternal=False):
        shape = np.asarray(edge.getShape())
        ax.plot(shape[:, 0], shape[:, 1], color=(0.1, 0.1, 0.1), lw=0.4, alpha=0.6)
    for track in tracks or []:
        ax.plot(track[:, 0], track[:, 1], ":", color="tab:green", lw=0.8)
    if fcd is not None and not fcd.empty:
        at = busiest_moment(fcd) if at is None else at
        now = fcd[fcd["time"] == at]
        cars, people = now[now["kind"] == "vehicle"], now[now["kind"] == "pedestrian"]
        ax.scatter(cars["x"], cars["y"], s=28, marker="s", color="tab:red",
                   edgecolors="white", linewidths=0.5, label=f"{len(cars)} vehicles")
        ax.scatter(people["x"], people["y"], s=12, color="tab:blue", edgecolors="white",
                   linewidths=0.4, label=f"{len(people)} pedestrians")
        ax.legend(loc="upper right", fontsize=8, title=f"t = {at:.0f} s")
    ax.set_xlim(bounds[0], bounds[2])
    ax.set_ylim(bounds[1], bounds[3])
    ax.set_aspect("equal")
    ax.set_xlabel("east (m)")
    ax.set_ylabel("north (m)")
    ax.set_title(title or "network, splat and agents (ENU metres)")
    fig.tight_layout()
    tmp = Path(out).with_name(f".{Path(out).name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(out)
    return Path(out)
