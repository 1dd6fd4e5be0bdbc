"""Training Gaussian splats on the CPU (the PyTorch rasterizer): held-out PSNR rises, the run
is deterministic, a killed run resumes, the PLY loads, bad input is one line. The trainer on
gsplat's CUDA kernels is exercised where a GPU exists (skipped here, named so)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from citysplat.layout import SplatLayout
from citysplat.splat.config import TrainConfig
from citysplat.splat.data import load_scene
from citysplat.splat.district import train_district
from citysplat.splat.export import read_ply
from citysplat.splat.trainer import SplatTrainer

CLI = str(Path(sys.executable).with_name("citysplat"))
FAST = dict(max_side=80, test_every=5, checkpoint_every=40, sh_degree=1)


def _masks(city) -> Path:
    return city.mask_path(city.metadata[0]["id"]).parent


def test_training_on_cpu_raises_heldout_psnr_and_exports_a_ply(corner_model, tiny_city,
                                                               tmp_path):
    layout, name = corner_model
    config = TrainConfig(steps=120, **FAST)
    images = {p.name: p for p in layout.images_dir.glob("*/*.jpg")}
    scene = load_scene(layout.district(name).sparse_dir, images, max_side=80, test_every=5)
    before = SplatTrainer(scene, config, tmp_path / "scratch").evaluate(write_renders=False)
    result = train_district(layout, name, config, masks=_masks(tiny_city),
                            out_dir=tmp_path / "splat")
    m = result.metrics
    print(f"\ncorner district, 120 CPU steps at 80 px: held-out PSNR {before['psnr']:.2f} -> "
          f"{m['psnr']:.2f} dB, SSIM {m['ssim']:.3f}, {m['num_gaussians']} Gaussians, "
          f"{m['iterations_per_second']:.1f} it/s")
    assert m["backend"] == "torch" and m["held_out"] and m["eval_images"] >= 2
    assert m["psnr"] >= before["psnr"] + 3.0
    assert m["psnr"] >= 15.0
    splats = read_ply(result.ply_path)
    assert splats.num_splats == m["num_gaussians"] and splats.sh_degree == 1
    assert SplatLayout(tmp_path / "splat").frame_json.read_text() == \
        layout.district(name).frame_json.read_text()
    assert len(result.renders) == m["eval_images"] and result.renders[0].stat().st_size > 1000
    assert json.loads(result.metrics_path.read_text())["steps"] == 120
    # the compact files beside the PLY, read back: SPZ to a quarter millimetre, both smaller
    from citysplat.splat.compressed_ply import read_compressed_ply
    from citysplat.splat.spz import read_spz

    out = SplatLayout(tmp_path / "splat")
    assert read_spz(out.spz).num_splats == read_compressed_ply(out.compressed_ply).num_splats \
        == splats.num_splats
    formats = m["formats"]
    assert formats["spz"]["position_max_m"] <= 0.001 and formats["spz"]["colour_max_255"] <= 2
    assert formats["compressed_ply"]["colour_max_255"] <= 2
    assert all(f["bytes"] < 0.3 * result.ply_path.stat().st_size for f in formats.values())


def test_the_same_seed_gives_the_same_splat(corner_model, tmp_path):
    layout, name = corner_model
    config = TrainConfig(steps=15, **FAST)
    a = train_district(layout, name, config, out_dir=tmp_path / "a")
    b = train_district(layout, name, config, out_dir=tmp_path / "b")
    pa, pb = read_ply(a.ply_path), read_ply(b.ply_path)
    assert np.array_equal(pa.means, pb.means) and np.array_equal(pa.sh0, pb.sh0)
    c = train_district(layout, name, TrainConfig(steps=15, seed=1, **FAST),
                       out_dir=tmp_path / "c")
    assert not np.array_equal(read_ply(c.ply_path).means, pa.means)


def test_kill_9_during_training_then_rerun_resumes(corner_model, tmp_path):
    layout, name = corner_model
    sparse = layout.district(name).sparse_dir
    images = tmp_path / "images"
    images.mkdir()
    for p in layout.images_dir.glob("*/*.jpg"):
        os.link(p, images / p.name)
    out = tmp_path / "out"
    args = [CLI, "train-model", str(sparse), str(images), "--out", str(out), "--steps", "40",
            "--max-side", "64", "--checkpoint-every", "10"]
    env = {**os.environ, "COLUMNS": "200"}
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=env)
    checkpoint = SplatLayout(out).checkpoint
    deadline = time.time() + 300
    while not checkpoint.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert checkpoint.exists(), "no checkpoint was written before the kill"
    assert not list(checkpoint.parent.glob(".latest.*"))  # no torn temporary file
    assert not SplatLayout(out).metrics_json.exists()
    again = subprocess.run(args, capture_output=True, text=True, env=env, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    metrics = json.loads(SplatLayout(out).metrics_json.read_text())
    assert metrics["steps"] == 40 and metrics["resumed_from"] >= 10
    assert "resumed from step" in again.stdout
    # the resumed run ends where an uninterrupted one does
    whole = train_district(layout, name, TrainConfig(steps=40, max_side=64,
                                                     checkpoint_every=10),
                           out_dir=tmp_path / "whole")
    assert np.allclose(read_ply(SplatLayout(out).ply).means,
                       read_ply(whole.ply_path).means, atol=1e-5)


def test_train_commands_answer_bad_input_in_one_line(corner_model, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from citysplat.cli import app

    layout, name = corner_model
    monkeypatch.setenv("CITYSPLAT_HOME", str(layout.root))
    cases = [
        (["train-model", str(tmp_path), str(tmp_path), "--out", str(tmp_path / "o")],
         "holds no COLMAP model"),
        (["train", name, "--backend", "magic"],
         "backend must be one of auto, gsplat, torch (got 'magic')"),
        (["train", name, "--strategy", "mcmc", "--prune-opa", "0.1"],
         "prune_opa is a setting of strategy default, not of mcmc"),
        (["train", "nowhere"], "no district 'nowhere'"),
        (["train", name, "--steps", "0"], "at least 1"),
    ]
    if not torch.cuda.is_available():
        cases.append((["train", name, "--backend", "gsplat", "--steps", "2"],
                      "needs an NVIDIA GPU"))
    for args, needle in cases:
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 2, (args, result.output)
        assert needle in result.stderr and "Traceback" not in result.stderr, result.stderr


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU (CUDA)")
def test_trainer_on_gsplat_cuda_matches_the_torch_backend(corner_model, tmp_path):
    layout, name = corner_model
    cuda = train_district(layout, name, TrainConfig(steps=150, backend="gsplat", **FAST),
                          out_dir=tmp_path / "cuda")
    cpu = train_district(layout, name, TrainConfig(steps=150, backend="torch",
                                                   device="cpu", **FAST),
                         out_dir=tmp_path / "cpu")
    assert cuda.metrics["backend"] == "gsplat"
    assert abs(cuda.metrics["psnr"] - cpu.metrics["psnr"]) < 1.0


def test_pinhole_dataset_export_trains_on_the_same_views(corner_model, tiny_city, tmp_path):
    """The undistorted COLMAP dataset (what gsplat's simple_trainer reads) holds the pixels,
    cameras, masks and held-out split citysplat trains on."""
    import pycolmap

    from citysplat.splat.dataset_export import write_pinhole_dataset

    layout, name = corner_model
    sparse = layout.district(name).sparse_dir
    images = {p.name: p for p in layout.images_dir.glob("*/*.jpg")}
    scene = load_scene(sparse, images, masks=_masks(tiny_city), max_side=96)
    out = write_pinhole_dataset(sparse, scene, tmp_path / "dataset")
    model = pycolmap.Reconstruction(str(out / "sparse" / "0"))
    assert {c.model.name for c in model.cameras.values()} == {"PINHOLE"}
    assert {(c.width, c.height) for c in model.cameras.values()} == \
        {(v.width, v.height) for v in scene.views}
    again = load_scene(out / "sparse" / "0", out / "images", masks=out / "masks", max_side=96)
    assert [Path(v.name).stem for v in again.views] == [Path(v.name).stem for v in scene.views]
    assert [v.index for v in again.test] == [v.index for v in scene.test]
    assert [v.index for v in scene.test] == list(range(0, len(scene.views), 8))
    for a, b in zip(scene.views, again.views):
        assert torch.allclose(a.K, b.K) and torch.allclose(a.viewmat, b.viewmat, atol=1e-6)
        assert (a.image - b.image).abs().max() <= 0.5 / 255 + 1e-6  # 8-bit PNG
        assert torch.equal(a.weight == 0, b.weight == 0)
    assert scene.masked_pixels > 0 and again.masked_pixels == pytest.approx(scene.masked_pixels)
