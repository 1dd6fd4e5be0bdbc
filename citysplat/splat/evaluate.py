"""Held-out view evaluation of a trained splat: PSNR, SSIM and side-by-side pictures.

Conventions (the ones gsplat's ``simple_trainer`` evaluation uses, through torchmetrics):

- Images are float tensors in [0, 1], channels last: ``[H, W, 3]`` or a batch ``[B, H, W, 3]``.
  They are not clamped here; clamp rendered colours to [0, 1] first (gsplat's trainer does,
  and :func:`evaluate_images` does).
- ``data_range = 1``. PSNR is ``10 log10(1 / MSE)`` with the MSE over all pixels and channels of
  one image; identical images give ``float('inf')``. For a batch, the PSNR of each image is
  computed and the values averaged (not one PSNR of the pooled MSE).
- SSIM: gaussian window 11 x 11, sigma 1.5, ``k1 = 0.01``, ``k2 = 0.03``, computed per channel
  and averaged; torchmetrics (>= 1.x as installed) pads the borders by reflection and averages
  the SSIM map over every pixel, so values differ slightly from the Inria 3DGS ``ssim`` (zero
  padding) and are the ones gsplat reports.
- A ``mask`` (bool ``[H, W]``, or ``[B, H, W]`` for a batch; True = score this pixel) restricts the
  score to the static scene, e.g. without moving cars: PSNR from the MSE over the masked pixels
  only, SSIM as the mean of the SSIM map over the masked pixels. The SSIM of a masked pixel still
  sees its unmasked neighbours within the window (5 pixels); the PSNR does not see them at all.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torchmetrics.functional.image import (
    peak_signal_noise_ratio,
    structural_similarity_index_measure,
)

from citysplat.io import atomic_write_bytes

__all__ = ["EvalResult", "evaluate_images", "psnr", "side_by_side", "ssim", "ssim_map"]

SSIM_KERNEL_SIZE = 11
SSIM_SIGMA = 1.5
DATA_RANGE = 1.0


def _batch(pred: Any, target: Any, mask: Any = None) -> tuple[Tensor, Tensor, Tensor | None]:
    """Both images as ``[B, H, W, 3]`` float tensors (and the mask as ``[B, H, W]`` bool)."""
    pred = torch.as_tensor(pred)
    target = torch.as_tensor(target)
    if pred.shape != target.shape:
        raise ValueError(
            f"pred and target differ in shape: {list(pred.shape)} vs {list(target.shape)}"
        )
    if pred.ndim not in (3, 4) or pred.shape[-1] != 3:
        raise ValueError(f"images must be [H, W, 3] or [B, H, W, 3], got {list(pred.shape)}")
    if not (pred.is_floating_point() and target.is_floating_point()):
        raise ValueError(
            f"images must be float in [0, 1], got {pred.dtype} and {target.dtype} "
            "(divide uint8 images by 255)"
        )
    if pred.ndim == 3:
        pred, target = pred[None], target[None]
    dtype = torch.promote_types(pred.dtype, target.dtype)
    pred, target = pred.to(dtype), target.to(dtype)
    if mask is None:
        return pred, target, None
    mask = torch.as_tensor(mask, device=pred.device)
    if mask.dtype != torch.bool:
        raise ValueError(f"mask must be bool (True = pixels to score), got {mask.dtype}")
    b, h, w = pred.shape[:3]
    if mask.ndim == 2:
        mask = mask[None].expand(b, h, w) if mask.shape == (h, w) else mask
    if mask.shape != (b, h, w):
        raise ValueError(
            f"mask must be [H, W] = [{h}, {w}] or [B, H, W] for images {list(pred.shape)}, "
            f"got {list(mask.shape)}"
        )
    empty = ~mask.reshape(b, -1).any(dim=1)
    if empty.any():
        raise ValueError(f"mask selects no pixel in image(s) {empty.nonzero()[:, 0].tolist()}")
    return pred, target, mask


def _psnr_per_image(pred: Tensor, target: Tensor, mask: Tensor | None) -> Tensor:
    """PSNR of each image of a ``[B, H, W, 3]`` batch, inf where an image is reproduced exactly."""
    if mask is None:
        values = peak_signal_noise_ratio(
            pred, target, data_range=DATA_RANGE, reduction="none", dim=(1, 2, 3)
        )
    else:
        err = (pred.double() - target.double()).square().sum(dim=-1)  # [B, H, W]
        weight = mask.double()
        mse = (err * weight).sum(dim=(1, 2)) / (3.0 * weight.sum(dim=(1, 2)))
        values = 10.0 * torch.log10(DATA_RANGE**2 / mse)
    return values.reshape(-1)


_SSIM_ARGS: dict[str, Any] = dict(
    gaussian_kernel=True, sigma=SSIM_SIGMA, kernel_size=SSIM_KERNEL_SIZE, data_range=DATA_RANGE
)


def ssim_map(pred: Tensor, target: Tensor) -> Tensor:
    """The SSIM of each pixel, averaged over channels, of ``[B, H, W, 3]`` batches: ``[B, H, W]``,
    differentiable (the training loss uses it). Its mean is :func:`ssim`."""
    p = pred.permute(0, 3, 1, 2)
    _, full = structural_similarity_index_measure(
        p, target.permute(0, 3, 1, 2), return_full_image=True, **_SSIM_ARGS
    )
    if full.shape != p.shape:  # torchmetrics keeps the map aligned with the image; check it
        raise RuntimeError(f"SSIM map {list(full.shape)} does not match images {list(p.shape)}")
    return full.mean(dim=1)


def _ssim_per_image(pred: Tensor, target: Tensor, mask: Tensor | None) -> Tensor:
    """SSIM of each image of a ``[B, H, W, 3]`` batch (conventions in the module docstring)."""
    if mask is None:
        return structural_similarity_index_measure(
            pred.permute(0, 3, 1, 2), target.permute(0, 3, 1, 2), reduction="none", **_SSIM_ARGS
        ).reshape(-1)
    weight = mask.to(pred.dtype)
    return (ssim_map(pred, target) * weight).sum(dim=(1, 2)) / weight.sum(dim=(1, 2))


def psnr(pred: Any, target: Any, mask: Any = None) -> float:
    """PSNR in dB (data range 1) of ``pred`` against ``target``, ``[H, W, 3]`` or ``[B, H, W, 3]``.

    Identical images give ``float('inf')``. A batch gives the mean of the per-image PSNRs.
    ``mask`` (bool ``[H, W]`` or ``[B, H, W]``, True = scored) limits the MSE to those pixels.
    """
    p, t, m = _batch(pred, target, mask)
    with torch.no_grad():
        return float(_psnr_per_image(p, t, m).mean())


def ssim(pred: Any, target: Any, mask: Any = None) -> float:
    """SSIM (gaussian window 11, sigma 1.5, data range 1) of ``pred`` against ``target``.

    Same shapes and mask as :func:`psnr`; 1.0 for identical images; a batch gives the mean of the
    per-image values; with a mask, the mean of the SSIM map over the masked pixels.
    """
    p, t, m = _batch(pred, target, mask)
    with torch.no_grad():
        return float(_ssim_per_image(p, t, m).mean())


def _to_uint8(image: Tensor) -> np.ndarray:
    return (image.detach().cpu().double().clamp(0, 1) * 255.0).round().to(torch.uint8).numpy()


def side_by_side(
    pred: Any,
    target: Any,
    path: str | os.PathLike[str],
    mask: Any = None,
    *,
    error_map: bool | None = None,
    error_scale: float = 0.25,
) -> Path:
    """Write a PNG of ``prediction | truth`` (``[H, 2W, 3]``, uint8); returns the path.

    With ``error_map`` (default: only when a ``mask`` is given) a third panel shows the absolute
    error, averaged over the colour channels, as an ``inferno`` heat map from 0 (black) to
    ``error_scale`` and above (pale yellow), giving ``[H, 3W, 3]``; pixels outside the mask are
    mid-grey there. Images are ``[H, W, 3]`` (or a batch of one) floats in [0, 1], clamped for
    display. The file is written atomically.
    """
    p, t, m = _batch(pred, target, mask)
    if p.shape[0] != 1:
        raise ValueError(f"side_by_side takes one image, got a batch of {p.shape[0]}")
    if error_scale <= 0:
        raise ValueError(f"error_scale must be > 0, got {error_scale}")
    p, t = p[0].detach().cpu(), t[0].detach().cpu()
    panels = [_to_uint8(p), _to_uint8(t)]
    if error_map is None:
        error_map = m is not None
    if error_map:
        from matplotlib import colormaps  # lazy: only the heat map needs it

        err = (p.double() - t.double()).abs().mean(dim=-1).numpy() / float(error_scale)
        heat = colormaps["inferno"](np.clip(err, 0.0, 1.0), bytes=True)[..., :3]
        if m is not None:
            heat[~m[0].cpu().numpy()] = 128
        panels.append(np.ascontiguousarray(heat, dtype=np.uint8))
    picture = np.concatenate(panels, axis=1)

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(picture, mode="RGB").save(buffer, format="PNG")
    path = Path(path)
    atomic_write_bytes(path, buffer.getvalue())
    return path


@dataclass
class EvalResult:
    """Scores of a set of held-out views: means over images, and each image's value in order."""

    psnr: float
    ssim: float
    psnr_per_image: list[float] = field(default_factory=list)
    ssim_per_image: list[float] = field(default_factory=list)
    num_images: int = 0


def evaluate_images(pairs: Iterable[Any]) -> EvalResult:
    """Score ``(pred, target)`` or ``(pred, target, mask)`` tuples of ``[H, W, 3]`` views.

    (A ``[B, H, W, 3]`` batch in one tuple counts as B views.)

    Predictions are clamped to [0, 1] first, as gsplat's trainer does with rendered colours.
    The reported PSNR is the mean of the per-image PSNRs, as 3DGS papers (and gsplat) report it,
    not the PSNR of the pooled MSE; likewise SSIM. An exactly reproduced view has PSNR inf, and
    then so has the mean. Images are scored one at a time, so ``pairs`` may be a generator that
    renders lazily. No pairs at all raises ValueError.
    """
    psnrs: list[float] = []
    ssims: list[float] = []
    for index, item in enumerate(pairs):
        if len(item) not in (2, 3):
            raise ValueError(f"pair {index}: expected (pred, target) or (pred, target, mask)")
        pred, target = item[0], item[1]
        mask = item[2] if len(item) == 3 else None
        try:
            p, t, m = _batch(pred, target, mask)
        except ValueError as exc:
            raise ValueError(f"pair {index}: {exc}") from None
        with torch.no_grad():
            p = p.clamp(0.0, 1.0)
            psnrs += _psnr_per_image(p, t, m).tolist()
            ssims += _ssim_per_image(p, t, m).tolist()
    if not psnrs:
        raise ValueError("no images to evaluate")
    return EvalResult(
        psnr=float(np.mean(psnrs)),  # inf if any view is reproduced exactly
        ssim=float(np.mean(ssims)),
        psnr_per_image=psnrs,
        ssim_per_image=ssims,
        num_images=len(psnrs),
    )
