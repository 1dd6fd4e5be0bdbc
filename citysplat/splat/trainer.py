"""The training loop (after gsplat's ``examples/simple_trainer.py``): render a training view,
L1 + SSIM loss on its static pixels, backward, step the optimizers, then densify with gsplat's
strategy, in gsplat's order: the strategy's ops replace the parameters they touch (and drop
their gradients), so it runs after the step; every Gaussian gets its Adam update at a refine
step too.

One :class:`SplatTrainer` per run. It writes, under ``out_dir``
(:class:`citysplat.layout.SplatLayout` names the files):

- the checkpoint: everything needed to resume (Gaussians, optimizer and strategy state,
  appearance, sky, random-number states), written atomically every ``checkpoint_every``
  steps: ``kill -9`` loses at most that much;
- the standard 3DGS PLY (:mod:`citysplat.splat.export`);
- the metrics: held-out PSNR / SSIM, Gaussians, steps, seconds, backend, the flat settings
  (``config``), history;
- the held-out renders, prediction | truth.

The same seed gives the same run: the view order comes from a seeded generator, and the
random states are saved with each checkpoint, so a resumed run continues exactly as an
uninterrupted one would (on the same machine and backend).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.profiler import record_function

from citysplat.io import atomic_open, atomic_write_text
from citysplat.layout import SplatLayout
from citysplat.splat.backend import Backend, select_backend
from citysplat.splat.config import TrainConfig, TrainConfigError
from citysplat.splat.data import SceneData, View
from citysplat.splat.evaluate import ssim_map
from citysplat.splat.model import (
    Appearance,
    Sky,
    exponential_lr,
    init_splats,
    ray_directions,
    sh_degree_at,
)

ProgressFn = Callable[[int, int, dict[str, float]], None]
"""``progress(step, total, {"loss": ..., "gaussians": ...})`` after each training step."""


@dataclass
class TrainResult:
    """What a training run produced."""

    out_dir: Path
    ply_path: Path
    metrics_path: Path
    metrics: dict[str, Any]
    resumed_from: int = 0
    renders: list[Path] = field(default_factory=list)

    @property
    def psnr(self) -> float:
        return float(self.metrics["psnr"])


def weighted_loss(
    pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor, ssim_lambda: float
) -> torch.Tensor:
    """``(1 - l) * L1 + l * (1 - SSIM)`` over the pixels with weight (moving objects: 0)."""
    w = weight[..., None]
    total = w.sum().clamp(min=1.0)
    l1 = ((pred - target).abs() * w).sum() / (total * 3)
    if ssim_lambda <= 0:
        return l1
    ssim = (ssim_map(pred[None], target[None])[0] * weight).sum() / total
    return (1 - ssim_lambda) * l1 + ssim_lambda * (1 - ssim)


def sparse_depth_loss(depth: torch.Tensor, uv: torch.Tensor, target: torch.Tensor
                      ) -> torch.Tensor:
    """gsplat's ``depth_loss``: L1 between the rendered depth [H, W] sampled at the SfM points'
    pixels ``uv`` [M, 2] and their depths ``target`` [M], as disparities (1 / depth)."""
    h, w = depth.shape
    grid = torch.stack([uv[:, 0] / w * 2 - 1, uv[:, 1] / h * 2 - 1], dim=-1)[None, :, None]
    sampled = torch.nn.functional.grid_sample(depth[None, None], grid, align_corners=False)
    sampled = sampled[0, 0, :, 0]
    disparity = torch.where(sampled > 0, 1.0 / sampled.clamp(min=1e-6),
                            torch.zeros_like(sampled))
    return torch.nn.functional.l1_loss(disparity, 1.0 / target)


class SplatTrainer:
    """Trains Gaussians on ``scene`` into ``out_dir`` (resuming a checkpoint found there)."""

    def __init__(
        self,
        scene: SceneData,
        config: TrainConfig,
        out_dir: str | Path,
        backend: Backend | None = None,
    ) -> None:
        self.scene = scene
        self.config = config.validate().resolved()
        self.out_dir = Path(out_dir)
        self.layout = SplatLayout(self.out_dir)
        self.backend = backend or select_backend(config.backend, config.device)
        self.device = self.backend.device
        cfg = self.config
        if problem := cfg.strategy.backend_problem(self.backend.name):
            raise TrainConfigError([problem])  # backend auto found no GPU
        torch.manual_seed(cfg.seed)
        self.splats = init_splats(
            scene.points,
            scene.colors,
            sh_degree=cfg.sh_degree,
            init_opacity=cfg.init_opacity,
            init_scale=cfg.init_scale,
            seed=cfg.seed,
            device=self.device,
        )
        self.appearance = Appearance(len(scene.views)).to(self.device)
        self.sky = Sky(cfg.sky_degree).to(self.device)
        self.strategy = cfg.strategy.build()
        self.optimizers = self._make_optimizers()
        self.extra_optimizer = torch.optim.Adam(
            [
                {"params": self.appearance.parameters(), "lr": cfg.appearance_lr},
                {"params": self.sky.parameters(), "lr": 1e-2},
            ]
        )
        self.strategy.check_sanity(self.splats, self.optimizers)
        self.strategy_state = cfg.strategy.initialize_state(self.strategy, scene.scene_scale)
        self.generator = torch.Generator().manual_seed(cfg.seed)
        self.order: list[int] = []
        self.step = 0
        self.seconds = 0.0
        self.history: list[dict[str, float]] = []
        self._proxy = self._appearance_proxies()

    # ------------------------------------------------------------------ construction
    def _make_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        cfg = self.config
        lrs = {
            "means": cfg.means_lr * self.scene.scene_scale,
            "scales": cfg.scales_lr,
            "quats": cfg.quats_lr,
            "opacities": cfg.opacities_lr,
            "sh0": cfg.sh0_lr,
            "shN": cfg.shN_lr,
        }
        return {
            name: torch.optim.Adam(
                [{"params": self.splats[name], "lr": lr, "name": name}], eps=1e-15
            )
            for name, lr in lrs.items()
        }

    def _appearance_proxies(self) -> dict[int, int]:
        """Held-out view -> the training view whose appearance it borrows: the nearest one of
        its sequence (exposure is set per capture), else the nearest one."""
        train = self.scene.train
        out = {}
        for view in self.scene.test:
            same = [t for t in train if view.sequence and t.sequence == view.sequence] or train
            nearest = min(same, key=lambda t: float(torch.linalg.norm(t.center - view.center)))
            out[view.index] = nearest.index
        return out

    # ------------------------------------------------------------------ rendering
    def render(
        self, view: View, sh_degree: int | None = None, appearance_index: int | None = None,
        with_depth: bool = False,
    ) -> tuple[torch.Tensor, dict[str, Any]]:
        """The model's image of ``view`` [H, W, 3] (appearance and sky applied) and ``info``
        (``with_depth``: also ``info["depth"]``, the expected depth [H, W])."""
        cfg = self.config
        splats = self.splats
        degree = cfg.sh_degree if sh_degree is None else sh_degree
        colors = torch.cat([splats["sh0"], splats["shN"]], dim=1)
        K = view.K.to(self.device)
        viewmat = view.viewmat.to(self.device)
        rgb, alpha, info = self.backend.rasterize(
            means=splats["means"],
            quats=splats["quats"],
            scales=torch.exp(splats["scales"]),
            opacities=torch.sigmoid(splats["opacities"]),
            colors=colors,
            viewmats=viewmat[None],
            Ks=K[None],
            width=view.width,
            height=view.height,
            sh_degree=degree,
            packed=False,
            absgrad=cfg.strategy.uses_absgrad(),
            rasterize_mode="classic",
            render_mode="RGB+ED" if with_depth else "RGB",
        )
        image = rgb[0, ..., :3]
        if with_depth:
            info["depth"] = rgb[0, ..., 3]
        if cfg.sky:
            sky = self.sky(ray_directions(K, viewmat, view.width, view.height))
            image = image + (1.0 - alpha[0]) * sky
        if cfg.appearance:
            index = view.index if appearance_index is None else appearance_index
            image = self.appearance(image, index)
        return image.clamp(0.0, 1.0), info

    # ------------------------------------------------------------------ training
    def _next_view(self) -> View:
        if not self.order:
            perm = torch.randperm(len(self.scene.train), generator=self.generator)
            self.order = perm.tolist()
        return self.scene.train[self.order.pop()]

    def train_step(self) -> float:
        """One step; returns the loss. Its stages are labelled for ``torch.profiler``."""
        cfg = self.config
        step = self.step
        view = self._next_view()
        lr = exponential_lr(step, cfg.steps, cfg.means_lr * self.scene.scene_scale)
        for group in self.optimizers["means"].param_groups:
            group["lr"] = lr
        with record_function("citysplat.render"):
            degree = sh_degree_at(step, cfg.sh_degree_interval, cfg.sh_degree)
            depth_loss = cfg.depth_lambda > 0 and view.sparse_uv is not None \
                and len(view.sparse_uv) > 0
            image, info = self.render(view, degree, with_depth=depth_loss)
            self.strategy.step_pre_backward(
                self.splats, self.optimizers, self.strategy_state, step, info
            )
        with record_function("citysplat.loss"):
            weight = view.weight.to(self.device)
            if not cfg.masks:
                weight = torch.ones_like(weight)
            loss = weighted_loss(image, view.image.to(self.device), weight, cfg.ssim_lambda)
            if depth_loss:
                loss = loss + cfg.depth_lambda * self.scene.scene_scale * sparse_depth_loss(
                    info["depth"], view.sparse_uv.to(self.device),
                    view.sparse_depth.to(self.device))
        with record_function("citysplat.backward"):
            loss.backward()
        with record_function("citysplat.optimize"):  # before densifying, as gsplat does
            for optimizer in [*self.optimizers.values(), self.extra_optimizer]:
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
        with record_function("citysplat.densify"):
            cfg.strategy.step_post_backward(
                self.strategy, self.splats, self.optimizers, self.strategy_state, step, info, lr
            )
        self.step += 1
        return float(loss.detach())

    def train(
        self, progress: ProgressFn | None = None, stop_after: int | None = None
    ) -> TrainResult:
        """Train up to ``config.steps`` (from the checkpoint in ``out_dir`` if there is one),
        evaluate on the held-out views, export. ``stop_after``: return early after this many
        steps of this call (for tests of resuming), still checkpointing first."""
        cfg = self.config
        resumed_from = self.load_checkpoint()
        started = time.perf_counter() - self.seconds
        done_here = 0
        while self.step < cfg.steps:
            loss = self.train_step()
            done_here += 1
            self.seconds = time.perf_counter() - started
            if self.step % 50 == 0 or self.step == cfg.steps:
                self.history.append(
                    {
                        "step": self.step,
                        "seconds": round(self.seconds, 2),
                        "loss": round(loss, 5),
                        "gaussians": len(self.splats["means"]),
                    }
                )
            if self.step % cfg.eval_every == 0 and self.step < cfg.steps:
                quick = self.evaluate(write_renders=False)
                self.history[-1].update(psnr=round(quick["psnr"], 3))
            if self.step % cfg.checkpoint_every == 0 or self.step == cfg.steps:
                self.save_checkpoint()
            if progress:
                progress(
                    self.step, cfg.steps, {"loss": loss, "gaussians": len(self.splats["means"])}
                )
            if stop_after is not None and done_here >= stop_after:
                self.save_checkpoint()
                return TrainResult(
                    self.out_dir, self.layout.ply, self.layout.metrics_json, {}, resumed_from
                )
        return self.finish(resumed_from)

    # ------------------------------------------------------------------ evaluation, export
    @torch.no_grad()
    def evaluate(self, write_renders: bool = True) -> dict[str, Any]:
        """PSNR / SSIM on the held-out views (all pixels, and static pixels: masks), with
        prediction | truth PNGs (the layout's renders)."""
        from citysplat.splat.evaluate import psnr, side_by_side, ssim

        views = self.scene.test or self.scene.train
        rows = []
        renders = []
        for view in views:
            image, _ = self.render(view, appearance_index=self._proxy.get(view.index))
            truth = view.image.to(self.device)
            static = view.weight.to(self.device) > 0
            rows.append((psnr(image, truth), ssim(image, truth), psnr(image, truth, static)))
            if write_renders:
                renders.append(
                    side_by_side(
                        image.cpu(),
                        truth.cpu(),
                        self.layout.render_png(view.name),
                    )
                )
        values = np.array(rows, dtype=np.float64)
        return {
            "psnr": float(values[:, 0].mean()),
            "ssim": float(values[:, 1].mean()),
            "psnr_static": float(values[:, 2].mean()),
            "eval_images": len(views),
            "held_out": bool(self.scene.test),
            "renders": [str(p) for p in renders],
        }

    def finish(self, resumed_from: int = 0) -> TrainResult:
        from citysplat.splat.export import write_ply
        from citysplat.splat.formats import reports_as_metrics, write_compact_formats

        evaluation = self.evaluate()
        s = self.splats
        ply = write_ply(
            self.layout.ply,
            s["means"],
            s["scales"],
            s["quats"],
            s["opacities"],
            s["sh0"],
            s["shN"],
        )
        metrics = {
            "psnr": evaluation["psnr"],
            "ssim": evaluation["ssim"],
            "psnr_static": evaluation["psnr_static"],
            "eval_images": evaluation["eval_images"],
            "held_out": evaluation["held_out"],
            "train_images": len(self.scene.train),
            "num_gaussians": int(len(s["means"])),
            "steps": self.step,
            "seconds": round(self.seconds, 2),
            "backend": self.backend.name,
            "device": str(self.device),
            "resumed_from": resumed_from,
            "iterations_per_second": round(self.step / max(self.seconds, 1e-9), 3),
            "masked_pixels": round(self.scene.masked_pixels, 5),
            "config": self.config.to_dict(),
            "history": self.history,
            # the compact files beside the PLY, each read back and measured
            "formats": reports_as_metrics(write_compact_formats(self.layout)),
        }
        path = self.layout.metrics_json
        atomic_write_text(path, json.dumps(metrics, indent=2) + "\n")
        return TrainResult(
            self.out_dir, ply, path, metrics, resumed_from, [Path(p) for p in evaluation["renders"]]
        )

    # ------------------------------------------------------------------ checkpoints
    def save_checkpoint(self) -> Path:
        path = self.layout.checkpoint
        path.parent.mkdir(parents=True, exist_ok=True)
        state = {
            "identity": self.config.identity(),
            "step": self.step,
            "seconds": self.seconds,
            "splats": {k: v.detach().cpu() for k, v in self.splats.items()},
            "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
            "extra_optimizer": self.extra_optimizer.state_dict(),
            "strategy_state": self.strategy_state,
            "appearance": self.appearance.state_dict(),
            "sky": self.sky.state_dict(),
            "generator": self.generator.get_state(),
            "order": list(self.order),
            "torch_rng": torch.get_rng_state(),
            "history": self.history,
        }
        with atomic_open(path) as handle:
            torch.save(state, handle)
        return path

    def load_checkpoint(self) -> int:
        """Resume from the checkpoint in ``out_dir`` when it was made with the same settings;
        returns the step resumed from (0: a fresh start)."""
        path = self.layout.checkpoint
        if not path.is_file():
            return 0
        state = torch.load(path, map_location=self.device, weights_only=False)
        if state.get("identity") != self.config.identity():
            raise ValueError(
                f"{path} was written with other training settings: remove "
                f"{path.parent} to start over, or train into another folder"
            )
        for name, value in state["splats"].items():
            self.splats[name] = torch.nn.Parameter(value.to(self.device))
        self.optimizers = self._make_optimizers()
        for name, optimizer in self.optimizers.items():
            optimizer.load_state_dict(state["optimizers"][name])
        self.appearance.load_state_dict(state["appearance"])
        self.sky.load_state_dict(state["sky"])
        self.extra_optimizer.load_state_dict(state["extra_optimizer"])
        self.strategy_state = state["strategy_state"]
        self.generator.set_state(state["generator"])
        self.order = list(state["order"])
        torch.set_rng_state(state["torch_rng"])
        self.step, self.seconds = int(state["step"]), float(state["seconds"])
        self.history = list(state["history"])
        return self.step


def train_scene(
    scene: SceneData, config: TrainConfig, out_dir: str | Path, progress: ProgressFn | None = None
) -> TrainResult:
    """Train a splat of ``scene`` into ``out_dir`` (resuming a checkpoint there)."""
    return SplatTrainer(scene, config, out_dir).train(progress)
