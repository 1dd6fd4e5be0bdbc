"""A district's folder (``districts/<name>/``: frame, image list, polygon, plot) and the
catalog's copy of it.

The folder is the record of a district: ``images.txt`` lists the ids it was cut with and
``district.geojson`` its polygon; :mod:`citysplat.districts.membership` reads them. The
catalog's ``districts`` / ``district_images`` tables are a copy for SQL and the coverage report,
written by the same stage from the same objects and never read to decide membership.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd
from shapely.geometry import shape as shapely_shape

from citysplat.districts.model import District, district_points
from citysplat.districts.plots import plot_district
from citysplat.frames import LocalFrame
from citysplat.io import atomic_write_bytes, atomic_write_text
from citysplat.layout import DataLayout


def write_district(district: District, layout: DataLayout,
                   images_df: pd.DataFrame | None = None) -> Path:
    """Write the district's folder of ``layout``: its frame, image list (one id a line,
    sorted), polygon (a GeoJSON FeatureCollection of one Feature: the polygon, name, parent,
    frame, shared and borrowed ids) and a plot of its images in ENU metres, coloured by
    sequence, with the outline. Each file is written atomically. ``images_df`` gives the
    positions for the plot when the district has none (e.g. one read back with
    :func:`load_district`). Returns the folder."""
    files = layout.district(district.name)
    files.dir.mkdir(parents=True, exist_ok=True)
    district.frame.save(files.frame_json)
    atomic_write_text(files.images_txt, "".join(f"{i}\n" for i in district.image_ids))
    fc = {"type": "FeatureCollection", "features": [district.feature()]}
    atomic_write_text(files.geojson, json.dumps(fc, indent=1) + "\n")
    points = district.points
    if points is None and images_df is not None:
        wanted = set(district.image_ids)
        points = district_points(images_df[images_df["id"].astype(str).isin(wanted)])
    atomic_write_bytes(files.images_png, plot_district(district, points))
    return files.dir


def load_district(layout: DataLayout, name: str) -> District:
    """A district as :func:`write_district` left it (without the plot's positions)."""
    files = layout.district(name)
    frame = LocalFrame.load(files.frame_json)
    feature = json.loads(files.geojson.read_text())["features"][0]
    props = dict(feature.get("properties") or {})
    extra = {k: v for k, v in props.items() if k not in (
        "name", "parent", "image_count", "frame", "shared_ids", "borrowed_ids")}
    return District(name=props.get("name", name), polygon=shapely_shape(feature["geometry"]),
                    image_ids=files.image_ids(), frame=frame, parent=props.get("parent"),
                    shared_ids=list(props.get("shared_ids") or []),
                    borrowed_ids=list(props.get("borrowed_ids") or []), properties=extra)


def record_districts(catalog: Any, districts: Iterable[District]) -> int:
    """Store districts in the catalog (``Catalog.set_district``: polygon and image ids, chunk
    borrowed images included). Returns how many."""
    n = 0
    for d in districts:
        catalog.set_district(d.name, d.polygon, d.image_ids)
        n += 1
    return n


def district_summary(districts: Iterable[District]) -> dict[str, Any]:
    """Counts worth attaching to an asset: districts, chunks, images, shared images."""
    ds = list(districts)
    owned = sum(len(d.image_ids) - len(d.borrowed_ids) for d in ds)
    sizes = [len(d.image_ids) for d in ds]
    return {"districts": len(ds), "chunks": sum(d.parent is not None for d in ds),
            "images": owned, "images_with_overlap": int(sum(sizes)),
            "shared_images": len({i for d in ds for i in d.shared_ids}),
            "largest": max(sizes) if sizes else 0, "smallest": min(sizes) if sizes else 0,
            "mean_size": math.fsum(sizes) / len(sizes) if sizes else 0.0}
