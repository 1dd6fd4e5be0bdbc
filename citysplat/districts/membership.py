"""Which images a district holds: the one reader of district membership.

A district's record is its folder (:mod:`citysplat.districts.files`): the ids it was cut with
(``images.txt``) and its polygon (``district.geojson``); the current set of districts is
``districts/index.json`` (:meth:`citysplat.layout.DataLayout.district_names`).
:func:`district_members` answers which images a district holds *now*: the ids it was cut with
that the catalog still holds, plus catalogued images that have since appeared inside its
polygon. The reconstruction and the training read it, :func:`district_fingerprints` hashes
it, so the district sensor asks for a run exactly when a district's images changed, and the
Dagster partitions follow the index.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping

import pandas as pd

from citysplat.catalog import Catalog
from citysplat.districts.files import load_district
from citysplat.layout import DataLayout


def district_members(layout: DataLayout, name: str, catalog: Catalog) -> pd.DataFrame:
    """Catalog rows of the images district ``name`` holds now (ordered by id): those it was
    cut with that the catalog still holds, plus catalogued images inside its polygon."""
    district = load_district(layout, name)
    inside = catalog.images_in_polygon(district.polygon)
    ids = sorted(set(district.image_ids) | set(inside["id"].astype(str)))
    return catalog.images(ids)


def fingerprint(images: pd.DataFrame) -> str:
    """A short hash of a district's images: their ids and catalog content hashes (which
    change with any field the API reports: position, sequence, camera, capture time)."""
    rows = images.sort_values("id")
    text = "\n".join(f"{i} {h}" for i, h in zip(rows["id"].astype(str),
                                                   rows["content_hash"].astype(str)))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def district_fingerprints(layout: DataLayout, catalog: Catalog,
                          names: Iterable[str] | None = None) -> dict[str, str]:
    """``{district: fingerprint of its current images}`` (all current districts by default)."""
    names = list(names) if names is not None else layout.district_names()
    return {n: fingerprint(district_members(layout, n, catalog)) for n in names}


def districts_with_changed_images(before: Mapping[str, str], now: Mapping[str, str]
                                  ) -> list[str]:
    """Districts that are new, or whose images' fingerprint differs from ``before``, sorted."""
    return sorted(n for n, fp in now.items() if before.get(n) != fp)
