"""Reconstructing a district with the selected pairs vs exhaustive matching, in the same run.

    .venv/bin/python benchmarks/district_matching.py --size default --district d000-a

Builds a data root for the generated city (its images recorded as downloaded), cuts it into
the demo's districts (at most 150 images, overlapping chunks), then reconstructs one district
twice from scratch (fresh feature database each time, so both pay for features):

* ``selected``: :func:`citysplat.pairs.select_pairs` (position, heading, sequence), the
  district pipeline's default;
* ``exhaustive``: every pair of the district's images (the naive baseline).

For each: pairs matched, verified pairs, seconds for matching and in all, registered / usable
images, and the pose error in the district's ENU frame against the ground truth (no alignment:
centre metres, rotation degrees, medians and max). The final ``SUMMARY`` line gives the ratios
(exhaustive / selected) of pairs and of matching and total time.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import citysplat  # noqa: F401  (zlib before pycolmap)
from citysplat.demo import DEMO_DISTRICTS
from citysplat.districts.stage import make_districts
from citysplat.fixtures.data_root import make_data_root
from citysplat.groundtruth import city_true_poses, pose_errors
from citysplat.layout import DataLayout, image_id_of
from citysplat.sfm.district import reconstruct_district
from citysplat.synthetic.city import generate_city
from citysplat.synthetic.spec import preset


def run(layout: DataLayout, city, name: str, exhaustive: bool, scratch: Path) -> dict:
    label = "exhaustive" if exhaustive else "selected"
    started = time.perf_counter()
    outcome = reconstruct_district(layout, name, exhaustive=exhaustive,
                                   out_dir=scratch / label, work_dir=scratch / f"{label}-work")
    wall = time.perf_counter() - started
    sfm = outcome.sfm
    poses = sfm.poses()
    truth = city_true_poses(city, sfm.frame, [image_id_of(n) for n in poses])
    errors = pose_errors(poses, truth, align=False).summary()
    usable = sfm.total_images - len(sfm.unusable)
    row = {
        "method": label, "pairs": outcome.pairs, "all_pairs": outcome.all_pairs,
        "verified_pairs": sfm.metrics["verified_pairs"],
        "features_s": round(sfm.timings.get("features", 0.0), 1),
        "matching_s": round(sfm.timings.get("matching", 0.0), 1),
        "mapping_s": round(sfm.timings.get("mapping", 0.0), 1),
        "total_s": round(wall, 1),
        "registered": sfm.registered_images, "usable": usable,
        "centre_median_m": round(errors["center_error_median"], 3),
        "centre_max_m": round(errors["center_error_max"], 2),
        "rotation_median_deg": round(errors["rotation_deg_median"], 3),
        "rotation_max_deg": round(errors["rotation_deg_max"], 2),
    }
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="default")
    parser.add_argument("--district", default="d000-a")
    parser.add_argument("--selected-only", action="store_true",
                        help="only the selected pairs (registration and accuracy, no baseline)")
    args = parser.parse_args()
    city = generate_city(preset(args.size))
    with tempfile.TemporaryDirectory(prefix="citysplat-bench-") as tmp:
        root = make_data_root(city, Path(tmp) / "root")
        layout = DataLayout(root)
        names = make_districts(layout, auto=DEMO_DISTRICTS).names
        if args.district not in names:
            raise SystemExit(f"no district {args.district}; this city has {', '.join(names)}")
        selected = run(layout, city, args.district, False, Path(tmp))
        if args.selected_only:
            print(f"SUMMARY district={args.district} selected pairs={selected['pairs']} "
                  f"registered {selected['registered']}/{selected['usable']} centre median "
                  f"{selected['centre_median_m']} m (max {selected['centre_max_m']}) rotation "
                  f"median {selected['rotation_median_deg']} deg "
                  f"(max {selected['rotation_max_deg']})")  # fmt: skip
            return
        exhaustive = run(layout, city, args.district, True, Path(tmp))
    print(f"SUMMARY district={args.district} images={selected['usable']} "
          f"pairs selected={selected['pairs']} exhaustive={exhaustive['pairs']} "
          f"({exhaustive['pairs'] / selected['pairs']:.1f}x) "
          f"matching {selected['matching_s']} s vs {exhaustive['matching_s']} s "
          f"({exhaustive['matching_s'] / max(selected['matching_s'], 1e-9):.1f}x) "
          f"total {selected['total_s']} s vs {exhaustive['total_s']} s "
          f"({exhaustive['total_s'] / selected['total_s']:.1f}x) "
          f"registered {selected['registered']}/{selected['usable']} vs "
          f"{exhaustive['registered']}/{exhaustive['usable']} "
          f"centre median {selected['centre_median_m']} m vs {exhaustive['centre_median_m']} m "
          f"rotation median {selected['rotation_median_deg']} vs "
          f"{exhaustive['rotation_median_deg']} deg")


if __name__ == "__main__":
    main()
