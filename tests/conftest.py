"""Shared fixtures: the generated cities (rendered once, then cached) and the fixture server."""

from __future__ import annotations

from pathlib import Path

import pytest

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
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not beside this checkout")
    return SHARED_DATA
