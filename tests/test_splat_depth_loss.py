"""The sparse-depth loss (gsplat's ``depth_loss``): SfM points seen by each training view, at
the view's resolution, and a loss whose gradient pulls the rendered depth towards them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from citysplat.splat.config import TrainConfig, TrainConfigError
from citysplat.splat.data import load_scene
from citysplat.splat.district import district_photos
from citysplat.splat.trainer import sparse_depth_loss


def test_each_view_carries_the_sparse_points_it_sees_at_its_resolution(corner_model):
    layout, name = corner_model
    district = layout.district(name)
    scene = load_scene(district.sparse_dir, district_photos(layout, name).paths, max_side=96)
    for view in scene.views:
        uv, depth = view.sparse_uv.numpy(), view.sparse_depth.numpy()
        assert len(uv) > 20
        assert (uv[:, 0] >= 0).all() and (uv[:, 0] < view.width).all()
        assert (uv[:, 1] >= 0).all() and (uv[:, 1] < view.height).all()
        # the pixel and depth are the point's projection: back-projected, it is a sparse point
        K, pose = view.K.numpy(), view.viewmat.numpy()
        rays = np.column_stack([(uv[:, 0] - K[0, 2]) / K[0, 0], (uv[:, 1] - K[1, 2]) / K[1, 1],
                                np.ones(len(uv))]) * depth[:, None]
        world = (rays - pose[:3, 3]) @ pose[:3, :3]
        gap = np.min(np.linalg.norm(world[:50, None] - scene.points[None], axis=2), axis=1)
        assert np.median(gap) < 0.05


def test_sparse_depth_loss_pulls_the_rendered_depth_towards_the_points():
    depth = torch.full((8, 8), 10.0, requires_grad=True)
    uv = torch.tensor([[2.5, 2.5], [5.5, 4.5]])
    loss = sparse_depth_loss(depth, uv, torch.tensor([5.0, 5.0]))
    assert loss.item() == pytest.approx(abs(1 / 10 - 1 / 5))
    loss.backward()
    # a gradient step lowers the depth at the points' pixels, and nowhere else
    assert depth.grad[2, 2] > 0 and depth.grad[4, 5] > 0 and depth.grad[0, 7] == 0
    assert sparse_depth_loss(torch.full((8, 8), 5.0), uv, torch.tensor([5.0, 5.0])).item() == 0


def test_depth_lambda_is_a_checked_setting():
    assert TrainConfig().depth_lambda == 0.0  # off by default, as in gsplat's simple_trainer
    assert TrainConfig.from_settings({"depth_lambda": 0.05}).depth_lambda == 0.05
    with pytest.raises(TrainConfigError, match="depth_lambda"):
        TrainConfig(depth_lambda=-1.0)
