"""The ``citysplat`` command: help everywhere, one clear line for bad input, a real server."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from citysplat.cli import app
from citysplat.fixtures.server import DEFAULT_TOKEN

runner = CliRunner()
CLI = str(Path(sys.executable).with_name("citysplat"))


@pytest.mark.parametrize("args", [[], ["demo"], ["fixture"], ["fixture", "serve"],
                                  ["fixture", "truth"], ["fixture", "info"]])
def test_every_command_has_help(args):
    result = runner.invoke(app, [*args, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["fixture", "info", "--size", "huge"], "unknown city size 'huge'"),
        (["fixture", "serve", "--faults", "bogus=1"], "unknown fault 'bogus'"),
        (["fixture", "serve", "--faults", "reset=7"], "reset"),
        (["fixture", "serve", "--port", "70000"], "not a port number"),
        (["demo", "--size", "galactic"], "choose one of"),
        (["ingest", "--bbox=-122.5,37.7,-122.4,37.8", "--size", "512"],
         "size must be one of 256, 1024, 2048 or 'original'"),
    ],
)
def test_bad_input_is_one_clear_line_and_a_nonzero_exit(args, needle, tmp_path):
    result = subprocess.run([CLI, *args], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "CITYSPLAT_HOME": str(tmp_path)})
    assert result.returncode == 2, result.stdout + result.stderr
    assert needle in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not any(tmp_path.iterdir())  # nothing written


def test_truth_refuses_a_file_as_out(tmp_path, tiny_city):
    target = tmp_path / "file.txt"
    target.write_text("x")
    result = runner.invoke(app, ["fixture", "truth", "--size", "tiny", "--out", str(target)])
    assert result.exit_code == 2
    assert "is a file" in result.output


def test_truth_writes_the_ground_truth(tmp_path, tiny_city):
    result = runner.invoke(app, ["fixture", "truth", "--size", "tiny", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    for name in ("cameras.json", "roads.geojson", "buildings.geojson", "walkable.geojson",
                 "covisible_pairs.json", "frame.json", "metadata.json"):
        assert (tmp_path / name).stat().st_size > 0
    assert len(list((tmp_path / "masks").glob("*.png"))) == len(tiny_city.metadata)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_fixture_serve_answers_like_mapillary(tiny_city):
    port = _free_port()
    proc = subprocess.Popen([CLI, "fixture", "serve", "--size", "tiny", "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(120):
            try:
                httpx.get(url, timeout=1)
                break
            except httpx.TransportError:
                assert proc.poll() is None, proc.stdout.read()
                time.sleep(0.5)
        first = tiny_city.metadata[0]
        assert httpx.get(f"{url}/{first['id']}").status_code == 401
        r = httpx.get(f"{url}/{first['id']}", params={"fields": "sequence,captured_at"},
                      headers={"Authorization": f"OAuth {DEFAULT_TOKEN}"})
        assert r.status_code == 200
        assert r.json() == {"id": first["id"], "sequence": first["sequence"],
                            "captured_at": first["captured_at"]}
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=20)
    assert DEFAULT_TOKEN not in out  # the token is not printed


def _ingest_env(tmp_path, **extra) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("MAPILLARY_ACCESS_TOKEN", "CITYSPLAT_GRAPH_URL", "CITYSPLAT_TILES_URL")}
    return {**env, "CITYSPLAT_HOME": str(tmp_path / "home"), "COLUMNS": "200", **extra}


def _one_line_failure(result, needle: str, home: Path) -> None:
    assert result.returncode == 2, result.stdout + result.stderr
    assert needle in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not home.exists()  # nothing written


@pytest.mark.parametrize(
    ("area", "needle"),
    [
        (["--bbox=200,0,201,1"], "longitude"),
        (["--bbox=-122.49,37.76,-122.50,37.77"], "inverted"),
        (["--bbox=-122.5,37.76,-122.5,37.77"], "empty"),
        (["--bbox=1,2,3"], "four numbers"),
        (["--bbox=a,b,c,d"], "four numbers"),
        ([], "--bbox W,S,E,N or as --geojson"),
    ],
)
def test_ingest_rejects_a_bad_bbox(area, needle, tmp_path):
    env = _ingest_env(tmp_path, MAPILLARY_ACCESS_TOKEN="MLY|x|y")
    result = subprocess.run([CLI, "ingest", *area], capture_output=True, text=True, env=env,
                            timeout=120)
    _one_line_failure(result, needle, tmp_path / "home")


def test_ingest_rejects_bad_geojson(tmp_path):
    env = _ingest_env(tmp_path, MAPILLARY_ACCESS_TOKEN="MLY|x|y")
    not_json = tmp_path / "broken.geojson"
    not_json.write_text("{ this is not json")
    points = tmp_path / "points.geojson"
    points.write_text('{"type": "FeatureCollection", "features": [{"type": "Feature", '
                      '"properties": {}, "geometry": {"type": "Point", "coordinates": [0, 0]}}]}')
    for path, needle in ((not_json, "--geojson"), (points, "olygon"),
                         (tmp_path / "missing.geojson", "no such file")):
        result = subprocess.run([CLI, "ingest", "--geojson", str(path)], capture_output=True,
                                text=True, env=env, timeout=120)
        _one_line_failure(result, needle, tmp_path / "home")


def test_ingest_without_a_token_says_how_to_set_one(tmp_path):
    result = subprocess.run([CLI, "ingest", "--bbox=-122.5,37.75,-122.49,37.76"],
                            capture_output=True, text=True, env=_ingest_env(tmp_path),
                            timeout=120)
    _one_line_failure(result, "MAPILLARY_ACCESS_TOKEN", tmp_path / "home")


def test_ingest_with_a_wrong_token_or_unreachable_api_writes_nothing(tmp_path,
                                                                    make_mapillary_server,
                                                                    tiny_city):
    server = make_mapillary_server(tiny_city.world_images())
    wrong = _ingest_env(tmp_path, MAPILLARY_ACCESS_TOKEN="MLY|wrong|token",
                        CITYSPLAT_GRAPH_URL=server.graph_url, CITYSPLAT_TILES_URL=server.tiles_url)
    bbox = "--bbox=-122.4995,37.752,-122.496,37.755"
    result = subprocess.run([CLI, "ingest", bbox], capture_output=True, text=True, env=wrong,
                            timeout=120)
    _one_line_failure(result, "401", tmp_path / "home")
    assert "MLY|wrong|token" not in result.stderr

    port = _free_port()  # nothing listens there
    gone = _ingest_env(tmp_path, MAPILLARY_ACCESS_TOKEN="MLY|x|y",
                       CITYSPLAT_GRAPH_URL=f"http://127.0.0.1:{port}",
                       CITYSPLAT_TILES_URL=f"http://127.0.0.1:{port}/maps/vtp")
    result = subprocess.run([CLI, "ingest", bbox], capture_output=True, text=True, env=gone,
                            timeout=180)
    _one_line_failure(result, "cannot reach the Mapillary API", tmp_path / "home")


def test_coverage_without_a_catalog_says_to_ingest_first(tmp_path):
    result = subprocess.run([CLI, "coverage"], capture_output=True, text=True,
                            env=_ingest_env(tmp_path), timeout=120)
    _one_line_failure(result, "run `citysplat ingest` first", tmp_path / "home")
