"""Densification strategies as config objects, as gsplat's ``simple_trainer`` keeps them.

:class:`DefaultStrategyConfig` and :class:`MCMCStrategyConfig` hold gsplat's own parameter
names (``prune_opa``, ``grow_grad2d``, ``refine_start_iter``, ``cap_max``...) with their allowed
values; each builds its gsplat strategy (:meth:`build`) and runs its step the way that strategy
is called (:meth:`step_post_backward`), so the trainer never asks which one it holds.

Schedules left at ``None`` are derived from the number of training steps (:meth:`resolved`):
refinement starts at 5 % of the steps (at least step 100) and stops at half of them, and a
run shorter than 4000 steps never resets opacities.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any, ClassVar

from citysplat.splat.settings import (
    SettingSpec,
    TrainConfigError,
    problems_of,
    setting,
    specs_of,
)

DEFAULT = "default"
MCMC = "mcmc"
CAP_HELP = ("At most this many Gaussians (mcmc grows to it; default prunes the lowest-opacity "
            "ones beyond it after each refinement).")


def refine_start_for(steps: int) -> int:
    """The step refinement starts at when not set: 5 % of the steps, at least 100."""
    return max(100, steps // 20)


def refine_stop_for(steps: int) -> int:
    """The step refinement stops at when not set: half the steps."""
    return steps // 2


def _prune_beyond_cap(params, optimizers, state, cap: int) -> None:
    """Remove the lowest-opacity Gaussians beyond ``cap`` (gsplat's ``remove`` op, which
    drops them from the optimizers' state and the strategy state too)."""
    import torch
    from gsplat.strategy.ops import remove

    excess = len(params["means"]) - cap
    if excess <= 0:
        return
    opacity = params["opacities"].detach()
    mask = torch.zeros_like(opacity, dtype=torch.bool)
    mask[torch.argsort(opacity)[:excess]] = True
    remove(params, optimizers, state, mask)


@dataclass(frozen=True)
class StrategyConfig:
    """What every strategy config offers the trainer."""

    name: ClassVar[str]
    needs_cuda: ClassVar[bool] = False  # its ops run only in gsplat's CUDA kernels

    def __post_init__(self) -> None:
        problems = problems_of(type(self), asdict(self))
        if problems:
            raise TrainConfigError(problems)

    @classmethod
    def specs(cls) -> list[SettingSpec]:
        """Its settings (gsplat's parameter names)."""
        return specs_of(cls, group=f"strategy {cls.name}")

    def settings(self) -> dict[str, Any]:
        """Its settings by name (gsplat's parameter names)."""
        return asdict(self)

    def backend_problem(self, backend: str) -> str | None:
        """Why this strategy cannot train with rasterizer ``backend`` (``auto``, ``gsplat``,
        ``torch``), or None."""
        if self.needs_cuda and backend == "torch":
            return (f"strategy {self.name} runs on gsplat's CUDA kernels: use backend gsplat "
                    f"(or auto) on an NVIDIA GPU, or strategy {DEFAULT}")
        return None

    def uses_absgrad(self) -> bool:
        """Whether the rasterizer must compute absolute image-plane gradients for it."""
        return False

    def resolved(self, steps: int) -> StrategyConfig:
        """This config with the schedule defaults filled in for a run of ``steps``."""
        return self

    def build(self):
        """The gsplat strategy object (call :meth:`resolved` first)."""
        raise NotImplementedError

    def initialize_state(self, strategy, scene_scale: float) -> dict[str, Any]:
        """The strategy's running state for a scene of size ``scene_scale``."""
        return strategy.initialize_state()

    def step_post_backward(self, strategy, params, optimizers, state: dict[str, Any],
                           step: int, info: dict[str, Any], lr: float) -> None:
        """Densify / prune / relocate after the optimizers stepped (``lr``: the means'
        learning rate of this step)."""
        raise NotImplementedError


def _refine_start_setting():
    """The refinement start both strategies share (a fresh field for each class)."""
    return setting(None, "Start refining after this step (default: 5 % of the steps, at "
                   "least 100).", at_least=0)


def _refine_stop_setting():
    """The refinement stop both strategies share (a fresh field for each class)."""
    return setting(None, "Stop refining at this step (default: half the steps).", at_least=0)


@dataclass(frozen=True)
class DefaultStrategyConfig(StrategyConfig):
    """gsplat's ``DefaultStrategy`` (the 3DGS paper's densification), plus a cap on the
    number of Gaussians, which that strategy lacks."""

    name: ClassVar[str] = DEFAULT

    prune_opa: float = setting(0.005, "Prune Gaussians below this opacity.",
                               at_least=0.0, below=1.0)
    grow_grad2d: float = setting(2e-4, "Split/duplicate Gaussians whose image-plane "
                                 "gradient is above this.", above=0.0)
    grow_scale3d: float = setting(0.01, "Duplicate below this 3D scale (times the scene "
                                  "size), split above.", above=0.0)
    grow_scale2d: float = setting(0.05, "Split above this 2D scale (times the image size).",
                                  above=0.0)
    prune_scale3d: float = setting(0.1, "Prune above this 3D scale (times the scene size).",
                                   above=0.0)
    prune_scale2d: float = setting(0.15, "Prune above this 2D scale (times the image size).",
                                   above=0.0)
    refine_scale2d_stop_iter: int = setting(0, "Stop refining by 2D scale after this step "
                                            "(0: never refine by it).", at_least=0)
    refine_start_iter: int | None = _refine_start_setting()
    refine_stop_iter: int | None = _refine_stop_setting()
    reset_every: int | None = setting(None, "Reset opacities every this many steps "
                                      "(default: 3000, never when steps < 4000).", at_least=1)
    refine_every: int = setting(100, "Refine every this many steps.", at_least=1)
    pause_refine_after_reset: int = setting(0, "Steps without refinement after a reset.",
                                            at_least=0)
    absgrad: bool = setting(False, "Grow by absolute gradients (AbsGS; raise grow_grad2d "
                            "to about 0.0008).")
    revised_opacity: bool = setting(False, "The revised opacity of arXiv:2404.06109 when "
                                    "splitting.")
    cap_max: int = setting(400_000, CAP_HELP, at_least=1)

    def resolved(self, steps: int) -> DefaultStrategyConfig:
        return replace(
            self,
            refine_start_iter=refine_start_for(steps) if self.refine_start_iter is None
            else self.refine_start_iter,
            refine_stop_iter=refine_stop_for(steps) if self.refine_stop_iter is None
            else self.refine_stop_iter,
            reset_every=(3000 if steps >= 4000 else steps + 1) if self.reset_every is None
            else self.reset_every,
        )

    def uses_absgrad(self) -> bool:
        return self.absgrad

    def build(self):
        from gsplat.strategy import DefaultStrategy

        params = self.settings()
        params.pop("cap_max")
        return DefaultStrategy(**params)

    def initialize_state(self, strategy, scene_scale: float) -> dict[str, Any]:
        return strategy.initialize_state(scene_scale=scene_scale)

    def step_post_backward(self, strategy, params, optimizers, state: dict[str, Any],
                           step: int, info: dict[str, Any], lr: float) -> None:
        strategy.step_post_backward(params, optimizers, state, step, info, packed=False)
        if step % self.refine_every == 0:
            _prune_beyond_cap(params, optimizers, state, self.cap_max)


@dataclass(frozen=True)
class MCMCStrategyConfig(StrategyConfig):
    """gsplat's ``MCMCStrategy`` (3DGS as Markov chain Monte Carlo): relocates dead
    Gaussians, grows to ``cap_max``, jitters positions. Its ops run on CUDA only."""

    name: ClassVar[str] = MCMC
    needs_cuda: ClassVar[bool] = True

    cap_max: int = setting(400_000, CAP_HELP, at_least=1)
    noise_lr: float = setting(5e5, "Scale of the position noise (times the means' "
                              "learning rate).", at_least=0.0)
    refine_start_iter: int | None = _refine_start_setting()
    refine_stop_iter: int | None = _refine_stop_setting()
    refine_every: int = setting(100, "Refine every this many steps.", at_least=1)
    min_opacity: float = setting(0.005, "Relocate Gaussians below this opacity.",
                                 at_least=0.0, below=1.0)

    def resolved(self, steps: int) -> MCMCStrategyConfig:
        return replace(
            self,
            refine_start_iter=refine_start_for(steps) if self.refine_start_iter is None
            else self.refine_start_iter,
            refine_stop_iter=refine_stop_for(steps) if self.refine_stop_iter is None
            else self.refine_stop_iter,
        )

    def build(self):
        from gsplat.strategy import MCMCStrategy

        return MCMCStrategy(**self.settings())

    def step_post_backward(self, strategy, params, optimizers, state: dict[str, Any],
                           step: int, info: dict[str, Any], lr: float) -> None:
        strategy.step_post_backward(params, optimizers, state, step, info, lr=lr)


STRATEGIES: dict[str, type[StrategyConfig]] = {
    DEFAULT: DefaultStrategyConfig,
    MCMC: MCMCStrategyConfig,
}
