"""The trainable parts: the Gaussians (gsplat's parameter layout), per-image appearance, sky.

Gaussians are a ``torch.nn.ParameterDict`` with gsplat's names and activations, so gsplat's
strategies and exporters work on it unchanged: ``means`` [N, 3], ``scales`` [N, 3] (log),
``quats`` [N, 4] (wxyz, unnormalised), ``opacities`` [N] (logit), ``sh0`` [N, 1, 3] and
``shN`` [N, K-1, 3] (spherical-harmonic colour coefficients).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy.spatial import cKDTree

SH_C0 = 0.28209479177387814  # Y_0^0: colour = SH_C0 * sh0 + 0.5 for degree 0


def rgb_to_sh(rgb: torch.Tensor) -> torch.Tensor:
    """The degree-0 coefficient that renders as ``rgb``."""
    return (rgb - 0.5) / SH_C0


def init_splats(
    points: np.ndarray,
    colors: np.ndarray,
    *,
    sh_degree: int,
    init_opacity: float,
    init_scale: float,
    seed: int,
    device: torch.device,
) -> torch.nn.ParameterDict:
    """Gaussians at the sparse points: colour from the points, isotropic size from the mean
    distance to the 3 nearest neighbours, random orientation (as gsplat's simple_trainer)."""
    pts = np.asarray(points, dtype=np.float32)
    k = min(4, len(pts))
    dist, _ = cKDTree(pts).query(pts, k=k)
    mean_dist = np.sqrt(np.mean(np.square(dist[:, 1:]), axis=1)) if k > 1 else np.ones(len(pts))
    mean_dist = np.clip(mean_dist, 1e-4, None).astype(np.float32)
    generator = torch.Generator().manual_seed(seed)
    n = len(pts)
    scales = torch.log(torch.from_numpy(mean_dist) * init_scale)[:, None].repeat(1, 3)
    quats = torch.rand((n, 4), generator=generator)
    opacities = torch.logit(torch.full((n,), float(init_opacity)))
    coeffs = (sh_degree + 1) ** 2
    sh = torch.zeros((n, coeffs, 3))
    sh[:, 0, :] = rgb_to_sh(torch.from_numpy(np.asarray(colors, dtype=np.float32)))
    params = {
        "means": torch.from_numpy(pts),
        "scales": scales,
        "quats": quats,
        "opacities": opacities,
        "sh0": sh[:, :1, :],
        "shN": sh[:, 1:, :],
    }
    return torch.nn.ParameterDict(
        {k: torch.nn.Parameter(v.to(device).contiguous()) for k, v in params.items()}
    )


class Appearance(torch.nn.Module):
    """Per-image exposure and white balance: ``colour * exp(log_gain) + offset`` per channel,
    starting at the identity. Held-out views borrow a training view's (see ``proxy``)."""

    def __init__(self, num_views: int) -> None:
        super().__init__()
        self.log_gain = torch.nn.Parameter(torch.zeros(num_views, 3))
        self.offset = torch.nn.Parameter(torch.zeros(num_views, 3))

    def forward(self, colors: torch.Tensor, index: int) -> torch.Tensor:
        return colors * torch.exp(self.log_gain[index]) + self.offset[index]


class Sky(torch.nn.Module):
    """A background that depends on the viewing direction only: low-degree spherical
    harmonics of the ray direction (world frame), composited behind the Gaussians. Sky and the
    far horizon go here instead of into floaters near the cameras."""

    def __init__(
        self, degree: int = 2, color: tuple[float, float, float] = (0.6, 0.7, 0.85)
    ) -> None:
        super().__init__()
        self.degree = degree
        coeffs = torch.zeros((degree + 1) ** 2, 3)
        coeffs[0] = rgb_to_sh(torch.tensor(color))
        self.coeffs = torch.nn.Parameter(coeffs)

    def forward(self, dirs: torch.Tensor) -> torch.Tensor:
        from gsplat.cuda._torch_impl import _spherical_harmonics

        flat = dirs.reshape(-1, 3)
        coeffs = self.coeffs[None].expand(flat.shape[0], -1, -1)
        rgb = _spherical_harmonics(self.degree, flat, coeffs) + 0.5
        return rgb.clamp(0.0, 1.0).reshape(*dirs.shape[:-1], 3)


def ray_directions(K: torch.Tensor, viewmat: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """Unit world-frame ray directions [H, W, 3] through the pixel centres of a pinhole view."""
    device = K.device
    v, u = torch.meshgrid(
        torch.arange(height, device=device) + 0.5,
        torch.arange(width, device=device) + 0.5,
        indexing="ij",
    )
    x = (u - K[0, 2]) / K[0, 0]
    y = (v - K[1, 2]) / K[1, 1]
    cam = torch.stack([x, y, torch.ones_like(x)], dim=-1)
    world = cam @ viewmat[:3, :3]  # R^T applied to row vectors
    return torch.nn.functional.normalize(world, dim=-1)


def sh_degree_at(step: int, interval: int, max_degree: int) -> int:
    """The SH degree in use at ``step``: one more every ``interval`` steps."""
    return min(max_degree, step // max(1, interval))


def exponential_lr(step: int, total: int, start: float, end_ratio: float = 0.01) -> float:
    """gsplat's means schedule: from ``start`` down to ``start * end_ratio`` at ``total``."""
    return start * math.exp(math.log(end_ratio) * min(step, total) / max(1, total))
