"""Training settings: one dataclass, defaults after gsplat's ``simple_trainer`` scaled to the
number of steps (a short CPU run refines early and never resets opacities)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

Backend = Literal["auto", "gsplat", "torch"]
StrategyName = Literal["default", "mcmc"]


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on (saved with its checkpoints and metrics)."""

    steps: int = 3000
    seed: int = 0
    backend: Backend = "auto"
    device: str | None = None  # None: cuda, else mps, else cpu (gsplat needs cuda)
    max_side: int = 320  # training resolution: the longer image side, pixels
    test_every: int = 8  # every Nth image is held out for evaluation
    # model
    sh_degree: int = 3
    sh_degree_interval: int | None = None  # steps per SH degree; None: steps // 6
    init_opacity: float = 0.1
    init_scale: float = 1.0  # times the mean distance to the 3 nearest sparse points
    max_init_points: int = 200_000
    max_gaussians: int = 400_000  # the cap: lowest-opacity Gaussians are pruned beyond it
    # optimisation (gsplat's learning rates; means scaled by the scene size)
    means_lr: float = 1.6e-4
    scales_lr: float = 5e-3
    quats_lr: float = 1e-3
    opacities_lr: float = 5e-2
    sh0_lr: float = 2.5e-3
    shN_lr: float = 2.5e-3 / 20
    ssim_lambda: float = 0.2
    # densification
    strategy: StrategyName = "default"
    refine_start: int | None = None  # None: 5 % of steps (at least 100)
    refine_stop: int | None = None  # None: half the steps
    refine_every: int = 100
    reset_every: int | None = None  # None: 3000, and never when steps < 4000
    grow_grad2d: float = 2e-4
    absgrad: bool = False
    # appearance, sky, masks
    appearance: bool = True  # per-image exposure (gain and offset per channel)
    appearance_lr: float = 1e-3
    sky: bool = True  # a view-dependent background (spherical harmonics of the ray direction)
    sky_degree: int = 2
    masks: bool = True  # leave moving objects out of the loss when masks are given
    # bookkeeping
    checkpoint_every: int = 250
    eval_every: int | None = None  # None: only at the end
    extra: dict[str, Any] = field(default_factory=dict)

    def resolved(self) -> TrainConfig:
        """The config with every schedule default filled in from ``steps``."""
        steps = max(1, self.steps)
        return replace(
            self,
            sh_degree_interval=self.sh_degree_interval or max(1, steps // 6),
            refine_start=self.refine_start
            if self.refine_start is not None
            else max(100, steps // 20),
            refine_stop=self.refine_stop if self.refine_stop is not None else steps // 2,
            reset_every=self.reset_every
            if self.reset_every is not None
            else (3000 if steps >= 4000 else steps + 1),
            eval_every=self.eval_every or steps,
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def identity(self) -> dict[str, Any]:
        """What must match for a checkpoint to be resumed (not the bookkeeping)."""
        d = self.resolved().to_dict()
        for key in ("checkpoint_every", "eval_every", "extra", "device"):
            d.pop(key, None)
        return d
