"""How good a district's meshes are: against the truth where there is one (the generated
city), and against what the capture itself proves where there is not (people stood under every
camera, and the cameras were joined by the ground they moved on).

Surface figures follow the multi-view-stereo benchmarks (DTU, Tanks and Temples): *accuracy* is
the median distance from the prediction to the truth, *completeness* the share of the true
surface within a threshold of the prediction, and the *F-score* the harmonic mean of that and
*precision* (the share of the prediction within the threshold of the truth).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import open3d as o3d
import shapely
from shapely.geometry.base import BaseGeometry

from citysplat.mesh.cameras import CameraSeeds
from citysplat.mesh.heightfield import Heightfield
from citysplat.mesh.navmesh import NavMesh


@dataclass
class GroundUnderCameras:
    """The walkable floor under each camera, and how far below it is."""

    heights_m: np.ndarray  # camera centre height above its floor (NaN: no floor under it)

    @property
    def share_with_ground(self) -> float:
        return float(np.isfinite(self.heights_m).mean()) if len(self.heights_m) else 0.0

    @property
    def median_height_m(self) -> float:
        h = self.heights_m[np.isfinite(self.heights_m)]
        return float(np.median(h)) if len(h) else float("nan")


def ground_under_cameras(walkable: Heightfield, seeds: CameraSeeds) -> GroundUnderCameras:
    """The height of every registered camera above the walkable floor right under it."""
    centres = np.array(list(seeds.centres.values())).reshape(-1, 3)
    if not len(centres):
        return GroundUnderCameras(np.zeros(0))
    j, i = walkable.cell_of(centres[:, :2])
    floor = walkable.floor[j, i]
    return GroundUnderCameras(centres[:, 2] - floor)


@dataclass
class PathSuccess:
    pairs: int
    found: int

    @property
    def rate(self) -> float:
        return self.found / self.pairs if self.pairs else 0.0


def camera_path_success(navmesh: NavMesh, camera_xy: Sequence[Sequence[float]],
                        pairs: int = 50, seed: int = 0, snap: float = 3.0) -> PathSuccess:
    """Paths between random pairs of cameras that stand on the navmesh's largest connected
    area: cameras were joined by the ground they moved on, so a path must exist."""
    from citysplat.mesh.path import NoPathError, PathFinder

    xy = np.asarray(camera_xy, dtype=np.float64).reshape(-1, 2)
    comps = navmesh.components()
    on = [(p, navmesh.nearest(p, snap)[0]) for p in xy]
    on = [(p, k) for p, k in on if k >= 0]
    if len(on) < 2:
        return PathSuccess(0, 0)
    largest = np.bincount([comps[k] for _, k in on]).argmax()
    pts = np.array([p for p, k in on if comps[k] == largest])
    if len(pts) < 2:
        return PathSuccess(0, 0)
    rng = np.random.default_rng(seed)
    finder = PathFinder(navmesh)
    found = 0
    for _ in range(pairs):
        a, b = rng.choice(len(pts), 2, replace=False)
        try:
            finder.find(pts[a], pts[b], snap_distance=snap)
            found += 1
        except NoPathError:
            pass
    return PathSuccess(pairs, found)


# ---------------------------------------------------------------------- against the truth
def sample_mesh(vertices: np.ndarray, faces: np.ndarray, spacing: float, seed: int = 0
                ) -> np.ndarray:
    """Points spread uniformly over a triangle mesh, about one per ``spacing``²."""
    tri = vertices[faces]
    area = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    n = int(max(1, area.sum() / spacing**2))
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(faces), n, p=area / area.sum())
    u, v = rng.random(n), rng.random(n)
    flip = u + v > 1
    u[flip], v[flip] = 1 - u[flip], 1 - v[flip]
    t = tri[pick]
    return t[:, 0] + u[:, None] * (t[:, 1] - t[:, 0]) + v[:, None] * (t[:, 2] - t[:, 0])


def distances_to_mesh(points: np.ndarray, vertices: np.ndarray, faces: np.ndarray
                      ) -> np.ndarray:
    """Unsigned distance of each point to the nearest triangle (open3d ray-casting scene)."""
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(vertices.astype(np.float32)),
                        o3d.core.Tensor(faces.astype(np.uint32)))
    return scene.compute_distance(o3d.core.Tensor(points.astype(np.float32))).numpy()


@dataclass
class SurfaceScores:
    accuracy_m: float  # median distance, prediction -> truth
    completeness: float  # share of the (seen) true surface within threshold of the prediction
    precision: float  # share of the prediction within threshold of the truth
    threshold_m: float

    @property
    def f_score(self) -> float:
        p, r = self.precision, self.completeness
        return 2 * p * r / (p + r) if p + r > 0 else 0.0

    def to_dict(self) -> dict[str, float]:
        return {"accuracy_m": round(self.accuracy_m, 4), "completeness": round(self.completeness, 4),
                "precision": round(self.precision, 4), "f_score": round(self.f_score, 4),
                "threshold_m": self.threshold_m}


def surface_scores(pred_vertices: np.ndarray, pred_faces: np.ndarray,
                   true_vertices: np.ndarray, true_faces: np.ndarray, true_points: np.ndarray,
                   *, threshold: float = 0.20, spacing: float = 0.1,
                   region: BaseGeometry | None = None) -> SurfaceScores:
    """Scores of a predicted mesh against the true one; ``true_points`` are samples of the
    true surface that count (e.g. seen by two cameras). Predicted samples outside ``region``
    (xy) are not scored (what the truth does not cover cannot be judged)."""
    pred = sample_mesh(pred_vertices, pred_faces, spacing)
    if region is not None:
        pred = pred[shapely.contains_xy(region, pred[:, 0], pred[:, 1])]
    to_truth = distances_to_mesh(pred, true_vertices, true_faces)
    to_pred = distances_to_mesh(true_points, pred_vertices, pred_faces)
    return SurfaceScores(float(np.median(to_truth)) if len(to_truth) else float("inf"),
                         float((to_pred <= threshold).mean()) if len(to_pred) else 0.0,
                         float((to_truth <= threshold).mean()) if len(to_truth) else 0.0,
                         threshold)


@dataclass
class WalkableScores:
    iou: float
    label_accuracy: float  # share of the area both call walkable where the kinds agree
    predicted_m2: float
    true_m2: float

    def to_dict(self) -> dict[str, float]:
        return {"iou": round(self.iou, 4), "label_accuracy": round(self.label_accuracy, 4),
                "predicted_m2": round(self.predicted_m2, 1), "true_m2": round(self.true_m2, 1)}


def walkable_scores(pred: dict[str, BaseGeometry], truth: dict[str, BaseGeometry],
                    region: BaseGeometry) -> WalkableScores:
    """IoU of the walkable areas inside ``region``, and agreement of the kinds where both are
    walkable."""
    p_all = shapely.union_all([g for g in pred.values()]).intersection(region)
    t_all = shapely.union_all([g for g in truth.values()]).intersection(region)
    union = p_all.union(t_all).area
    both = p_all.intersection(t_all).area
    agree = sum(pred[k].intersection(truth[k]).intersection(region).area
                for k in pred if k in truth)
    return WalkableScores(both / union if union else 0.0, agree / both if both else 0.0,
                          p_all.area, t_all.area)


@dataclass
class PathScores:
    """Paths between random points of a true walkable area, against the exact shortest."""

    pairs: int
    found: int
    max_outside_m: float  # farthest path point outside the true walkable area
    length_ratios: np.ndarray  # path length / exact shortest path, per found path

    def to_dict(self) -> dict[str, float | int | None]:
        r = self.length_ratios
        return {"pairs": self.pairs, "found": self.found / self.pairs if self.pairs else 0.0,
                "max_outside_m": round(self.max_outside_m, 4),
                "length_ratio_median": float(np.median(r)) if len(r) else None,
                "length_ratio_max": float(r.max()) if len(r) else None}


def path_scores(navmesh: NavMesh, true_area: BaseGeometry, pairs: int = 200, seed: int = 0,
                snap: float = 1.0) -> PathScores:
    """Paths found between ``pairs`` random start/goal pairs on the largest connected piece of
    ``true_area`` eroded by the navmesh agent's radius (where such an agent can be), how far
    they stray outside ``true_area``, and their length over the exact shortest path there."""
    from citysplat.mesh.path import NoPathError, PathFinder
    from citysplat.mesh.shortest import VisibilityGraph

    pieces = shapely.get_parts(true_area.buffer(-navmesh.agent.radius))
    component = max(pieces, key=lambda g: g.area)
    rng = np.random.default_rng(seed)
    xmin, ymin, xmax, ymax = component.bounds
    ends: list[np.ndarray] = []
    while len(ends) < 2 * pairs:
        p = rng.uniform([xmin, ymin], [xmax, ymax], size=(2 * pairs, 2))
        ends += [q for q in p if shapely.contains_xy(component, q[0], q[1])]
    finder, graph = PathFinder(navmesh), VisibilityGraph(component, simplify=0.05)
    found, ratios, outside = 0, [], [0.0]
    for a, b in np.array(ends[:2 * pairs]).reshape(pairs, 2, 2):
        try:
            path = finder.find(a, b, snap_distance=snap)
        except NoPathError:
            continue
        found += 1
        xy = path.enu[:, :2]
        outside.append(float(shapely.distance(true_area, shapely.points(xy)).max()))
        best, _ = graph.shortest_path(a, b)
        ratios.append(float(np.linalg.norm(np.diff(xy, axis=0), axis=1).sum() / best))
    return PathScores(pairs, found, max(outside), np.asarray(ratios))
