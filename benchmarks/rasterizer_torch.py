"""Pure-PyTorch tiled Gaussian rasterizer (citysplat.splat.rasterize_torch) vs a dense baseline.

For each Gaussian count and image size: forward and forward+backward milliseconds per image of
``rasterize_torch`` on random Gaussians in front of one camera. The naive baseline, measured in
the same run, composites every pixel against every visible Gaussian (sorted by depth, same
alpha rules, autograd for the backward) on a smaller problem (``--naive-gaussians`` at
``--naive-size``); its time per (pixel, Gaussian) pair is extrapolated to each size, and
``ratio`` is the extrapolated naive time over the tiled one.

    .venv/bin/python benchmarks/rasterizer_torch.py
    .venv/bin/python benchmarks/rasterizer_torch.py --gaussians 20000 --sizes 160x120 --repeats 3

One line per repeat, then ``SUMMARY`` with medians.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import time

import torch

import citysplat  # noqa: F401  (loads zlib before anything imports pycolmap)
from citysplat.splat.rasterize_torch import _project, rasterize_torch


def make_scene(n: int, width: int, height: int, seed: int = 0):
    """n random Gaussians inside the view frustum of one camera (f = 0.9 width), 2-12 m away,
    sized 0.5-5 cm (a few pixels on screen), any orientation, opacities 0.05-0.95."""
    gen = torch.Generator().manual_seed(seed)
    focal = 0.9 * width
    z = 2.0 + 10.0 * torch.rand(n, generator=gen)
    x = (torch.rand(n, generator=gen) - 0.5) * width / focal * z
    y = (torch.rand(n, generator=gen) - 0.5) * height / focal * z
    means = torch.stack([x, y, z], dim=-1)
    quats = torch.randn(n, 4, generator=gen)
    log_s = math.log(0.005) + (math.log(0.05) - math.log(0.005)) * torch.rand(n, 3, generator=gen)
    scales = torch.exp(log_s)
    opacities = 0.05 + 0.9 * torch.rand(n, generator=gen)
    colors = torch.rand(n, 3, generator=gen)
    viewmats = torch.eye(4)[None]
    Ks = torch.tensor([[[focal, 0.0, width / 2], [0.0, focal, height / 2], [0.0, 0.0, 1.0]]])
    return means, quats, scales, opacities, colors, viewmats, Ks


def time_tiled(scene, width: int, height: int, backward: bool) -> float:
    means, quats, scales, opacities, colors, viewmats, Ks = scene
    leaves = [t.clone().requires_grad_(backward) for t in (means, quats, scales, opacities, colors)]
    start = time.perf_counter()
    img, alpha, _ = rasterize_torch(*leaves, viewmats, Ks, width, height)
    if backward:
        (img.sum() + alpha.sum()).backward()
    return time.perf_counter() - start


def dense_render(means, quats, scales, opacities, colors, viewmats, Ks, width, height, chunk=1024):
    """The naive baseline: every pixel against every visible Gaussian, no tiles (the same
    projection, autograd through a dense compositing)."""
    radii, means2d, depths, conics, _ = _project(
        means, quats, scales, opacities, viewmats, Ks, width, height, 0.01, 1e10, 0.0, 0.3, False
    )
    visible = torch.nonzero((radii[0] > 0).all(-1)).squeeze(1)
    order = visible[torch.argsort(depths[0, visible])]
    m2, con, op, col = means2d[0, order], conics[0, order], opacities[order], colors[order]
    ys, xs = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    px, py = xs.reshape(-1).float() + 0.5, ys.reshape(-1).float() + 0.5
    out_c, out_a = [], []
    for s in range(0, len(px), chunk):
        dx = m2[None, :, 0] - px[s : s + chunk, None]
        dy = m2[None, :, 1] - py[s : s + chunk, None]
        sigma = 0.5 * (con[:, 0] * dx * dx + con[:, 2] * dy * dy) + con[:, 1] * dx * dy
        alpha = torch.clamp(op * torch.exp(-sigma.clamp(max=60.0)), max=0.999)
        alpha = torch.where((sigma >= 0) & (alpha >= 1 / 255), alpha, 0.0)
        trans = torch.cumprod(torch.cat([torch.ones_like(alpha[:, :1]), 1 - alpha], 1), 1)
        trans = trans.clamp(min=1e-30)
        keep = trans[:, 1:] > 1e-4
        weights = torch.where(keep, alpha * trans[:, :-1], 0.0)
        out_c.append(weights @ col)
        out_a.append(weights.sum(1, keepdim=True))
    return torch.cat(out_c).reshape(height, width, -1), torch.cat(out_a).reshape(height, width, 1)


def time_dense(scene, width: int, height: int, backward: bool) -> tuple[float, int]:
    """Seconds and the number of (pixel, visible Gaussian) pairs composited."""
    means, quats, scales, opacities, colors, viewmats, Ks = scene
    leaves = [t.clone().requires_grad_(backward) for t in (means, quats, scales, opacities, colors)]
    start = time.perf_counter()
    img, alpha = dense_render(*leaves, viewmats, Ks, width, height)
    if backward:
        (img.sum() + alpha.sum()).backward()
    elapsed = time.perf_counter() - start
    return elapsed, width * height * len(means)


def parse_size(text: str) -> tuple[int, int]:
    w, h = text.lower().split("x")
    return int(w), int(h)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gaussians", type=int, nargs="+", default=[20_000, 100_000])
    parser.add_argument("--sizes", nargs="+", default=["320x240", "160x120"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--naive-gaussians", type=int, default=2_000)
    parser.add_argument("--naive-size", default="64x48")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average {load}")

    nw, nh = parse_size(args.naive_size)
    naive_scene = make_scene(args.naive_gaussians, nw, nh, seed=1)
    naive_fwd, naive_bwd = [], []
    for r in range(args.repeats):
        f, pairs = time_dense(naive_scene, nw, nh, backward=False)
        b, _ = time_dense(naive_scene, nw, nh, backward=True)
        naive_fwd.append(f / pairs)
        naive_bwd.append(b / pairs)
        print(
            f"naive repeat={r} gaussians={args.naive_gaussians} size={nw}x{nh} "
            f"fwd_ms={f * 1e3:.1f} fwdbwd_ms={b * 1e3:.1f} "
            f"ns_per_pair fwd={f / pairs * 1e9:.2f} fwdbwd={b / pairs * 1e9:.2f}"
        )
    naive_fwd_pp, naive_bwd_pp = statistics.median(naive_fwd), statistics.median(naive_bwd)

    summary = []
    for n in args.gaussians:
        for size in args.sizes:
            w, h = parse_size(size)
            scene = make_scene(n, w, h)
            time_tiled(scene, w, h, backward=True)  # warm-up
            fwd, fwdbwd = [], []
            for r in range(args.repeats):
                f = time_tiled(scene, w, h, backward=False)
                b = time_tiled(scene, w, h, backward=True)
                fwd.append(f)
                fwdbwd.append(b)
                print(
                    f"tiled repeat={r} gaussians={n} size={w}x{h} fwd_ms={f * 1e3:.1f} fwdbwd_ms={b * 1e3:.1f}"
                )
            f_med, b_med = statistics.median(fwd), statistics.median(fwdbwd)
            pairs = w * h * n
            nf, nb = naive_fwd_pp * pairs, naive_bwd_pp * pairs
            summary.append(
                f"{n // 1000}k@{w}x{h} fwd_ms={f_med * 1e3:.0f} fwdbwd_ms={b_med * 1e3:.0f} "
                f"naive_fwd_ms={nf * 1e3:.0f} naive_fwdbwd_ms={nb * 1e3:.0f} "
                f"ratio_fwd={nf / f_med:.0f}x ratio_fwdbwd={nb / b_med:.0f}x"
            )
    print("SUMMARY " + " | ".join(summary))


if __name__ == "__main__":
    main()
