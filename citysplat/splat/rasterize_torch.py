"""Tiled Gaussian splat rasterizer in plain PyTorch (CPU, Apple MPS), a stand-in for gsplat's CUDA one.

:func:`rasterize_torch` takes the arguments of ``gsplat.rasterization`` (gsplat 1.5.3, one batch)
and returns the same ``(render_colors, render_alphas, info)``, so a training loop and gsplat's
``DefaultStrategy`` run unchanged whichever backend renders.

Stages, each following gsplat's CUDA kernels:

1. Projection (pinhole): world -> camera, 3D covariance from quaternion and scale, the EWA
   Jacobian with x/z and y/z clamped to 1.3x the field of view, ``eps2d`` blur, conics, and the
   opacity-aware axis-aligned radii of gsplat 1.5.3 (``ceil(extend * sqrt(cov_xx))`` per axis,
   ``extend = min(3.33, sqrt(2 ln(255 opacity)))``). Culled: depth outside [near, far], a
   singular covariance, opacity below 1/255, both radii <= ``radius_clip``, or a box that misses
   the image. gsplat's own torch helpers do the maths where they run on CPU.
2. Tile binning: every visible Gaussian is listed in each tile its box touches; the lists are
   sorted by (image, tile, depth) with gsplat's 64-bit keys, giving ``isect_ids``,
   ``flatten_ids`` and ``isect_offsets`` as gsplat has them.
3. Compositing: front to back per pixel, ``alpha = min(0.999, o exp(-sigma))`` at pixel centres,
   skipped when ``alpha < 1/255``, stopping before the transmittance would drop to 1e-4
   (exclusive, as the kernel). Compositing bins to its own 4x4-pixel raster tiles (on a CPU the
   cost is pixels x list length per tile; small tiles waste far less of it on small Gaussians)
   and runs batches of tiles with padded lists of similar length, a depth segment at a time,
   dropping tiles whose pixels have all stopped. ``log(o) - sigma`` is a quadratic in the pixel
   position, so one matmul with per-Gaussian coefficients evaluates a whole batch. A custom
   autograd function recomputes each segment in the backward pass (back to front, as gsplat
   does) instead of keeping per-pixel intermediates, so memory stays bounded by the batch size.

Deviations from gsplat are listed in :func:`rasterize_torch`'s docstring.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

import torch
from gsplat.cuda._torch_impl import (
    _persp_proj,
    _quat_scale_to_covar_preci,
    _spherical_harmonics,
    _world_to_cam,
)
from torch import Tensor

RenderMode = Literal["RGB", "D", "ED", "RGB+D", "RGB+ED"]
RasterizeMode = Literal["classic", "antialiased"]

ALPHA_THRESHOLD = 1.0 / 255.0  # gsplat's ALPHA_THRESHOLD
MAX_ALPHA = 0.999
MIN_TRANSMITTANCE = 1e-4
SIGMA_MAX = 60.0  # exp(-60) ~ 1e-26: far below 1/255, far above float32's subnormals
RASTER_TILE = 4  # compositing tile size in pixels (see _Plan)
SEGMENT_LEN = 32  # Gaussians per tile list composited in one step
STEP_BUDGET = 1 << 20  # (tile, pixel, Gaussian) triples per step: bounds the working memory
RADIUS_EXTEND = 3.33  # gsplat 1.5.3's cap on the box half-size, in standard deviations

# Keyword arguments of gsplat.rasterization that change what is rendered and are not supported
# here, with the value that is (anything else raises); other extra keywords are accepted and
# ignored (sparse_grad, channel_chunk, segmented).
_UNSUPPORTED_DEFAULTS: dict[str, Any] = {
    "camera_model": "pinhole",
    "distributed": False,
    "covars": None,
    "with_ut": False,
    "with_eval3d": False,
    "radial_coeffs": None,
    "tangential_coeffs": None,
    "thin_prism_coeffs": None,
    "ftheta_coeffs": None,
    "viewmats_rs": None,
}


def rasterize_torch(
    means: Tensor,
    quats: Tensor,
    scales: Tensor,
    opacities: Tensor,
    colors: Tensor,
    viewmats: Tensor,
    Ks: Tensor,
    width: int,
    height: int,
    near_plane: float = 0.01,
    far_plane: float = 1e10,
    radius_clip: float = 0.0,
    eps2d: float = 0.3,
    sh_degree: int | None = None,
    packed: bool = False,
    tile_size: int = 16,
    backgrounds: Tensor | None = None,
    render_mode: RenderMode = "RGB",
    rasterize_mode: RasterizeMode = "classic",
    absgrad: bool = False,
    **ignored: Any,
) -> tuple[Tensor, Tensor, dict[str, Any]]:
    """Render Gaussians to ``C`` pinhole images, differentiably, as ``gsplat.rasterization`` does.

    Args:
        means: [N, 3] centres (world). quats: [N, 4] wxyz, any norm. scales: [N, 3], activated.
        opacities: [N], activated. colors: [N, D] or [C, N, D] values, or with ``sh_degree``
            [N, K, 3] or [C, N, K, 3] SH coefficients (colour = SH + 0.5, clamped at 0).
        viewmats: [C, 4, 4] world-to-camera. Ks: [C, 3, 3] intrinsics. width, height: pixels.
        near_plane, far_plane, radius_clip, eps2d, sh_degree, packed, tile_size, backgrounds
            ([C, D]), render_mode, rasterize_mode, absgrad: as in gsplat.
        **ignored: other gsplat keywords; those that would change the result (camera models other
            than pinhole, distortion, UT, distributed, ``covars``) raise ``ValueError``.

    Returns:
        ``(render_colors [C, H, W, D'], render_alphas [C, H, W, 1], info)``; ``info`` has gsplat's
        keys: camera_ids, gaussian_ids, batch_ids (None unless packed), radii ([C, N, 2] int32),
        means2d (retain_grad-able; ``.absgrad`` set in backward when ``absgrad``), depths, conics,
        opacities, tile_width, tile_height, tile_size, tiles_per_gauss, isect_ids, flatten_ids,
        isect_offsets, width, height, n_batches, n_cameras.

    Deviations from gsplat: entries of culled Gaussians (radii 0) hold 0 in means2d and conics
    where gsplat leaves them uninitialised; with ``sh_degree`` the colours of culled Gaussians
    are evaluated rather than masked (they are never drawn); pixels use ``exp`` rather than
    CUDA's ``__expf``, so results agree to float rounding, not bit for bit. Gradients reach means,
    quats, scales, opacities, colors, backgrounds and viewmats; not Ks (nor in gsplat).
    """
    _check_arguments(means, quats, scales, opacities, viewmats, Ks, render_mode, rasterize_mode)
    for key, supported in _UNSUPPORTED_DEFAULTS.items():
        if key in ignored and ignored[key] != supported:
            raise ValueError(f"rasterize_torch does not support {key}={ignored[key]!r}")
    n_gauss, n_cams = means.shape[0], viewmats.shape[0]
    antialiased = rasterize_mode == "antialiased"

    radii, means2d, depths, conics, compensations = _project(
        means, quats, scales, opacities, viewmats, Ks, width, height,
        near_plane, far_plane, radius_clip, eps2d, antialiased,
    )  # fmt: skip
    opacities_cn = opacities[None, :].expand(n_cams, n_gauss)
    if compensations is not None:
        opacities_cn = opacities_cn * compensations
    colors_cn = _view_colors(means, colors, viewmats, sh_degree, n_cams)  # [C, N, D]

    camera_ids = gaussian_ids = batch_ids = None
    if packed:
        camera_ids, gaussian_ids = torch.where((radii > 0).all(dim=-1))
        batch_ids = torch.zeros_like(camera_ids)
        radii, means2d, depths, conics, opacities_cn, colors_cn = (
            t[camera_ids, gaussian_ids]
            for t in (radii, means2d, depths, conics, opacities_cn, colors_cn)
        )

    if render_mode in ("RGB+D", "RGB+ED"):
        colors_cn = torch.cat([colors_cn, depths[..., None]], dim=-1)
        if backgrounds is not None:
            backgrounds = torch.cat([backgrounds, backgrounds.new_zeros(n_cams, 1)], dim=-1)
    elif render_mode in ("D", "ED"):
        colors_cn = depths[..., None]
        if backgrounds is not None:
            backgrounds = backgrounds.new_zeros(n_cams, 1)

    tile_width = math.ceil(width / float(tile_size))
    tile_height = math.ceil(height / float(tile_size))
    tiles_per_gauss, isect_ids, flatten_ids, isect_offsets = _isect_tiles(
        means2d, radii, depths, camera_ids, n_cams, tile_size, tile_width, tile_height
    )

    plan = _make_plan(n_cams, width, height, means2d, radii, depths, camera_ids)
    render_colors, render_alphas = _Composite.apply(
        means2d, conics, colors_cn, opacities_cn, plan, means2d if absgrad else None
    )
    if backgrounds is not None:
        render_colors = render_colors + backgrounds[:, None, None, :] * (1.0 - render_alphas)
    if render_mode in ("ED", "RGB+ED"):
        render_colors = torch.cat(
            [render_colors[..., :-1], render_colors[..., -1:] / render_alphas.clamp(min=1e-10)],
            dim=-1,
        )

    info: dict[str, Any] = {
        "batch_ids": batch_ids,
        "camera_ids": camera_ids,
        "gaussian_ids": gaussian_ids,
        "radii": radii,
        "means2d": means2d,
        "depths": depths,
        "conics": conics,
        "opacities": opacities_cn,
        "tile_width": tile_width,
        "tile_height": tile_height,
        "tiles_per_gauss": tiles_per_gauss,
        "isect_ids": isect_ids,
        "flatten_ids": flatten_ids,
        "isect_offsets": isect_offsets,
        "width": width,
        "height": height,
        "tile_size": tile_size,
        "n_batches": 1,
        "n_cameras": n_cams,
    }
    return render_colors, render_alphas, info


def _check_arguments(
    means: Tensor,
    quats: Tensor,
    scales: Tensor,
    opacities: Tensor,
    viewmats: Tensor,
    Ks: Tensor,
    render_mode: str,
    rasterize_mode: str,
) -> None:
    if means.dim() != 2 or means.shape[-1] != 3:
        raise ValueError(f"means must be [N, 3] (one batch), got {tuple(means.shape)}")
    n = means.shape[0]
    if quats.shape != (n, 4) or scales.shape != (n, 3) or opacities.shape != (n,):
        raise ValueError("quats, scales, opacities must be [N, 4], [N, 3], [N]")
    if viewmats.dim() != 3 or viewmats.shape[1:] != (4, 4) or Ks.shape != (len(viewmats), 3, 3):
        raise ValueError("viewmats must be [C, 4, 4] and Ks [C, 3, 3]")
    if render_mode not in ("RGB", "D", "ED", "RGB+D", "RGB+ED"):
        raise ValueError(f"unknown render_mode {render_mode!r}")
    if rasterize_mode not in ("classic", "antialiased"):
        raise ValueError(f"unknown rasterize_mode {rasterize_mode!r}")


def _project(
    means: Tensor,
    quats: Tensor,
    scales: Tensor,
    opacities: Tensor,
    viewmats: Tensor,
    Ks: Tensor,
    width: int,
    height: int,
    near_plane: float,
    far_plane: float,
    radius_clip: float,
    eps2d: float,
    antialiased: bool,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor | None]:
    """gsplat's fused pinhole projection: radii [C,N,2] int32, means2d, depths, conics, comps."""
    covars, _ = _quat_scale_to_covar_preci(quats, scales, compute_preci=False)
    means_c, covars_c = _world_to_cam(means, covars, viewmats)  # [C, N, 3], [C, N, 3, 3]
    depths = means_c[..., 2]
    in_range = (depths >= near_plane) & (depths <= far_plane)
    # Culled Gaussians at z <= 0 would put inf/nan into the projection and, through 0 * inf,
    # into the gradients: project a harmless point instead and zero those entries below.
    safe_c = torch.where(in_range[..., None], means_c, means_c.new_tensor([0.0, 0.0, 1.0]))
    means2d, cov2d = _persp_proj(safe_c, covars_c, Ks, width, height)

    cxx, cxy, cyx, cyy = cov2d[..., 0, 0], cov2d[..., 0, 1], cov2d[..., 1, 0], cov2d[..., 1, 1]
    det_orig = cxx * cyy - cxy * cyx
    cxx, cyy = cxx + eps2d, cyy + eps2d
    det = cxx * cyy - cxy * cyx
    valid = in_range & (det > 0)
    det_safe = torch.where(valid, det, torch.ones_like(det))
    conics = torch.stack([cyy / det_safe, -cxy / det_safe, cxx / det_safe], dim=-1)
    compensations = None
    if antialiased:
        # sqrt(max(0, det / det_blur)) without the inf gradient of sqrt at 0 (gsplat damps it)
        ratio = det_orig / det_safe
        positive = ratio > 0
        compensations = torch.where(positive, torch.sqrt(torch.where(positive, ratio, 1.0)), 0.0)

    with torch.no_grad():
        opac = opacities[None, :].expand_as(depths)
        if compensations is not None:
            opac = opac * compensations
        extend = torch.sqrt(2.0 * torch.log(opac.clamp(min=ALPHA_THRESHOLD) / ALPHA_THRESHOLD))
        extend = extend.clamp(max=RADIUS_EXTEND)
        radius_x = torch.ceil(extend * torch.sqrt(cxx.clamp(min=0.0)))
        radius_y = torch.ceil(extend * torch.sqrt(cyy.clamp(min=0.0)))
        mx, my = means2d[..., 0], means2d[..., 1]
        visible = (
            valid
            & (opac >= ALPHA_THRESHOLD)
            & ((radius_x > radius_clip) | (radius_y > radius_clip))
            & (mx + radius_x > 0)
            & (mx - radius_x < width)
            & (my + radius_y > 0)
            & (my - radius_y < height)
        )
        radii = (torch.stack([radius_x, radius_y], dim=-1) * visible[..., None]).to(torch.int32)

    means2d = torch.where(visible[..., None], means2d, 0.0)
    conics = torch.where(visible[..., None], conics, 0.0)
    if compensations is not None:
        compensations = torch.where(visible, compensations, 0.0)
    return radii, means2d, depths, conics, compensations


def _view_colors(
    means: Tensor, colors: Tensor, viewmats: Tensor, sh_degree: int | None, n_cams: int
) -> Tensor:
    """Per-view colours [C, N, D]: broadcast values, or SH evaluated towards each camera."""
    n_gauss = means.shape[0]
    if sh_degree is None:
        if colors.dim() == 2 and colors.shape[0] == n_gauss:
            return colors[None].expand(n_cams, -1, -1)
        if colors.dim() == 3 and colors.shape[:2] == (n_cams, n_gauss):
            return colors
        raise ValueError(f"colors must be [N, D] or [C, N, D], got {tuple(colors.shape)}")
    if colors.shape[-1] != 3 or colors.shape[-3] != n_gauss or colors.dim() not in (3, 4):
        raise ValueError(f"SH colors must be [N, K, 3] or [C, N, K, 3], got {tuple(colors.shape)}")
    if (sh_degree + 1) ** 2 > colors.shape[-2]:
        raise ValueError(f"sh_degree {sh_degree} needs {(sh_degree + 1) ** 2} SH coefficients")
    campos = torch.inverse(viewmats)[:, :3, 3]  # [C, 3]
    dirs = means[None, :, :] - campos[:, None, :]  # [C, N, 3]
    shs = colors if colors.dim() == 4 else colors[None].expand(n_cams, -1, -1, -1)
    return torch.clamp_min(_spherical_harmonics(sh_degree, dirs, shs) + 0.5, 0.0)


@torch.no_grad()
def _isect_tiles(
    means2d: Tensor,
    radii: Tensor,
    depths: Tensor,
    camera_ids: Tensor | None,
    n_images: int,
    tile_size: int,
    tile_width: int,
    tile_height: int,
    with_ids: bool = True,
) -> tuple[Tensor, Tensor | None, Tensor, Tensor]:
    """gsplat's isect_tiles + isect_offset_encode: per-Gaussian tile counts and sorted lists.

    Returns tiles_per_gauss (shaped like depths, int32), isect_ids (int64, sorted: image id |
    tile id | depth bits; None unless ``with_ids``), flatten_ids (int32 indices into the
    flattened depths) and isect_offsets ([C, tile_height, tile_width] int32, start of each
    tile's list). The order is gsplat's: by image, tile, depth bits, then flat index.
    """
    device = means2d.device
    flat_means = means2d.detach().reshape(-1, 2).float()
    flat_radii = radii.reshape(-1, 2).float()
    tile_xy = flat_means / tile_size
    tile_r = flat_radii / tile_size
    lim = torch.tensor([tile_width, tile_height], device=device)
    tile_min = torch.minimum(torch.floor(tile_xy - tile_r).clamp(min=0).long(), lim)
    tile_max = torch.minimum(torch.ceil(tile_xy + tile_r).clamp(min=0).long(), lim)
    extent = tile_max - tile_min  # [M, 2]
    visible = (flat_radii > 0).all(dim=-1)
    tiles_per_gauss = extent.prod(dim=-1) * visible
    n_tiles = tile_width * tile_height

    # Visible Gaussians in gsplat's depth order (its key holds the float's bits, zero-extended),
    # ties by index; a stable sort of their intersections by (image, tile) then keeps it.
    depth_bits = depths.detach().reshape(-1).float().contiguous().view(torch.int32)
    ids = torch.nonzero(tiles_per_gauss > 0).squeeze(1)
    ids = ids[torch.sort(depth_bits[ids].long() & 0xFFFFFFFF, stable=True).indices]
    counts = tiles_per_gauss[ids]
    if camera_ids is None:
        image = torch.div(ids, depths.shape[-1], rounding_mode="floor")  # depths [C, N]
    else:
        image = camera_ids[ids]
    # one row per intersection: (span x, min x, min y, image * n_tiles, flat index)
    per_gauss = torch.stack(
        [extent[ids, 0], tile_min[ids, 0], tile_min[ids, 1], image * n_tiles, ids], dim=1
    )
    owner = torch.repeat_interleave(torch.arange(len(ids), device=device), counts)
    rows = per_gauss.index_select(0, owner)
    local = torch.arange(len(owner), device=device) - (torch.cumsum(counts, 0) - counts)[owner]
    span_x = rows[:, 0]
    tile_x = rows[:, 1] + local % span_x
    tile_y = rows[:, 2] + torch.div(local, span_x, rounding_mode="floor")
    key = rows[:, 3] + tile_y * tile_width + tile_x
    if n_images * n_tiles < 2**31:
        key = key.to(torch.int32)  # sorts about twice as fast
    key, order = torch.sort(key, stable=True)
    key = key.long()
    flatten_ids = rows[:, 4].index_select(0, order)

    isect_ids = None
    if with_ids:
        tile_n_bits = n_tiles.bit_length()
        bits = depth_bits.index_select(0, flatten_ids).long() & 0xFFFFFFFF
        image_sorted = torch.div(key, n_tiles, rounding_mode="floor")
        isect_ids = (image_sorted << (32 + tile_n_bits)) | ((key % n_tiles) << 32) | bits
    tile_counts = torch.bincount(key, minlength=n_images * n_tiles)
    isect_offsets = (torch.cumsum(tile_counts, 0) - tile_counts).to(torch.int32)
    isect_offsets = isect_offsets.reshape(n_images, tile_height, tile_width)
    tiles_per_gauss = tiles_per_gauss.reshape(depths.shape).to(torch.int32)
    return tiles_per_gauss, isect_ids, flatten_ids.to(torch.int32), isect_offsets


@dataclass
class _Plan:
    """What the compositing pass needs besides the per-Gaussian tensors.

    Compositing bins to its own small raster tiles (``tile`` pixels square, independent of the
    ``tile_size`` reported in ``info``): on a CPU the cost is pixels x list length per tile,
    and 4x4 tiles waste about 3.5x less of it on small Gaussians than 16x16 ones.
    """

    n_images: int
    width: int
    height: int
    tile: int
    tiles_x: int
    tiles_y: int
    flatten_ids: Tensor  # [n_isects] int64, into the flattened per-view Gaussians, sorted
    offsets: Tensor  # [C * tiles_y * tiles_x] int64, start of each tile's list
    segment: int  # Gaussians per tile composited in one step
    budget: int  # (tile, pixel, Gaussian) triples per step

    @property
    def n_tiles(self) -> int:
        return self.n_images * self.tiles_x * self.tiles_y


def _make_plan(
    n_images: int,
    width: int,
    height: int,
    means2d: Tensor,
    radii: Tensor,
    depths: Tensor,
    camera_ids: Tensor | None,
) -> _Plan:
    tiles_x, tiles_y = math.ceil(width / RASTER_TILE), math.ceil(height / RASTER_TILE)
    _, _, flatten_ids, offsets = _isect_tiles(
        means2d, radii, depths, camera_ids, n_images, RASTER_TILE, tiles_x, tiles_y, with_ids=False
    )
    return _Plan(
        n_images=n_images,
        width=width,
        height=height,
        tile=RASTER_TILE,
        tiles_x=tiles_x,
        tiles_y=tiles_y,
        flatten_ids=flatten_ids.long(),
        offsets=offsets.reshape(-1).long(),
        segment=SEGMENT_LEN,
        budget=STEP_BUDGET,
    )


@dataclass
class _Step:
    """One composited step: some tiles, one depth segment of their lists."""

    tiles: Tensor  # [b] global tile indices
    gauss: Tensor  # [b, k] rows of the padded parameter table (pad row = last)
    t_start: Tensor  # [b, P] transmittance before the segment, 0 for finished pixels


class _Composite(torch.autograd.Function):
    """Front-to-back compositing of projected Gaussians over binned tiles."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        means2d: Tensor,
        conics: Tensor,
        colors: Tensor,
        opacities: Tensor,
        plan: _Plan,
        absgrad_target: Tensor | None,
    ) -> tuple[Tensor, Tensor]:
        table, color_table = _tables(means2d, conics, colors, opacities)
        feats = _pixel_features(plan.tile, table.dtype, table.device)
        n_tiles, n_pix = plan.n_tiles, plan.tile**2
        acc = table.new_zeros(n_tiles, color_table.shape[1], n_pix)  # [T, D, P]: fast bmm
        trans = table.new_ones(n_tiles, n_pix)
        done = torch.zeros(n_tiles, n_pix, dtype=torch.bool, device=table.device)
        steps: list[_Step] = []
        for tiles, gauss in _schedule(plan, done, pad_row=len(table) - 1):
            prm, cols = _gather(table, color_table, gauss)
            t_start = torch.where(done[tiles], 0.0, trans[tiles])
            seg = _segment(plan, tiles, prm, feats, t_start)
            acc[tiles] += torch.bmm(cols.transpose(1, 2), seg.weights.transpose(1, 2))
            trans[tiles] = torch.where(done[tiles], trans[tiles], seg.t_end)
            done[tiles] |= seg.stopped
            steps.append(_Step(tiles, gauss, t_start))

        ctx.plan, ctx.steps, ctx.absgrad_target = plan, steps, absgrad_target
        ctx.in_shapes = (means2d.shape, conics.shape, colors.shape, opacities.shape)
        ctx.save_for_backward(table, color_table, trans)
        return _to_image(plan, acc.transpose(1, 2)), _to_image(plan, (1.0 - trans)[..., None])

    @staticmethod
    def backward(ctx: Any, v_colors: Tensor, v_alphas: Tensor) -> tuple[Tensor | None, ...]:
        table, color_table, trans = ctx.saved_tensors
        plan: _Plan = ctx.plan
        feats = _pixel_features(plan.tile, table.dtype, table.device)
        v_acc = _to_tiles(plan, v_colors.to(table.dtype)).transpose(1, 2).contiguous()  # [T, D, P]
        # dL/d(1 - T_final) * T_final: the alpha output's share of each alpha's gradient
        v_final = _to_tiles(plan, v_alphas.to(table.dtype))[..., 0] * trans
        tail = torch.zeros_like(trans)  # per pixel: sum over later Gaussians of w_j <v, c_j>
        # accumulated transposed ([6 or D, M + 1]): index_add_ along dim 1 is much faster on CPUs
        v_table = table.new_zeros(table.shape[1], table.shape[0])
        v_color_table = color_table.new_zeros(color_table.shape[1], color_table.shape[0])
        with_abs = ctx.absgrad_target is not None
        v_abs = table.new_zeros(2, table.shape[0]) if with_abs else None
        for step in reversed(ctx.steps):
            tiles, gauss = step.tiles, step.gauss
            prm, cols = _gather(table, color_table, gauss)
            seg = _segment(plan, tiles, prm, feats, step.t_start)
            v_c = v_acc[tiles]  # [b, D, P]
            gc = torch.bmm(v_c.transpose(1, 2), cols.transpose(1, 2))  # <v, c_k>: [b, P, k]
            contrib = seg.weights * gc
            csum = contrib.cumsum(-1)
            later_total = csum[..., -1] + tail[tiles]
            tail[tiles] = later_total
            # dL/dalpha_k = T_k <v, c_k> - (sum_{j>k} w_j <v, c_j> - v_final) / (1 - alpha_k)
            numer = csum + (v_final[tiles] - later_total)[..., None]
            v_alpha = torch.addcdiv(seg.t_excl * gc, numer, seg.one_minus_alpha)
            grads, absg = _segment_vjp(seg, feats, v_alpha, with_abs)
            flat = gauss.reshape(-1)
            v_table.index_add_(1, flat, grads.reshape(grads.shape[0], -1))
            v_cols = torch.bmm(v_c, seg.weights)  # [b, D, k]
            v_color_table.index_add_(1, flat, v_cols.transpose(0, 1).reshape(v_cols.shape[1], -1))
            if v_abs is not None and absg is not None:
                v_abs.index_add_(1, flat, absg.reshape(2, -1))

        m2_shape, con_shape, col_shape, op_shape = ctx.in_shapes
        v_table, v_color_table = v_table[:, :-1].T, v_color_table[:, :-1].T
        if v_abs is not None:
            ctx.absgrad_target.absgrad = v_abs[:, :-1].T.reshape(m2_shape)
        return (
            v_table[:, 0:2].reshape(m2_shape),
            v_table[:, 2:5].reshape(con_shape),
            v_color_table.reshape(col_shape),
            v_table[:, 5].reshape(op_shape),
            None,
            None,
        )


def _tables(
    means2d: Tensor, conics: Tensor, colors: Tensor, opacities: Tensor
) -> tuple[Tensor, Tensor]:
    """[M + 1, 6] rows (x, y, conic a, b, c, opacity) and [M + 1, D] colours; last row = pad."""
    table = torch.cat(
        [means2d.reshape(-1, 2), conics.reshape(-1, 3), opacities.reshape(-1, 1)], dim=1
    )
    table = torch.cat([table, table.new_zeros(1, 6)], dim=0).contiguous()
    color_table = colors.reshape(-1, colors.shape[-1]).to(table.dtype)
    color_table = torch.cat([color_table, color_table.new_zeros(1, color_table.shape[1])])
    return table, color_table.contiguous()


def _schedule(plan: _Plan, done: Tensor, pad_row: int) -> Iterator[tuple[Tensor, Tensor]]:
    """Yield (tiles [b], table rows [b, k]) steps: tiles in batches of similar list length,
    each list a depth segment at a time, dropping tiles whose pixels have all stopped.

    ``done`` is read between steps (the caller updates it), so the schedule adapts in forward;
    the backward pass replays the recorded steps instead of calling this again.
    """
    device = plan.flatten_ids.device
    n_isects = len(plan.flatten_ids)
    if n_isects == 0:
        return
    n_pix = plan.tile**2
    starts = plan.offsets
    counts = torch.cat([starts[1:], starts.new_tensor([n_isects])]) - starts
    order = torch.argsort(counts, descending=True, stable=True)
    order = order[counts[order] > 0]
    sorted_counts = counts[order].tolist()
    pad_pos = starts.new_tensor([n_isects])
    ids_ext = torch.cat([plan.flatten_ids, starts.new_tensor([pad_row])])

    first = 0
    while first < len(order):
        per_tile = n_pix * min(plan.segment, sorted_counts[first])
        last = min(len(order), first + max(1, plan.budget // per_tile))
        tiles = order[first:last]
        first = last
        tile_start, tile_count = starts[tiles], counts[tiles]
        offset = 0
        while len(tiles) > 0:
            k = min(plan.segment, int(tile_count.max()) - offset)
            pos = tile_start[:, None] + offset + torch.arange(k, device=device)
            pos = torch.where(pos < (tile_start + tile_count)[:, None], pos, pad_pos)
            yield tiles, ids_ext[pos]
            offset += k
            keep = (tile_count > offset) & ~done[tiles].all(dim=1)
            tiles, tile_start, tile_count = tiles[keep], tile_start[keep], tile_count[keep]


def _pixel_features(tile: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """[P, 6] (1, x, y, x^2, y^2, xy) of a tile's pixel centres relative to the tile's centre."""
    local = torch.arange(tile * tile, device=device)
    x = (local % tile).to(dtype) + 0.5 - tile / 2
    y = torch.div(local, tile, rounding_mode="floor").to(dtype) + 0.5 - tile / 2
    return torch.stack([torch.ones_like(x), x, y, x * x, y * y, x * y], dim=-1)


def _gather(table: Tensor, color_table: Tensor, gauss: Tensor) -> tuple[Tensor, Tensor]:
    """Rows [b, k, 6] and colours [b, k, D] of the Gaussians in a step (index_select: fast)."""
    flat = gauss.reshape(-1)
    prm = table.index_select(0, flat).view(*gauss.shape, table.shape[1])
    cols = color_table.index_select(0, flat).view(*gauss.shape, color_table.shape[1])
    return prm, cols


def _below(value: float, dtype: torch.dtype) -> float:
    """The largest number of ``dtype`` below ``value``: ``x > _below(v)`` means ``x >= v``."""
    v = torch.tensor(value, dtype=dtype)
    return float(torch.nextafter(v, torch.tensor(-math.inf, dtype=dtype)))


@dataclass
class _Segment:
    mx: Tensor  # [b, k] means relative to their tile's centre
    my: Tensor
    conic: tuple[Tensor, Tensor, Tensor]  # [b, k] each
    opacity: Tensor  # [b, k]
    drawn_alpha: Tensor  # [b, P, k] alpha where drawn (>= 1/255, T stays > 1e-4), else 0
    one_minus_alpha: Tensor  # 1 - alpha (alpha 0 where below 1/255)
    t_excl: Tensor  # transmittance before each Gaussian (0 once at or below 1e-4)
    weights: Tensor  # drawn_alpha * t_excl
    t_end: Tensor  # [b, P] transmittance after the segment
    stopped: Tensor  # [b, P] bool: a Gaussian would have dropped T to 1e-4


def _segment(plan: _Plan, tiles: Tensor, prm: Tensor, feats: Tensor, t_start: Tensor) -> _Segment:
    """Composite one depth segment of some tiles: prm [b, k, 6], t_start [b, P].

    ``log(opacity) - sigma`` is a quadratic in the pixel position, so one matmul of the pixel
    features [P, 6] with per-Gaussian coefficients evaluates it for all pixels. Masks are
    applied with ``threshold`` and ``sign`` on floats: bool tensors are slow on CPUs.
    """
    dtype = prm.dtype
    in_image = tiles % (plan.tiles_x * plan.tiles_y)
    cx = ((in_image % plan.tiles_x) * plan.tile + plan.tile / 2).to(dtype)[:, None]
    cy = torch.div(in_image, plan.tiles_x, rounding_mode="floor") * plan.tile + plan.tile / 2
    mx, my = prm[..., 0] - cx, prm[..., 1] - cy.to(dtype)[:, None]
    ca, cb, cc, op = prm[..., 2], prm[..., 3], prm[..., 4], prm[..., 5]
    coef = torch.stack(
        [
            torch.log(op.clamp(min=1e-30))
            - (0.5 * ca * mx * mx + cb * mx * my + 0.5 * cc * my * my),
            ca * mx + cb * my,
            cb * mx + cc * my,
            -0.5 * ca,
            -0.5 * cc,
            -cb,
        ],
        dim=1,
    )  # [b, 6, k]
    # log(opacity) - sigma; below -60 alpha < 1/255 whatever the opacity, so clamping changes no
    # decision and keeps exp() out of float32's subnormals (many times slower on CPUs).
    raw = torch.matmul(feats, coef).clamp_(min=-SIGMA_MAX).exp_()
    alpha = torch.threshold(raw.clamp(max=MAX_ALPHA), _below(ALPHA_THRESHOLD, dtype), 0.0)

    b, n_pix, k = alpha.shape
    one_minus = alpha.new_empty(b, n_pix, k + 1)
    one_minus[..., 0] = t_start
    torch.sub(1.0, alpha, out=one_minus[..., 1:])
    trans = torch.cumprod(one_minus, dim=-1)  # sequential products, as the kernel's T *= 1 - a
    # T where above 1e-4, else 0: zeros instead of products past the cut-off, which are never
    # used and would otherwise sink into subnormals (many times slower on CPUs)
    trans = torch.threshold(trans, MIN_TRANSMITTANCE, 0.0)
    kept = torch.sign(trans[..., 1:])  # 1 while T after the Gaussian stays above 1e-4 (a prefix)
    n_keep = kept.sum(-1, keepdim=True)
    t_end = trans.gather(-1, n_keep.long())[..., 0]
    drawn_alpha = alpha * kept
    t_excl = trans[..., :-1]
    return _Segment(
        mx, my, (ca, cb, cc), op, drawn_alpha, one_minus[..., 1:], t_excl,
        drawn_alpha * t_excl, t_end, n_keep[..., 0] < k,
    )  # fmt: skip


def _segment_vjp(
    seg: _Segment, feats: Tensor, v_alpha: Tensor, with_abs: bool
) -> tuple[Tensor, Tensor | None]:
    """Per-Gaussian gradients [6, b, k] (x, y, a, b, c, opacity) from dL/dalpha [b, P, k].

    dL/dsigma = -dL/dalpha * alpha_raw where the Gaussian was drawn unclamped (gsplat passes no
    gradient through the 0.999 clamp), dL/dopacity = -dL/dsigma / opacity, and the sums over
    pixels of dL/dsigma times (dx, dy, dx^2, dy^2, dx dy) come from its moments against the
    pixel features.
    """
    # -alpha where drawn and below the clamp (an alpha of exactly 0.999 was clamped), else 0
    neg_alpha = torch.threshold(-seg.drawn_alpha, -MAX_ALPHA, 0.0)
    v_sigma = v_alpha * neg_alpha  # [b, P, k]
    s0, sx, sy, sxx, syy, sxy = torch.matmul(feats.T, v_sigma).unbind(1)  # [b, k] each
    mx, my = seg.mx, seg.my
    ca, cb, cc = seg.conic
    g_dx = mx * s0 - sx  # sum_p v_sigma (mean - pixel)
    g_dy = my * s0 - sy
    grads = torch.stack(
        [
            ca * g_dx + cb * g_dy,
            cb * g_dx + cc * g_dy,
            0.5 * (mx * mx * s0 - 2.0 * mx * sx + sxx),
            mx * my * s0 - mx * sy - my * sx + sxy,
            0.5 * (my * my * s0 - 2.0 * my * sy + syy),
            -s0 / seg.opacity.clamp(min=1e-30),
        ],
        dim=0,
    )
    absg = None
    if with_abs:  # sum over pixels of |dL/dmean| per pixel (gsplat's absgrad)
        dx = mx[:, None, :] - feats[None, :, 1:2]  # [b, P, k]
        dy = my[:, None, :] - feats[None, :, 2:3]
        ca, cb, cc = ca[:, None, :], cb[:, None, :], cc[:, None, :]
        absg = torch.stack(
            [
                (v_sigma * (ca * dx + cb * dy)).abs().sum(1),
                (v_sigma * (cb * dx + cc * dy)).abs().sum(1),
            ],
            dim=0,
        )
    return grads, absg


def _to_image(plan: _Plan, tiles: Tensor) -> Tensor:
    """[C * ty * tx, P, D] tile pixels -> [C, H, W, D] image."""
    ts, ty, tx = plan.tile, plan.tiles_y, plan.tiles_x
    img = tiles.reshape(plan.n_images, ty, tx, ts, ts, -1).permute(0, 1, 3, 2, 4, 5)
    img = img.reshape(plan.n_images, ty * ts, tx * ts, -1)
    return img[:, : plan.height, : plan.width].contiguous()


def _to_tiles(plan: _Plan, img: Tensor) -> Tensor:
    """[C, H, W, D] image -> [C * ty * tx, P, D] tile pixels (padding pixels get 0)."""
    ts, ty, tx = plan.tile, plan.tiles_y, plan.tiles_x
    channels = img.shape[-1]
    padded = img.new_zeros(plan.n_images, ty * ts, tx * ts, channels)
    padded[:, : plan.height, : plan.width] = img
    tiles = padded.reshape(plan.n_images, ty, ts, tx, ts, channels).permute(0, 1, 3, 2, 4, 5)
    return tiles.reshape(plan.n_images * ty * tx, ts * ts, channels)
