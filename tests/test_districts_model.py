"""Districts: named polygons from a GeoJSON, generated capture clusters, chunks with overlap,
and the files of a district."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import shapely
from PIL import Image
from shapely.geometry import box, mapping

from citysplat.catalog import Catalog
from citysplat.districts.clusters import districts_auto, unassigned_ids
from citysplat.districts.files import load_district, record_districts, write_district
from citysplat.districts.geojson import districts_from_geojson
from citysplat.districts.model import District
from citysplat.frames import LocalFrame
from citysplat.layout import DataLayout
from citysplat.positions import best_lonlat


def _halves(images: pd.DataFrame):
    """West and east halves of the images' extent, split at the median longitude."""
    lon, lat = best_lonlat(images)
    mid = float(np.median(lon))
    pad = 0.001
    west = box(lon.min() - pad, lat.min() - pad, mid, lat.max() + pad)
    east = box(mid, lat.min() - pad, lon.max() + pad, lat.max() + pad)
    return west, east, lon, lat, mid


def test_districts_from_a_geojson_of_two_polygons_split_the_images(sample_city, sample_images,
                                                                   tmp_path):
    west, east, lon, lat, mid = _halves(sample_images)
    fc = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"name": "Sunset West"}, "geometry": mapping(west)},
        {"type": "Feature", "properties": {"kind": "no name"}, "geometry": mapping(east)},
        {"type": "Feature", "properties": {"name": "a road"},
         "geometry": {"type": "LineString", "coordinates": [[lon.min(), lat.min()],
                                                            [lon.max(), lat.max()]]}},
    ]}
    districts = districts_from_geojson(fc, sample_images)
    assert [d.name for d in districts] == ["Sunset-West", "district-2"]  # the line is ignored
    ids = sample_images["id"].to_numpy()
    expected_west = sorted(ids[lon <= mid])  # the boundary belongs to both: none sits on it
    expected_east = sorted(ids[lon >= mid])
    assert districts[0].image_ids == expected_west
    assert districts[1].image_ids == expected_east
    assert not set(expected_west) & set(expected_east)
    assert len(expected_west) + len(expected_east) == len(sample_images)
    assert len(expected_west) > 50 and len(expected_east) > 50
    assert districts[0].properties["name"] == "Sunset West"
    # the frame: origin at the median position of the district's images, on the street (the
    # city's ground altitude)
    for d in districts:
        held = np.isin(ids, d.image_ids)
        assert d.frame.lon0 == pytest.approx(np.median(lon[held]), abs=1e-8)
        assert d.frame.lat0 == pytest.approx(np.median(lat[held]), abs=1e-8)
        assert d.frame.alt0 == pytest.approx(sample_city.spec.ground_alt, abs=0.5)
    # the same from a file, and from the catalog itself (queried per polygon)
    path = tmp_path / "districts.geojson"
    path.write_text(json.dumps(fc))
    again = districts_from_geojson(path, sample_images)
    assert [(d.name, d.image_ids) for d in again] == [(d.name, d.image_ids) for d in districts]
    with Catalog(DataLayout(tmp_path).catalog_path) as cat:
        cat.upsert_images(sample_city.metadata)
        from_catalog = districts_from_geojson(str(path), cat)
    assert [(d.name, d.image_ids) for d in from_catalog] == \
        [(d.name, d.image_ids) for d in districts]


@pytest.mark.parametrize("obj", [
    {"type": "FeatureCollection", "features": []},
    {"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"name": "x"},
         "geometry": {"type": "Point", "coordinates": [-122.5, 37.75]}},
        {"type": "Feature", "properties": {},
         "geometry": {"type": "LineString", "coordinates": [[-122.5, 37.75], [-122.49, 37.76]]}},
    ]},
    {"type": "Point", "coordinates": [-122.5, 37.75]},
])
def test_a_geojson_without_polygons_is_refused_with_one_clear_line(obj, sample_images, tmp_path):
    with pytest.raises(ValueError) as err:
        districts_from_geojson(obj, sample_images)
    msg = str(err.value)
    assert "\n" not in msg
    assert "no Polygon or MultiPolygon" in msg and "draw each one as a polygon" in msg
    path = tmp_path / "lines.geojson"
    path.write_text(json.dumps(obj))
    with pytest.raises(ValueError, match=r"^lines\.geojson has no Polygon"):
        districts_from_geojson(path, sample_images)


def test_geojson_names_must_be_distinct_and_the_file_valid(sample_images, tmp_path):
    west, east, *_ = _halves(sample_images)
    fc = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"name": "north"}, "geometry": mapping(west)},
        {"type": "Feature", "properties": {"name": "north"}, "geometry": mapping(east)}]}
    with pytest.raises(ValueError, match=r"features\[0\] \(name 'north'\) and the GeoJSON "
                       r"features\[1\] \(name 'north'\) both name the district 'north'"):
        districts_from_geojson(fc, sample_images)
    bad = tmp_path / "bad.geojson"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match=r"^bad\.geojson is not valid GeoJSON"):
        districts_from_geojson(bad, sample_images)


def _own_counts(districts: list[District]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for d in districts:
        for i in d.own_ids:
            counts[i] = counts.get(i, 0) + 1
    return counts


def _contains_own_images(d: District, images: pd.DataFrame) -> bool:
    rows = images[images["id"].isin(set(d.image_ids))]
    lon, lat = best_lonlat(rows)
    return bool(shapely.intersects_xy(d.polygon, lon, lat).all())


def test_auto_districts_hold_every_image_exactly_once(sample_images):
    districts = districts_auto(sample_images)
    ids = set(sample_images["id"])
    counts = _own_counts(districts)
    assert set(counts) == ids and set(counts.values()) == {1}
    assert set().union(*(d.image_ids for d in districts)) == ids
    assert unassigned_ids(districts, sample_images) == []
    # the sample city is one capture cluster, small enough for one district
    assert [d.name for d in districts] == ["d000"]
    d = districts[0]
    assert d.parent is None and d.shared_ids == [] and d.borrowed_ids == []
    assert d.image_ids == sorted(ids)
    assert _contains_own_images(d, sample_images)
    assert d.frame.alt0 == pytest.approx(22.0, abs=0.5)


def test_a_cap_splits_a_cluster_into_overlapping_chunks(sample_images):
    cap = 80
    districts = districts_auto(sample_images, min_cluster_size=50, max_images=cap,
                               overlap_m=8.0)
    assert len(districts) >= 3
    assert all(d.parent == "d000" for d in districts)
    assert [d.name for d in districts] == [f"d000-{chr(97 + k)}" for k in range(len(districts))]
    assert all(len(d.image_ids) <= cap for d in districts)
    ids = set(sample_images["id"])
    counts = _own_counts(districts)  # every image owned by exactly one chunk
    assert set(counts) == ids and set(counts.values()) == {1}
    # chunks share their border images, and say which
    holders: dict[str, list[str]] = {}
    for d in districts:
        for i in d.image_ids:
            holders.setdefault(i, []).append(d.name)
    shared = {i for i, names in holders.items() if len(names) > 1}
    assert shared, "chunks must overlap"
    for d in districts:
        assert set(d.shared_ids) == shared & set(d.image_ids)
        assert set(d.borrowed_ids) <= set(d.shared_ids)
        assert d.image_ids == sorted(d.image_ids)
        assert _contains_own_images(d, sample_images)
    borrowed = [i for d in districts for i in d.borrowed_ids]
    assert borrowed and len(shared) < len(ids) / 2
    # every chunk overlaps at least one sibling
    assert all(d.shared_ids for d in districts)
    # deterministic, whatever the row order
    shuffled = sample_images.sample(frac=1.0, random_state=3)
    again = districts_auto(shuffled, min_cluster_size=50, max_images=cap, overlap_m=8.0)
    assert [(d.name, d.image_ids, d.borrowed_ids) for d in again] == \
        [(d.name, d.image_ids, d.borrowed_ids) for d in districts]


def _blob(rng, center_m, n, spread_m, seq_prefix, lat0=37.75, lon0=-122.45):
    m_lat = 111_320.0
    m_lon = m_lat * math.cos(math.radians(lat0))
    xy = np.asarray(center_m) + rng.normal(0, spread_m, (n, 2))
    return pd.DataFrame({
        "id": [f"{seq_prefix}{k:06d}" for k in range(n)],
        "sequence_id": [f"{seq_prefix}-{k // 50}" for k in range(n)],
        "captured_at_ms": np.arange(n) * 1000,
        "lon": lon0 + xy[:, 0] / m_lon, "lat": lat0 + xy[:, 1] / m_lat,
        "computed_lon": lon0 + xy[:, 0] / m_lon, "computed_lat": lat0 + xy[:, 1] / m_lat})


def test_auto_districts_separate_capture_clusters_and_attach_noise():
    rng = np.random.default_rng(0)
    images = pd.concat([
        _blob(rng, (0, 0), 3000, 150, "a"),
        _blob(rng, (3000, 0), 2000, 120, "b"),
        _blob(rng, (0, 520), 20, 15, "n"),  # sparse, close to the first: joins it
        _blob(rng, (-8000, 9000), 5, 5, "z"),  # a handful far from everything: left out
    ], ignore_index=True)
    images.loc[images.index[:40], ["computed_lon", "computed_lat"]] = np.nan  # GPS only
    districts = districts_auto(images, min_cluster_size=300, max_images=5000)
    assert len(districts) == 2
    by_prefix = {d.name: {i[0] for i in d.image_ids} for d in districts}
    assert set(map(frozenset, by_prefix.values())) == {frozenset("an"), frozenset("b")}
    assert unassigned_ids(districts, images) == [f"z{k:06d}" for k in range(5)]
    assert all(d.frame.alt0 == 0.0 for d in districts)  # no altitude known
    for d in districts:
        assert _contains_own_images(d, images)


def test_write_district_files_round_trip(sample_images, tmp_path):
    districts = districts_auto(sample_images, min_cluster_size=50, max_images=120,
                               overlap_m=8.0)
    d = districts[0]
    layout = DataLayout(tmp_path)
    folder = write_district(d, layout)
    assert folder == tmp_path / "districts" / d.name
    assert sorted(p.name for p in folder.iterdir()) == [
        "district.geojson", "frame.json", "images.png", "images.txt"]
    assert LocalFrame.load(folder / "frame.json") == d.frame
    assert (folder / "images.txt").read_text().split() == d.image_ids
    fc = json.loads((folder / "district.geojson").read_text())
    feature = fc["features"][0]
    assert feature["properties"]["name"] == d.name
    assert feature["properties"]["parent"] == "d000"
    assert shapely.geometry.shape(feature["geometry"]).equals(d.polygon)
    with Image.open(folder / "images.png") as im:
        assert im.format == "PNG" and im.size[0] > 300 and im.size[1] > 300
    back = load_district(layout, d.name)
    assert (back.name, back.image_ids, back.parent, back.frame, back.shared_ids,
            back.borrowed_ids) == (d.name, d.image_ids, d.parent, d.frame, d.shared_ids,
                                   d.borrowed_ids)
    # a district read back has no positions: the images frame draws its plot
    write_district(back, layout, images_df=sample_images)
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]  # no temporary files
    with Catalog(layout.catalog_path) as cat:
        assert record_districts(cat, districts) == len(districts)
        assert cat.district_image_ids(d.name) == d.image_ids
        assert set(cat.districts()) == {x.name for x in districts}


def test_write_district_refuses_unsafe_names(sample_images, tmp_path):
    d = districts_auto(sample_images)[0]
    d.name = "../escape"
    with pytest.raises(ValueError, match="not usable as a folder"):
        write_district(d, DataLayout(tmp_path))


def test_a_small_city_is_one_district(tiny_images):
    images = tiny_images
    districts = districts_auto(images)  # 72 images: under min_cluster_size, still a district
    assert len(districts) == 1 and districts[0].image_ids == sorted(images["id"])
    assert districts_auto(images.iloc[:3]) == []  # a handful is no district
