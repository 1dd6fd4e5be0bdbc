"""The simulation assets materialize on a real reconstructed district: the road network from its
capture, then a traffic scenario on it, with every check passing."""

from __future__ import annotations

import dagster as dg
import duckdb

from assets.resources import CitysplatStorage
from assets.sim import road_network, traffic_scenario


def test_road_network_and_traffic_scenario_materialize_with_passing_checks(corner_model,
                                                                           tmp_path):
    layout, name = corner_model
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        instance.add_dynamic_partitions("districts", [name])
        result = dg.materialize(
            [road_network, traffic_scenario], instance=instance, partition_key=name,
            resources={"storage": CitysplatStorage(root=str(layout.root))},
            run_config={"ops": {"traffic_scenario": {"config": {
                "vehicles": 20, "pedestrians": 10, "seconds": 120.0}}}})
    assert result.success
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks == {"network_frames_agree": True, "network_has_roads": True,
                      "no_teleports_or_collisions": True, "trajectories_read_back": True}

    sim = layout.district(name).sim
    assert sim.network_net_xml == sim.dir / "network.net.xml" and sim.network_net_xml.is_file()
    assert sim.fcd_parquet == sim.dir / "fcd.parquet" and sim.fcd_parquet.is_file()

    meta = {e.asset_key.to_user_string(): e.materialization.metadata
            for e in result.get_asset_materialization_events()}
    network = meta["road_network"]
    assert network["edges"].value > 0 and network["road_km"].value > 0
    assert network["source"].value == "capture"
    assert "| edges |" in network["counts"].value
    assert network["net_xml"].value == str(sim.network_net_xml)

    scenario = meta["traffic_scenario"]
    assert "data:image/png;base64," in scenario["picture"].value
    assert scenario["fcd_parquet"].value == str(sim.fcd_parquet)
    with duckdb.connect() as con:
        rows, kinds = con.execute(
            "SELECT count(*), list(DISTINCT kind) FROM read_parquet(?)",
            [str(sim.fcd_parquet)]).fetchall()[0]
    assert rows > 0 and scenario["rows"].value == rows
    assert set(kinds) == {"vehicle", "pedestrian"}
    assert scenario["vehicles"].value == 20 and scenario["pedestrians"].value == 10
