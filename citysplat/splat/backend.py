"""Which rasterizer renders: gsplat's CUDA kernels, or the PyTorch one. Both take the same
arguments and return the same ``info`` entries, so nothing else knows which runs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from citysplat.splat.config import BACKENDS, BackendName


class BackendUnavailableError(RuntimeError):
    """The backend asked for cannot run here."""


@dataclass(frozen=True)
class Backend:
    """A rasterizer and the device it runs on."""

    name: BackendName  # "gsplat" or "torch" (never "auto": that is a choice among them)
    device: torch.device
    rasterize: Callable[..., tuple[torch.Tensor, torch.Tensor, dict[str, Any]]]


def pick_device(requested: str | None = None) -> torch.device:
    """``requested``, else CUDA, else Apple MPS, else the CPU."""
    if requested:
        return torch.device(requested)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def select_backend(name: BackendName = "auto", device: str | None = None) -> Backend:
    """``auto``: gsplat on CUDA when a CUDA device is there, the PyTorch rasterizer otherwise.
    ``gsplat`` without CUDA raises :class:`BackendUnavailableError` saying so."""
    if name not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)} (got {name!r})")
    dev = pick_device(device)
    if name == "gsplat" or (name == "auto" and dev.type == "cuda"):
        if dev.type != "cuda":
            raise BackendUnavailableError(
                "the gsplat backend needs an NVIDIA GPU with CUDA (gsplat has no CPU path); "
                "use --backend torch (or auto) here"
            )
        from gsplat import rasterization

        return Backend("gsplat", dev, rasterization)
    from citysplat.splat.rasterize_torch import rasterize_torch

    return Backend("torch", dev, rasterize_torch)
