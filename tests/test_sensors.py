"""The new-imagery sensor asks for a catalog update exactly when the coverage tiles change."""

from __future__ import annotations

import dagster as dg

from assets.resources import IngestArea, MapillaryApi
from citysplat.demo import city_area
from citysplat.synthetic.city import extra_sequence
from sensors.new_imagery import new_mapillary_imagery


def _tick(server, bbox: str, cursor: str | None, max_attempts: int = 6):
    resources = {"mapillary": MapillaryApi(graph_url=server.graph_url,
                                           tiles_url=server.tiles_url,
                                           access_token=server.token,
                                           max_attempts=max_attempts),
                 "area": IngestArea(bbox=bbox)}
    with dg.build_sensor_context(cursor=cursor, resources=resources) as context:
        return new_mapillary_imagery(context)


def test_sensor_requests_runs_only_when_imagery_changes(tiny_city, make_mapillary_server,
                                                        tmp_path):
    server = make_mapillary_server(tiny_city.world_images())
    bbox = ",".join(str(v) for v in city_area(tiny_city, margin_deg=0.001).bounds)

    first = _tick(server, bbox, None)
    assert isinstance(first, dg.SensorResult) and len(first.run_requests) == 1
    request = first.run_requests[0]
    assert {k.to_user_string() for k in request.asset_selection} == {
        "image_catalog", "downloaded_images"}
    assert request.tags["citysplat/reason"] == "first scan"

    quiet = _tick(server, bbox, first.cursor)
    assert isinstance(quiet, dg.SkipReason)
    assert "no coverage tile changed" in quiet.skip_message

    new = extra_sequence(tiny_city, tmp_path / "extra", number=2)
    server.add_images(new)
    changed = _tick(server, bbox, first.cursor)
    assert isinstance(changed, dg.SensorResult)
    assert changed.run_requests[0].tags["citysplat/reason"] == "new imagery"
    assert int(changed.run_requests[0].tags["citysplat/changed_tiles"]) >= 1
    assert changed.run_requests[0].run_key != request.run_key
    assert changed.cursor != first.cursor

    # an outage is not news: failed tiles keep their previous fingerprint
    outage = make_mapillary_server(tiny_city.world_images() + new,
                                   faults="drop_tiles=1.0,drop_tiles_for=100")
    down = _tick(outage, bbox, changed.cursor, max_attempts=2)
    assert isinstance(down, dg.SkipReason)
    assert "could not be read" in down.skip_message
