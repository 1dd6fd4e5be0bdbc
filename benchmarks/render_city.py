"""Rendering benchmark: generating a city from nothing, against a naive baseline measured in the
same run, and a warm cache hit.

    .venv/bin/python benchmarks/render_city.py --size default --repeats 3 --subset 12

Each repeat:

* ``cold``: :func:`citysplat.synthetic.city.generate_city` of the ``--size`` preset into a fresh
  temporary cache, with the default worker count (everything: layout, scenes, ray casting,
  shading, JPEG, masks, co-visibility, ground truth). Prints images, seconds, images/s.
* ``warm``: ``generate_city`` again on that cache, reading the metadata and the cameras (what a
  test or the demo pays once the city exists).
* ``naive``: ``--subset`` captures (spread over all sequences) rendered one at a time by a
  renderer without the static/dynamic scene split, which must rebuild the whole ``CityScene``
  (layout, facade textures, ray-casting scene) for every image because the moving cars differ.
  Compared per image with the cold run (``ratio``) and with the same subset rendered in one
  process on one static scene built once (``split``: the speed-up of the split alone, with no
  parallelism).

Prints one line per repeat and a final summary line with medians.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time

import citysplat  # noqa: F401  (zlib before anything that might pull pycolmap)
from citysplat.synthetic.captures import plan_captures
from citysplat.synthetic.city import generate_city
from citysplat.synthetic.layout import make_layout
from citysplat.synthetic.render import render_capture
from citysplat.synthetic.scene import CityScene
from citysplat.synthetic.spec import PRESETS, preset


def spread(items: list, n: int) -> list:
    """``n`` items evenly spaced over ``items`` (all of them if there are fewer)."""
    if n >= len(items):
        return list(items)
    step = len(items) / n
    return [items[int(k * step)] for k in range(n)]


def one_repeat(size: str, subset: int) -> dict[str, float]:
    spec = preset(size)
    tmp = tempfile.mkdtemp(prefix="citysplat-bench-")
    try:
        t0 = time.perf_counter()
        city = generate_city(spec, cache_dir=tmp)
        cold = time.perf_counter() - t0
        images = len(city.metadata)

        t0 = time.perf_counter()
        again = generate_city(spec, cache_dir=tmp)
        assert len(again.metadata) == images and len(again.cameras) == images
        warm = time.perf_counter() - t0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    captures = spread(plan_captures(make_layout(spec)), subset)

    # naive: a whole scene per image
    t0 = time.perf_counter()
    for capture in captures:
        render_capture(CityScene(make_layout(spec)), capture)
    naive = (time.perf_counter() - t0) / len(captures)

    # split, one process: the static scene once, then only the movers per image
    t0 = time.perf_counter()
    scene = CityScene(make_layout(spec))
    build = time.perf_counter() - t0
    t0 = time.perf_counter()
    for capture in captures:
        render_capture(scene, capture)
    split = (time.perf_counter() - t0) / len(captures)
    return {
        "images": images, "cold_s": cold, "images_per_s": images / cold, "warm_s": warm,
        "subset": len(captures), "naive_s_per_image": naive, "cold_s_per_image": cold / images,
        "scene_build_s": build, "split_s_per_image": split,
        "ratio": naive / (cold / images), "split_ratio": naive / split,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="default", choices=sorted(PRESETS),
                        help="city preset to render (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=1, help="runs (default: %(default)s)")
    parser.add_argument("--subset", type=int, default=12,
                        help="images for the naive per-image-scene baseline (default: "
                             "%(default)s)")
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.subset < 1:
        parser.error("--repeats and --subset must be at least 1")

    print(f"render_city: size={args.size} repeats={args.repeats} subset={args.subset} "
          f"cpus={os.cpu_count()}", flush=True)
    runs = []
    for k in range(args.repeats):
        r = one_repeat(args.size, args.subset)
        runs.append(r)
        print(
            f"repeat {k + 1}: cold {r['images']} images in {r['cold_s']:.1f} s "
            f"({r['images_per_s']:.2f} images/s, {r['cold_s_per_image']:.2f} s/image); "
            f"warm cache hit {r['warm_s'] * 1000:.1f} ms; "
            f"naive {r['naive_s_per_image']:.2f} s/image over {r['subset']} images "
            f"(ratio {r['ratio']:.1f}x); one static scene in one process: build "
            f"{r['scene_build_s']:.1f} s, then {r['split_s_per_image']:.2f} s/image "
            f"(split {r['split_ratio']:.1f}x)",
            flush=True,
        )

    def med(key: str) -> float:
        return statistics.median(r[key] for r in runs)

    print(
        f"summary (medians of {len(runs)}): size={args.size} images={int(med('images'))} "
        f"cold_s={med('cold_s'):.1f} images_per_s={med('images_per_s'):.2f} "
        f"warm_ms={med('warm_s') * 1000:.1f} naive_s_per_image={med('naive_s_per_image'):.2f} "
        f"ratio={med('ratio'):.1f}x split_s_per_image={med('split_s_per_image'):.2f} "
        f"split_ratio={med('split_ratio'):.1f}x",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
