"""citysplat's trainer against gsplat's own ``examples/simple_trainer.py``, on an NVIDIA GPU.

    # anywhere (the CPU is fine): the sample city's demo district as an undistorted dataset
    .venv/bin/python benchmarks/splat_vs_gsplat.py prepare DATA [--district d000-a]
    .venv/bin/python benchmarks/splat_vs_gsplat.py prepare FOUNTAIN --fountain --max-side 1024
    # on a CUDA machine, beside a gsplat checkout (v1.5.3) with its examples' requirements
    python benchmarks/splat_vs_gsplat.py run DATA --examples GSPLAT/examples --steps 3000

``prepare`` reconstructs the district as ``citysplat demo`` cuts it and writes it with
:func:`citysplat.splat.dataset_export.write_pinhole_dataset` (``images/`` PNG, ``masks/``,
``sparse/0`` PINHOLE) at ``--max-side`` (640: the city's full resolution), so both trainers read
the same pixels, cameras and held-out split (every 8th image from the first). Its images are
JPEG (quality 95) by default, so the dataset travels light; both trainers decode the same files.

``run`` measures, in one process per trainer, on the same GPU and data:

* ``backends``: citysplat's trainer with its PyTorch rasterizer and with gsplat's CUDA
  rasterizer, same seed and schedule (``--parity-steps`` at 160 px): held-out PSNR of both.
* ``citysplat``: citysplat's trainer (gsplat backend, ``DefaultStrategy``, appearance and sky,
  no masks) for ``--steps``: iterations/s, held-out PSNR and SSIM, Gaussians.
* ``simple_trainer``: gsplat's ``simple_trainer.py default`` on the same dataset for the same
  steps (``--data_factor 1 --test_every 8``, its defaults otherwise): the same figures, from its
  ``stats/*.json``. The ratio is citysplat's iterations/s over simple_trainer's.
* ``masks``: for each of ``--seeds``, citysplat with the moving-object masks in the loss and
  without (training on every pixel): held-out PSNR on static pixels of both.
* ``mcmc``: citysplat with gsplat's ``MCMCStrategy``.

The runs of ``backends`` share the GPU, as do those of ``masks`` (their rows say
``concurrent_runs``); the others run alone. ``--config`` sets training settings (the flat
names of ``TrainConfig.from_settings``, e.g. ``prune_opa``) of every citysplat run (``'{"sky": false, "appearance": false, "test_every": 4}'`` for fountain-P11).

simple_trainer runs unmodified. Its viewer is disabled (``--disable_viewer``); where viser or
nerfview are not installed, empty stand-ins satisfy its imports, and where torchvision cannot
download the LPIPS backbone (an offline machine), LPIPS is reported as NaN. Results go to
``--out`` (``results.json``) and to ``SUMMARY`` lines.
"""

from __future__ import annotations

import argparse
import json
import os
import runpy
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent
BACKENDS = ("torch", "gsplat")
sys.path.insert(0, str(BENCHMARKS.parent))

import citysplat  # noqa: E402,F401  (zlib before pycolmap)


# ---------------------------------------------------------------------- prepare
def prepare(args: argparse.Namespace) -> None:
    """Reconstruct the demo district (or triangulate fountain-P11 from its true cameras) and
    write it as an undistorted dataset."""
    sys.path.insert(0, str(BENCHMARKS))
    from splat_training import city_district, fountain_model

    from citysplat.splat.data import load_scene
    from citysplat.splat.dataset_export import write_pinhole_dataset

    out = Path(args.data)
    test_every = 4 if args.fountain else 8
    with tempfile.TemporaryDirectory(prefix="citysplat-bench-") as tmp:
        if args.fountain:
            (sparse, images), masks, sequences = fountain_model(Path(tmp)), None, {}
        else:
            sparse, images, masks, sequences = city_district(Path(tmp), args.district)
        scene = load_scene(sparse, images, masks=masks, max_side=args.max_side,
                           test_every=test_every)  # fmt: skip
        write_pinhole_dataset(sparse, scene, out, image_format=args.format)
    named = {f"{Path(name).stem}.{args.format}": seq for name, seq in sequences.items()}
    (out / "sequences.json").write_text(json.dumps(named, indent=0) + "\n")
    print(
        f"SUMMARY prepared {'fountain-P11' if args.fountain else args.district}: "
        f"{len(scene.views)} views ({len(scene.test)} held out, every {test_every}th) at "
        f"{scene.views[0].width}x{scene.views[0].height}, {len(scene.points)} points, "
        f"masked pixels {scene.masked_pixels:.4f} -> {out}"
    )


# ---------------------------------------------------------------------- citysplat runs
def _scene(data: Path, max_side: int, test_every: int):
    from citysplat.splat.data import load_scene

    sequences = json.loads((data / "sequences.json").read_text())
    return load_scene(
        data / "sparse" / "0",
        data / "images",
        masks=data / "masks",
        max_side=max_side,
        test_every=test_every,
        sequences=sequences,
    )


def citysplat_run(data: Path, out: Path, steps: int, max_side: int, **config) -> dict:
    """Train citysplat on ``data``; the figures of its ``metrics.json``."""
    import torch

    from citysplat.splat.config import TrainConfig
    from citysplat.splat.trainer import train_scene

    cfg = TrainConfig.from_settings(
        {"steps": steps, "max_side": max_side, "checkpoint_every": steps, **config}
    )
    scene = _scene(data, max_side, cfg.test_every)
    m = train_scene(scene, cfg, out).metrics
    keep = ("psnr", "ssim", "psnr_static", "num_gaussians", "steps", "seconds", "backend")
    row = {k: m[k] for k in keep}
    row["it_per_s"] = round(m["steps"] / m["seconds"], 2)
    if torch.cuda.is_available():
        row["peak_gpu_mib"] = round(torch.cuda.max_memory_allocated() / 2**20)
    return row


def _child(args: argparse.Namespace) -> None:
    """One citysplat run in this process (a fresh CUDA context per run)."""
    config = json.loads(args.config)
    row = citysplat_run(Path(args.data), Path(args.out), args.steps, args.max_side, **config)
    Path(args.out, "row.json").write_text(json.dumps(row))


def _in_children(data: Path, out: Path, runs: dict[str, tuple[int, int, dict]]) -> dict:
    """Each run ``label: (steps, max_side, config)`` in its own process, all at once (they
    share the GPU: their iterations/s are not comparable with a run made alone)."""
    procs = {}
    for label, (steps, max_side, config) in runs.items():
        command = [sys.executable, __file__, "_child", str(data), "--out", str(out / label),
                   "--steps", str(steps), "--max-side", str(max_side),
                   "--config", json.dumps(config)]  # fmt: skip
        procs[label] = subprocess.Popen(command)
    rows = {}
    for label, proc in procs.items():
        if proc.wait() != 0:
            raise SystemExit(f"the {label} run failed (exit {proc.returncode})")
        rows[label] = json.loads((out / label / "row.json").read_text())
        rows[label]["concurrent_runs"] = len(runs)
        print(json.dumps({"run": label, **rows[label]}), flush=True)
    return rows


# ---------------------------------------------------------------------- simple_trainer
class _StandIn(types.ModuleType):
    """A module whose every attribute is an empty class (satisfies imports of viewer code)."""

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        value = type(name, (), {"__init__": lambda self, *a, **k: None})
        setattr(self, name, value)
        return value


def _offline_lpips() -> None:
    """LPIPS as NaN where torchvision cannot fetch its backbone weights."""
    import torch
    import torchmetrics.image.lpip as lpip

    real = lpip.LearnedPerceptualImagePatchSimilarity

    class OfflineLPIPS(torch.nn.Module):
        def forward(self, *_):
            return torch.tensor(float("nan"))

    def make(*args, **kwargs):
        try:
            return real(*args, **kwargs)
        except Exception as error:  # noqa: BLE001  (no network: any download error)
            print(f"LPIPS unavailable ({type(error).__name__}): reported as NaN", flush=True)
            return OfflineLPIPS()

    lpip.LearnedPerceptualImagePatchSimilarity = make


def simple_trainer(args: argparse.Namespace) -> None:
    """Run gsplat's examples/simple_trainer.py with ``args.rest`` (this process)."""
    examples = Path(args.examples).resolve()
    sys.path.insert(0, str(examples))
    for name in ("viser", "nerfview"):
        try:
            __import__(name)
        except ImportError:
            sys.modules[name] = _StandIn(name)
    _offline_lpips()
    script = examples / "simple_trainer.py"
    sys.argv = [str(script), *args.rest]
    runpy.run_path(str(script), run_name="__main__")


def simple_trainer_run(
    examples: Path | None, data: Path, out: Path, steps: int, pythonpath: str | None = None
) -> dict:
    """simple_trainer in a child process (``pythonpath`` first on its path: its own
    dependencies, e.g. the pure-Python ``pycolmap`` its COLMAP parser imports)."""
    if examples is None:
        raise SystemExit("simple_trainer needs --examples (gsplat's examples/ folder)")
    result = out / "simple_trainer"
    command = [sys.executable, __file__, "simple-trainer", "--examples", str(examples), "--",
               "default", "--disable_viewer", "--disable_video", "--data_dir", str(data),
               "--data_factor", "1", "--test_every", "8", "--result_dir", str(result),
               "--max_steps", str(steps), "--eval_steps", str(steps),
               "--save_steps", str(steps)]  # fmt: skip
    env = dict(os.environ)
    if pythonpath:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [pythonpath, env.get("PYTHONPATH")]))
    subprocess.run(command, check=True, env=env)
    train = json.loads((result / "stats" / f"train_step{steps - 1:04d}_rank0.json").read_text())
    val = json.loads((result / "stats" / f"val_step{steps - 1:04d}.json").read_text())
    row = {
        "psnr": val["psnr"],
        "ssim": val["ssim"],
        "lpips": val.get("lpips"),
        "num_gaussians": val["num_GS"],
        "steps": steps,
        "seconds": round(train["ellipse_time"], 2),
        "it_per_s": round(steps / train["ellipse_time"], 2),
        "peak_gpu_mib": round(train["mem"] * 1024),
    }
    print(json.dumps({"run": "simple_trainer", **row}), flush=True)
    return row


# ---------------------------------------------------------------------- profile
def profile(args: argparse.Namespace) -> None:
    """Where a citysplat step spends its time: torch.profiler over ``--steps`` steps after
    ``--warmup`` (densification running), by the trainer's stage labels and by operator."""
    import torch
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    from citysplat.splat.config import TrainConfig
    from citysplat.splat.trainer import SplatTrainer

    total = args.warmup + args.steps
    cfg = TrainConfig.from_settings({"steps": 10 * total, "max_side": args.max_side,
                                     "checkpoint_every": 10 * total, "masks": False,
                                     **json.loads(args.config)})  # fmt: skip
    scene = _scene(Path(args.data), args.max_side, cfg.test_every)
    with tempfile.TemporaryDirectory(prefix="citysplat-profile-") as tmp:
        trainer = SplatTrainer(scene, cfg, tmp)
        for _ in range(args.warmup):
            trainer.train_step()
        activities = [ProfilerActivity.CPU]
        if torch.cuda.is_available():
            activities.append(ProfilerActivity.CUDA)
            torch.cuda.synchronize()
        started = time.perf_counter()
        with torch_profile(activities=activities) as prof:
            for _ in range(args.steps):
                trainer.train_step()
            if torch.cuda.is_available():
                torch.cuda.synchronize()
        seconds = time.perf_counter() - started
    table = prof.key_averages()
    stages = [e for e in table if e.key.startswith("citysplat.")]
    print(f"SUMMARY profile: {args.steps} steps in {seconds:.2f} s under the profiler "
          f"({args.steps / seconds:.1f} it/s), {len(trainer.splats['means'])} Gaussians")
    for e in sorted(stages, key=lambda e: -e.cpu_time_total):
        print(f"  {e.key:<22} {e.cpu_time_total / 1e3 / args.steps:7.2f} ms/step (CPU side)")
    sort = "cuda_time_total" if torch.cuda.is_available() else "cpu_time_total"
    print(table.table(sort_by=sort, row_limit=25))
    print(table.table(sort_by="self_cpu_time_total", row_limit=25))


# ---------------------------------------------------------------------- run
def run(args: argparse.Namespace) -> None:
    import torch

    if not torch.cuda.is_available():
        raise SystemExit("run needs an NVIDIA GPU (gsplat's CUDA rasterizer)")
    data, out = Path(args.data).resolve(), Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + args.budget_s
    results: dict = {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__,
                     "steps": args.steps, "max_side": args.max_side}  # fmt: skip

    def save() -> None:
        (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")

    def left() -> float:
        return deadline - time.monotonic()

    def phase(name: str, fn) -> None:
        """Run one measurement; a failure is recorded and the next one still runs."""
        if not set(name.split("+")) & set(args.only.split(",")) or left() <= 0:
            return
        try:
            results.update(fn())
        except (subprocess.CalledProcessError, SystemExit, OSError, KeyError, TypeError) as error:
            results.setdefault("failed", {})[name] = str(error)
            print(f"{name} failed: {error}", flush=True)
        save()

    base = json.loads(args.config)
    n = args.parity_steps
    parity = {f"parity-{b}": (n, 160, {**base, "backend": b, "seed": 1}) for b in BACKENDS}
    phase("backends", lambda: {
        "backends": {b: row for (label, row), b in
                     zip(_in_children(data, out, parity).items(), BACKENDS)}})  # fmt: skip
    alone = {"citysplat": (args.steps, args.max_side, {**base, "masks": False})}
    phase("citysplat", lambda: _in_children(data, out, alone))
    phase("simple_trainer", lambda: {"simple_trainer": simple_trainer_run(
        args.examples and Path(args.examples), data, out, args.steps, args.simple_trainer_pythonpath)})  # fmt: skip
    seeds = [int(x) for x in args.seeds.split(",")]
    pairs = {
        f"{label}-s{seed}": (args.steps, args.max_side, {**base, "masks": use, "seed": seed})
        for seed in seeds
        for label, use in (("masks", True), ("nomasks", False))
    }

    def masks_phase() -> dict:
        rows = _in_children(data, out, pairs)
        with_, without = ([rows[f"{k}-s{s}"]["psnr_static"] for s in seeds]
                          for k in ("masks", "nomasks"))  # fmt: skip
        return {"masks": {"seeds": seeds, "psnr_static_masks": with_,
                          "psnr_static_no_masks": without, "runs": rows}}  # fmt: skip

    phase("masks", masks_phase)
    mcmc = {"mcmc": (args.steps, args.max_side, {**base, "masks": False, "strategy": "mcmc"})}
    phase("mcmc", lambda: _in_children(data, out, mcmc))
    summarize(results)


def summarize(results: dict) -> None:
    gpu = results["gpu"]
    if "backends" in results:
        t, g = results["backends"]["torch"], results["backends"]["gsplat"]
        print(f"SUMMARY backends on {gpu}: {t['steps']} steps at 160 px, held-out PSNR torch "
              f"{t['psnr']:.2f} dB, gsplat {g['psnr']:.2f} dB (diff "
              f"{g['psnr'] - t['psnr']:+.2f}); it/s torch {t['it_per_s']}, gsplat "
              f"{g['it_per_s']}")  # fmt: skip
    c, s = results.get("citysplat"), results.get("simple_trainer")
    if c and s:
        print(f"SUMMARY trainers on {gpu}, {c['steps']} steps at {results['max_side']} px: "
              f"citysplat {c['it_per_s']} it/s, PSNR {c['psnr']:.2f}, SSIM {c['ssim']:.3f}, "
              f"{c['num_gaussians']} Gaussians | simple_trainer {s['it_per_s']} it/s, PSNR "
              f"{s['psnr']:.2f}, SSIM {s['ssim']:.3f}, {s['num_gaussians']} Gaussians | "
              f"throughput ratio {c['it_per_s'] / s['it_per_s']:.2f}x")  # fmt: skip
    if c and not s:
        print(f"SUMMARY citysplat on {gpu}, {c['steps']} steps at {results['max_side']} px: "
              f"{c['it_per_s']} it/s, PSNR {c['psnr']:.2f}, SSIM {c['ssim']:.3f}, "
              f"{c['num_gaussians']} Gaussians")  # fmt: skip
    if results.get("masks"):
        m = results["masks"]
        diffs = [a - b for a, b in zip(m["psnr_static_masks"], m["psnr_static_no_masks"])]
        print(f"SUMMARY masks on {gpu}, seeds {m['seeds']}: static-pixel PSNR with masks "
              f"{[round(x, 3) for x in m['psnr_static_masks']]}, without "
              f"{[round(x, 3) for x in m['psnr_static_no_masks']]}; mean gain "
              f"{sum(diffs) / len(diffs):+.3f} dB, higher with masks in "
              f"{sum(d > 0 for d in diffs)}/{len(diffs)} seeds")  # fmt: skip
    if results.get("mcmc"):
        m = results["mcmc"]
        print(f"SUMMARY mcmc on {gpu}: PSNR {m['psnr']:.2f}, SSIM {m['ssim']:.3f}, "
              f"{m['num_gaussians']} Gaussians, {m['it_per_s']} it/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("data")
    p.add_argument("--district", default="d000-a")
    p.add_argument("--fountain", action="store_true", help="../shared/data/fountain-P11")
    p.add_argument("--max-side", type=int, default=640)
    p.add_argument("--format", choices=["png", "jpg"], default="jpg", help="jpg: a small copy")
    r = sub.add_parser("run")
    r.add_argument("data")
    r.add_argument("--examples", help="gsplat's examples/ folder (v1.5.3): simple_trainer")
    r.add_argument("--simple-trainer-pythonpath", help="prepended to PYTHONPATH for it")
    r.add_argument("--out", default="splat-vs-gsplat")
    r.add_argument("--steps", type=int, default=3000)
    r.add_argument("--max-side", type=int, default=640)
    r.add_argument("--parity-steps", type=int, default=300)
    r.add_argument("--budget-s", type=float, default=1e9, help="start no run after this")
    r.add_argument("--only", default="backends,citysplat,simple_trainer,masks,mcmc")
    r.add_argument("--seeds", default="0", help="masks: one pair of runs per seed")
    r.add_argument("--config", default="{}", help="TrainConfig fields for citysplat (JSON)")
    f = sub.add_parser("profile")
    f.add_argument("data")
    f.add_argument("--steps", type=int, default=100)
    f.add_argument("--warmup", type=int, default=300)
    f.add_argument("--max-side", type=int, default=640)
    f.add_argument("--config", default="{}")
    c = sub.add_parser("_child")
    c.add_argument("data")
    c.add_argument("--out", required=True)
    c.add_argument("--steps", type=int, required=True)
    c.add_argument("--max-side", type=int, required=True)
    c.add_argument("--config", required=True)
    s = sub.add_parser("simple-trainer")
    s.add_argument("--examples", required=True)
    s.add_argument("rest", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    if getattr(args, "rest", None) and args.rest[0] == "--":
        args.rest = args.rest[1:]
    commands = {"prepare": prepare, "run": run, "profile": profile, "_child": _child,
                "simple-trainer": simple_trainer}  # fmt: skip
    commands[args.command](args)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
