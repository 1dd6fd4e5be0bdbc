"""Candidate pairs for matching: ``citysplat.pairs.select_pairs`` against exhaustive matching
(every pair), measured in the same run.

    .venv/bin/python benchmarks/pair_selection.py --size default --repeats 5
    .venv/bin/python benchmarks/pair_selection.py --size xl --truth-only --min-district 400 \
        --repeats 1 --scale-sizes ""

* ``quality``: on a generated city (``--size``, rendered once and cached), the pairs chosen
  for all its images against the ground truth: recall of the pairs sharing at least
  ``--min-cells`` surface cells (and of all listed pairs, 25 cells up), precision, and the
  fraction of all ``n (n - 1) / 2`` pairs. The naive baseline, exhaustive matching, has
  recall 1 and fraction 1: ``ratio`` = exhaustive pairs / selected pairs, the factor by which
  feature matching gets cheaper. ``true_fraction``: the truly co-visible pairs' share of all
  pairs, the least any selection with full recall must take. ``--min-district N`` scores each
  district of N+ images that ``districts_auto`` cuts (default settings) instead of the whole
  city; ``--truth-only`` generates the city without images (its co-visibility from the same
  rays a render casts), which is how the ``xl`` city (2,000+ images) is scored.
* ``scale``: ``select_pairs`` on synthetic districts of ``--scale-sizes`` images (numpy
  sequences on a street grid, as in ``districts_hdbscan.py``): seconds, pairs per image,
  and the ratio to the exhaustive pair count (which is never enumerated: 10^5 images have
  5 * 10^9 pairs).
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import citysplat  # noqa: F401  (zlib before anything that might pull pycolmap)
from citysplat.catalog import Catalog
from citysplat.frames import LocalFrame
from citysplat.pairs import PairConfig, PairImages, pair_quality, select_pairs
from citysplat.positions import best_lonlat


def _synthetic_city():
    """``synthetic_city`` of the districts benchmark beside this file."""
    path = Path(__file__).with_name("districts_hdbscan.py")
    spec = importlib.util.spec_from_file_location("_districts_hdbscan", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module.synthetic_city


def quality(size: str, repeats: int, min_cells: int, config: PairConfig,
            truth_only: bool = False, min_district: int = 0) -> dict:
    from citysplat.synthetic.city import generate_city
    from citysplat.synthetic.spec import preset

    started = time.perf_counter()
    city = generate_city(preset(size), images=not truth_only)
    print(f"city={size} images={len(city.metadata)} ready in "
          f"{time.perf_counter() - started:.0f} s", flush=True)  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        with Catalog(Path(tmp) / "catalog.duckdb") as cat:
            cat.upsert_images(city.metadata)
            images = cat.images()
    truth = [(a, b) for a, b, n in city.covisible if n >= min_cells]
    if min_district:  # score each generated district of at least that many images
        from citysplat.districts.clusters import districts_auto

        parts = [(d.name, d.image_ids, d.frame) for d in districts_auto(images)
                 if len(d.image_ids) >= min_district]  # fmt: skip
        if not parts:
            raise SystemExit(f"no district of {min_district}+ images in the {size} city")
    else:
        parts = [("city", images["id"].tolist(), city.frame)]
    rows = {}
    for name, ids, frame in parts:
        subset = images[images["id"].isin(ids)]
        total = len(ids) * (len(ids) - 1) // 2
        # the true pairs' share of all pairs: exhaustive matching's precision, and the least
        # any selection with full recall must take
        _, _, true_fraction = pair_quality(truth, truth, ids)
        secs = []
        for r in range(repeats):
            t0 = time.perf_counter()
            pairs = select_pairs(PairImages.from_catalog(subset, frame), config)
            secs.append(time.perf_counter() - t0)
            recall, precision, fraction = pair_quality(pairs, truth, ids)
            weak, _, _ = pair_quality(pairs, city.covisible, ids)
            print(f"quality repeat={r} city={size} district={name} images={len(ids)} "
                  f"pairs={len(pairs)} exhaustive={total} recall={recall:.4f} "
                  f"recall_25cells={weak:.4f} precision={precision:.4f} "
                  f"fraction={fraction:.4f} true_fraction={true_fraction:.4f} "
                  f"seconds={secs[-1]:.3f}", flush=True)  # fmt: skip
        rows[name] = {"images": len(ids), "pairs": len(pairs), "exhaustive": total,
                      "recall": recall, "recall_25": weak, "precision": precision,
                      "fraction": fraction, "true_fraction": true_fraction,
                      "seconds": statistics.median(secs),
                      "naive_precision": true_fraction}  # fmt: skip
    return rows


def scale(sizes: list[int], repeats: int, config: PairConfig) -> dict[int, dict]:
    synthetic_city = _synthetic_city()
    out = {}
    for n in sizes:
        # one dense neighbourhood: a district of n images, not n images spread over a city
        km = max(0.5, 3.0 * (n / 100_000) ** 0.5)
        images = synthetic_city(n, seed=n, city_km=km, hotspots=max(1, n // 20_000))
        lon, lat = best_lonlat(images)
        frame = LocalFrame(float(np.nanmedian(lon)), float(np.nanmedian(lat)), 0.0)
        secs = []
        for r in range(repeats):
            t0 = time.perf_counter()
            pairs = select_pairs(PairImages.from_catalog(images, frame), config)
            secs.append(time.perf_counter() - t0)
            exhaustive = n * (n - 1) // 2
            print(f"scale repeat={r} images={n} pairs={len(pairs)} "
                  f"pairs_per_image={len(pairs) / n:.1f} exhaustive={exhaustive} "
                  f"fraction={len(pairs) / exhaustive:.2e} seconds={secs[-1]:.2f}", flush=True)
        out[n] = {"pairs": len(pairs), "seconds": statistics.median(secs),
                  "ratio": exhaustive / max(len(pairs), 1)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", default="default", help="generated city: tiny, default, large")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--min-cells", type=int, default=60,
                    help="shared surface cells for a pair to count as truly co-visible")
    ap.add_argument("--scale-sizes", default="2500,20000,100000")
    ap.add_argument("--truth-only", action="store_true",
                    help="generate the city without images (metadata and ground truth only)")
    ap.add_argument("--min-district", type=int, default=0,
                    help="score each generated district (districts_auto) of this many images")
    ap.add_argument("--radius", type=float, default=PairConfig.radius_m)
    ap.add_argument("--k", type=int, default=PairConfig.k_nearest)
    args = ap.parse_args()
    config = PairConfig(radius_m=args.radius, k_nearest=args.k)

    rows = quality(args.size, args.repeats, args.min_cells, config, args.truth_only,
                   args.min_district)  # fmt: skip
    s = scale([int(v) for v in args.scale_sizes.split(",") if v.strip()], args.repeats, config)
    scale_text = " ".join(f"scale_{n}_s={v['seconds']:.2f} scale_{n}_ratio={v['ratio']:.0f}"
                          for n, v in s.items())
    for name, q in rows.items():
        print(f"summary city={args.size} district={name} images={q['images']} "
              f"recall={q['recall']:.4f} recall_25cells={q['recall_25']:.4f} "
              f"precision={q['precision']:.4f} fraction={q['fraction']:.4f} "
              f"true_fraction={q['true_fraction']:.4f} "
              f"ratio={q['exhaustive'] / max(q['pairs'], 1):.1f} "
              f"naive_precision={q['naive_precision']:.4f} seconds={q['seconds']:.3f} "
              f"{scale_text}")


if __name__ == "__main__":
    main()
