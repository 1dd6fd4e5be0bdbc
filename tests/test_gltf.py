"""glTF 2.0 / OBJ export of ENU meshes (citysplat.mesh.gltf), checked with real tools.

The Khronos glTF validator (npm ``gltf-validator``, pinned in ``tests/gltf_validator``) must find
no errors or warnings; trimesh and open3d must load the files with the counts and bounds written;
the georeference in ``asset.extras`` must place a vertex back at its lon/lat; ENU maps to glTF's
Y-up axes with counter-clockwise winding kept; bad input fails with a ValueError naming the part,
and a crash mid-write leaves the previous file (or none), never half a file.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import numpy as np
import open3d as o3d
import pygltflib
import pytest
import trimesh
from gltf_tools import assert_clean, khronos_validate, pinned_validator_version

import citysplat.mesh.gltf as gltf_module
from citysplat.frames import LocalFrame
from citysplat.mesh.gltf import (
    MeshPart,
    enu_to_gltf,
    frame_from_extras,
    gltf_to_enu,
    read_glb,
    write_glb,
    write_obj,
)

FRAME = LocalFrame(lon0=13.1910, lat0=55.7047, alt0=71.5)  # Lund, ellipsoidal height


# ------------------------------------------------------------------------------------ the parts


def _box() -> MeshPart:
    """A 4 x 2 x 3 m box standing on the ground at (10, 20), with random uint8 RGB colours."""
    box = trimesh.creation.box(extents=(4.0, 2.0, 3.0))
    vertices = np.asarray(box.vertices) + [10.0, 20.0, 1.5]
    colors = np.random.default_rng(1).integers(0, 256, (len(vertices), 3), dtype=np.uint8)
    return MeshPart("box", vertices, np.asarray(box.faces), colors=colors)


def _ground() -> MeshPart:
    """A 60 x 40 m ground quad, counter-clockwise from above, grey float RGBA colours."""
    vertices = np.array([[-30, -20, 0], [30, -20, 0], [30, 20, 0], [-30, 20, 0]], float)
    faces = np.array([[0, 1, 2], [0, 2, 3]])
    return MeshPart("ground", vertices, faces, colors=np.full((4, 4), 0.5))


def _road() -> MeshPart:
    """A 6 m wide road strip running north, slightly raised, with node extras."""
    y = np.linspace(-20, 20, 9)
    left = np.stack([np.full_like(y, -3.0), y, np.full_like(y, 0.05)], 1)
    right = np.stack([np.full_like(y, 3.0), y, np.full_like(y, 0.05)], 1)
    vertices = np.concatenate([left, right])
    i = np.arange(len(y) - 1)
    n = len(y)
    faces = np.concatenate([np.stack([i, i + n, i + n + 1], 1), np.stack([i, i + n + 1, i + 1], 1)])
    return MeshPart("road", vertices, faces, extras={"kind": "road", "lanes": 2})


def _empty() -> MeshPart:
    return MeshPart("navmesh", np.zeros((0, 3)), np.zeros((0, 3), dtype=np.int64))


def _grid(n: int) -> MeshPart:
    """An n x n vertex terrain grid (n * n > 65535 needs 32-bit indices)."""
    xs, ys = np.meshgrid(np.arange(n, dtype=float), np.arange(n, dtype=float))
    vertices = np.stack([xs.ravel(), ys.ravel(), 0.3 * np.sin(xs.ravel() / 7)], 1)
    idx = np.arange(n * n).reshape(n, n)
    a, b, c, d = idx[:-1, :-1].ravel(), idx[:-1, 1:].ravel(), idx[1:, :-1].ravel(), idx[1:, 1:].ravel()
    faces = np.concatenate([np.stack([a, b, d], 1), np.stack([a, d, c], 1)])
    return MeshPart("terrain", vertices, faces)


@pytest.fixture
def parts() -> list[MeshPart]:
    return [_box(), _ground(), _road(), _empty()]


@pytest.fixture
def glb(tmp_path, parts) -> Path:
    path = tmp_path / "surface.glb"
    write_glb(path, parts, FRAME, extras={"district": "lund-centre"})
    return path


def _bounds(vertices: np.ndarray) -> np.ndarray:
    return np.array([vertices.min(axis=0), vertices.max(axis=0)])


# ------------------------------------------------------------------------------------- the tests


def test_khronos_validator_finds_no_errors(tmp_path, glb):
    terrain = tmp_path / "terrain.glb"  # the other colour layouts, and uint32 indices
    grid = _grid(260)  # 67,600 vertices
    grid.colors = np.random.default_rng(2).random((len(grid.vertices), 3))  # float RGB
    sidewalk = replace(_ground(), name="sidewalk", colors=np.full((4, 4), 200, np.uint8))
    write_glb(terrain, [grid, sidewalk], FRAME)
    empty = tmp_path / "empty.glb"
    write_glb(empty, [_empty()], FRAME)
    reports = khronos_validate(glb, terrain, empty)
    for report in reports:
        assert report["validatorVersion"] == pinned_validator_version()
        assert_clean(report)
    info = reports[0]["info"]
    assert info["drawCallCount"] == 3  # the empty part is left out
    assert info["totalTriangleCount"] == 12 + 2 + 16
    assert info["materialCount"] == 1
    assert reports[1]["info"]["totalTriangleCount"] == 2 * 259 * 259 + 2
    assert reports[2]["info"]["drawCallCount"] == 0


def test_trimesh_loads_the_glb_with_the_counts_and_bounds_written(glb, parts):
    scene = trimesh.load(glb)
    assert sorted(scene.geometry) == ["box", "ground", "road"]
    for part in parts[:3]:
        mesh = scene.geometry[part.name]
        assert mesh.vertices.shape == part.vertices.shape
        assert mesh.faces.shape == part.faces.shape
        np.testing.assert_allclose(_bounds(gltf_to_enu(mesh.vertices)), _bounds(part.vertices),
                                   atol=1e-5)
    box = scene.geometry["box"]
    np.testing.assert_array_equal(box.visual.vertex_attributes["color"][:, :3], parts[0].colors)
    for name in scene.graph.nodes_geometry:  # one node per part, placed without a transform
        np.testing.assert_array_equal(scene.graph[name][0], np.eye(4))


def test_open3d_loads_the_glb(glb, parts):
    mesh = o3d.io.read_triangle_mesh(str(glb))
    assert len(mesh.vertices) == sum(len(p.vertices) for p in parts)
    assert len(mesh.triangles) == sum(len(p.faces) for p in parts)
    assert mesh.has_vertex_normals()
    np.testing.assert_allclose(_bounds(gltf_to_enu(np.asarray(mesh.vertices))),
                               _bounds(np.concatenate([p.vertices for p in parts])), atol=1e-5)


def test_read_glb_round_trips_parts_and_extras(glb, parts):
    read, extras = read_glb(glb)
    assert [p.name for p in read] == ["box", "ground", "road"]
    for got, want in zip(read, parts):
        np.testing.assert_allclose(got.vertices, want.vertices, atol=1e-5)
        np.testing.assert_array_equal(got.faces, want.faces)
    np.testing.assert_array_equal(read[0].colors, parts[0].colors)
    np.testing.assert_allclose(read[1].colors, parts[1].colors)
    assert read[2].colors is None
    assert read[2].extras == {"kind": "road", "lanes": 2}
    assert read[0].extras is None
    assert extras["district"] == "lund-centre"


def test_asset_extras_place_the_mesh_on_the_globe(tmp_path):
    lonlat = np.array([[13.1925, 55.7052, 72.0], [13.1890, 55.7040, 70.9],
                       [13.1912, 55.7061, 71.3]])
    part = MeshPart("landmarks", FRAME.to_enu(*lonlat.T), np.array([[0, 1, 2]]))
    path = tmp_path / "placed.glb"
    write_glb(path, [part], FRAME)
    extras = pygltflib.GLTF2.load(str(path)).asset.extras  # as any glTF reader sees it
    assert extras["enu_origin"] == {"lon": FRAME.lon0, "lat": FRAME.lat0, "height": FRAME.alt0}
    assert extras["crs"] == FRAME.crs
    assert extras["axes"].startswith("x=east, y=up, z=-north")
    frame = frame_from_extras(extras)
    assert frame == FRAME
    scene = trimesh.load(path)
    vertices = gltf_to_enu(next(iter(scene.geometry.values())).vertices)
    back = frame.to_lonlat(vertices)
    np.testing.assert_allclose(back[:, :2], lonlat[:, :2], atol=1e-9)  # about 0.1 mm
    np.testing.assert_allclose(back[:, 2], lonlat[:, 2], atol=1e-3)


def test_enu_axes_map_to_gltf_y_up():
    np.testing.assert_array_equal(enu_to_gltf([0, 1, 0]), [0, 0, -1])  # north -> -z
    np.testing.assert_array_equal(enu_to_gltf([0, 0, 1]), [0, 1, 0])  # up -> +y
    np.testing.assert_array_equal(enu_to_gltf([1, 0, 0]), [1, 0, 0])  # east -> +x
    rotation = enu_to_gltf(np.eye(3)).T  # columns: images of E, N, U
    assert np.linalg.det(rotation) == pytest.approx(1.0)  # proper: winding is kept
    points = np.random.default_rng(0).normal(size=(10, 3))
    np.testing.assert_allclose(gltf_to_enu(enu_to_gltf(points)), points)
    with pytest.raises(ValueError, match=r"\(\.\.\., 3\)"):
        enu_to_gltf(np.zeros((4, 2)))


def test_an_up_facing_triangle_faces_plus_y(tmp_path):
    north = MeshPart("tri", np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0.0]]), np.array([[0, 1, 2]]))
    path = tmp_path / "tri.glb"
    write_glb(path, [north], FRAME)
    mesh = trimesh.load(path, force="mesh", process=False)
    np.testing.assert_allclose(mesh.face_normals[0], [0, 1, 0], atol=1e-6)  # from winding
    assert mesh.vertices[2, 2] == pytest.approx(-1.0)  # the north vertex lies at -z
    stored = np.asarray(o3d.io.read_triangle_mesh(str(path)).vertex_normals)
    np.testing.assert_allclose(stored, np.tile([0, 1, 0], (3, 1)), atol=1e-6)  # NORMAL


def test_obj_loads_in_trimesh_and_open3d(tmp_path, parts):
    path = tmp_path / "surface.obj"
    write_obj(path, parts, FRAME)
    text = path.read_text()
    assert f"lon {FRAME.lon0!r} lat {FRAME.lat0!r}" in text.splitlines()[1]
    assert [line for line in text.splitlines() if line.startswith("o ")] == \
        ["o box", "o ground", "o road"]
    n_vertices = sum(len(p.vertices) for p in parts)
    n_faces = sum(len(p.faces) for p in parts)
    mesh = trimesh.load(path, force="mesh", process=False)
    assert mesh.vertices.shape == (n_vertices, 3) and mesh.faces.shape == (n_faces, 3)
    all_enu = np.concatenate([p.vertices for p in parts])
    np.testing.assert_allclose(_bounds(gltf_to_enu(mesh.vertices)), _bounds(all_enu), atol=1e-5)
    np.testing.assert_array_equal(mesh.visual.vertex_colors[:8, :3], parts[0].colors)
    o3d_mesh = o3d.io.read_triangle_mesh(str(path))
    assert len(o3d_mesh.vertices) == n_vertices and len(o3d_mesh.triangles) == n_faces
    assert o3d_mesh.has_vertex_colors()


def _nan_box() -> MeshPart:
    box = _box()
    box.vertices[5, 1] = np.nan
    return box


BAD_PARTS = {  # case: (the part, what the message must say)
    "NaN vertex": (_nan_box, "NaN"),
    "index out of range": (lambda: replace(_ground(), faces=np.array([[0, 1, 4]])), "range"),
    "negative index": (lambda: replace(_ground(), faces=np.array([[0, -1, 2]])), "range"),
    "2-D vertices": (lambda: replace(_ground(), vertices=np.zeros((4, 2))), r"\(N, 3\)"),
    "quads": (lambda: replace(_ground(), faces=np.array([[0, 1, 2, 3]])), r"\(M, 3\)"),
    "float faces": (lambda: replace(_ground(), faces=np.array([[0.0, 1, 2]])), "integer"),
    "short colours": (lambda: replace(_box(), colors=np.zeros((3, 3), np.uint8)), "colors"),
    "colours > 1": (lambda: replace(_ground(), colors=np.full((4, 3), 2.0)), r"\[0, 1\]"),
    "non-JSON extras": (lambda: replace(_road(), extras={"when": object()}), "extras"),
    "ragged vertices": (lambda: replace(_ground(), vertices=[[0, 0, 0], [1, 1]]), "vertices"),
}


@pytest.mark.parametrize("case", sorted(BAD_PARTS))
@pytest.mark.parametrize("writer", [write_glb, write_obj])
def test_bad_input_raises_naming_the_part(tmp_path, case, writer):
    make, problem = BAD_PARTS[case]
    part = make()
    path = tmp_path / "bad.out"
    with pytest.raises(ValueError, match=f"mesh part '{part.name}'.*{problem}"):
        writer(path, [_road(), part], FRAME)
    assert list(tmp_path.iterdir()) == []


def test_asset_extras_may_not_override_the_georeference(tmp_path):
    with pytest.raises(ValueError, match="enu_origin"):
        write_glb(tmp_path / "x.glb", [_ground()], FRAME, extras={"enu_origin": {"lon": 0}})


@contextmanager
def _failing_after_first_write(path):
    """citysplat.io.atomic_open, but the second write to the file raises (a crash mid-file)."""

    class Handle:
        def __init__(self, inner):
            self.inner, self.writes = inner, 0

        def write(self, data):
            self.writes += 1
            if self.writes == 2:
                raise OSError("disk full (simulated)")
            return self.inner.write(data)

    with REAL_ATOMIC_OPEN(path) as inner:
        yield Handle(inner)


REAL_ATOMIC_OPEN = gltf_module.atomic_open


@pytest.mark.parametrize("writer, name", [(write_glb, "surface.glb"), (write_obj, "surface.obj")])
def test_a_crash_mid_write_leaves_the_old_file(tmp_path, monkeypatch, parts, writer, name):
    fresh, kept = tmp_path / "fresh" / name, tmp_path / "kept" / name
    writer(kept, parts[1:2], FRAME)
    before = kept.read_bytes()
    monkeypatch.setattr(gltf_module, "atomic_open", _failing_after_first_write)
    for path in (fresh, kept):
        with pytest.raises(OSError, match="simulated"):
            writer(path, parts, FRAME)
    assert not fresh.exists() and list(fresh.parent.iterdir()) == []
    assert kept.read_bytes() == before and list(kept.parent.iterdir()) == [kept]
