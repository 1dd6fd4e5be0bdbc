"""`citysplat districts` with bad input: broken GeoJSON features, unusable names, invalid
polygons, districts without images, huge polygons and impossible catalogued positions. Each
case runs :func:`make_districts` on a real DuckDB catalog (the tiny generated city)."""

from __future__ import annotations

import json
import logging
import math

import numpy as np
import pytest
import shapely
from shapely.geometry import box, mapping
from typer.testing import CliRunner

from citysplat.catalog import Catalog
from citysplat.districts.stage import AutoDistrictOptions, DistrictsInputError, make_districts
from citysplat.frames import LocalFrame
from citysplat.layout import DataLayout
from citysplat.positions import best_lonlat

WORLD = {"type": "Polygon",
         "coordinates": [[[-180, -90], [180, -90], [180, 90], [-180, 90], [-180, -90]]]}
BOWTIE = {"type": "Polygon",  # a self-intersecting ring around the tiny city
          "coordinates": [[[-122.5, 37.75], [-122.49, 37.76], [-122.49, 37.75],
                           [-122.5, 37.76], [-122.5, 37.75]]]}


@pytest.fixture
def root(tiny_city, tmp_path):
    """A data root whose catalog holds the tiny city's images (no downloads needed)."""
    with Catalog(tmp_path / "catalog.duckdb") as catalog:
        catalog.upsert_images(tiny_city.metadata)
    return DataLayout(tmp_path)


def _images(layout: DataLayout):
    with Catalog.open_read_only(layout.catalog_path) as catalog:
        return catalog.images()


def _around_images(layout: DataLayout, pad: float = 0.0005):
    lon, lat = best_lonlat(_images(layout))
    return box(lon.min() - pad, lat.min() - pad, lon.max() + pad, lat.max() + pad)


def _fc(*features):
    return {"type": "FeatureCollection", "features": list(features)}


def _feature(name, geometry, **extra):
    props = {} if name is None else {"name": name}
    return {"type": "Feature", "properties": props, "geometry": geometry, **extra}


def _refused(layout: DataLayout, geojson) -> str:
    """make_districts' one-line DistrictsInputError; nothing may have been written."""
    with pytest.raises(DistrictsInputError) as err:
        make_districts(layout, geojson=geojson)
    message = str(err.value)
    assert "\n" not in message and "Traceback" not in message
    assert not layout.districts_dir.exists()
    return message


# -- 1. broken features --------------------------------------------------------------------

@pytest.mark.parametrize("bad, problem", [
    ({"type": "Polygon", "coordinates": [[[-122.5, 37.75], [-122.49, float("nan")],
                                          [-122.49, 37.76], [-122.5, 37.75]]]},
     "coordinates hold nan"),
    ({"type": "Polygon", "coordinates": [[[-122.5, 37.75], [-122.49, float("inf")],
                                          [-122.49, 37.76], [-122.5, 37.75]]]},
     "coordinates hold inf"),
    ({"type": "Polygon"}, "its Polygon has no coordinates"),
    ({"type": "MultiPolygon", "coordinates": []}, "its MultiPolygon has no coordinates"),
    ({"type": "Polygon", "coordinates": [[["a", "b"], [1, 2], [2, 2], [1, 2]]]},
     "coordinates hold 'b' where numbers belong"),
    ({"type": "Polygon", "coordinates": [[[-122.5, 37.75], [-122.49, 37.76]]]},
     "its Polygon has malformed coordinates"),
    (None, "has no geometry"),
    ({"coordinates": [[[0, 0], [1, 0], [1, 1], [0, 0]]]}, "geometry without a 'type'"),
    ({"type": "Polygonal", "coordinates": []}, "geometry of type 'Polygonal'"),
    ({"type": "Polygon", "coordinates": [[[-122.5, 37.75], [-122.49, 37.75],
                                          [-122.48, 37.75], [-122.5, 37.75]]]},
     "not a valid polygon"),  # zero area
    ({"type": "Polygon", "coordinates": [[[500000, 4180000], [501000, 4180000],
                                          [501000, 4181000], [500000, 4180000]]]},
     "out of lon/lat range"),  # metres (UTM), not degrees
])
def test_a_broken_feature_is_refused_naming_it(root, bad, problem, tmp_path):
    good = _feature("Outer Sunset", mapping(_around_images(root)))
    message = _refused(root, _fc(good, _feature("Lake Street", bad)))
    assert "features[1] (name 'Lake Street')" in message
    assert problem in message
    # the same from a file (JSON text with NaN and Infinity, as json.dumps writes them)
    path = tmp_path / "zones.geojson"
    path.write_text(json.dumps(_fc(good, _feature(None, bad))))
    message = _refused(root, path)
    assert message.startswith("zones.geojson features[1]")
    assert "name '" not in message and problem in message


def test_a_feature_without_a_geometry_key_or_not_an_object_is_refused(root):
    good = _feature("a", mapping(_around_images(root)))
    assert "features[1] (name 'b') has no geometry" in _refused(
        root, _fc(good, {"type": "Feature", "properties": {"name": "b"}}))
    assert "features[2] is not a Feature object" in _refused(root, _fc(good, good, "oops"))
    assert "features[0]" in _refused(root, _fc({"type": "Feature", "properties": [1],
                                                "geometry": mapping(_around_images(root))}))


def test_the_cli_answers_a_broken_feature_with_one_line_and_exit_code_2(root, tmp_path):
    from citysplat.cli import app

    path = tmp_path / "zones.geojson"
    path.write_text(json.dumps(_fc(_feature("Lake", {"type": "Polygon"}))))
    result = CliRunner().invoke(app, ["districts", "--geojson", str(path),
                                      "--home", str(root.root)])
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert "zones.geojson features[0] (name 'Lake'): its Polygon has no coordinates" in text
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


# -- 2. names --------------------------------------------------------------------------------

@pytest.mark.parametrize("name, problem", [
    ("x" * 300, "300 characters, at most 100"),
    ("..", "it has no ASCII letter or digit"),
    ("/", "it has no ASCII letter or digit"),
    (".", "it has no ASCII letter or digit"),
    ("CON", "a device name reserved on Windows"),
    ("nul.txt", "a device name reserved on Windows"),
])
def test_an_unusable_name_is_refused_up_front(root, name, problem):
    message = _refused(root, _fc(_feature(name, mapping(_around_images(root)))))
    assert message.startswith("the GeoJSON features[0] (name '")
    assert "its name is not usable as a district folder name" in message
    assert problem in message and "rename the feature" in message
    assert len(message) < 400  # a 300-character name is shortened


def test_names_that_become_the_same_folder_are_refused(root):
    poly = mapping(_around_images(root))
    message = _refused(root, _fc(_feature("North Beach", poly), _feature("Lake", poly),
                                 _feature("north/beach", poly)))
    assert ("features[0] (name 'North Beach') and the GeoJSON features[2] (name "
            "'north/beach') name the districts 'North-Beach' and 'north-beach', one folder on "
            "case-insensitive file systems: give each polygon its own 'name'") in message
    # an unnamed polygon's default name counts too
    message = _refused(root, _fc(_feature("district-2", poly), _feature(None, poly)))
    assert "features[0] (name 'district-2') and the GeoJSON features[1] both name" in message


def test_names_with_separators_and_spaces_are_sanitised(root):
    poly = mapping(_around_images(root))
    result = make_districts(root, geojson=_fc(_feature("../Outer Sunset/North", poly),
                                              _feature(" _x_ ", poly), _feature("  ", poly)))
    assert result.names == ["Outer-Sunset-North", "x_", "district-3"]  # blank: no name
    assert sorted(p.name for p in root.districts_dir.iterdir() if p.is_dir()) == \
        ["Outer-Sunset-North", "district-3", "x_"]


# -- 3. invalid polygons ----------------------------------------------------------------------

def test_a_self_intersecting_polygon_is_refused_like_ingest_refuses_it(root, tmp_path):
    from citysplat.mapillary.area import polygon_from_geojson

    path = tmp_path / "bowtie.geojson"
    path.write_text(json.dumps(_fc(_feature("bow", BOWTIE))))
    with pytest.raises(ValueError, match="not a valid polygon"):
        polygon_from_geojson(path)  # what `citysplat ingest --geojson` says
    message = _refused(root, path)
    assert message.startswith("bowtie.geojson features[0] (name 'bow'): the Polygon is not "
                              "a valid polygon (Self-intersection[")
    assert message.endswith("fix the polygon, e.g. with shapely's make_valid or QGIS's Fix "
                            "geometries")
    # overlapping parts of a MultiPolygon are invalid too
    a = _around_images(root)
    multi = {"type": "MultiPolygon", "coordinates": [mapping(a)["coordinates"],
                                                     mapping(a.buffer(0.0001))["coordinates"]]}
    assert "the MultiPolygon is not a valid polygon" in _refused(root, _fc(_feature("m", multi)))


# -- 4. districts without images -----------------------------------------------------------

def test_a_district_without_images_is_left_out_with_a_warning(root, caplog):
    far = box(13.0, 52.0, 13.01, 52.01)  # Berlin: no image of the city there
    fc = _fc(_feature("sunset", mapping(_around_images(root))), _feature("berlin", mapping(far)))
    with caplog.at_level(logging.WARNING, logger="citysplat.districts"):
        result = make_districts(root, geojson=fc)
    assert result.names == ["sunset"] and result.empty == ["berlin"]
    assert result.summary()["empty_districts"] == 1
    assert len(result.districts[0].image_ids) == len(_images(root))
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("left out 1 district(s) that hold no image" in m and "berlin" in m for m in warned), warned
    assert not (root.districts_dir / "berlin").exists()
    assert root.district_names() == ["sunset"]
    with Catalog.open_read_only(root.catalog_path) as catalog:
        assert set(catalog.districts()) == {"sunset"}


def test_when_no_district_holds_an_image_nothing_is_replaced(root, tmp_path):
    make_districts(root, geojson=_fc(_feature("sunset", mapping(_around_images(root)))))
    index = (root.districts_dir / "index.json").read_text()
    path = tmp_path / "elsewhere.geojson"
    path.write_text(json.dumps(_fc(_feature("berlin", mapping(box(13, 52, 13.01, 52.01))),
                                   _feature("null island", mapping(box(0, 0, 0.01, 0.01))))))
    with pytest.raises(DistrictsInputError) as err:
        make_districts(root, geojson=path)
    message = str(err.value)
    assert message.startswith("no district of elsewhere.geojson holds an image (berlin, "
                              "null-island): the 72 catalogued images with a position lie "
                              "within lon -122.")
    assert "draw the polygons around the images" in message and "\n" not in message
    assert (root.districts_dir / "index.json").read_text() == index  # the last set stands
    with Catalog.open_read_only(root.catalog_path) as catalog:
        assert set(catalog.districts()) == {"sunset"}
    # lat, lon swapped (a classic mistake) is out of range here, and said so
    swapped = shapely.transform(_around_images(root), lambda c: c[:, ::-1])
    with pytest.raises(DistrictsInputError, match=r"features\[0\] \(name 'swapped'\): its "
                       "coordinates are out of lon/lat range"):
        make_districts(root, geojson=_fc(_feature("swapped", mapping(swapped))))


# -- 5. the origin of a district's frame ------------------------------------------------------

def test_a_world_sized_polygon_gets_its_origin_at_its_images(root, tiny_city):
    result = make_districts(root, geojson=_fc(_feature("world", WORLD)))
    (d,) = result.districts
    images = _images(root)
    lon, lat = best_lonlat(images)
    assert len(d.image_ids) == len(images)
    assert (d.frame.lon0, d.frame.lat0) == (pytest.approx(np.median(lon), abs=1e-8),
                                            pytest.approx(np.median(lat), abs=1e-8))
    assert d.frame.alt0 == pytest.approx(tiny_city.spec.ground_alt, abs=0.5)
    # the images are within a block of the origin, not thousands of kilometres away
    enu = d.frame.to_enu(lon, lat)
    assert np.abs(enu[:, :2]).max() < 200
    assert LocalFrame.load(root.district("world").frame_json) == d.frame


def test_a_frame_origin_must_be_a_real_lonlat():
    with pytest.raises(ValueError, match="out of range"):
        LocalFrame(500.0, 10.0)
    with pytest.raises(ValueError, match="out of range"):
        LocalFrame(10.0, 95.0)
    with pytest.raises(ValueError, match="not three finite numbers"):
        LocalFrame(math.nan, 10.0)


# -- 6. impossible catalogued positions -------------------------------------------------------

def _spoil_positions(layout: DataLayout) -> list[str]:
    """Give three catalogued images impossible positions (as an older catalog may hold them:
    the catalog's upsert refuses them now), computed and GPS alike. Returns their ids."""
    with Catalog(layout.catalog_path) as catalog:
        ids = catalog.images()["id"].tolist()[:3]
        for image_id, (lon, lat) in zip(ids, [(500.0, 10.0), (10.0, 95.0), (math.nan, 10.0)]):
            catalog.con.execute(
                "UPDATE images SET lon = ?, lat = ?, computed_lon = ?, computed_lat = ?, "
                "pos_lon = ?, pos_lat = ? WHERE id = ?", [lon, lat] * 3 + [image_id])
    return ids


def test_auto_districts_ignore_impossible_positions_with_a_warning(root, caplog):
    bad = _spoil_positions(root)
    lon, lat = best_lonlat(_images(root))
    assert np.isin(lon, [500.0]).any()
    with caplog.at_level(logging.WARNING, logger="citysplat.positions"):
        result = make_districts(root, auto=AutoDistrictOptions())
    assert result.names == ["d000"]
    (d,) = result.districts
    assert len(d.image_ids) == len(lon) - 3 and not set(bad) & set(d.image_ids)
    assert sorted(result.unassigned) == sorted(bad)
    warned = " ".join(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert "3 of 72 images are in no district" in warned
    assert "1 none or not finite, 2 outside lon -180..180 / lat -90..90" in warned
    assert -123 < d.frame.lon0 < -122 and 37 < d.frame.lat0 < 38


def test_geojson_districts_ignore_impossible_positions_too(root, caplog):
    bad = _spoil_positions(root)
    with caplog.at_level(logging.WARNING, logger="citysplat.positions"):
        result = make_districts(root, geojson=_fc(_feature("world", WORLD)))
    (d,) = result.districts
    assert len(d.image_ids) == 69 and not set(bad) & set(d.image_ids)
    assert "3 of 72 images are in no district" in caplog.text
    assert -123 < d.frame.lon0 < -122 and 37 < d.frame.lat0 < 38


def test_a_computed_position_out_of_range_falls_back_to_the_gps_one(root):
    with Catalog(root.catalog_path) as catalog:
        image_id = catalog.images()["id"].iloc[0]
        catalog.con.execute("UPDATE images SET computed_lon = 500, computed_lat = 10, "
                            "pos_lon = 500, pos_lat = 10 WHERE id = ?", [image_id])
    result = make_districts(root, geojson=_fc(_feature("sunset",
                                                       mapping(_around_images(root, 0.001)))))
    assert image_id in result.districts[0].image_ids
