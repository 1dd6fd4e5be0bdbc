"""Training settings, declared once: :class:`TrainConfig`, defaults after gsplat's
``simple_trainer`` scaled to the number of steps (a short CPU run refines early and never resets
opacities).

Each field is declared with :func:`~citysplat.splat.settings.setting` (default, help, allowed
values), and the densification strategy is a config object of its own
(:mod:`citysplat.splat.strategy`, gsplat's parameter names). The command-line options of
``citysplat train`` / ``train-model`` and the Dagster config of the ``splat`` asset are built
from :meth:`TrainConfig.specs`, and every way in (the library, the CLI, Dagster) is checked by
the same :meth:`TrainConfig.problems`: a bad value is one line naming the setting and what it
allows, raised as :class:`TrainConfigError`.

Outside Python, settings are flat (:meth:`TrainConfig.from_settings`,
:meth:`TrainConfig.settings`): ``{"steps": 3000, "strategy": "default", "prune_opa": 0.005}``;
the strategy's parameters sit beside the others under gsplat's names.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal, get_args

from citysplat.splat.settings import (
    Allowed,
    SettingSpec,
    TrainConfigError,
    problems_of,
    setting,
    specs_of,
)
from citysplat.splat.strategy import (
    DEFAULT,
    STRATEGIES,
    DefaultStrategyConfig,
    MCMCStrategyConfig,
    StrategyConfig,
)

__all__ = ["BACKENDS", "BackendName", "TrainConfig", "TrainConfigError"]

BackendName = Literal["auto", "gsplat", "torch"]
BACKENDS: tuple[str, ...] = get_args(BackendName)
BOOKKEEPING = ("checkpoint_every", "eval_every", "device")  # not part of a run's identity

RUN, MODEL, OPTIMISATION, IMAGES = "run", "model", "optimisation", "appearance, sky, masks"


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on (saved with its checkpoints and metrics).
    Constructing one with a value it does not allow raises :class:`TrainConfigError`."""

    steps: int = setting(3000, "Training steps.", group=RUN, at_least=1)
    seed: int = setting(0, "Random seed (same seed, same run).", group=RUN, at_least=0)
    backend: BackendName = setting("auto", "The rasterizer: auto is gsplat on CUDA, else "
                                   "PyTorch's.", group=RUN, choices=BACKENDS)
    device: str | None = setting(None, "Torch device (default: cuda, else mps, else cpu; "
                                 "gsplat needs cuda).", group=RUN,
                                 pattern=r"cpu|mps|cuda(:\d+)?",
                                 pattern_text="cpu, mps, cuda or cuda:N")
    max_side: int = setting(320, "Training resolution: the longer image side, pixels.",
                            group=RUN, at_least=16)
    test_every: int = setting(8, "Hold out every Nth image for evaluation (0: none).",
                              group=RUN, at_least=0)
    # model
    sh_degree: int = setting(3, "Spherical-harmonics degree of the colours.", group=MODEL,
                             at_least=0, at_most=4)
    sh_degree_interval: int | None = setting(None, "Steps per added SH degree (default: a "
                                             "sixth of the steps).", group=MODEL, at_least=1)
    init_opacity: float = setting(0.1, "Opacity of the initial Gaussians.", group=MODEL,
                                  above=0.0, below=1.0)
    init_scale: float = setting(1.0, "Initial size, times the mean distance to the 3 nearest "
                                "sparse points.", group=MODEL, above=0.0)
    max_init_points: int = setting(200_000, "At most this many sparse points start "
                                   "Gaussians.", group=MODEL, at_least=1)
    # optimisation (gsplat's learning rates; the means' scaled by the scene size)
    means_lr: float = setting(1.6e-4, "Learning rate of the positions (times the scene size; "
                              "decays 100x).", group=OPTIMISATION, at_least=0.0)
    scales_lr: float = setting(5e-3, "Learning rate of the log scales.", group=OPTIMISATION,
                               at_least=0.0)
    quats_lr: float = setting(1e-3, "Learning rate of the rotations.", group=OPTIMISATION,
                              at_least=0.0)
    opacities_lr: float = setting(5e-2, "Learning rate of the opacities.",
                                  group=OPTIMISATION, at_least=0.0)
    sh0_lr: float = setting(2.5e-3, "Learning rate of the base colours.", group=OPTIMISATION,
                            at_least=0.0)
    shN_lr: float = setting(2.5e-3 / 20, "Learning rate of the higher SH coefficients.",
                            group=OPTIMISATION, at_least=0.0)
    ssim_lambda: float = setting(0.2, "Weight of 1 - SSIM in the loss (the rest: L1).",
                                 group=OPTIMISATION, at_least=0.0, at_most=1.0)
    depth_lambda: float = setting(0.0, "Weight of the sparse-depth loss (gsplat's depth_loss:"
                                  " rendered vs SfM point depths, as disparity; 0: off).",
                                  group=OPTIMISATION, at_least=0.0)
    strategy: DefaultStrategyConfig | MCMCStrategyConfig = field(
        default_factory=DefaultStrategyConfig)
    # appearance, sky, masks
    appearance: bool = setting(True, "Per-image exposure (gain and offset per channel).",
                               group=IMAGES)
    appearance_lr: float = setting(1e-3, "Learning rate of the exposure model.", group=IMAGES,
                                   at_least=0.0)
    sky: bool = setting(True, "A view-dependent background (SH of the ray direction).",
                        group=IMAGES)
    sky_degree: int = setting(2, "SH degree of the sky.", group=IMAGES, at_least=0,
                              at_most=4)
    masks: bool = setting(True, "Leave moving objects out of the loss where masks exist.",
                          group=IMAGES)
    # bookkeeping
    checkpoint_every: int = setting(250, "Steps between checkpoints.", group=RUN, at_least=1)
    eval_every: int | None = setting(None, "Steps between held-out evaluations (default: only "
                                     "at the end).", group=RUN, at_least=1)

    def __post_init__(self) -> None:
        self.validate()

    # ------------------------------------------------------------------ checking
    def problems(self) -> list[str]:
        """One line per setting whose value is not allowed, naming it and what it allows."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out = problems_of(TrainConfig, values)
        if not isinstance(self.strategy, StrategyConfig):
            kinds = " or ".join(c.__name__ for c in STRATEGIES.values())
            out.append(f"strategy must be a {kinds} (by name: TrainConfig.from_settings) "
                       f"(got {self.strategy!r})")
        elif problem := self.strategy.backend_problem(self.backend):
            out.append(problem)
        return out

    def validate(self) -> TrainConfig:
        """This config, or :class:`TrainConfigError` listing its :meth:`problems`."""
        problems = self.problems()
        if problems:
            raise TrainConfigError(problems)
        return self

    # ------------------------------------------------------------------ schedules
    def resolved(self) -> TrainConfig:
        """The config with every schedule default filled in from ``steps``."""
        steps = self.steps
        return replace(
            self,
            sh_degree_interval=self.sh_degree_interval or max(1, steps // 6),
            eval_every=self.eval_every or steps,
            strategy=self.strategy.resolved(steps),
        )

    # ------------------------------------------------------------------ flat settings
    @classmethod
    def specs(cls) -> list[SettingSpec]:
        """Every setting as the CLI and Dagster show it, flat: this class's, ``strategy``
        (its name), then each strategy's parameters (default None: the strategy's own; a
        name two strategies share is listed once, in group ``strategy default, mcmc``)."""
        own = specs_of(cls)
        choice = SettingSpec("strategy", str, DEFAULT, "Densification: default (gsplat's "
                             "DefaultStrategy) or mcmc (MCMCStrategy, CUDA only).", RUN,
                             Allowed(choices=tuple(STRATEGIES)), False)
        merged: dict[str, SettingSpec] = {}
        owners: dict[str, list[str]] = {}
        for name, strategy in STRATEGIES.items():
            for spec in strategy.specs():
                merged.setdefault(spec.name, spec)
                owners.setdefault(spec.name, []).append(name)
        params = [replace(spec, default=None, optional=True,
                          group=f"strategy {', '.join(owners[spec.name])}")
                  for spec in merged.values()]
        return [*own, choice, *params]

    @classmethod
    def from_settings(cls, values: Mapping[str, Any]) -> TrainConfig:
        """The config of flat settings (None: not given, the default). Raises
        :class:`TrainConfigError` naming every bad or unknown setting."""
        given = {k: v for k, v in values.items() if v is not None}
        name = given.pop("strategy", DEFAULT)
        own_names = {s.name for s in specs_of(cls)}
        own = {k: v for k, v in given.items() if k in own_names}
        rest = {k: v for k, v in given.items() if k not in own_names}
        problems = problems_of(cls, own)
        strategy = STRATEGIES.get(name) if isinstance(name, str) else None
        if strategy is None:
            problems.append(f"strategy must be one of {', '.join(STRATEGIES)} (got {name!r})")
        known = {s.name for s in cls.specs()}
        params = {}
        for key, value in rest.items():
            if key not in known:
                problems.append(f"{key} is not a training setting")
            elif strategy is not None and key not in {f.name for f in
                                                      dataclasses.fields(strategy)}:
                owners = [n for n, s in STRATEGIES.items()
                          if key in {f.name for f in dataclasses.fields(s)}]
                problems.append(f"{key} is a setting of strategy {' and '.join(owners)}, "
                                f"not of {strategy.name}")
            else:
                params[key] = value
        if strategy is not None:
            problems += problems_of(strategy, params)
        if problems:
            raise TrainConfigError(problems)
        return cls(strategy=strategy(**params), **own)

    def settings(self) -> dict[str, Any]:
        """The flat settings: :meth:`from_settings` of them gives this config back."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            if f.name == "strategy":
                out["strategy"] = self.strategy.name
                out.update(self.strategy.settings())
            else:
                out[f.name] = getattr(self, f.name)
        return out

    def to_dict(self) -> dict[str, Any]:
        """The flat settings (what ``metrics.json`` records under ``config``)."""
        return self.settings()

    def identity(self) -> dict[str, Any]:
        """What must match for a checkpoint to be resumed (not the bookkeeping)."""
        d = self.resolved().settings()
        for key in BOOKKEEPING:
            d.pop(key, None)
        return d
