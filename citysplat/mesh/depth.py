"""Depth maps of a trained splat, with a confidence mask, for fusion into a surface.

The rasterizer's ``ED`` mode (both backends: gsplat's CUDA kernels and the PyTorch one) gives
the expected depth along the optical axis, ``sum(w_i z_i) / sum(w_i)``, and the accumulated
alpha. A depth is kept only where the splat is confident and the estimate is well defined:
alpha at least ``min_alpha`` (no sky, no thin haze), inside ``[near, far]``, not on a moving
object's mask, and not on a depth edge, where the expected depth blends foreground and
background into "flying pixels" that would fuse into floaters. An edge is where the disparity
(1 / depth) bends: it is linear in the pixel coordinates across any plane, however slanted
(a road seen at a grazing angle), so its second difference only flags discontinuities.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from citysplat.splat.backend import Backend
from citysplat.splat.data import View


@dataclass(frozen=True)
class DepthFilter:
    """Which rendered depths are trusted."""

    min_alpha: float = 0.7
    near: float = 0.5
    far: float = 25.0
    max_edge_ratio: float = 0.05  # drop a pixel whose disparity bends by more (times depth)
    min_incidence_cos: float = 0.0  # > 0: drop surfaces seen more obliquely (0.1: 84 degrees)


@dataclass
class DepthFrame:
    """One view's depth map (metres along the optical axis, 0 where not trusted) and colours."""

    name: str
    K: np.ndarray  # [3, 3] pinhole intrinsics at this resolution
    cam_from_world: np.ndarray  # [4, 4]
    color: np.ndarray  # [H, W, 3] uint8: the photograph, resampled into the pinhole camera
    depth: np.ndarray  # [H, W] float32
    alpha: np.ndarray  # [H, W] float32

    @property
    def valid_fraction(self) -> float:
        return float((self.depth > 0).mean())


def render_depth(splats: dict[str, torch.Tensor], backend: Backend, K: torch.Tensor,
                 viewmat: torch.Tensor, width: int, height: int
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Expected depth [H, W] and alpha [H, W] of ``splats`` (activated-at-render gsplat keys:
    means, quats, scales (log), opacities (logit), sh0) seen from one pinhole camera."""
    with torch.no_grad():
        depth, alpha, _ = backend.rasterize(
            means=splats["means"],
            quats=splats["quats"],
            scales=torch.exp(splats["scales"]),
            opacities=torch.sigmoid(splats["opacities"]),
            colors=splats["sh0"][:, 0, :],
            viewmats=viewmat[None].to(backend.device),
            Ks=K[None].to(backend.device),
            width=width,
            height=height,
            render_mode="ED",
            packed=False,
            rasterize_mode="classic",
        )
    return (depth[0, ..., 0].float().cpu().numpy(), alpha[0, ..., 0].float().cpu().numpy())


def incidence_cos(depth: np.ndarray, K: np.ndarray) -> np.ndarray:
    """|cos| of the angle between each pixel's ray and the surface normal estimated from the
    depth map (central differences of the back-projected points; 0 where undefined)."""
    h, w = depth.shape
    u, v = np.meshgrid(np.arange(w) + 0.5, np.arange(h) + 0.5)
    rays = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(u)], -1)
    points = rays * depth[..., None]
    p = np.pad(points, ((1, 1), (1, 1), (0, 0)), mode="edge")
    du = p[1:h + 1, 2:] - p[1:h + 1, :w]
    dv = p[2:, 1:w + 1] - p[:h, 1:w + 1]
    normal = np.cross(du, dv)
    norm = np.linalg.norm(normal, axis=-1) * np.linalg.norm(rays, axis=-1)
    cos = np.abs(np.einsum("hwk,hwk->hw", normal, rays)) / np.maximum(norm, 1e-12)
    return np.where(norm > 0, cos, 0.0)


def trusted_depth(depth: np.ndarray, alpha: np.ndarray, weight: np.ndarray | None,
                  rule: DepthFilter, K: np.ndarray | None = None) -> np.ndarray:
    """``depth`` with every untrusted pixel set to 0 (see the module docstring)."""
    keep = (alpha >= rule.min_alpha) & (depth >= rule.near) & (depth <= rule.far)
    if weight is not None:
        keep &= weight > 0
    # a plane's disparity (1 / depth) is linear in the pixel coordinates, so its second
    # difference vanishes on any surface, at any slant, and not across a depth edge
    disparity = np.where(depth > 0, 1.0 / np.maximum(depth, 1e-6), 0.0)
    padded = np.pad(disparity, 1, mode="edge")
    h, w = depth.shape
    centre = padded[1:h + 1, 1:w + 1]
    bend_x = np.abs(padded[1:h + 1, :w] + padded[1:h + 1, 2:] - 2 * centre)
    bend_y = np.abs(padded[:h, 1:w + 1] + padded[2:, 1:w + 1] - 2 * centre)
    keep &= np.maximum(bend_x, bend_y) * depth <= rule.max_edge_ratio
    if K is not None and rule.min_incidence_cos > 0:
        # a projective TSDF looks depths up at the nearest pixel: where a surface is seen at a
        # grazing angle one pixel spans metres of it, and the fused surface drifts
        keep &= incidence_cos(depth, K) >= rule.min_incidence_cos
    return np.where(keep, depth, 0.0).astype(np.float32)


def depth_frames(views: Iterable[View], splats: dict[str, torch.Tensor], backend: Backend,
                 rule: DepthFilter | None = None) -> Iterator[DepthFrame]:
    """A :class:`DepthFrame` of each view (its photo as the colour, its mask respected)."""
    rule = rule or DepthFilter()
    for view in views:
        depth, alpha = render_depth(splats, backend, view.K, view.viewmat, view.width,
                                    view.height)
        weight = view.weight.numpy() if view.weight is not None else None
        color = (view.image.numpy() * 255.0 + 0.5).clip(0, 255).astype(np.uint8)
        yield DepthFrame(view.name, view.K.numpy().astype(np.float64),
                         view.viewmat.numpy().astype(np.float64), color,
                         trusted_depth(depth, alpha, weight, rule, view.K.numpy()), alpha)
