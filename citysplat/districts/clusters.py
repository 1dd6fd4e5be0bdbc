"""Generated districts (:func:`districts_auto`): HDBSCAN capture clusters, cut into chunks.

1. Positions are projected to metres with a transverse Mercator about the data (pyproj).
2. **Thinning**: HDBSCAN on 10^6 raw points takes minutes, so the positions are binned into
   square cells (``cell_m``, 5 m; doubled until at most ``max_cells`` cells are occupied) and
   HDBSCAN clusters one representative per cell (the mean of its images). Each image then takes
   its cell's label. Cells are weighted by their image counts: a cluster must hold
   ``min_cluster_size`` *images*, and HDBSCAN's own ``min_cluster_size`` (in cells) is derived
   from it and the typical cell weight.
3. **Noise and small clusters**: cells HDBSCAN calls noise join the nearest clustered cell
   within ``attach_m``; the rest form single-linkage groups (links up to ``attach_m``, over
   the Delaunay edges). A cluster or group under ``min_cluster_size`` images then merges into
   the nearest large cluster within ``attach_m``, or else stays a district of its own if it
   holds at least ``min_images`` images. Smaller isolated groups are left out (too few images
   to reconstruct, and thousands of tiny partitions would swamp the scheduler);
   :func:`unassigned_ids` lists them.
4. **Chunks**: a cluster of more than ``max_images`` images is bisected recursively across its
   longest (principal) axis at the median image, until every part holds at most
   ``max_images`` images *including* the overlap: the images within ``overlap_m`` of each cut
   go to both sides. Every image is owned by exactly one chunk; the copies another chunk holds
   are its ``borrowed_ids``, and ``shared_ids`` lists every image a chunk has in common with a
   sibling (what lets their reconstructions be merged).
5. **Names** are deterministic: clusters ``d000, d001, ...`` in the order of the Hilbert index
   of their centroids (nearby districts get nearby names), chunks ``d001-a, d001-b, ...``
   (``parent`` = ``d001``) likewise.

The cost is ``O(n log n)`` in the number of images plus HDBSCAN on at most ``max_cells``
points; nothing compares all images with all images.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import numpy as np
import pandas as pd
import shapely
from pyproj import Transformer
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree
from shapely.geometry.base import BaseGeometry

from citysplat.districts.model import CAMERA_HEIGHT_M, District, district_frame, district_points
from citysplat.positions import usable_positions

log = logging.getLogger(__name__)


def local_metric(lon: np.ndarray, lat: np.ndarray) -> Transformer:
    """A transverse Mercator (metres) about the median of the positions: its scale error is
    about 1e-5 (1 cm per km) 30 km from the centre, negligible for clustering a city."""
    lon0 = float(np.median(lon))
    lat0 = float(np.median(lat))
    return Transformer.from_crs(
        "EPSG:4326", f"+proj=tmerc +lat_0={lat0:.7f} +lon_0={lon0:.7f} +k=1 +x_0=0 +y_0=0 "
        "+ellps=WGS84 +units=m +no_defs", always_xy=True)


def thin_cells(xy: np.ndarray, cell_m: float, max_cells: int
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Bin positions into square cells of ``cell_m`` (doubled until at most ``max_cells`` are
    occupied). Returns (cell index of each point, mean position of each cell, images per
    cell, the cell size used)."""
    origin = xy.min(axis=0)
    size = float(cell_m)
    while True:
        k = np.floor((xy - origin) / size).astype(np.int64)
        key = k[:, 0] * (int(k[:, 1].max()) + 1) + k[:, 1]
        uniq, inverse, counts = np.unique(key, return_inverse=True, return_counts=True)
        if len(uniq) <= max_cells:
            break
        size *= 2.0
    inverse = inverse.ravel()
    reps = np.stack([np.bincount(inverse, weights=xy[:, 0]),
                     np.bincount(inverse, weights=xy[:, 1])], axis=1) / counts[:, None]
    return inverse, reps, counts, size


def _hdbscan_labels(reps: np.ndarray, weights: np.ndarray, min_cluster_size: int,
                    min_samples: int | None, n_jobs: int) -> np.ndarray:
    """HDBSCAN labels of the cells (-1: noise). HDBSCAN's ``min_cluster_size`` counts cells:
    ``min_cluster_size`` images over the median images per cell (at least 5)."""
    import hdbscan

    n = len(reps)
    typical = max(1.0, float(np.median(weights)))
    mcs = int(np.clip(round(min_cluster_size / typical), 5, max(5, n)))
    if n < max(mcs, 3):
        return np.zeros(n, dtype=np.int64)
    ms = min_samples if min_samples is not None else min(mcs, 5)
    model = hdbscan.HDBSCAN(min_cluster_size=mcs, min_samples=max(1, ms),
                            allow_single_cluster=True, core_dist_n_jobs=n_jobs,
                            approx_min_span_tree=True)
    return model.fit_predict(reps).astype(np.int64)


def _link_groups(pts: np.ndarray, link_m: float) -> np.ndarray:
    """Single-linkage groups of ``pts`` (points joined by chains of links up to ``link_m``):
    components of the Delaunay edges up to that length (the Euclidean minimum spanning tree
    is a subgraph of the Delaunay triangulation), so O(n log n), never all pairs."""
    n = len(pts)
    if n <= 3:
        i, j = np.triu_indices(n, 1)
    else:
        from scipy.spatial import Delaunay, QhullError

        try:
            simplices = Delaunay(pts, qhull_options="QJ Qbb Qc").simplices
            i = simplices[:, [0, 1, 2]].ravel()
            j = simplices[:, [1, 2, 0]].ravel()
        except (QhullError, ValueError):  # degenerate (e.g. all on a line): nearest neighbours
            k = min(9, n)
            _, nb = cKDTree(pts).query(pts, k=k)
            i, j = np.repeat(np.arange(n), k), nb.ravel()
    keep = np.hypot(*(pts[i] - pts[j]).T) <= link_m
    graph = coo_matrix((np.ones(int(keep.sum())), (i[keep], j[keep])), shape=(n, n))
    return connected_components(graph, directed=False)[1]


def _settle_labels(reps: np.ndarray, weights: np.ndarray, labels: np.ndarray,
                   min_cluster_size: int, attach_m: float, min_images: int) -> np.ndarray:
    """From HDBSCAN's labels to districts' (-1: in none):

    1. noise cells join the nearest clustered cell within ``attach_m``;
    2. the remaining noise forms single-linkage groups (links up to ``attach_m``);
    3. clusters under ``min_cluster_size`` images merge into the nearest large cluster within
       ``attach_m``; those with none near stay on their own if they hold ``min_images``
       images, and are left out otherwise. Labels come back as 0..k-1.
    """
    labels = labels.copy()
    noise = np.flatnonzero(labels < 0)
    clustered = np.flatnonzero(labels >= 0)
    if len(noise) and len(clustered):
        d, j = cKDTree(reps[clustered]).query(reps[noise], k=1, distance_upper_bound=attach_m)
        near = np.isfinite(d)
        labels[noise[near]] = labels[clustered[j[near]]]
        noise = noise[~near]
    if len(noise):
        labels[noise] = int(labels.max()) + 1 + _link_groups(reps[noise], attach_m)
    size = np.bincount(labels, weights=weights)
    big = size >= min_cluster_size
    small_cells = np.flatnonzero(~big[labels])
    big_cells = np.flatnonzero(big[labels])
    if len(small_cells) and len(big_cells):
        d, j = cKDTree(reps[big_cells]).query(reps[small_cells], k=1,
                                              distance_upper_bound=attach_m)
        near = pd.DataFrame({"label": labels[small_cells], "d": d,
                             "target": labels[big_cells[np.minimum(j, len(big_cells) - 1)]]})
        near = near[np.isfinite(near["d"])]
        if len(near):
            best = near.loc[near.groupby("label")["d"].idxmin()]
            remap = np.arange(len(size))
            remap[best["label"].to_numpy()] = best["target"].to_numpy()
            labels = remap[labels]
    size = np.bincount(labels, weights=weights, minlength=len(size))
    keep = size >= min_images
    final = np.full(len(size), -1, dtype=np.int64)
    final[keep] = np.arange(int(keep.sum()))
    return final[labels]


def _bisect(xy: np.ndarray, members: np.ndarray, own: np.ndarray, max_images: int,
            overlap_m: float, out: list[tuple[np.ndarray, np.ndarray]]) -> None:
    """Split ``members`` (point indices; ``own``: owned here rather than borrowed) across the
    principal axis at the median owned point until each part holds ``max_images`` points;
    points within ``overlap_m`` of a cut go to both sides (as borrowed on the far side)."""
    stack = [(members, own)]
    while stack:
        m, o = stack.pop()
        if len(m) <= max_images or o.sum() < 2:
            out.append((m, o))
            continue
        p = xy[m]
        po = p[o]
        centred = po - po.mean(axis=0)
        cov = centred.T @ centred
        if not np.isfinite(cov).all() or np.allclose(cov, 0):
            axis = np.array([1.0, 0.0])
        else:
            w, v = np.linalg.eigh(cov)
            axis = v[:, int(np.argmax(w))]
            if axis[np.argmax(np.abs(axis))] < 0:  # a deterministic sign
                axis = -axis
        t = p @ axis
        own_idx = np.flatnonzero(o)
        order = own_idx[np.lexsort((m[own_idx], t[own_idx]))]
        half = len(order) // 2
        left_own = np.zeros(len(m), dtype=bool)
        left_own[order[:half]] = True
        right_own = o & ~left_own
        cut = 0.5 * (t[order[half - 1]] + t[order[half]])
        margin = overlap_m
        while True:
            in_left = left_own | (t <= cut + margin)
            in_right = right_own | (t > cut - margin)
            # an overlap band as large as a part would never shrink: narrow it
            if (in_left.sum() < len(m) and in_right.sum() < len(m)) or margin == 0:
                break
            margin = margin / 2 if margin > 0.5 else 0.0
        if in_left.sum() >= len(m) or in_right.sum() >= len(m):  # identical positions
            in_left, in_right = left_own, right_own
        stack.append((m[in_right], right_own[in_right]))
        stack.append((m[in_left], left_own[in_left]))


def _hull(xy: np.ndarray, buffer_m: float, hull_ratio: float, simplify_m: float
          ) -> BaseGeometry:
    """Concave hull of ``xy`` grown by ``buffer_m``. The points are first snapped to a grid
    of ``buffer_m / 3`` (fewer points for the hull; the snap moves a point by less than
    ``buffer_m / 4``, which the buffer covers, so every point stays inside)."""
    g = max(buffer_m / 3.0, 0.1)
    k = np.floor(xy / g).astype(np.int64)
    k -= k.min(axis=0)
    key = k[:, 0] * (int(k[:, 1].max()) + 1) + k[:, 1]
    first = np.unique(key, return_index=True)[1]
    pts = (k[first] + 0.5) * g + np.floor(xy.min(axis=0) / g) * g
    mp = shapely.multipoints(pts)
    if len(pts) >= 3 and hull_ratio < 1.0:
        hull = shapely.concave_hull(mp, ratio=hull_ratio)
    else:
        hull = shapely.convex_hull(mp)
    poly = hull.buffer(buffer_m, quad_segs=4)
    if simplify_m > 0:
        poly = poly.simplify(simplify_m, preserve_topology=True)
    return poly


def _letters(i: int) -> str:
    s = ""
    i += 1
    while i:
        i, r = divmod(i - 1, 26)
        s = chr(97 + r) + s
    return s


def _hilbert_order(lon: np.ndarray, lat: np.ndarray, tiebreak: list[str]) -> np.ndarray:
    from citysplat.catalog.normalize import spatial_key

    key = spatial_key(np.asarray(lon, np.float64), np.asarray(lat, np.float64))
    return np.lexsort((np.asarray(tiebreak, dtype=object), key))


def districts_auto(images_df: pd.DataFrame, min_cluster_size: int = 500,
                   max_images: int = 2500, buffer_m: float = 15.0, overlap_m: float = 25.0,
                   cell_m: float = 5.0, max_cells: int = 60_000, attach_m: float = 150.0,
                   min_images: int = 20, min_samples: int | None = None,
                   hull_ratio: float = 0.3, camera_height_m: float = CAMERA_HEIGHT_M,
                   n_jobs: int = 1, prefix: str = "d") -> list[District]:
    """Districts generated from capture clusters (see the module docstring).

    ``min_cluster_size``: images a capture cluster needs; ``max_images``: the most images a
    district (chunk) may hold, overlap included; ``buffer_m``: how far the polygon reaches
    beyond the hull of its images; ``overlap_m``: the band either side of a chunk cut whose
    images both chunks hold; ``cell_m`` / ``max_cells``: the thinning grid; ``attach_m``: how
    far a noise image may be from a cluster it joins; ``min_images``: the smallest isolated
    group made a district of its own; ``n_jobs``: HDBSCAN's ``core_dist_n_jobs``.
    """
    if max_images < 2:
        raise ValueError("max_images must be at least 2")
    df = images_df.reset_index(drop=True)
    known = np.flatnonzero(usable_positions(df)[2])
    if len(known) == 0:
        return []
    points = district_points(df.iloc[known])
    ids = points["id"].to_numpy(dtype=str)  # fixed-width: sorts far faster than objects
    if not (len(ids) < 2 or (ids[1:] >= ids[:-1]).all()):  # the row order must not matter
        order = np.argsort(ids, kind="stable")
        points = points.iloc[order].reset_index(drop=True)
        ids = ids[order]
    lon, lat = points["lon"].to_numpy(), points["lat"].to_numpy()
    to_m = local_metric(lon, lat)
    x, y = to_m.transform(lon, lat)
    xy = np.stack([x, y], axis=1)

    cell_of, reps, weights, used_cell = thin_cells(xy, cell_m, max_cells)
    labels = _hdbscan_labels(reps, weights, min_cluster_size, min_samples, n_jobs)
    labels = _settle_labels(reps, weights, labels, min_cluster_size, attach_m, min_images)
    image_label = labels[cell_of]
    left_out = int((image_label < 0).sum())
    if left_out:
        log.info("%d isolated images (groups under %d images) are in no district",
                 left_out, min_images)
    log.info("districts_auto: %d images, %d cells of %.0f m, %d clusters", len(ids),
             len(reps), used_cell, int(labels.max()) + 1 if len(labels) else 0)

    valid = image_label >= 0
    by_label = np.argsort(image_label, kind="stable")
    by_label = by_label[valid[by_label]]
    bounds = np.searchsorted(image_label[by_label], np.arange(int(labels.max()) + 2))
    groups = [by_label[bounds[i]:bounds[i + 1]] for i in range(len(bounds) - 1)]
    groups = [g for g in groups if len(g)]
    if not groups:
        return []

    def lonlat_of(geom: BaseGeometry) -> BaseGeometry:
        return shapely.transform(geom, lambda c: np.stack(
            to_m.transform(c[:, 0], c[:, 1], direction="INVERSE"), axis=1))

    # clusters named in Hilbert order of their centroids
    cen = np.array([xy[g].mean(axis=0) for g in groups])
    clon, clat = to_m.transform(cen[:, 0], cen[:, 1], direction="INVERSE")
    first_ids = [min(ids[g]) for g in groups]
    cluster_order = _hilbert_order(clon, clat, first_ids)
    width = max(3, len(str(len(groups) - 1)))

    out: list[District] = []
    for rank, gi in enumerate(cluster_order):
        g = groups[gi]
        name = f"{prefix}{rank:0{width}d}"
        parts: list[tuple[np.ndarray, np.ndarray]] = []
        if len(g) <= max_images:
            parts = [(g, np.ones(len(g), dtype=bool))]
        else:
            _bisect(xy, g, np.ones(len(g), dtype=bool), max_images, overlap_m, parts)
        if len(parts) == 1:
            members = np.sort(parts[0][0])
            out.append(_make_district(name, None, members, np.zeros(0, np.int64), xy, ids,
                                      points, lonlat_of, buffer_m, hull_ratio,
                                      camera_height_m, shared=None))
            continue
        # chunk names in Hilbert order of the chunks' owned centroids
        pc = np.array([xy[m[o]].mean(axis=0) for m, o in parts])
        plon, plat = to_m.transform(pc[:, 0], pc[:, 1], direction="INVERSE")
        porder = _hilbert_order(plon, plat, [min(ids[m[o]]) for m, o in parts])
        count = np.bincount(np.concatenate([m for m, _ in parts]), minlength=len(ids))
        shared_mask = count > 1
        for k, pi in enumerate(porder):
            m, o = parts[pi]
            out.append(_make_district(f"{name}-{_letters(k)}", name, np.sort(m),
                                      np.sort(m[~o]), xy, ids, points, lonlat_of, buffer_m,
                                      hull_ratio, camera_height_m, shared=shared_mask))
    return out


def _make_district(name: str, parent: str | None, members: np.ndarray, borrowed: np.ndarray,
                   xy: np.ndarray, ids: np.ndarray, points: pd.DataFrame, lonlat_of,
                   buffer_m: float, hull_ratio: float, camera_height_m: float,
                   shared: np.ndarray | None) -> District:
    poly = lonlat_of(_hull(xy[members], buffer_m, hull_ratio, simplify_m=min(2.0, buffer_m / 4)))
    pts = points.iloc[members].reset_index(drop=True)
    shared_ids = [] if shared is None else ids[members[shared[members]]].tolist()
    return District(name=name, polygon=poly, image_ids=ids[members].tolist(),
                    frame=district_frame(poly, pts, camera_height_m), parent=parent,
                    shared_ids=shared_ids, borrowed_ids=ids[borrowed].tolist(),
                    points=pts)


def unassigned_ids(districts: Iterable[District], images_df: pd.DataFrame) -> list[str]:
    """Ids of ``images_df`` in no district (no position, or an isolated handful), sorted."""
    held: set[str] = set()
    for d in districts:
        held.update(d.image_ids)
    return sorted(set(images_df["id"].astype(str)) - held)
