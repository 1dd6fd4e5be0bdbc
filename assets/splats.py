"""The splat of each district: Gaussian splatting trained from its sparse model (gsplat on a
CUDA executor, the PyTorch rasterizer elsewhere), with held-out PSNR as an asset check.

Runs in the ``gpu`` pool (cap it to the GPUs you have: ``dagster instance concurrency set gpu
N``) and carries a ``dagster-k8s/config`` tag asking for one ``nvidia.com/gpu``, so that with
the k8s run launcher each district's training lands on a GPU node.
"""

import base64

import dagster as dg

from assets.districts import district_partitions, sparse_model
from assets.resources import CitysplatStorage
from citysplat.layout import DataLayout

GPU_POOL = "gpu"
GPU_TAGS = {"dagster-k8s/config": {"container_config": {"resources": {
    "limits": {"nvidia.com/gpu": "1"}, "requests": {"cpu": "4", "memory": "24Gi"}}}}}


class SplatConfig(dg.Config):
    """Training settings (see ``citysplat.splat.config.TrainConfig``) and the check's bar."""

    steps: int = 3000
    backend: str = "auto"
    max_side: int = 320
    seed: int = 0
    min_psnr: float = 20.0


@dg.asset(
    group_name="splats", partitions_def=district_partitions, deps=[sparse_model],
    pool=GPU_POOL, op_tags=GPU_TAGS, kinds={"pytorch"},
    description="The district's Gaussian splat in its ENU frame (districts/<name>/splat: "
    "point_cloud.ply in the standard 3DGS layout, frame.json, metrics.json, held-out renders).",
    check_specs=[dg.AssetCheckSpec("heldout_psnr", asset="splat",
                                   description="PSNR on held-out views at least min_psnr")],
)
def splat(context: dg.AssetExecutionContext, config: SplatConfig,
          storage: CitysplatStorage) -> dg.MaterializeResult:
    from citysplat.splat.backend import BackendUnavailableError
    from citysplat.splat.config import TrainConfig
    from citysplat.splat.data import SceneDataError
    from citysplat.splat.district import train_district

    name = context.partition_key
    layout = DataLayout.at(storage.root_path())
    train_config = TrainConfig(steps=config.steps, backend=config.backend,
                               max_side=config.max_side, seed=config.seed)

    def progress(step: int, total: int, info: dict) -> None:
        if step % max(1, total // 10) == 0:
            context.log.info(f"step {step}/{total}: loss {info['loss']:.4f}, "
                             f"{info['gaussians']} Gaussians")

    try:
        result = train_district(layout, name, train_config, progress=progress)
    except (SceneDataError, BackendUnavailableError, ValueError) as exc:
        raise dg.Failure(description=f"{name}: {exc}") from None
    m = result.metrics
    metadata = {k: m[k] for k in ("psnr", "ssim", "psnr_static", "num_gaussians", "steps",
                                  "seconds", "backend", "eval_images")}
    metadata["ply"] = dg.MetadataValue.path(str(result.ply_path))
    if result.renders:
        encoded = base64.b64encode(result.renders[0].read_bytes()).decode()
        metadata["preview"] = dg.MetadataValue.md(
            f"![prediction | truth](data:image/png;base64,{encoded})")
    return dg.MaterializeResult(metadata=metadata, check_results=[
        dg.AssetCheckResult(check_name="heldout_psnr", passed=m["psnr"] >= config.min_psnr,
                            metadata={"psnr": m["psnr"], "min_psnr": config.min_psnr})])
