"""Ground-truth cameras and pose comparison.

Reads the Strecha et al. (CVPR 2008) camera files (``NNNN.jpg.camera``, as in
``shared/data/fountain-P11/cameras``)::

    K            3 rows (intrinsics, pixels)
    distortion   1 row (``0 0 0`` in the published data)
    R            3 rows, camera-to-world rotation
    C            1 row, camera centre in world coordinates
    width height 1 row

with projection ``P = K [R^T | -R^T C]``. Poses are handed on in COLMAP's convention
(``x_cam = R X + t``, world-to-camera), so they compare directly with a pycolmap reconstruction.

Pose comparison aligns the estimated camera centres to the true ones with a similarity
(Umeyama's closed form; the implementation is COLMAP's ``estimate_sim3d`` through pycolmap, i.e.
Eigen's ``umeyama``), then reports per-camera rotation error (degrees) and centre error (in the
truth's units).

pycolmap is imported lazily, and only after the standard ``zlib`` module: pycolmap's extension
embeds and exports its own zlib, and when it is the first to load the system ``libz`` that copy
takes over libz's internal calls, so later compression (``zlib.compress``, Pillow PNG writes)
aborts the process with ``free(): invalid pointer`` (pycolmap 4.2.1, Pillow 13).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from citysplat.layout import image_file_name, image_id_of

__all__ = [
    "GroundTruthCamera",
    "PoseErrors",
    "apply_similarity",
    "city_true_poses",
    "nearest_rotation",
    "pose_errors",
    "read_strecha_camera",
    "read_strecha_cameras",
    "rotation_angle_deg",
    "umeyama_similarity",
]

_ORTHONORMAL_TOL = 1e-4  # the published rotations are printed with 6 significant digits


@dataclass(frozen=True, eq=False)
class GroundTruthCamera:
    """A pinhole camera with a known pose. ``R_cam_to_world`` maps camera axes (x right, y down,
    z forward) to world axes; ``center`` is the camera centre in world coordinates."""

    name: str
    K: np.ndarray
    R_cam_to_world: np.ndarray
    center: np.ndarray
    width: int
    height: int
    distortion: np.ndarray | None = None

    def world_to_camera(self) -> tuple[np.ndarray, np.ndarray]:
        """(R, t) with ``x_cam = R @ X + t`` (COLMAP's ``cam_from_world``)."""
        rotation = self.R_cam_to_world.T
        return rotation, -rotation @ self.center

    @property
    def P(self) -> np.ndarray:
        """The 3x4 projection matrix ``K [R^T | -R^T C]``."""
        rotation, translation = self.world_to_camera()
        return self.K @ np.hstack([rotation, translation[:, None]])

    @property
    def optical_axis(self) -> np.ndarray:
        """Unit viewing direction (camera +z) in world coordinates."""
        axis = self.R_cam_to_world[:, 2]
        return axis / np.linalg.norm(axis)

    def project(self, points: np.ndarray) -> np.ndarray:
        """World points (N, 3) -> pixel coordinates (N, 2) (pinhole, distortion ignored).

        Points at or behind the camera (depth <= 0) project to NaN.
        """
        points = np.atleast_2d(np.asarray(points, dtype=np.float64))
        rotation, translation = self.world_to_camera()
        cam = points @ rotation.T + translation
        depth = cam[:, 2]
        pixels = cam @ self.K.T
        with np.errstate(divide="ignore", invalid="ignore"):
            uv = pixels[:, :2] / pixels[:, 2:3]
        uv[depth <= 0] = np.nan
        return uv


def _parse_rows(path: Path) -> list[list[float]]:
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append([float(v) for v in line.split()])
        except ValueError as exc:
            raise ValueError(f"{path}: line {number} is not numbers: {line.strip()!r}") from exc
    return rows


def read_strecha_camera(path: str | Path, name: str | None = None) -> GroundTruthCamera:
    """Parse one Strecha ``.camera`` file. ``name`` defaults to the file name without
    ``.camera`` (``0000.jpg.camera`` -> ``0000.jpg``, the image's name)."""
    path = Path(path)
    rows = _parse_rows(path)
    shape = [len(r) for r in rows]
    if len(rows) < 9 or shape[:3] != [3, 3, 3] or shape[4:8] != [3, 3, 3, 3] or shape[8] < 2:
        raise ValueError(
            f"{path}: expected Strecha camera rows K(3x3), distortion, R(3x3), C(3), "
            f"'width height'; got row lengths {shape}"
        )
    K = np.array(rows[0:3], dtype=np.float64)
    R = np.array(rows[4:7], dtype=np.float64)
    center = np.array(rows[7], dtype=np.float64)
    width, height = int(round(rows[8][0])), int(round(rows[8][1]))
    if not np.allclose(K[2], [0.0, 0.0, 1.0]) or K[0, 0] <= 0 or K[1, 1] <= 0:
        raise ValueError(f"{path}: K is not an upper-triangular intrinsics matrix: {K.tolist()}")
    if not np.allclose(R.T @ R, np.eye(3), atol=_ORTHONORMAL_TOL) or np.linalg.det(R) <= 0:
        raise ValueError(f"{path}: R is not a rotation (R^T R != I or det <= 0): {R.tolist()}")
    if width <= 0 or height <= 0:
        raise ValueError(f"{path}: image size {width}x{height} is not positive")
    return GroundTruthCamera(
        name=name if name is not None else path.name.removesuffix(".camera"),
        K=K,
        R_cam_to_world=nearest_rotation(R),  # the file's 6 digits leave ~1e-6 of non-orthonormality
        center=center,
        width=width,
        height=height,
        distortion=np.array(rows[3], dtype=np.float64),
    )


def read_strecha_cameras(folder: str | Path) -> dict[str, GroundTruthCamera]:
    """All ``*.camera`` files of ``folder`` (or of its ``cameras/`` subfolder), keyed by image
    name (``0000.jpg``), in name order. Raises ValueError when there are none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(
            f"camera folder {folder} does not exist: pass the folder of *.camera files"
        )
    files = sorted(folder.glob("*.camera"))
    if not files and (folder / "cameras").is_dir():
        files = sorted((folder / "cameras").glob("*.camera"))
    if not files:
        raise ValueError(
            f"no *.camera files in {folder} (nor in {folder / 'cameras'}): pass the folder of "
            "Strecha camera files (NNNN.jpg.camera)"
        )
    cameras = (read_strecha_camera(path) for path in files)
    return {camera.name: camera for camera in cameras}


# --------------------------------------------------------------------------- alignment


def umeyama_similarity(src: np.ndarray, dst: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Least-squares similarity ``dst ~ s * R @ src + t`` between (N, 3) point sets, N >= 3.

    Umeyama's closed form (proper rotation, det +1), computed by pycolmap's ``estimate_sim3d``
    (COLMAP's own). Raises ValueError for mismatched shapes, fewer than 3 points or a degenerate
    configuration (all points coincident or collinear).
    """
    import zlib  # noqa: F401  (must load before pycolmap: see the module docstring)

    import pycolmap  # heavy import, only needed here

    src = np.ascontiguousarray(src, dtype=np.float64)
    dst = np.ascontiguousarray(dst, dtype=np.float64)
    if src.ndim != 2 or src.shape[1] != 3 or src.shape != dst.shape:
        raise ValueError(
            f"expected two (N, 3) arrays of equal shape, got {src.shape} and {dst.shape}"
        )
    if len(src) < 3:
        raise ValueError(f"a 3D similarity needs at least 3 point pairs, got {len(src)}")
    if not (np.isfinite(src).all() and np.isfinite(dst).all()):
        raise ValueError("point sets contain NaN or infinite values")
    sim = pycolmap.estimate_sim3d(src, dst)
    if sim is None or not np.isfinite(sim.scale) or sim.scale <= 0:
        raise ValueError(
            f"no unique similarity between these {len(src)} point pairs: the points are "
            "coincident or collinear"
        )
    return float(sim.scale), np.array(sim.rotation.matrix()), np.array(sim.translation)


def apply_similarity(s: float, R: np.ndarray, t: np.ndarray, points: np.ndarray) -> np.ndarray:
    """``s * R @ x + t`` for each row of ``points`` (N, 3)."""
    return s * np.atleast_2d(points) @ np.asarray(R).T + np.asarray(t)


def rotation_angle_deg(R: np.ndarray) -> float:
    """Angle of a rotation matrix in degrees.

    ``atan2(|skew part|, (trace - 1) / 2)``: accurate for small angles (unlike ``arccos``) and
    blind to the symmetric error of a slightly non-orthonormal matrix.
    """
    R = np.asarray(R, dtype=np.float64)
    skew = np.array([R[2, 1] - R[1, 2], R[0, 2] - R[2, 0], R[1, 0] - R[0, 1]])
    return float(np.degrees(np.arctan2(np.linalg.norm(skew) / 2.0, (np.trace(R) - 1.0) / 2.0)))


def nearest_rotation(M: np.ndarray) -> np.ndarray:
    """The rotation matrix closest to ``M`` in the Frobenius norm (SVD projection)."""
    U, _, Vt = np.linalg.svd(np.asarray(M, dtype=np.float64))
    D = np.diag([1.0, 1.0, np.sign(np.linalg.det(U @ Vt))])
    return U @ D @ Vt


def _world_to_camera(pose: Any) -> tuple[np.ndarray, np.ndarray]:
    """(R, t) world-to-camera from a GroundTruthCamera, a pycolmap Rigid3d, an (R, t) pair or
    a 3x4 / 4x4 [R | t] matrix (all in COLMAP's x_cam = R X + t convention)."""
    if hasattr(pose, "world_to_camera"):
        return pose.world_to_camera()
    if hasattr(pose, "rotation") and hasattr(pose, "translation"):  # pycolmap.Rigid3d
        rotation = pose.rotation
        matrix = rotation.matrix() if hasattr(rotation, "matrix") else rotation
        return np.asarray(matrix, dtype=np.float64), np.asarray(pose.translation, dtype=np.float64)
    if isinstance(pose, tuple) and len(pose) == 2:
        return np.asarray(pose[0], dtype=np.float64), np.asarray(pose[1], dtype=np.float64)
    matrix = np.asarray(pose, dtype=np.float64)
    if matrix.shape in {(3, 4), (4, 4)}:
        return matrix[:3, :3], matrix[:3, 3]
    raise TypeError(f"cannot read a camera pose from {type(pose).__name__}")


@dataclass(frozen=True, eq=False)
class PoseErrors:
    """Per-camera errors of estimated poses against the truth, after aligning the estimate.

    ``names``: the cameras in both sets (truth order); ``rotation_deg`` and ``center_error``
    follow it. ``similarity``: (s, R, t) mapping the estimate's frame into the truth's.
    ``missing``: truth cameras absent from the estimate.
    """

    names: list[str]
    rotation_deg: np.ndarray
    center_error: np.ndarray
    similarity: tuple[float, np.ndarray, np.ndarray]
    missing: list[str]

    def summary(self) -> dict[str, float | int]:
        """Counts and median / max errors, for logs and asset metadata."""
        return {
            "cameras": len(self.names),
            "missing": len(self.missing),
            "rotation_deg_median": float(np.median(self.rotation_deg)),
            "rotation_deg_max": float(np.max(self.rotation_deg)),
            "center_error_median": float(np.median(self.center_error)),
            "center_error_max": float(np.max(self.center_error)),
            "scale": float(self.similarity[0]),
        }


def pose_errors(
    estimated: Mapping[str, Any], truth: Mapping[str, Any], *, align: bool = True
) -> PoseErrors:
    """Compare estimated camera poses with the truth, camera by camera (matched by name).

    Poses may be :class:`GroundTruthCamera`, pycolmap ``Rigid3d`` (``image.cam_from_world()``),
    ``(R, t)`` pairs or [R | t] matrices, all world-to-camera. With ``align`` (default) the
    estimated centres are first mapped onto the true ones by a least-squares similarity (needs
    3 common cameras, not collinear), so an arbitrary SfM frame compares with the truth; without
    it the poses must already share the truth's frame (e.g. both in ENU metres).
    Rotation error: angle of ``R_true R_aligned^T`` in degrees; centre error: distance in the
    truth's units.
    """
    names = [name for name in truth if name in estimated]
    missing = [name for name in truth if name not in estimated]
    if not names:
        raise ValueError("no camera name is shared by the estimate and the truth")
    est = [_world_to_camera(estimated[name]) for name in names]
    ref = [_world_to_camera(truth[name]) for name in names]
    est_centers = np.array([-R.T @ t for R, t in est])
    ref_centers = np.array([-R.T @ t for R, t in ref])
    if align:
        s, R_align, t_align = umeyama_similarity(est_centers, ref_centers)
    else:
        s, R_align, t_align = 1.0, np.eye(3), np.zeros(3)
    aligned_centers = apply_similarity(s, R_align, t_align, est_centers)
    # world_est -> world_ref rotates by R_align: cam_from_world_ref = cam_from_world_est R_align^T
    rotation_deg = np.array(
        [
            rotation_angle_deg(R_ref @ (R_est @ R_align.T).T)
            for (R_est, _), (R_ref, _) in zip(est, ref)
        ]
    )
    center_error = np.linalg.norm(aligned_centers - ref_centers, axis=1)
    return PoseErrors(
        names=names,
        rotation_deg=rotation_deg,
        center_error=center_error,
        similarity=(s, R_align, t_align),
        missing=missing,
    )


def city_true_poses(city: Any, frame: Any = None, ids: Iterable[str] | None = None
                    ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{image_file_name(id): (R, t)}`` world-to-camera true poses of a generated city's
    images (of ``ids``, default all) in ``frame`` (a :class:`~citysplat.frames.LocalFrame`,
    e.g. a district's; default: the city's own ENU frame)."""
    ids = list(city.cameras) if ids is None else list(ids)
    out = {}
    for image_id in ids:
        cam = city.cameras[image_id]
        c = np.asarray(cam["position_enu"], dtype=np.float64)
        r_c2w = np.asarray(cam["rotation_c2w"], dtype=np.float64)
        if frame is not None and frame != city.frame:
            # the city frame's axes at this camera, expressed in the other frame
            ends = city.frame.to_lonlat(np.vstack([c, c + np.eye(3)]))
            moved = frame.to_enu(ends[:, 0], ends[:, 1], ends[:, 2])
            axes = (moved[1:] - moved[0]).T  # columns: the city's e, n, u in ``frame``
            c, r_c2w = moved[0], axes @ r_c2w
        r_w2c = r_c2w.T
        out[image_file_name(image_id)] = (r_w2c, -r_w2c @ c)
    return out


@dataclass
class ModelAlignment:
    """How a sparse model of a generated city's district sits on the truth: the similarity
    ``true = s R x + t`` from the model's frame to the district's true ENU frame, fitted to the
    camera centres (as multi-view benchmarks align a reconstruction before scoring it)."""

    scale: float
    rotation: np.ndarray
    translation: np.ndarray
    frame: Any  # the district's LocalFrame
    images: list[str]  # registered image names

    def to_model(self, city_enu: np.ndarray, city: Any) -> np.ndarray:
        """Points of the city's ENU frame in the model's frame."""
        lonlat = city.frame.to_lonlat(np.asarray(city_enu, np.float64))
        true = self.frame.to_enu(lonlat[:, 0], lonlat[:, 1], lonlat[:, 2])
        return (true - self.translation) @ self.rotation / self.scale

    def xy_to_model(self, geometry: Any, city: Any, height: float = 0.0) -> Any:
        """A shapely geometry of the city's ENU plane in the model's (x, y)."""
        import shapely

        def move(xy: np.ndarray) -> np.ndarray:
            pts = np.column_stack([xy, np.full(len(xy), height)])
            return self.to_model(pts, city)[:, :2]

        return shapely.transform(geometry, move)


def model_alignment(city: Any, sparse_dir: str | Path, frame: Any) -> ModelAlignment:
    """The :class:`ModelAlignment` of the COLMAP model in ``sparse_dir`` (a district of the
    generated ``city`` in ``frame``)."""
    import zlib  # noqa: F401  (see the module docstring)

    import pycolmap

    model = pycolmap.Reconstruction(str(sparse_dir))
    estimated = {}
    for image in model.images.values():
        if image.has_pose:
            pose = image.cam_from_world()
            estimated[image.name] = (np.asarray(pose.rotation.matrix()),
                                     np.asarray(pose.translation))
    truth = city_true_poses(city, frame, [image_id_of(n) for n in estimated])
    s, R, t = pose_errors(estimated, truth).similarity
    return ModelAlignment(float(s), np.asarray(R), np.asarray(t), frame, sorted(estimated))


TRUE_SPLAT_GREY = {"ground": 0.45, "kerb": 0.7, "building": 0.8, "parked_car": 0.3,
                   "tree": 0.35, "pole": 0.5}


def true_surface_splat(city: Any, alignment: ModelAlignment, spacing: float = 0.2,
                       reach: float = 30.0) -> Any:
    """The generated city's true surface within ``reach`` metres (horizontally) of the
    district's cameras as opaque discs in its sparse model's frame: the splat a perfect
    training would give (:func:`citysplat.splat.from_mesh.splat_from_mesh`), one grey per kind
    of surface. Returns :class:`citysplat.splat.export.SplatArrays`."""
    from scipy.spatial import cKDTree

    from citysplat.splat.from_mesh import splat_from_mesh
    from citysplat.synthetic.layout import make_layout
    from citysplat.synthetic.truth_geometry import true_surface

    city_centres = np.array([city.cameras[image_id_of(n)]["position_enu"]
                             for n in alignment.images])
    lo, hi = city_centres[:, :2].min(axis=0) - reach, city_centres[:, :2].max(axis=0) + reach
    # clipped to the cameras' surroundings first: a flat city's ground is one huge quad
    surface = true_surface(make_layout(city.spec), extent=(lo[0], lo[1], hi[0], hi[1]))
    vertices = alignment.to_model(surface.vertices, city)
    centres = alignment.to_model(city_centres, city)
    centroid = vertices[surface.faces].mean(axis=1)
    near = cKDTree(centres[:, :2]).query(centroid[:, :2])[0] < reach
    grey = np.array([TRUE_SPLAT_GREY[k] for k in surface.kind[near]])
    return splat_from_mesh(vertices, surface.faces[near], spacing,
                           np.repeat(grey[:, None], 3, axis=1))
