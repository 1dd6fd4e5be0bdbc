"""The Dagster code location loads, builds, materializes, and shows up in the real webserver."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import httpx
import pytest
from PIL import Image

from assets.definitions import defs
from assets.resources import CitysplatStorage
from assets.sample_city import sample_city
from citysplat.layout import DataLayout

REPO = Path(__file__).resolve().parents[1]


def test_definitions_validate_and_every_resource_builds(monkeypatch):
    monkeypatch.setenv("MAPILLARY_ACCESS_TOKEN", "MLY|test|not-a-real-token")
    dg.Definitions.validate_loadable(defs)
    repo = defs.get_repository_def()
    keys = {k.to_user_string() for k in repo.asset_graph.get_all_asset_keys()}
    assert "sample_city" in keys
    for sensor in repo.sensor_defs:  # every sensor must be constructible and named
        assert sensor.name
    with dg.build_resources(defs.resources) as resources:
        assert resources.storage.root_path().name
        assert resources.mapillary.graph_url.startswith("https://")
        assert resources.mapillary.access_token == "MLY|test|not-a-real-token"


def test_materialize_sample_city_on_a_real_instance(tmp_path, tiny_city):
    (tmp_path / "dagster_home").mkdir()
    instance = dg.DagsterInstance.local_temp(str(tmp_path / "dagster_home"))
    result = dg.materialize(
        [sample_city],
        instance=instance,
        resources={"storage": CitysplatStorage(root=str(tmp_path / "data"))},
        run_config={"ops": {"sample_city": {"config": {"size": "tiny", "seed": 7}}}},
    )
    assert result.success
    event = result.get_asset_materialization_events()[0]
    meta = event.materialization.metadata
    assert meta["images"].value == len(tiny_city.metadata)
    assert meta["spec_key"].value == tiny_city.spec.key()
    map_png = DataLayout(tmp_path / "data").sample_city_map_png
    with Image.open(map_png) as im:
        assert im.size[0] > 400 and im.size[1] > 400
    # the instance recorded it: a later process sees the materialization
    assert instance.get_latest_materialization_event(dg.AssetKey("sample_city")) is not None


def test_materialize_rejects_an_unknown_size_with_a_clear_message(tmp_path):
    result = dg.materialize(
        [sample_city],
        instance=dg.DagsterInstance.ephemeral(),
        resources={"storage": CitysplatStorage(root=str(tmp_path))},
        run_config={"ops": {"sample_city": {"config": {"size": "huge"}}}},
        raise_on_error=False,
    )
    assert not result.success
    failure = result.failure_data_for_node("sample_city")
    assert "unknown city size 'huge'" in failure.error.message
    assert "tiny" in failure.error.message  # names the fix


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_LOCATIONS = """
{ workspaceOrError { __typename ... on Workspace { locationEntries { name
    locationOrLoadError { __typename ... on PythonError { message }
      ... on RepositoryLocation { repositories { name assetNodes { assetKey { path } } } } } } } } }
"""


@pytest.mark.slow
def test_workspace_loads_in_the_real_dagster_webserver(tmp_path):
    port = _free_port()
    home = tmp_path / "dagster_home"
    home.mkdir()
    env = {**os.environ, "DAGSTER_HOME": str(home)}
    webserver = Path(sys.executable).with_name("dagster-webserver")
    proc = subprocess.Popen(
        [str(webserver), "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.time() + 120
        body = None
        while time.time() < deadline:
            assert proc.poll() is None, proc.stdout.read().decode(errors="replace")[-3000:]
            try:
                r = httpx.post(f"http://127.0.0.1:{port}/graphql", json={"query": _LOCATIONS},
                               timeout=10)
                body = r.json()["data"]["workspaceOrError"]
                entries = body["locationEntries"]
                if entries and entries[0]["locationOrLoadError"]:
                    break
            except (httpx.HTTPError, KeyError, TypeError, json.JSONDecodeError):
                pass
            time.sleep(1)
        assert body is not None, "the webserver never answered GraphQL"
        entry = body["locationEntries"][0]
        loaded = entry["locationOrLoadError"]
        assert entry["name"] == "citysplat"
        assert loaded["__typename"] == "RepositoryLocation", loaded.get("message")
        assets = {tuple(a["assetKey"]["path"]) for repo in loaded["repositories"]
                  for a in repo["assetNodes"]}
        assert ("sample_city",) in assets
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
