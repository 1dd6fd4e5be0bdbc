"""Candidate image pairs for feature matching: from position, heading, sequence order and
panoramas, never all pairs.

A district of ``n`` images has ``n (n - 1) / 2`` pairs; matching them all is what makes
exhaustive SfM quadratic. :func:`select_pairs` is the one selector of citysplat (a district's
catalog rows and a folder of one's own photos alike); it reads :class:`PairImages` (per image:
position, heading, field of view, sequence, capture time), made from catalog rows by
:meth:`PairImages.from_catalog` or from SfM inputs by :func:`citysplat.sfm.matching.pair_images`,
and proposes only pairs that can see common surface:

* **position**: each image with its ``k_nearest`` neighbours within ``radius_m`` (scipy
  ``cKDTree``; Mapillary's ``computed_geometry`` where known, the uploaded GPS otherwise);
* **heading**: a spatial pair is kept only if the two view frusta can overlap. Each
  perspective camera sees a horizontal sector (apex at the camera, centred on its compass
  heading, half-angle = half its horizontal field of view from ``camera_parameters`` plus
  ``fov_margin_deg`` for compass error, radius ``view_depth_m``); the pair is kept if the two
  sectors intersect (tested on a polar grid of points of each sector). Panoramas, and images
  without a heading, see all around (their sector is a disc);
* **sequence**: each image with the next ``sequence_neighbors`` images of its own sequence (by
  capture time), whatever the distance or heading: consecutive frames of a drive are the
  pairs most likely to match, and this keeps a sequence connected even where its GPS is bad;
* **panoramas**: a panorama pairs with every image within ``pano_radius_m`` whose sector
  reaches it (the disc test above), and the k-nearest cap does not apply to those pairs.

Apart from the sequence pairs, no pair joins images more than ``radius_m`` (``pano_radius_m``
for a panorama) apart. The k-nearest cap bounds the work in dense places: the cost is
``O(n k log n)``, never ``O(n^2)``. One exception: a small set (fewer than
``exhaustive_below`` images) of which no image has a position is matched exhaustively, since
nothing else says which of its images overlap.

:func:`write_pairs_file` writes COLMAP's pairs format (``name_a name_b`` per line, the input of
``pycolmap.match_image_pairs`` / ``colmap matches_importer --match_type pairs``), and
:func:`pair_quality` scores a selection against true co-visible pairs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from citysplat.frames import LocalFrame
from citysplat.io import atomic_write_text
from citysplat.layout import image_file_name
from citysplat.positions import best_headings, best_lonlat, pano_mask

Pair = tuple[str, str]


@dataclass(frozen=True)
class PairConfig:
    """How :func:`select_pairs` proposes pairs (lengths in metres, angles in degrees).

    The defaults are tuned on the generated city (street canyons 20 m wide, images every
    2-4 m, fields of view of 60-70 degrees): they recall over 98 % of the pairs that share at
    least 60 surface cells (15 square metres) of static scene, in the sample city and in a
    1,500-image district alike. The radius is wide because cameras on crossing streets see
    the same corner building from 60 m apart, and two cars on one street facing each other
    see the facades between them from 70 m; the sector test (35 m deep) drops the pairs
    within it that look away from each other. Where capture is dense, 60 partners per image
    keep the far pairs that 40 would cut (docs/BENCHMARKS.md, "Districts, pairs and SfM";
    ``benchmarks/pair_selection.py``).

    The same settings serve a district and ``reconstruct-folder`` (a folder of one's own
    photos). The two differ only in their data, never in these settings: a folder's photos
    carry no sequence, so :func:`citysplat.sfm.matching.pair_images` takes them as one
    sequence in capture order (they are one walk), and a folder without GPS falls under
    ``exhaustive_below`` (a district's images always have positions).
    """

    radius_m: float = 70.0  # spatial pairs only between images at most this far apart
    k_nearest: int = 60  # per image: at most this many spatial partners (nearest first)
    k_candidates: int = 128  # neighbours examined per image before the frustum test
    sequence_neighbors: int = 10  # pair each image with the next N of its sequence
    view_depth_m: float = 35.0  # how far a camera's sector reaches
    fov_margin_deg: float = 10.0  # added to each half field of view (compass error)
    default_hfov_deg: float = 70.0  # horizontal field of view when camera_parameters lack one
    pano_radius_m: float | None = None  # None: radius_m
    use_heading: bool = True  # False: keep every spatial pair within the radius
    sector_samples: tuple[int, int] = (5, 5)  # depths x angles of each sector's test grid
    # fewer images than this, none with a position: every pair (nothing else says which of
    # them overlap, and the set is small)
    exhaustive_below: int = 40

    def __post_init__(self) -> None:
        if self.radius_m <= 0 or self.view_depth_m <= 0:
            raise ValueError("radius_m and view_depth_m must be positive")
        if self.k_nearest < 0 or self.k_candidates < 1 or self.sequence_neighbors < 0:
            raise ValueError("k_nearest and sequence_neighbors must be >= 0, "
                             "k_candidates >= 1")


@dataclass(frozen=True)
class PairImages:
    """What :func:`select_pairs` knows of each image; arrays aligned with ``ids``.

    ``xy``: (n, 2) east/north metres in one local frame (NaN: no position); ``headings``:
    compass degrees (NaN: none known); ``hfov_deg``: horizontal field of view (NaN: unknown,
    :attr:`PairConfig.default_hfov_deg` is used; 360 for panoramas); ``pano``: panoramas;
    ``sequence``: the capture sequence ("" : none, no sequence pairs); ``order``: capture
    time within it (inf: unknown; ties are broken by id).
    """

    ids: np.ndarray
    xy: np.ndarray
    headings: np.ndarray
    hfov_deg: np.ndarray
    pano: np.ndarray
    sequence: np.ndarray
    order: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.ids)
        if self.xy.shape != (n, 2) or any(len(a) != n for a in (
                self.headings, self.hfov_deg, self.pano, self.sequence, self.order)):
            raise ValueError("PairImages arrays must all have one entry per id")

    def __len__(self) -> int:
        return len(self.ids)

    @classmethod
    def of(cls, ids: Sequence[str], xy: Sequence[Sequence[float] | None], *,
           headings: Sequence[float | None] | None = None,
           hfov_deg: Sequence[float | None] | None = None,
           sequence: Sequence[str | None] | None = None,
           order: Sequence[float | None] | None = None) -> PairImages:
        """From per-image values (None, or a None entry: not known), no panoramas."""
        n = len(ids)

        def floats(values, missing: float) -> np.ndarray:
            values = [None] * n if values is None else values
            out = np.array([np.nan if v is None else float(v) for v in values], np.float64)
            return np.where(np.isnan(out), missing, out)

        return cls(
            ids=np.array([str(i) for i in ids], dtype=object),
            xy=np.array([(np.nan, np.nan) if p is None else tuple(p[:2]) for p in xy],
                        dtype=np.float64).reshape(n, 2),
            headings=floats(headings, np.nan), hfov_deg=floats(hfov_deg, np.nan),
            pano=np.zeros(n, dtype=bool),
            sequence=np.array(["" if s is None else str(s)
                               for s in ([None] * n if sequence is None else sequence)],
                              dtype=object),
            order=floats(order, np.inf))

    @classmethod
    def from_catalog(cls, images_df: pd.DataFrame, frame: LocalFrame) -> PairImages:
        """Catalog rows (``id``, ``sequence_id``, ``captured_at_ms``, positions, compass
        angles, ``camera_type`` / ``is_pano``, ``camera_parameters``, ``width``, ``height``),
        positions taken into ``frame`` (the district's ENU metres)."""
        df = images_df.reset_index(drop=True)
        lon, lat = best_lonlat(df)
        xy = np.full((len(df), 2), np.nan)
        ok = np.isfinite(lon) & np.isfinite(lat)
        if ok.any():
            xy[ok] = frame.to_enu(lon[ok], lat[ok])[:, :2]
        sequence = (df["sequence_id"].astype("string").fillna("").to_numpy(dtype=object)
                    if "sequence_id" in df else np.full(len(df), "", dtype=object))
        order = _column(df, "captured_at_ms")
        return cls(ids=df["id"].astype(str).to_numpy(dtype=object), xy=xy,
                   headings=best_headings(df), hfov_deg=horizontal_fov_deg(df, np.nan),
                   pano=pano_mask(df), sequence=sequence,
                   order=np.where(np.isfinite(order), order, np.inf))


# ------------------------------------------------------------------------------------------
# camera geometry from catalog columns

def horizontal_fov_deg(images_df: pd.DataFrame, default_deg: float = 70.0) -> np.ndarray:
    """Horizontal field of view per image from ``camera_parameters`` (OpenSfM: focal over the
    larger image side) and ``width`` / ``height``; ``default_deg`` where unknown, 360 for
    panoramas."""
    n = len(images_df)
    out = np.full(n, float(default_deg))
    if "camera_parameters" in images_df:
        focal = np.array([_first(p) for p in images_df["camera_parameters"]], dtype=np.float64)
        w = _column(images_df, "width")
        h = _column(images_df, "height")
        ratio = np.where(np.isfinite(w) & np.isfinite(h) & (np.fmax(w, h) > 0),
                         w / np.fmax(np.fmax(w, h), 1e-9), 1.0)  # width over the larger side
        ok = np.isfinite(focal) & (focal > 0.05)
        with np.errstate(divide="ignore", invalid="ignore"):
            fov = np.degrees(2 * np.arctan(ratio / (2 * focal)))
        out = np.where(ok & np.isfinite(fov), fov, out)
    out[pano_mask(images_df)] = 360.0
    return out


def _first(params) -> float:
    if params is None:
        return np.nan
    try:
        return float(params[0]) if len(params) else np.nan
    except (TypeError, ValueError):
        return np.nan


def _column(df: pd.DataFrame, name: str) -> np.ndarray:
    if name not in df:
        return np.full(len(df), np.nan)
    return pd.to_numeric(df[name], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)


# ------------------------------------------------------------------------------------------
# the frustum (sector) test

def sectors_overlap(pa: np.ndarray, ha: np.ndarray, half_a: np.ndarray, pb: np.ndarray,
                    hb: np.ndarray, half_b: np.ndarray, depth: float,
                    samples: tuple[int, int] = (5, 5), chunk: int = 32768) -> np.ndarray:
    """Whether the horizontal view sectors of cameras ``a`` and ``b`` intersect, per pair.

    ``pa``, ``pb``: (M, 2) east/north metres; ``ha``, ``hb``: compass headings (degrees
    clockwise from north); ``half_a``, ``half_b``: half-angles in degrees (>= 180: a disc).
    A pair whose camera stands in the other's sector overlaps at once; for the rest each
    sector is sampled on a polar grid (``samples`` = depths x angles, the boundary rays and
    the far arc included) and the samples of each are tested against the other sector (a
    point is inside when it is within ``depth`` and its direction is within the half-angle:
    dot products, no trigonometry per sample).
    """
    pa, pb = np.asarray(pa, np.float64), np.asarray(pb, np.float64)
    ua, ca = _unit(ha), np.cos(np.radians(np.minimum(half_a, 180.0)))
    ub, cb = _unit(hb), np.cos(np.radians(np.minimum(half_b, 180.0)))
    out = _inside(pb - pa, ua, ca, depth) | _inside(pa - pb, ub, cb, depth)
    rest = np.flatnonzero(~out)
    nd, na = samples
    depths = depth * np.linspace(1.0 / nd, 1.0, nd)
    unit = np.linspace(-1.0, 1.0, na)
    for s in range(0, len(rest), chunk):
        r = rest[s:s + chunk]
        hit = _grid_in(pa[r], ha[r], half_a[r], pb[r], ub[r], cb[r], depth, depths, unit)
        miss = np.flatnonzero(~hit)
        if len(miss):
            hit[miss] = _grid_in(pb[r[miss]], hb[r[miss]], half_b[r[miss]], pa[r[miss]],
                                 ua[r[miss]], ca[r[miss]], depth, depths, unit)
        out[r] = hit
    return out


def _unit(heading_deg: np.ndarray) -> np.ndarray:
    h = np.radians(heading_deg)
    return np.stack([np.sin(h), np.cos(h)], axis=-1)  # east, north


def _inside(v: np.ndarray, u: np.ndarray, cos_half: np.ndarray, depth: float) -> np.ndarray:
    """Is the offset ``v`` (M, 2) from a sector's apex inside it (axis ``u``)?"""
    n2 = np.einsum("ij,ij->i", v, v)
    dot = np.einsum("ij,ij->i", v, u)
    return (n2 <= depth * depth) & (dot >= np.sqrt(n2) * cos_half - 1e-9)


def _grid_in(p, h, half, q, uq, cos_q, depth, depths, unit) -> np.ndarray:
    """Does any grid sample of sector (p, h, half) lie in sector (q, uq, cos_q)?"""
    ang = np.radians(h[:, None] + np.minimum(half, 180.0)[:, None] * unit[None, :])  # (M, A)
    dx, dy = np.sin(ang), np.cos(ang)
    w = p - q
    vx = w[:, 0, None, None] + depths[None, :, None] * dx[:, None, :]  # (M, D, A)
    vy = w[:, 1, None, None] + depths[None, :, None] * dy[:, None, :]
    n2 = vx * vx + vy * vy
    dot = vx * uq[:, 0, None, None] + vy * uq[:, 1, None, None]
    inside = (n2 <= depth * depth) & (dot >= np.sqrt(n2) * cos_q[:, None, None] - 1e-9)
    return inside.reshape(len(p), -1).any(axis=1)


# ------------------------------------------------------------------------------------------

def _normalise(pairs: np.ndarray) -> np.ndarray:
    """(M, 2) index pairs -> unique rows with a < b."""
    if len(pairs) == 0:
        return np.zeros((0, 2), dtype=np.int64)
    lo = np.minimum(pairs[:, 0], pairs[:, 1]).astype(np.int64)
    hi = np.maximum(pairs[:, 0], pairs[:, 1]).astype(np.int64)
    keep = lo != hi
    width = int(hi.max()) + 1
    key = np.unique(lo[keep] * width + hi[keep])
    return np.stack([key // width, key % width], axis=1)


def sequence_pairs(images: PairImages, neighbors: int) -> np.ndarray:
    """Row-index pairs of each image with the next ``neighbors`` of its sequence (ordered by
    capture time, then id); images without a sequence get none."""
    n = len(images)
    if neighbors <= 0 or n < 2:
        return np.zeros((0, 2), dtype=np.int64)
    seq = images.sequence
    order = np.lexsort((images.ids.astype(str), images.order, seq.astype(str)))
    seq_sorted = seq[order]
    out = []
    for j in range(1, neighbors + 1):
        same = (seq_sorted[j:] == seq_sorted[:-j]) & (seq_sorted[j:] != "")
        out.append(np.stack([order[:-j][same], order[j:][same]], axis=1))
    return np.concatenate(out) if out else np.zeros((0, 2), dtype=np.int64)


def spatial_pairs(xy: np.ndarray, headings: np.ndarray, hfov: np.ndarray, is_pano: np.ndarray,
                  config: PairConfig, block: int = 20_000) -> np.ndarray:
    """Row-index pairs from position and heading (see the module docstring), ``block``
    query images at a time so memory stays bounded on a whole city."""
    valid = np.isfinite(xy).all(axis=1)
    idx = np.flatnonzero(valid)
    if len(idx) < 2:
        return np.zeros((0, 2), dtype=np.int64)
    pano_r = config.pano_radius_m if config.pano_radius_m is not None else config.radius_m
    r_max = max(config.radius_m, pano_r)
    h = np.where(np.isfinite(headings), headings, 0.0)
    half = np.where(np.isfinite(headings), hfov / 2.0 + config.fov_margin_deg, 180.0)
    half = np.where(is_pano, 180.0, half)
    tree = cKDTree(xy[idx])
    k = min(config.k_candidates + 1, len(idx))
    out = []
    for s in range(0, len(idx), block):
        q = idx[s:s + block]
        dist, nb = tree.query(xy[q], k=k, distance_upper_bound=r_max)
        dist, nb = dist.reshape(len(q), k), nb.reshape(len(q), k)
        found = nb < len(idx)
        rows = np.broadcast_to(np.arange(len(q))[:, None], nb.shape)[found]
        a = q[rows]
        b = idx[nb[found]]
        d = dist[found]
        either_pano = is_pano[a] | is_pano[b]
        keep = (a != b) & np.where(either_pano, d <= pano_r, d <= config.radius_m)
        a, b, d, either_pano = a[keep], b[keep], d[keep], either_pano[keep]
        if config.use_heading and len(a):
            ok = sectors_overlap(xy[a], h[a], half[a], xy[b], h[b], half[b],
                                 config.view_depth_m, config.sector_samples)
            a, b, d, either_pano = a[ok], b[ok], d[ok], either_pano[ok]
        if not len(a):
            continue
        # the k-nearest cap per image among the partners that passed (the query returns them
        # by distance, grouped by query image); pairs with a panorama are exempt
        starts = np.r_[0, np.flatnonzero(np.diff(a)) + 1]
        counts = np.diff(np.r_[starts, len(a)])
        rank = np.arange(len(a)) - np.repeat(starts, counts)
        keep = (rank < config.k_nearest) | either_pano
        out.append(np.stack([a[keep], b[keep]], axis=1))
    return _normalise(np.concatenate(out)) if out else np.zeros((0, 2), dtype=np.int64)


def select_pairs(images: PairImages, config: PairConfig | None = None) -> list[Pair]:
    """Candidate pairs ``(id_a, id_b)`` (``id_a < id_b``, sorted, unique) of ``images``:
    spatial pairs (position and heading) plus sequence pairs; every pair of a set of fewer
    than ``config.exhaustive_below`` images of which none has a position."""
    config = config or PairConfig()
    if len(images) < 2:
        return []
    ids = images.ids.astype(str)
    placed = np.isfinite(images.xy).all(axis=1)
    if not placed.any() and len(images) < config.exhaustive_below:
        return sorted({(a, b) if a < b else (b, a) for a, b in combinations(ids.tolist(), 2)
                       if a != b})
    hfov = np.where(np.isfinite(images.hfov_deg), images.hfov_deg, config.default_hfov_deg)
    parts = [spatial_pairs(images.xy, images.headings, hfov, images.pano, config),
             sequence_pairs(images, config.sequence_neighbors)]
    # rows -> ranks of their ids, so index order is id order (and duplicate ids collapse)
    uniq, rank = np.unique(ids, return_inverse=True)
    idx = np.concatenate(parts)
    idx = _normalise(rank.ravel()[idx]) if len(idx) else idx
    return list(zip(uniq[idx[:, 0]].tolist(), uniq[idx[:, 1]].tolist()))


# ------------------------------------------------------------------------------------------

def write_pairs_file(pairs: Iterable[Pair], names: Mapping[str, str] | Callable[[str], str]
                     | None, path: str | Path) -> int:
    """Write ``pairs`` in COLMAP's pairs format, ``name_a name_b`` per line (atomically).

    ``names`` maps an image id to its file name (a mapping or a function; ``None``:
    :func:`citysplat.layout.image_file_name`). Names may not contain whitespace. Returns the
    number of lines."""
    if names is None:
        name_of: Callable[[str], str] = image_file_name
    elif isinstance(names, Mapping):
        name_of = names.__getitem__
    else:
        name_of = names
    lines = []
    for a, b in pairs:
        na, nb = name_of(str(a)), name_of(str(b))
        if any(ch.isspace() for ch in na + nb):
            raise ValueError(f"image names in a pairs file cannot contain spaces: {na!r}, {nb!r}")
        lines.append(f"{na} {nb}\n")
    atomic_write_text(Path(path), "".join(lines))
    return len(lines)


def read_pairs_file(path: str | Path) -> list[tuple[str, str]]:
    """The ``(name_a, name_b)`` lines of a COLMAP pairs file."""
    out = []
    for line in Path(path).read_text().splitlines():
        parts = line.split()
        if len(parts) >= 2 and not line.lstrip().startswith("#"):
            out.append((parts[0], parts[1]))
    return out


def pair_quality(pairs: Iterable[tuple], truth_pairs: Iterable[tuple], all_ids: Iterable[str]
                 ) -> tuple[float, float, float]:
    """``(recall, precision, fraction_of_all_pairs)`` of ``pairs`` against ``truth_pairs``.

    Pairs are unordered; only pairs between images of ``all_ids`` count. ``recall``: the
    share of true pairs selected (1.0 when there are none); ``precision``: the share of
    selected pairs that are true (1.0 when nothing is selected); ``fraction``: selected pairs
    over all ``n (n - 1) / 2`` pairs of ``all_ids``."""
    ids = {str(i) for i in all_ids}

    def norm(items: Iterable[tuple]) -> set[tuple[str, str]]:
        out = set()
        for p in items:
            a, b = str(p[0]), str(p[1])
            if a != b and a in ids and b in ids:
                out.add((a, b) if a < b else (b, a))
        return out

    chosen = norm(pairs)
    truth = norm(truth_pairs)
    hits = len(chosen & truth)
    recall = hits / len(truth) if truth else 1.0
    precision = hits / len(chosen) if chosen else 1.0
    total = len(ids) * (len(ids) - 1) // 2
    fraction = len(chosen) / total if total else 0.0
    return recall, precision, fraction
