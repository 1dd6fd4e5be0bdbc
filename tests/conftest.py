"""Shared fixtures: the generated cities (rendered once, then cached) and the fixture server."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from citysplat.catalog import Catalog
from citysplat.synthetic.city import SyntheticCity, generate_city
from citysplat.synthetic.spec import preset

pytest_plugins = ["citysplat.fixtures.pytest_plugin"]

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def sample_city() -> SyntheticCity:
    """The default demo city (about 230 images), from the user cache after its first render."""
    return generate_city(preset("default"))


@pytest.fixture(scope="session")
def tiny_city() -> SyntheticCity:
    """One block of the generated city: quick to render, for tests that need few images."""
    return generate_city(preset("tiny"))


@pytest.fixture(scope="session")
def kerbed_tiny_city() -> SyntheticCity:
    """The tiny city with 15 cm kerbs, its truth only (no images: seconds to make), for the
    true geometry and the mesh stage's method tests."""
    return generate_city(preset("tiny", kerb_height=0.15), images=False)


def _catalog_images(city: SyntheticCity, folder: Path) -> pd.DataFrame:
    with Catalog(folder / "catalog.duckdb") as catalog:
        catalog.upsert_images(city.metadata)
        return catalog.images()


@pytest.fixture(scope="session")
def sample_images(sample_city, tmp_path_factory) -> pd.DataFrame:
    """The sample city's images as the catalog holds them (``Catalog.images()``)."""
    return _catalog_images(sample_city, tmp_path_factory.mktemp("sample-catalog"))


@pytest.fixture(scope="session")
def tiny_images(tiny_city, tmp_path_factory) -> pd.DataFrame:
    """The tiny city's images as the catalog holds them."""
    return _catalog_images(tiny_city, tmp_path_factory.mktemp("tiny-catalog"))


@pytest.fixture(scope="session")
def data_root_of():
    """:func:`citysplat.fixtures.data_root.make_data_root` (a data root for a city, as ingest
    with downloads leaves it)."""
    from citysplat.fixtures.data_root import make_data_root

    return make_data_root


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not beside this checkout")
    return SHARED_DATA


@pytest.fixture(scope="session")
def corner_model(tiny_city, data_root_of, tmp_path_factory):
    """(data layout, district name) of a small reconstructed district: the tiny city as
    ingest leaves it, and 'corner', the first 14 images of a car sequence (outlined 0.5 m
    around their catalogued positions), reconstructed (about 15 s)."""

    import shapely

    from citysplat.districts.stage import make_districts
    from citysplat.fixtures.outline import capture_outline
    from citysplat.layout import DataLayout
    from citysplat.sfm.district import reconstruct_district

    root = data_root_of(tiny_city, tmp_path_factory.mktemp("corner-root"))
    car = next(ids for ids in tiny_city.sequences().values()
               if tiny_city.cameras[ids[0]]["kind"] == "car")[:14]
    outline = capture_outline(tiny_city, car, 0.5, hull=False)
    layout = DataLayout(root)
    make_districts(layout, geojson={"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"name": "corner"},
         "geometry": shapely.geometry.mapping(outline)}]})
    reconstruct_district(layout, "corner")
    return layout, "corner"
