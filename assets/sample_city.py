"""The offline sample city as an asset: rendered images, API metadata and ground truth."""


import dagster as dg

from assets.metadata import png_markdown
from assets.resources import CitysplatStorage
from citysplat.layout import DataLayout
from citysplat.synthetic.city import generate_city
from citysplat.synthetic.plots import plot_city_map
from citysplat.synthetic.spec import preset


class SampleCityConfig(dg.Config):
    """Which generated city: a named size and a seed."""

    size: str = "default"
    seed: int = 7

@dg.asset(
    group_name="sample_city",
    kinds={"python"},
    description="The generated sample city served by the Mapillary fixture server: rendered "
    "images, API v4 metadata and ground truth (poses, masks, roads, buildings, walkable area).",
)
def sample_city(
    context: dg.AssetExecutionContext, config: SampleCityConfig, storage: CitysplatStorage
) -> dg.MaterializeResult:
    try:
        spec = preset(config.size, seed=config.seed)
    except ValueError as exc:
        raise dg.Failure(description=str(exc)) from None

    def progress(done: int, total: int) -> None:
        if done == total or done % 25 == 0:
            context.log.info(f"rendered {done}/{total} images")

    city = generate_city(spec, cache_dir=storage.cache_path(), progress=progress)
    summary = city.summary()
    map_png = plot_city_map(city, DataLayout(storage.root_path()).sample_city_map_png)
    return dg.MaterializeResult(
        metadata={
            "images": summary["images"],
            "sequences": summary["sequences"],
            "bad_images": summary["bad_images"],
            "covisible_pairs": summary["covisible_pairs"],
            "by_kind": dg.MetadataValue.json(summary["by_kind"]),
            "city_root": dg.MetadataValue.path(str(city.root)),
            "spec_key": spec.key(),
            "map": png_markdown(map_png, "map"),
        }
    )
