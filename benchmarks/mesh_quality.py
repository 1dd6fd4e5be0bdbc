"""Meshes, walkable areas and navmeshes of a demo district, scored against the generated city's
true geometry, with the baselines in the same run.

    .venv/bin/python benchmarks/mesh_quality.py                    # the demo's d000-a
    .venv/bin/python benchmarks/mesh_quality.py --splat DIR        # another splat of it
    .venv/bin/python benchmarks/mesh_quality.py --json out.json

Needs a demo data root (``citysplat demo``: the default city, its districts reconstructed and
their splats trained); ``--home`` picks it, ``--district`` the district. Three sources of depth
go through the same stage (:func:`citysplat.mesh.stage.mesh_model`, default settings):

* ``splat``: the district's trained splat (``--splat``: any splat folder trained on the same
  sparse model, e.g. a longer training);
* ``true splat``: the true surface laid out as opaque discs in the sparse model's frame
  (:func:`citysplat.splat.from_mesh.splat_from_mesh`): a perfectly trained splat, so its figures
  are the stage's own ceiling (depth rendering, fusion, walkable, navmesh);
* baseline ``poisson``: open3d's screened Poisson surface of the sparse model's points
  (normals estimated and oriented to the cameras), trimmed of its lowest-density tenth; its
  walkable area and navmesh come from the same heightfield and builder.

Everything is scored in the sparse model's frame, the truth mapped into it by the similarity
that fits the model's camera centres to the true ones (the alignment the multi-view-stereo
benchmarks make; the model's own georegistration error is reported beside it):

* surface: accuracy (median distance, prediction to truth, m), completeness and precision at
  0.20 m, F-score; the truth restricted to points seen by at least two of the district's
  cameras within 25 m;
* walkable: IoU with the true walkable area (road and sidewalk) inside the seen region (true
  walkable ground seen by two cameras, grown by 1 m), and the share of the common area whose
  kind (road / sidewalk) is right;
* navmesh: 200 random start/goal pairs on the largest connected piece of the true walkable
  area (seen region, eroded by the pedestrian's radius): the share with a path, the farthest
  path point outside the true walkable area, and the path length over the exact shortest path
  (:class:`citysplat.mesh.shortest.VisibilityGraph`), median and max;
* time and peak memory of the stage (each source in its own process).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

def _context(home: Path, district: str, size: str):
    from citysplat.frames import LocalFrame
    from citysplat.groundtruth import model_alignment
    from citysplat.layout import DataLayout
    from citysplat.synthetic.city import generate_city
    from citysplat.synthetic.spec import preset

    layout = DataLayout.at(home)
    d = layout.district(district)
    city = generate_city(preset(size))
    align = model_alignment(city, d.sparse_dir, LocalFrame.load(d.frame_json))
    return layout, d, city, align


def write_true_splat(home: Path, district: str, size: str, out: Path, spacing: float) -> int:
    """The true surface near the district's cameras as a splat in the model's frame."""
    import shutil

    from citysplat.groundtruth import true_surface_splat
    from citysplat.splat.export import write_ply

    layout, d, city, align = _context(home, district, size)
    splat = true_surface_splat(city, align, spacing)
    out.mkdir(parents=True, exist_ok=True)
    write_ply(out / "point_cloud.ply", splat.means, splat.scales_log, splat.quats,
              splat.opacities_logit, splat.sh0, splat.shN)
    shutil.copyfile(d.frame_json, out / "frame.json")
    return splat.num_splats


def _stage(home: str, district: str, ply: str, out: str, queue) -> None:
    """Run the mesh stage in this (child) process; its peak memory is the process's."""
    from citysplat.layout import DataLayout
    from citysplat.mesh.stage import MeshInputError, mesh_model
    from citysplat.splat.district import district_photos

    layout = DataLayout.at(home)
    d = layout.district(district)
    photos = district_photos(layout, district)
    try:
        r = mesh_model(d.sparse_dir, photos.paths, ply, out,
                       masks=d.masks_dir if d.masks_dir.is_dir() else None,
                       sequences=photos.sequences, captured_ms=photos.captured_ms,
                       frame_json=d.frame_json)
        queue.put({"ok": True, "seconds": r.metrics["seconds"],
                   "peak_memory_mb": r.metrics["peak_memory_mb"]})
    except MeshInputError as exc:
        queue.put({"ok": False, "why": str(exc)})


def run_stage(home: Path, district: str, ply: Path, out: Path) -> dict:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_stage, args=(str(home), district, str(ply), str(out), queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def poisson_mesh(home: Path, district: str, out: Path) -> dict:
    """The baseline: screened Poisson of the sparse points, then the same walkable and
    navmesh steps as the stage (its heightfield, road split and builder)."""
    import open3d as o3d
    import pycolmap
    import shapely

    from citysplat.frames import LocalFrame
    from citysplat.layout import DataLayout
    from citysplat.mesh.cameras import camera_seeds
    from citysplat.mesh.config import MeshConfig
    from citysplat.mesh.fusion import FusedMesh
    from citysplat.mesh.heightfield import build_heightfield, walkable_cells
    from citysplat.mesh.navmesh import build_navmesh
    from citysplat.mesh.walkable import road_mask, walkable_areas
    from citysplat.splat.district import district_photos

    t0 = time.perf_counter()
    layout = DataLayout.at(home)
    d = layout.district(district)
    model = pycolmap.Reconstruction(str(d.sparse_dir))
    points = np.array([p.xyz for p in model.points3D.values()])
    centres = {im.name: np.asarray(im.projection_center()) for im in model.images.values()
               if im.has_pose}
    pcd = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(points))
    pcd.estimate_normals(o3d.geometry.KDTreeSearchParamHybrid(radius=1.0, max_nn=30))
    # orient each normal towards the nearest camera (the side the point was seen from)
    cams = np.array(list(centres.values()))
    nearest = cams[np.argmin(np.linalg.norm(points[:, None] - cams[None], axis=2), axis=1)]
    normals = np.asarray(pcd.normals)
    flip = np.einsum("ij,ij->i", normals, nearest - points) < 0
    normals[flip] *= -1
    pcd.normals = o3d.utility.Vector3dVector(normals)
    mesh, density = o3d.geometry.TriangleMesh.create_from_point_cloud_poisson(pcd, depth=9)
    density = np.asarray(density)
    mesh.remove_vertices_by_mask(density < np.quantile(density, 0.1))
    config = MeshConfig()
    photos = district_photos(layout, district)
    seeds = camera_seeds(centres, photos.sequences, photos.captured_ms, config.vehicle_speed)
    xy = seeds.all_xy
    bounds = (xy[:, 0].min() - config.margin, xy[:, 1].min() - config.margin,
              xy[:, 0].max() + config.margin, xy[:, 1].max() + config.margin)
    field = build_heightfield(mesh, bounds, config.pedestrian)
    walk = walkable_cells(field, xy, config.pedestrian)
    areas = walkable_areas(walk, road_mask(walk, seeds.driven_xy, config.vehicle))
    live = {k: g for k, g in areas.items() if not g.is_empty}
    navmesh = build_navmesh(live, config.pedestrian, height=walk.height_at) if live else None
    fused = FusedMesh.from_open3d(mesh)
    out.mkdir(parents=True, exist_ok=True)
    o3d.io.write_triangle_mesh(str(out / "poisson.ply"), mesh)
    if navmesh is not None:
        navmesh.save(out / "navmesh.json")
    (out / "areas.json").write_text(json.dumps({k: shapely.to_geojson(g)
                                                for k, g in areas.items()}))
    LocalFrame.load(d.frame_json).save(out / "frame.json")
    return {"ok": True, "seconds": time.perf_counter() - t0, "peak_memory_mb": None,
            "triangles": fused.num_triangles}


def score(home: Path, district: str, size: str, out: Path, poisson: bool = False) -> dict:
    """Surface, walkable and navmesh figures of the outputs in ``out`` against the truth."""
    import open3d as o3d
    import shapely

    from citysplat.layout import MeshLayout
    from citysplat.mesh.gltf import read_glb
    from citysplat.mesh.navmesh import NavMesh
    from citysplat.mesh.quality import path_scores, surface_scores, walkable_scores
    from citysplat.synthetic.layout import make_layout
    from citysplat.synthetic.truth_geometry import (
        surface_samples,
        true_surface,
        true_walkable,
        views_seeing,
    )

    layout, d, city, align = _context(home, district, size)
    city_layout = make_layout(city.spec)
    truth = true_surface(city_layout)
    cameras = [city.cameras[n[:-4]] for n in align.images]
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(truth.vertices.astype(np.float32)),
                        o3d.core.Tensor(truth.faces.astype(np.uint32)))
    points, normals, _ = surface_samples(truth, spacing=0.25)
    seen = views_seeing(points, normals, cameras, scene, max_distance=25.0) >= 2
    true_v = align.to_model(truth.vertices, city)
    seen_pts = align.to_model(points[seen], city)
    if poisson:
        mesh = o3d.io.read_triangle_mesh(str(out / "poisson.ply"))
        pv, pf = np.asarray(mesh.vertices), np.asarray(mesh.triangles)
        areas = {k: shapely.from_geojson(g)
                 for k, g in json.loads((out / "areas.json").read_text()).items()}
        nav_path = out / "navmesh.json"
    else:
        part = read_glb(MeshLayout(out).surface_glb)[0][0]
        pv, pf = part.vertices, part.faces
        geo = json.loads(MeshLayout(out).walkable_geojson.read_text())
        frame = align.frame
        areas = {}
        for f in geo["features"]:
            if f["properties"]["kind"] == "kerb":
                continue

            def to_model_xy(ll: np.ndarray) -> np.ndarray:
                enu = frame.to_enu(ll[:, 0], ll[:, 1])
                return ((enu - align.translation) @ align.rotation / align.scale)[:, :2]

            areas[f["properties"]["kind"]] = shapely.transform(
                shapely.geometry.shape(f["geometry"]), to_model_xy)
        nav_path = MeshLayout(out).navmesh_json
    # the seen region: true walkable ground seen by two cameras, grown by a metre
    walk_truth = true_walkable(city_layout)
    ground = [(p, k) for p, k in zip(points[seen], _kind_at(points[seen], walk_truth)) if k]
    region_city = shapely.union_all([shapely.Point(p[:2]).buffer(1.0) for p, _ in ground])
    region = align.xy_to_model(region_city, city)
    truth_model = {k: align.xy_to_model(g, city) for k, g in walk_truth.items()}
    surf = surface_scores(pv, pf, true_v, truth.faces, seen_pts,
                          region=region.buffer(15.0))
    walk = walkable_scores(areas, truth_model, region)
    figures = {"surface": surf.to_dict(), "walkable": walk.to_dict()}
    if nav_path.is_file():
        true_area = shapely.union_all(list(truth_model.values())).intersection(region)
        figures["navmesh"] = path_scores(NavMesh.load(nav_path), true_area).to_dict()
    return figures


def _kind_at(points: np.ndarray, walk_truth: dict) -> list[str | None]:
    import shapely

    out: list[str | None] = [None] * len(points)
    for kind, geom in walk_truth.items():
        inside = shapely.contains_xy(geom, points[:, 0], points[:, 1])
        for i in np.flatnonzero(inside):
            out[i] = kind
    # walkable ground only: the sample must lie on the floor (not a car roof above it)
    return [k if k and p[2] < 0.3 else None for k, p in zip(out, points)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--home", type=Path, default=Path("citysplat-data/demo"))
    parser.add_argument("--district", default="d000-a")
    parser.add_argument("--size", default="default", help="The generated city's size.")
    parser.add_argument("--splat", type=Path, default=None,
                        help="A splat folder to mesh (default: the district's own).")
    parser.add_argument("--true-spacing", type=float, default=0.2)
    parser.add_argument("--sources", default="splat,true splat,poisson")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    from citysplat.layout import DataLayout

    d = DataLayout.at(args.home).district(args.district)
    if not d.has_model():
        sys.exit(f"{d.dir} has no sparse model: run `citysplat demo` first")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for source in args.sources.split(","):
            out = tmp / source.replace(" ", "_")
            if source == "poisson":
                run = poisson_mesh(args.home, args.district, out)
            else:
                if source == "true splat":
                    n = write_true_splat(args.home, args.district, args.size,
                                         tmp / "true_splat_model", args.true_spacing)
                    ply = tmp / "true_splat_model" / "point_cloud.ply"
                    print(f"true splat: {n:,} discs", flush=True)
                else:
                    ply = (args.splat or d.splat.dir) / "point_cloud.ply"
                run = run_stage(args.home, args.district, ply, out)
            if run["ok"]:
                run.update(score(args.home, args.district, args.size, out,
                                 poisson=source == "poisson"))
            results[source] = run
            print(source, json.dumps(run), flush=True)
    _table(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


def _table(results: dict) -> None:
    rows = [("accuracy (m)", "surface", "accuracy_m"), ("completeness @0.2", "surface",
            "completeness"), ("precision @0.2", "surface", "precision"),
            ("F-score @0.2", "surface", "f_score"), ("walkable IoU", "walkable", "iou"),
            ("kind right", "walkable", "label_accuracy"), ("paths found", "navmesh", "found"),
            ("max outside (m)", "navmesh", "max_outside_m"),
            ("length / shortest, median", "navmesh", "length_ratio_median"),
            ("length / shortest, max", "navmesh", "length_ratio_max")]
    names = list(results)
    print("\nsummary " + " | ".join(["figure"] + names))
    for label, group, key in rows:
        cells = []
        for n in names:
            v = results[n].get(group, {}).get(key) if results[n].get("ok") else None
            cells.append("-" if v is None else f"{v:.3f}")
        print("summary " + " | ".join([label] + cells))
    for n in names:
        r = results[n]
        print(f"summary {n}: " + (f"{r['seconds']:.0f} s, peak {r['peak_memory_mb']} MiB"
                                   if r.get("ok") else f"no mesh: {r.get('why')}"))


if __name__ == "__main__":
    main()
