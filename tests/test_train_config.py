"""Training settings: one declaration, one check through every door (library, CLI, Dagster),
strategies as config objects reaching gsplat's strategy, and gsplat's step order (the
optimizers step before the strategy densifies), on a tiny synthetic scene on the CPU."""

from __future__ import annotations

import dataclasses
import json

import dagster as dg
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from citysplat.cli import app
from citysplat.layout import SplatLayout
from citysplat.splat.config import TrainConfig, TrainConfigError
from citysplat.splat.data import SceneData, View
from citysplat.splat.strategy import STRATEGIES, DefaultStrategyConfig, MCMCStrategyConfig
from citysplat.splat.trainer import SplatTrainer

BAD = {"steps": 0}
BAD_LINE = "steps must be at least 1 (got 0)"


def tiny_scene(views: int = 4, points: int = 150, size: tuple[int, int] = (32, 24),
               seed: int = 0) -> SceneData:
    """Points in a box 3-5 m in front of cameras side by side, looking down +z; the images
    are smooth colour ramps (what a splat can fit)."""
    rng = np.random.default_rng(seed)
    width, height = size
    xyz = np.column_stack([rng.uniform(-1.5, 1.5, points), rng.uniform(-1, 1, points),
                           rng.uniform(3, 5, points)]).astype(np.float32)
    rgb = rng.uniform(0.2, 0.8, (points, 3)).astype(np.float32)
    K = torch.tensor([[28.0, 0, width / 2], [0, 28.0, height / 2], [0, 0, 1]])
    yy, xx = torch.meshgrid(torch.linspace(0, 1, height), torch.linspace(0, 1, width),
                            indexing="ij")
    out = []
    for i in range(views):
        viewmat = torch.eye(4)
        viewmat[0, 3] = 0.2 * i - 0.3
        image = torch.stack([xx, yy, (xx + yy + 0.1 * i) % 1.0], dim=-1) * 0.8 + 0.1
        out.append(View(f"v{i}.jpg", i, image, torch.ones(height, width), K.clone(), viewmat))
    return SceneData(out[1:], out[:1], xyz, rgb, scene_scale=1.0)


# ------------------------------------------------------------------ one check, three doors
def test_library_rejects_a_bad_value_with_one_line():
    with pytest.raises(TrainConfigError) as caught:
        TrainConfig(**BAD)
    assert str(caught.value) == BAD_LINE
    with pytest.raises(TrainConfigError) as caught:
        TrainConfig.from_settings(BAD)
    assert str(caught.value) == BAD_LINE
    with pytest.raises(TrainConfigError, match=r"^prune_opa must be at least 0 and below 1 "
                                                r"\(got 1.5\)$"):
        DefaultStrategyConfig(prune_opa=1.5)


def test_cli_rejects_the_same_bad_value_with_the_same_line(tmp_path):
    for command in (["train-model", str(tmp_path), str(tmp_path), "--out", str(tmp_path / "o")],
                    ["train", "anywhere"]):
        result = CliRunner().invoke(app, [*command, "--steps", "0"])
        assert result.exit_code == 2, result.output
        assert result.stderr.strip() == f"error: {BAD_LINE}", result.stderr
        assert not (tmp_path / "o").exists()


def test_dagster_rejects_the_same_bad_value_with_the_same_line(tmp_path):
    from assets.districts import DISTRICTS
    from assets.resources import CitysplatStorage
    from assets.splats import splat

    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        instance.add_dynamic_partitions(DISTRICTS, ["d1"])
        result = dg.materialize(
            [splat], instance=instance, partition_key="d1", raise_on_error=False,
            resources={"storage": CitysplatStorage(root=str(tmp_path / "data"))},
            run_config={"ops": {"splat": {"config": BAD}}})
    assert not result.success
    (failure,) = [e for e in result.all_events if e.is_step_failure]
    assert failure.step_failure_data.user_failure_data.description == f"d1: {BAD_LINE}"


def test_several_bad_values_are_named_each_and_unknown_names_refused():
    with pytest.raises(TrainConfigError) as caught:
        TrainConfig.from_settings({"steps": 0, "backend": "magic", "ssim_lambda": 2.0,
                                   "prune_opa": -1.0, "frobnicate": 1})
    assert caught.value.problems == [
        "steps must be at least 1 (got 0)",
        "backend must be one of auto, gsplat, torch (got 'magic')",
        "ssim_lambda must be between 0 and 1 (got 2.0)",
        "frobnicate is not a training setting",
        "prune_opa must be at least 0 and below 1 (got -1.0)",
    ]
    with pytest.raises(TrainConfigError, match="prune_opa is a setting of strategy default, "
                                               "not of mcmc"):
        TrainConfig.from_settings({"strategy": "mcmc", "backend": "gsplat", "prune_opa": 0.1})
    with pytest.raises(TrainConfigError, match="strategy mcmc runs on gsplat's CUDA kernels"):
        TrainConfig.from_settings({"strategy": "mcmc", "backend": "torch"})
    with pytest.raises(TrainConfigError, match=r"^steps must be a whole number \(got '3'\)$"):
        TrainConfig(steps="3")


# ------------------------------------------------------------------ one declaration
def test_cli_options_and_dagster_fields_are_the_declared_settings():
    import typer.main

    from assets.splats import SplatConfig

    names = {spec.name for spec in TrainConfig.specs()}
    assert {"steps", "strategy", "prune_opa", "grow_grad2d", "refine_start_iter", "cap_max",
            "noise_lr", "min_opacity"} <= names
    assert set(SplatConfig.model_fields) == names | {"min_psnr"}
    command = typer.main.get_command(app)
    for name, skipped in (("train", set()), ("train-model", {"masks"})):
        params = {p.name for p in command.commands[name].params}
        assert names - skipped <= params, names - skipped - params
    defaults = SplatConfig(min_psnr=1.0).train_config()
    assert defaults == TrainConfig()


def test_flat_settings_round_trip_and_identity_leaves_out_bookkeeping():
    config = TrainConfig.from_settings({"steps": 200, "prune_opa": 0.02, "eval_every": 50})
    assert TrainConfig.from_settings(config.settings()) == config
    assert config.to_dict()["strategy"] == "default" and config.to_dict()["prune_opa"] == 0.02
    identity = config.identity()
    assert "eval_every" not in identity and "checkpoint_every" not in identity
    assert identity["refine_start_iter"] == 100 and identity["refine_stop_iter"] == 100
    assert TrainConfig.from_settings({"steps": 200, "prune_opa": 0.02}).identity() == identity
    assert not hasattr(config, "extra")


# ------------------------------------------------------------------ strategies as objects
def test_strategy_configs_use_gsplats_names_and_build_its_strategies():
    from gsplat.strategy import DefaultStrategy, MCMCStrategy

    gsplat_of = {"default": DefaultStrategy, "mcmc": MCMCStrategy}
    for name, config_class in STRATEGIES.items():
        ours = {f.name for f in dataclasses.fields(config_class)}
        ours -= {"cap_max"} if name == "default" else set()  # citysplat's cap
        theirs = {f.name for f in dataclasses.fields(gsplat_of[name])}
        assert ours <= theirs, ours - theirs
    mcmc = MCMCStrategyConfig(cap_max=1234, noise_lr=7.0, min_opacity=0.01).resolved(1000)
    built = mcmc.build()
    assert isinstance(built, MCMCStrategy)
    assert (built.cap_max, built.noise_lr, built.min_opacity, built.refine_start_iter) == (
        1234, 7.0, 0.01, 100)


def test_a_strategy_setting_reaches_gsplats_strategy_object(tmp_path):
    from gsplat.strategy import DefaultStrategy

    config = TrainConfig.from_settings({"steps": 10, "prune_opa": 0.02, "grow_grad2d": 3e-4,
                                        "refine_start_iter": 7, "backend": "torch"})
    trainer = SplatTrainer(tiny_scene(), config, tmp_path)
    strategy = trainer.strategy
    assert isinstance(strategy, DefaultStrategy)
    assert (strategy.prune_opa, strategy.grow_grad2d, strategy.refine_start_iter) == (
        0.02, 3e-4, 7)
    assert strategy.refine_stop_iter == 5 and strategy.reset_every == 11  # from the steps


# ------------------------------------------------------------------ gsplat's step order
def test_a_refine_step_still_gets_its_adam_update(tmp_path):
    """gsplat steps the optimizers, then densifies. At a refine step every Gaussian that
    survives it has moved by Adam in that same step (densifying first would replace the
    parameters, drop their gradients, and skip the update)."""
    config = TrainConfig.from_settings({
        "steps": 20, "backend": "torch", "sh_degree": 0, "sky": False, "appearance": False,
        "refine_start_iter": 1, "refine_every": 3, "grow_grad2d": 1e-12,  # all duplicate
        "grow_scale3d": 1e9, "prune_opa": 0.0, "checkpoint_every": 100})
    trainer = SplatTrainer(tiny_scene(), config, tmp_path)
    for _ in range(3):  # steps 0, 1, 2
        trainer.train_step()
    before = {k: v.detach().clone() for k, v in trainer.splats.items()}
    n = len(before["means"])
    trainer.train_step()  # step 3: a refine step
    after = trainer.splats
    assert len(after["means"]) > n  # it refined: Gaussians were duplicated
    moved = (after["means"][:n] - before["means"]).abs().sum(dim=1) > 0
    assert moved.float().mean() > 0.5, moved.float().mean()
    assert not torch.equal(after["opacities"][:n], before["opacities"])
    for name, optimizer in trainer.optimizers.items():  # Adam ran in all 4 steps
        (param,) = optimizer.param_groups[0]["params"]
        assert param is after[name] and int(optimizer.state[param]["step"]) == 4, name


def test_metrics_record_the_flat_settings(tmp_path):
    config = TrainConfig.from_settings({"steps": 4, "backend": "torch", "sh_degree": 0,
                                        "prune_opa": 0.03, "checkpoint_every": 2})
    result = SplatTrainer(tiny_scene(), config, tmp_path).train()
    saved = json.loads(SplatLayout(tmp_path).metrics_json.read_text())
    assert saved["config"]["prune_opa"] == 0.03 and saved["config"]["strategy"] == "default"
    assert saved["config"]["refine_start_iter"] == 100  # resolved from the steps
    assert saved["steps"] == 4 and result.ply_path == SplatLayout(tmp_path).ply
    assert SplatLayout(tmp_path).checkpoint.is_file()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU (CUDA)")
def test_mcmc_on_gsplat_cuda_steps_adam_every_step_and_keeps_its_cap(tmp_path):
    config = TrainConfig.from_settings({
        "steps": 12, "backend": "gsplat", "strategy": "mcmc", "cap_max": 200,
        "refine_start_iter": 1, "refine_every": 3, "sh_degree": 0, "checkpoint_every": 100})
    trainer = SplatTrainer(tiny_scene(), config, tmp_path)
    assert trainer.strategy.cap_max == 200 and trainer.strategy.refine_every == 3
    for _ in range(12):
        trainer.train_step()
    assert 150 <= len(trainer.splats["means"]) <= 200
    for name, optimizer in trainer.optimizers.items():
        (param,) = optimizer.param_groups[0]["params"]
        assert int(optimizer.state[param]["step"]) == 12, name
