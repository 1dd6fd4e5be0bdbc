"""Generated districts at city scale: ``citysplat.geofence.districts_auto`` on ``--images``
positions, against naive HDBSCAN on the raw positions, measured in the same run.

    .venv/bin/python benchmarks/districts_hdbscan.py --images 1000000 --repeats 3

* ``auto``: the whole of ``districts_auto`` (projection, grid thinning, HDBSCAN on the cell
  representatives, noise, chunks with overlap, hulls, frames) on ``--images`` images, with
  its defaults (one core for HDBSCAN: on two cores joblib's start-up costs more than it saves).
* ``naive``: ``hdbscan.HDBSCAN`` (``core_dist_n_jobs=1``, ``min_samples`` 5 as ``auto`` uses,
  ``min_cluster_size`` scaled to the subset) on the raw projected positions of random subsets
  of ``--naive-sizes`` images; the time is extrapolated to ``--images`` with the power law
  fitted to those sizes (log-log least squares). ``ratio`` = naive extrapolated / auto.
  ``--naive-full`` also times it once on all the images.

The images are made with numpy: ``--hotspots`` neighbourhoods of dense capture in a
``--city-km`` square, sequences of 50-400 images driving a 100 m street grid from them (an
image every 2-5 m, GPS noise 3 m, computed positions 0.5 m, 3 % without a computed position).
The budget is 60 s for a million images on two cores; the summary says whether it held.
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import statistics
import time

import numpy as np
import pandas as pd

import citysplat  # noqa: F401  (zlib before anything that might pull pycolmap)
from citysplat.districts.clusters import districts_auto, local_metric
from citysplat.districts.files import district_summary
from citysplat.positions import best_lonlat

CENTER = (-122.44, 37.76)
BUDGET_S = 60.0


def synthetic_city(n: int, seed: int = 0, city_km: float = 30.0, hotspots: int = 40,
                   block_m: float = 100.0) -> pd.DataFrame:
    """``n`` catalog rows (id, sequence, time, GPS and computed positions and headings,
    altitude) of sequences driving a street grid out of ``hotspots`` dense neighbourhoods."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(50, 400, size=n // 50 + 10)
    lengths = lengths[: np.searchsorted(np.cumsum(lengths), n) + 1]
    lengths[-1] -= lengths.sum() - n
    n_seq = len(lengths)
    half = city_km * 500.0
    centre = rng.uniform(-half, half, (hotspots, 2))
    radius = rng.uniform(400, 2000, hotspots)
    which = rng.integers(0, hotspots, n_seq)
    start = centre[which] + rng.normal(0, 1, (n_seq, 2)) * radius[which, None]
    start = np.round(start / block_m) * block_m
    seq = np.repeat(np.arange(n_seq), lengths)
    step = rng.uniform(2.0, 5.0, n)
    per_block = int(block_m / 3.5)  # images per block: turn (or not) at each intersection
    dirs = np.array([[1, 0], [0, 1], [-1, 0], [0, -1]], dtype=np.float64)
    heading_dir = dirs[rng.integers(0, 4, n // per_block + 2)[np.arange(n) // per_block]]
    delta = heading_dir * step[:, None]
    first = np.r_[0, np.cumsum(lengths)[:-1]]
    cum = np.cumsum(delta, axis=0)
    pos = start[seq] + cum - (cum[first] - delta[first])[seq]
    m_lat = 111_320.0
    m_lon = m_lat * math.cos(math.radians(CENTER[1]))
    gps = pos + rng.normal(0, 3.0, pos.shape)
    comp = pos + rng.normal(0, 0.5, pos.shape)
    heading = np.degrees(np.arctan2(heading_dir[:, 0], heading_dir[:, 1])) % 360
    df = pd.DataFrame({
        "id": (10**14 + rng.permutation(n)).astype(str),
        "sequence_id": np.char.add("s", seq.astype(str)),
        "captured_at_ms": 1714550400000 + seq * 86_400_000 + np.arange(n) * 1000,
        "lon": CENTER[0] + gps[:, 0] / m_lon, "lat": CENTER[1] + gps[:, 1] / m_lat,
        "computed_lon": CENTER[0] + comp[:, 0] / m_lon,
        "computed_lat": CENTER[1] + comp[:, 1] / m_lat,
        "compass_angle": (heading + rng.normal(0, 6, n)) % 360,
        "computed_compass_angle": heading,
        "computed_altitude": 22.0 + 1.6 + rng.normal(0, 0.5, n)})
    missing = rng.random(n) < 0.03
    df.loc[missing, ["computed_lon", "computed_lat", "computed_compass_angle"]] = np.nan
    return df


def naive_hdbscan(xy: np.ndarray, min_cluster_size: int, min_samples: int, n_jobs: int
                  ) -> float:
    import hdbscan

    t0 = time.perf_counter()
    hdbscan.HDBSCAN(min_cluster_size=min_cluster_size, min_samples=min_samples,
                    core_dist_n_jobs=n_jobs).fit(xy)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=1_000_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--naive-sizes", default="100000,200000,400000",
                    help="comma-separated subset sizes for naive HDBSCAN")
    ap.add_argument("--naive-repeats", type=int, default=1,
                    help="repeats of the naive runs (each takes about a minute)")
    ap.add_argument("--naive-jobs", type=int, default=1,
                    help="core_dist_n_jobs of the naive runs (1: on two cores joblib's "
                         "start-up costs more than the second core gives)")
    ap.add_argument("--naive-full", action="store_true",
                    help="also run naive HDBSCAN once on all the images (minutes)")
    ap.add_argument("--min-cluster-size", type=int, default=500)
    ap.add_argument("--max-images", type=int, default=2500)
    ap.add_argument("--city-km", type=float, default=30.0)
    ap.add_argument("--hotspots", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    import hdbscan  # noqa: F401  (import once, outside the timings)

    t0 = time.perf_counter()
    df = synthetic_city(args.images, args.seed, args.city_km, args.hotspots)
    print(f"generate images={len(df)} seconds={time.perf_counter() - t0:.2f} "
          f"cpus={os.cpu_count()}", flush=True)

    auto_s, info = [], {}
    for r in range(args.repeats):
        gc.collect()
        t0 = time.perf_counter()
        districts = districts_auto(df, min_cluster_size=args.min_cluster_size,
                                   max_images=args.max_images)
        auto_s.append(time.perf_counter() - t0)
        info = district_summary(districts)
        print(f"auto repeat={r} images={len(df)} seconds={auto_s[-1]:.2f} "
              f"districts={info['districts']} chunks={info['chunks']} "
              f"largest={info['largest']} shared_images={info['shared_images']} "
              f"images_assigned={info['images']}", flush=True)
        del districts

    lon, lat = best_lonlat(df)
    to_m = local_metric(lon, lat)
    xy = np.stack(to_m.transform(lon, lat), axis=1)
    sizes = [int(s) for s in args.naive_sizes.split(",") if s.strip()]
    rng = np.random.default_rng(args.seed + 1)
    naive_at: dict[int, list[float]] = {s: [] for s in sizes}
    for r in range(args.naive_repeats):
        for s in sizes:
            pick = rng.choice(len(xy), size=min(s, len(xy)), replace=False)
            # min_cluster_size scaled to the subset, so clusters mean the same thing
            mcs = max(5, round(args.min_cluster_size * s / len(xy)))
            sec = naive_hdbscan(xy[pick], mcs, 5, args.naive_jobs)
            naive_at[s].append(sec)
            print(f"naive repeat={r} subset={s} min_cluster_size={mcs} seconds={sec:.2f}",
                  flush=True)
    med = {s: statistics.median(v) for s, v in naive_at.items()}
    if len(sizes) >= 2:
        slope, icpt = np.polyfit(np.log(sizes), np.log([med[s] for s in sizes]), 1)
    else:
        slope, icpt = 1.0, math.log(med[sizes[0]] / sizes[0])
    naive_full = float(math.exp(icpt) * len(df) ** slope)
    measured = ""
    if args.naive_full:
        sec = naive_hdbscan(xy, args.min_cluster_size, 5, args.naive_jobs)
        print(f"naive full images={len(xy)} min_cluster_size={args.min_cluster_size} "
              f"seconds={sec:.1f}", flush=True)
        measured = f" naive_measured_s={sec:.1f}"
    auto_med = statistics.median(auto_s)
    print(f"summary images={len(df)} auto_median_s={auto_med:.2f} "
          f"naive_extrapolated_s={naive_full:.1f} naive_exponent={slope:.2f} "
          f"ratio={naive_full / auto_med:.1f}{measured} districts={info.get('districts')} "
          f"chunks={info.get('chunks')} budget_s={BUDGET_S:.0f} "
          f"within_budget={auto_med <= BUDGET_S}")


if __name__ == "__main__":
    main()
