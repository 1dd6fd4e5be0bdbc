"""New imagery appears while the server runs: an extra, later sequence shows in every endpoint."""

from __future__ import annotations

import json

import httpx
import mapbox_vector_tile
import mercantile

from citysplat.synthetic.city import extra_sequence


def test_extra_sequence_is_later_and_visible_at_once(tiny_city, make_mapillary_server, tmp_path):
    server = make_mapillary_server(tiny_city.world_images())
    new = extra_sequence(tiny_city, tmp_path / "extra", number=1)
    assert len(new) >= 10
    last_before = max(m["captured_at"] for m in tiny_city.metadata)
    assert min(w.meta["captured_at"] for w in new) > last_before
    assert {w.id for w in new}.isdisjoint(m["id"] for m in tiny_city.metadata)
    truth = json.loads((tmp_path / "extra" / "cameras.json").read_text())
    assert [c["id"] for c in truth] == [w.id for w in new]

    headers = {"Authorization": f"OAuth {server.token}"}
    seq = new[0].meta["sequence"]
    before = httpx.get(f"{server.url}/image_ids", params={"sequence_id": seq}, headers=headers)
    assert before.json()["data"] == []
    server.add_images(new)
    after = httpx.get(f"{server.url}/image_ids", params={"sequence_id": seq}, headers=headers)
    assert [d["id"] for d in after.json()["data"]] == [w.id for w in new]

    # and in the z14 coverage tile of its first image
    lon, lat = new[0].meta["geometry"]["coordinates"]
    t = mercantile.tile(lon, lat, 14)
    tile = httpx.get(f"{server.tiles_url}/mly1_public/2/14/{t.x}/{t.y}",
                     params={"access_token": server.token})  # tiles: the query parameter only
    ids = {str(f["properties"]["id"]) for f in
           mapbox_vector_tile.decode(tile.content)["image"]["features"]}
    assert new[0].id in ids

    # the same number renders the same sequence
    again = extra_sequence(tiny_city, tmp_path / "extra2", number=1)
    assert [w.meta for w in again] == [w.meta for w in new]
    assert again[0].jpeg_path.read_bytes() == new[0].jpeg_path.read_bytes()
