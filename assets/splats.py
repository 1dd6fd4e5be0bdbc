"""The splat of each district: Gaussian splatting trained from its sparse model (gsplat on a
CUDA executor, the PyTorch rasterizer elsewhere), with held-out PSNR as an asset check.

Its config holds every training setting of ``citysplat.splat.config.TrainConfig`` under the
same names, defaults and help as ``citysplat train``'s options (made from the one declaration),
and is checked by the same ``TrainConfig.from_settings``: a bad value fails the run with one line
naming the setting and what it allows.

Runs in the ``gpu`` pool (cap it to the GPUs you have: ``dagster instance concurrency set gpu
N``) and carries a ``dagster-k8s/config`` tag asking for one ``nvidia.com/gpu``, so that with
the k8s run launcher each district's training lands on a GPU node.
"""

import base64
from typing import Optional

import dagster as dg
import pydantic

from assets.districts import district_partitions, sparse_model
from assets.resources import CitysplatStorage
from citysplat.layout import DataLayout
from citysplat.splat.config import TrainConfig
from citysplat.splat.settings import SettingSpec

GPU_POOL = "gpu"
GPU_TAGS = {"dagster-k8s/config": {"container_config": {"resources": {
    "limits": {"nvidia.com/gpu": "1"}, "requests": {"cpu": "4", "memory": "24Gi"}}}}}


class SplatCheckConfig(dg.Config):
    """The bar of the held-out PSNR check."""

    min_psnr: float = 20.0

    def train_config(self) -> TrainConfig:
        """The training settings of this config (raises ``TrainConfigError``, one line per bad
        setting)."""
        return TrainConfig.from_settings(self.model_dump(exclude={"min_psnr"}))


def _setting_field(spec: SettingSpec) -> tuple:
    kind = spec.kind if spec.default is not None else Optional[spec.kind]
    allowed = "" if spec.kind is bool else f" Allowed: {spec.allowed.describe()}."
    return kind, pydantic.Field(spec.default, description=spec.help + allowed)


SplatConfig = pydantic.create_model(
    "SplatConfig", __base__=SplatCheckConfig, __module__=__name__,
    __doc__="Training settings (TrainConfig's, the same as `citysplat train`'s options; "
    "strategy parameters left unset take the strategy's defaults) and the check's bar.",
    **{spec.name: _setting_field(spec) for spec in TrainConfig.specs()})


@dg.asset(
    group_name="splats", partitions_def=district_partitions, deps=[sparse_model],
    pool=GPU_POOL, op_tags=GPU_TAGS, kinds={"pytorch"},
    description="The district's Gaussian splat in its ENU frame (districts/<name>/splat: "
    "the PLY in the standard 3DGS layout, its frame, metrics and held-out renders).",
    check_specs=[dg.AssetCheckSpec("heldout_psnr", asset="splat",
                                   description="PSNR on held-out views at least min_psnr")],
)
def splat(context: dg.AssetExecutionContext, config: SplatConfig,
          storage: CitysplatStorage) -> dg.MaterializeResult:
    from citysplat.splat.backend import BackendUnavailableError
    from citysplat.splat.config import TrainConfigError
    from citysplat.splat.data import SceneDataError
    from citysplat.splat.district import train_district

    name = context.partition_key
    try:
        train_config = config.train_config()
    except TrainConfigError as exc:
        raise dg.Failure(description=f"{name}: {exc}") from None
    layout = DataLayout.at(storage.root_path())

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
    for name, f in m.get("formats", {}).items():  # the compact files beside the PLY
        metadata[f"{name}_bytes"] = f["bytes"]
        metadata[f"{name}_position_max_mm"] = round(f["position_max_m"] * 1000, 3)
    if "formats" in m:
        metadata["ply_bytes"] = result.ply_path.stat().st_size
    if result.renders:
        encoded = base64.b64encode(result.renders[0].read_bytes()).decode()
        metadata["preview"] = dg.MetadataValue.md(
            f"![prediction | truth](data:image/png;base64,{encoded})")
    return dg.MaterializeResult(metadata=metadata, check_results=[
        dg.AssetCheckResult(check_name="heldout_psnr", passed=m["psnr"] >= config.min_psnr,
                            metadata={"psnr": m["psnr"], "min_psnr": config.min_psnr})])
