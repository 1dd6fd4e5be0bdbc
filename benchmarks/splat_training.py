"""Gaussian-splat training on the CPU: held-out PSNR over time, masks on and off, fountain-P11.

    .venv/bin/python benchmarks/splat_training.py city --minutes 10
    .venv/bin/python benchmarks/splat_training.py masks --traffic 5 --steps 800 --max-side 160 \
        --seeds 0,1,2 --eval-every 800
    .venv/bin/python benchmarks/splat_training.py fountain --steps 2000

* ``city``: the sample city's demo district (the default city cut as ``citysplat demo`` cuts
  it; ``--district``), reconstructed by the district pipeline, then trained on the CPU with
  the PyTorch rasterizer for ``--minutes`` of wall time (or ``--steps``): held-out PSNR every
  ``--eval-every`` steps against the seconds spent, iterations/s, and the PSNR of the
  initialisation (the sparse points as Gaussians: the do-nothing baseline) measured in the
  same run. Target: 22 dB within 10 minutes on 2 cores.
* ``masks``: the same district (of the city with ``--traffic`` times its moving cars and
  pedestrians) trained twice per seed of ``--seeds`` for ``--steps``, with the moving-object
  masks in the loss and without; held-out PSNR on static pixels of both, and the mean gain.
* ``fountain``: ``../shared/data/fountain-P11`` from its ground-truth cameras (features and
  triangulation with the poses fixed), trained for ``--steps``; held-out PSNR.

Each prints a final ``SUMMARY`` line. Structure from motion is not bit-reproducible (threads),
so two runs start from slightly different sparse models; ``--keep-model DIR`` builds the model
once in ``DIR`` and trains later runs on the same one (before / after a change of the trainer).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import citysplat  # noqa: F401  (zlib before pycolmap)
from citysplat.splat.config import TrainConfig
from citysplat.splat.data import load_scene
from citysplat.splat.trainer import SplatTrainer
from citysplat.synthetic.spec import preset

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def city_district(tmp: Path, district: str, **spec: int):
    """(sparse dir, {name: image path}, masks dir, {name: sequence}) of a district of the
    default city (``spec``: field overrides, e.g. more moving cars), reconstructed under
    ``tmp`` (or found there: a data root a former run kept with ``--keep-model``)."""
    from citysplat.catalog import Catalog
    from citysplat.demo import DEMO_DISTRICTS
    from citysplat.districts.stage import make_districts
    from citysplat.fixtures.data_root import make_data_root
    from citysplat.layout import DataLayout, image_file_name
    from citysplat.sfm.district import reconstruct_district
    from citysplat.synthetic.city import generate_city

    city = generate_city(preset("default", **spec))
    layout = DataLayout(tmp / "root")
    if layout.district(district).has_model():
        print(f"reusing the model of {district} under {tmp}", flush=True)
    else:
        layout = DataLayout(make_data_root(city, tmp / "root"))
        make_districts(layout, auto=DEMO_DISTRICTS)
        started = time.perf_counter()
        reconstruct_district(layout, district)
        print(f"reconstructed {district} in {time.perf_counter() - started:.0f} s", flush=True)
    images = {p.name: p for p in layout.images_dir.glob("*/*.jpg")}
    with Catalog.open_read_only(layout.catalog_path) as catalog:
        rows = catalog.images()
    sequences = {image_file_name(i): s for i, s in zip(rows["id"], rows["sequence_id"])}
    masks = city.mask_path(city.metadata[0]["id"]).parent
    return layout.district(district).sparse_dir, images, masks, sequences


def train_for(scene, config: TrainConfig, out: Path, minutes: float | None, eval_every: int
              ) -> tuple[SplatTrainer, list[dict]]:
    trainer = SplatTrainer(scene, config, out)
    curve = [{"step": 0, "seconds": 0.0, **trainer.evaluate(write_renders=False)}]
    print(json.dumps({k: curve[0][k] for k in ("step", "seconds", "psnr", "ssim")}), flush=True)
    spent = 0.0
    while trainer.step < config.steps:
        started = time.perf_counter()
        trainer.train_step()
        spent += time.perf_counter() - started
        if trainer.step % eval_every == 0 or trainer.step == config.steps:
            row = {"step": trainer.step, "seconds": round(spent, 1),
                   "gaussians": len(trainer.splats["means"]),
                   **trainer.evaluate(write_renders=False)}
            curve.append(row)
            print(json.dumps({k: row[k] for k in ("step", "seconds", "gaussians", "psnr",
                                                  "ssim", "psnr_static")}), flush=True)
        if minutes is not None and spent >= minutes * 60:
            break
    trainer.seconds = spent
    return trainer, curve


def model_dir(args, tmp: str) -> Path:
    """Where the model is built (or found): ``--keep-model``, else the run's scratch."""
    if args.keep_model:
        Path(args.keep_model).mkdir(parents=True, exist_ok=True)
        return Path(args.keep_model)
    return Path(tmp)


def bench_city(args) -> None:
    with tempfile.TemporaryDirectory(prefix="citysplat-bench-") as tmp:
        sparse, images, masks, sequences = city_district(model_dir(args, tmp), args.district)
        scene = load_scene(sparse, images, masks=masks, max_side=args.max_side,
                           sequences=sequences)
        steps = args.steps or 100_000
        config = TrainConfig(steps=steps, max_side=args.max_side, seed=args.seed)
        if args.minutes is not None and not args.steps:  # schedule for the steps that fit
            probe = SplatTrainer(scene, config, Path(tmp) / "probe")
            started = time.perf_counter()
            for _ in range(20):
                probe.train_step()
            rate = 20 / (time.perf_counter() - started)
            config = TrainConfig(steps=int(rate * args.minutes * 60 * 0.9),
                                 max_side=args.max_side, seed=args.seed)
            print(f"probe: {rate:.2f} it/s -> schedule of {config.steps} steps", flush=True)
        trainer, curve = train_for(scene, config, Path(tmp) / "out", args.minutes,
                                   args.eval_every)
        best = max(curve, key=lambda r: r["psnr"])
        first22 = next((r for r in curve if r["psnr"] >= 22.0), None)
        at22 = f"{first22['seconds']}s" if first22 else "not reached"
        print(f"SUMMARY district={args.district} train_images={len(scene.train)} "
              f"heldout={len(scene.test)} res={args.max_side}px steps={trainer.step} "
              f"seconds={trainer.seconds:.0f} it/s={trainer.step / trainer.seconds:.2f} "
              f"psnr_init={curve[0]['psnr']:.2f} psnr_final={curve[-1]['psnr']:.2f} "
              f"(+{curve[-1]['psnr'] - curve[0]['psnr']:.2f} dB) best={best['psnr']:.2f} "
              f"ssim_final={curve[-1]['ssim']:.3f} gaussians={len(trainer.splats['means'])} "
              f"22dB_at={at22}")


def bench_masks(args) -> None:
    traffic = {}
    if args.traffic != 1:  # the default city's moving cars and pedestrians, times --traffic
        default = preset("default")
        traffic = {"moving_cars": round(default.moving_cars * args.traffic),
                   "pedestrians": round(default.pedestrians * args.traffic)}  # fmt: skip
    seeds = [int(x) for x in args.seeds.split(",")]
    with tempfile.TemporaryDirectory(prefix="citysplat-bench-") as tmp:
        sparse, images, masks, sequences = city_district(Path(tmp), args.district, **traffic)
        # masks are loaded both times: the run without them still scores static pixels only
        scene = load_scene(sparse, images, masks=masks, max_side=args.max_side,
                           sequences=sequences)  # fmt: skip
        gains = []
        for seed in seeds:
            static = {}
            for label, use in (("masks", True), ("no_masks", False)):
                config = TrainConfig(steps=args.steps, max_side=args.max_side, seed=seed,
                                     masks=use)  # fmt: skip
                _, curve = train_for(scene, config, Path(tmp) / f"{label}-{seed}", None,
                                     args.eval_every)  # fmt: skip
                static[label] = curve[-1]["psnr_static"]
            gains.append(static["masks"] - static["no_masks"])
            print(f"seed {seed}: static-pixel PSNR masks {static['masks']:.3f} no_masks "
                  f"{static['no_masks']:.3f} ({gains[-1]:+.3f} dB)", flush=True)
        print(f"SUMMARY district={args.district} traffic=x{args.traffic:g} steps={args.steps} "
              f"res={args.max_side}px masked_pixels={scene.masked_pixels:.4f} seeds={seeds} "
              f"mean_gain={sum(gains) / len(gains):+.3f} dB higher_with_masks="
              f"{sum(g > 0 for g in gains)}/{len(gains)}")


def fountain_model(tmp: Path) -> tuple[Path, dict[str, Path]]:
    """(sparse dir, {name: image path}) of ``../shared/data/fountain-P11`` triangulated from
    its ground-truth cameras (features and matching with the poses fixed) under ``tmp``, or
    found there (kept by a former run with ``--keep-model``)."""
    from citysplat.groundtruth import read_strecha_cameras
    from citysplat.layout import SfmLayout
    from citysplat.sfm.known_poses import KnownCamera, triangulate_known_poses

    root = SHARED / "fountain-P11"
    if not root.is_dir():
        raise SystemExit("../shared/data/fountain-P11 is not beside this checkout")
    truth = read_strecha_cameras(root)
    images = {p.name: p for p in sorted((root / "images").glob("*.jpg")) if p.name in truth}
    cameras = {n: KnownCamera(c.K, c.width, c.height, *c.world_to_camera())
               for n, c in truth.items()}  # fmt: skip
    model = SfmLayout(tmp)
    if model.has_model():
        print(f"reusing the triangulated model under {tmp}", flush=True)
        return model.sparse_dir, images
    started = time.perf_counter()
    sparse = triangulate_known_poses(images, cameras, model.work_dir, model.sparse_dir)
    print(f"triangulated from the true cameras in {time.perf_counter() - started:.0f} s",
          flush=True)  # fmt: skip
    return sparse, images


def bench_fountain(args) -> None:
    with tempfile.TemporaryDirectory(prefix="citysplat-bench-") as tmp:
        sparse, images = fountain_model(model_dir(args, tmp))
        scene = load_scene(sparse, images, max_side=args.max_side, test_every=4)
        config = TrainConfig(steps=args.steps, max_side=args.max_side, seed=args.seed,
                             sky=False, appearance=False, test_every=4)
        trainer, curve = train_for(scene, config, Path(tmp) / "out", args.minutes,
                                   args.eval_every)
        print(f"SUMMARY fountain-P11 train_images={len(scene.train)} heldout={len(scene.test)} "
              f"res={args.max_side}px steps={trainer.step} seconds={trainer.seconds:.0f} "
              f"psnr_init={curve[0]['psnr']:.2f} psnr_final={curve[-1]['psnr']:.2f} "
              f"ssim_final={curve[-1]['ssim']:.3f} gaussians={len(trainer.splats['means'])}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["city", "masks", "fountain"])
    parser.add_argument("--district", default="d000-a")
    parser.add_argument("--minutes", type=float, default=None)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--max-side", type=int, default=320)
    parser.add_argument("--eval-every", type=int, default=250)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--seeds", default="0", help="masks: one pair of runs per seed")
    parser.add_argument("--traffic", type=float, default=1.0,
                        help="masks: moving cars and pedestrians, times the default city's")
    parser.add_argument("--keep-model", default=None,
                        help="city, fountain: build the sparse model in this folder, or reuse "
                        "the one there (compare two versions of the trainer on one model)")
    args = parser.parse_args()
    if args.what in ("masks", "fountain") and not args.steps:
        args.steps = 1500
    {"city": bench_city, "masks": bench_masks, "fountain": bench_fountain}[args.what](args)


if __name__ == "__main__":
    main()
