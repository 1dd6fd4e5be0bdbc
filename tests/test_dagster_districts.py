"""District assets on a real Dagster instance: districts become dynamic partitions, one
partition downloads and reconstructs with its checks, and the district sensor asks for runs of
exactly the districts whose images changed."""

from __future__ import annotations

import json
import subprocess
import sys

import dagster as dg
import numpy as np
import pytest
import shapely

from assets.districts import district_images, districts, sparse_model
from assets.resources import CitysplatStorage, MapillaryApi
from assets.splats import splat
from citysplat.catalog import Catalog
from citysplat.fixtures.outline import capture_outline
from sensors.districts import changed_districts


@pytest.fixture(scope="module")
def district_root(tiny_city, data_root_of, tmp_path_factory):
    """(data root, GeoJSON path, ids of 'corner'): the tiny city ingested, and two named
    districts: 'corner' (14 consecutive images of a car sequence) and 'rest' (the city)."""
    root = data_root_of(tiny_city, tmp_path_factory.mktemp("district-root"))
    car = next(ids for ids in tiny_city.sequences().values()
               if tiny_city.cameras[ids[0]]["kind"] == "car")
    corner = capture_outline(tiny_city, car[:14], 0.5, hull=False)
    everything = capture_outline(tiny_city, list(tiny_city.cameras), 5.0)
    geojson = root / "districts.geojson"
    geojson.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"name": "corner"},
         "geometry": shapely.geometry.mapping(corner)},
        {"type": "Feature", "properties": {"name": "rest"},
         "geometry": shapely.geometry.mapping(everything)}]}))
    return root, geojson, car[:14]


@pytest.fixture(scope="module")
def instance(tmp_path_factory):
    home = tmp_path_factory.mktemp("dagster-home")
    with dg.instance_for_test(temp_dir=str(home)) as inst:
        yield inst


def test_districts_asset_registers_partitions_and_sparse_model_passes_checks(
        district_root, instance, tiny_city, make_mapillary_server):
    root, geojson, corner_ids = district_root
    storage = CitysplatStorage(root=str(root))
    made = dg.materialize(
        [districts], instance=instance, resources={"storage": storage},
        run_config={"ops": {"districts": {"config": {"geojson": str(geojson)}}}})
    assert made.success
    assert sorted(instance.get_dynamic_partitions("districts")) == ["corner", "rest"]
    meta = made.get_asset_materialization_events()[0].materialization.metadata
    assert meta["districts"].value == 2
    assert "data:image/png;base64," in meta["map"].value
    with Catalog.open_read_only(root / "catalog.duckdb") as catalog:
        assert set(catalog.district_image_ids("corner")) >= set(corner_ids)

    server = make_mapillary_server(tiny_city.world_images())
    api = MapillaryApi(graph_url=server.graph_url, tiles_url=server.tiles_url,
                       access_token=server.token)
    result = dg.materialize(
        [district_images, sparse_model], instance=instance, partition_key="corner",
        resources={"storage": storage, "mapillary": api})
    assert result.success
    by_asset = {e.asset_key.to_user_string(): e.materialization.metadata
                for e in result.get_asset_materialization_events()}
    images = by_asset["district_images"]
    assert images["failed"].value == 0 and images["images"].value >= 14
    model = by_asset["sparse_model"]
    assert model["registered_images"].value >= 13
    assert model["gps_residual_median_m"].value < 2.0
    assert "data:image/png;base64," in model["cameras"].value
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks == {"registration_rate": True, "gps_residual": True}
    assert (root / "districts" / "corner" / "sparse" / "images.bin").is_file()
    assert instance.get_latest_materialization_event(dg.AssetKey("sparse_model")) is not None

    # the district's splat, on the CPU here (on a GPU executor in production)
    trained = dg.materialize(
        [splat], instance=instance, partition_key="corner", resources={"storage": storage},
        run_config={"ops": {"splat": {"config": {"steps": 40, "max_side": 64,
                                                 "min_psnr": 10.0}}}})
    assert trained.success
    meta = trained.get_asset_materialization_events()[0].materialization.metadata
    assert meta["backend"].value == "torch" and meta["steps"].value == 40
    assert meta["psnr"].value > 10.0 and meta["num_gaussians"].value > 100
    assert "data:image/png;base64," in meta["preview"].value
    assert {e.check_name: e.passed for e in trained.get_asset_check_evaluations()} == {
        "heldout_psnr": True}
    assert (root / "districts" / "corner" / "splat" / "point_cloud.ply").is_file()
    k8s = splat.op.tags["dagster-k8s/config"]  # Dagster keeps op tags as JSON text
    k8s = json.loads(k8s) if isinstance(k8s, str) else k8s
    assert k8s["container_config"]["resources"]["limits"]["nvidia.com/gpu"] == "1"


def _tick(instance, root, cursor):
    with dg.build_sensor_context(instance=instance, cursor=cursor,
                                 resources={"storage": CitysplatStorage(root=str(root))}
                                 ) as context:
        return changed_districts(context)


def test_district_sensor_requests_runs_only_for_changed_districts(district_root, tiny_city,
                                                                  tmp_path):
    root, geojson, corner_ids = district_root
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        made = dg.materialize(
            [districts], instance=instance,
            resources={"storage": CitysplatStorage(root=str(root))},
            run_config={"ops": {"districts": {"config": {"geojson": str(geojson)}}}})
        assert made.success
        first = _tick(instance, root, None)
        assert isinstance(first, dg.SensorResult)
        assert sorted(r.partition_key for r in first.run_requests) == ["corner", "rest"]
        assert {k.to_user_string() for k in first.run_requests[0].asset_selection} == {
            "district_images", "sparse_model"}

        quiet = _tick(instance, root, first.cursor)
        assert isinstance(quiet, dg.SkipReason) and "no district changed" in quiet.skip_message

        # a new image appears inside 'corner' (and so inside 'rest', which holds the city)
        with Catalog(root / "catalog.duckdb") as catalog:
            entity = catalog.entities([corner_ids[3]])[0]
            entity["id"] = "999000000000001"
            catalog.upsert_images([entity])
        changed = _tick(instance, root, first.cursor)
        assert sorted(r.partition_key for r in changed.run_requests) == ["corner", "rest"]
        assert all(r.tags["citysplat/reason"] == "images changed" for r in changed.run_requests)

        # a new image far from 'corner' changes 'rest' only
        corner_xy = np.array([tiny_city.cameras[i]["position_enu"][:2] for i in corner_ids])
        far = max((i for i in tiny_city.cameras if tiny_city.cameras[i]["kind"] == "car"),
                  key=lambda i: np.linalg.norm(corner_xy - np.array(
                      tiny_city.cameras[i]["position_enu"][:2]), axis=1).min())
        with Catalog(root / "catalog.duckdb") as catalog:
            entity = catalog.entities([far])[0]
            entity["id"] = "999000000000002"
            catalog.upsert_images([entity])
        again = _tick(instance, root, changed.cursor)
        assert [r.partition_key for r in again.run_requests] == ["rest"]
        assert again.run_requests[0].run_key != changed.run_requests[1].run_key

        # while another process writes the catalog, the tick waits instead of failing
        holder = subprocess.Popen(
            [sys.executable, "-c", "import sys, time; import citysplat; "
             "from citysplat.catalog import Catalog; c = Catalog(sys.argv[1]); "
             "print('ready', flush=True); time.sleep(60)", str(root / "catalog.duckdb")],
            stdout=subprocess.PIPE, text=True)
        try:
            assert holder.stdout.readline().strip() == "ready"
            busy = _tick(instance, root, again.cursor)
        finally:
            holder.kill()
            holder.wait()
        assert isinstance(busy, dg.SkipReason) and "being written" in busy.skip_message
