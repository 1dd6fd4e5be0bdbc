"""Sizes, errors and speed of a splat's compact files (SPZ, compressed PLY) against its 3DGS PLY.

    .venv/bin/python benchmarks/splat_formats.py                 # the demo's districts
    .venv/bin/python benchmarks/splat_formats.py --synthetic 1000000

For each splat (the demo's trained districts, ``--home``; and with ``--synthetic N`` a
generated one: N Gaussians over 300 m x 300 m x 30 m, most along four streets, SH degree 3):
the PLY (baseline: its write and read time, its size) and each compact file written, read back
and compared (:func:`citysplat.splat.formats.write_compact_formats`): bytes and the ratio to the
PLY, position error (max, median, share within 1 mm), base colour and opacity error (1/255), the
higher SH coefficients' error, write and read seconds. Median of ``--repeats`` runs.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from citysplat.layout import DataLayout, SplatLayout
from citysplat.splat.export import SplatArrays, read_ply, write_ply
from citysplat.splat.formats import reports_as_metrics, write_compact_formats


def synthetic(n: int, seed: int = 0) -> SplatArrays:
    """A district-shaped splat: 80 % of the Gaussians along four streets, degree-3 SH."""
    rng = np.random.default_rng(seed)
    street = rng.random(n) < 0.8
    means = rng.uniform([-150, -150, 0], [150, 150, 30], (n, 3))
    axis = rng.integers(0, 2, n)
    offset = rng.choice([-60.0, 60.0], n) + rng.normal(0, 8, n)
    means[street & (axis == 0), 1] = offset[street & (axis == 0)]
    means[street & (axis == 1), 0] = offset[street & (axis == 1)]
    means[street, 2] = np.abs(rng.normal(0, 4, street.sum()))
    quats = rng.normal(size=(n, 4))
    return SplatArrays(means.astype(np.float32),
                       rng.normal(-3.0, 1.0, (n, 3)).astype(np.float32),
                       (quats / np.linalg.norm(quats, axis=1, keepdims=True)).astype(np.float32),
                       rng.normal(0, 2, n).astype(np.float32),
                       rng.normal(0, 0.8, (n, 1, 3)).astype(np.float32),
                       rng.normal(0, 0.05, (n, 15, 3)).astype(np.float32))


def measure(name: str, splats: SplatArrays, folder: Path, repeats: int) -> dict:
    layout = SplatLayout(folder)
    folder.mkdir(parents=True, exist_ok=True)
    runs = []
    for _ in range(repeats):
        t = time.perf_counter()
        write_ply(layout.ply, splats.means, splats.scales_log, splats.quats,
                  splats.opacities_logit, splats.sh0, splats.shN)
        ply_write = time.perf_counter() - t
        t = time.perf_counter()
        read_ply(layout.ply)
        ply_read = time.perf_counter() - t
        runs.append((ply_write, ply_read, reports_as_metrics(write_compact_formats(layout,
                                                                                  splats))))
    ply_write = float(np.median([r[0] for r in runs]))
    ply_read = float(np.median([r[1] for r in runs]))
    out = {"splats": splats.num_splats, "sh_degree": splats.sh_degree,
           "ply_bytes": layout.ply.stat().st_size, "ply_write_s": round(ply_write, 3),
           "ply_read_s": round(ply_read, 3)}
    for fmt in ("spz", "compressed_ply"):
        keys = runs[0][2][fmt].keys()
        out[fmt] = {k: (float(np.median([r[2][fmt][k] for r in runs]))
                        if isinstance(runs[0][2][fmt][k], (int, float)) else runs[0][2][fmt][k])
                    for k in keys}
    print(f"\n{name}: {out['splats']:,} Gaussians (SH {out['sh_degree']}), PLY "
          f"{out['ply_bytes'] / 1e6:.2f} MB (write {ply_write:.3f} s, read {ply_read:.3f} s)")
    for fmt in ("spz", "compressed_ply"):
        f = out[fmt]
        print(f"  {fmt:15s} {f['bytes'] / 1e6:7.2f} MB ({1 / f['ratio_to_ply']:.1f}x smaller), "
              f"position max {f['position_max_m'] * 1000:.2f} mm median "
              f"{f['position_median_m'] * 1000:.2f} mm ({f['share_within_1mm']:.1%} within "
              f"1 mm), colour {f['colour_max_255']:.2f}/255, opacity "
              f"{f['opacity_max_255']:.2f}/255, SH {f['sh_rest_max']:.4f}, write "
              f"{f['write_seconds']:.3f} s, read {f['read_seconds']:.3f} s")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, default=Path("citysplat-data/demo"))
    parser.add_argument("--synthetic", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="splat-formats-"))
    results = {}
    layout = DataLayout(args.home)
    if layout.districts_index.is_file():
        for name in json.loads(layout.districts_index.read_text())["districts"]:
            ply = layout.district(name).splat.ply
            if ply.is_file():
                results[name] = measure(name, read_ply(ply), work / name, args.repeats)
    if args.synthetic:
        results["synthetic"] = measure(f"synthetic district ({args.synthetic:,})",
                                       synthetic(args.synthetic), work / "synthetic",
                                       args.repeats)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
