"""`reconstruct-folder` against pycolmap's plain defaults on the real photo sets, in the same run.

    .venv/bin/python benchmarks/sfm_vs_pycolmap.py                       # both sets, both methods
    .venv/bin/python benchmarks/sfm_vs_pycolmap.py --sets lund --method citysplat \\
        --method pycolmap --method citysplat:first_octave=0 --json lund.json  # an experiment

For each real set in ``../shared/data`` (``--data``), each method reconstructs the set's
``images/`` from scratch in a fresh temporary folder:

* ``citysplat``: :func:`reconstruct_folder` with its defaults (what ``citysplat
  reconstruct-folder`` runs): EXIF focal prior or a guess, one camera per distinct intrinsics,
  SIFT ``first_octave`` -1 up to 1600 px for such cameras, its own pair selection (every pair
  of a small set without GPS), the ``auto`` mapper, the principal point refined after mapping
  with a drift guard (``refine_principal_point``, ``max_principal_point_shift``),
  georegistration;
* ``pycolmap``: pycolmap's plain defaults, the peer: ``extract_features`` (camera mode AUTO,
  SIMPLE_RADIAL, SIFT first octave -1, 8192 features), ``match_exhaustive``,
  ``incremental_mapping`` with default options; the largest model is kept.

A method may carry settings after a colon, comma-separated ``key=value``:

* citysplat: any :class:`SfmOptions` field (``first_octave=0``, ``max_num_features=16384``,
  ``refine_principal_point=false``, ``max_principal_point_shift=0.05``),
  ``mapper=incremental|global|auto``, ``pairs=exhaustive`` (every pair, given to
  :func:`reconstruct_folder`) and ``seed=N``;
* pycolmap: ``camera_mode=SINGLE|AUTO|PER_IMAGE``, ``first_octave=N``,
  ``max_num_features=N`` and any ``IncrementalPipelineOptions`` field
  (``ba_refine_principal_point=true``).

Per set and method: registered / total images, median rotation error (degrees) and median
camera-centre error (% of the extent, the diagonal of the reference centres' bounding box)
after a similarity alignment of the estimated camera centres onto the reference ones
(Umeyama, :func:`citysplat.groundtruth.pose_errors`), 3D points, mean reprojection error
(pixels), SIFT keypoints per image, cameras in the model, median focal length and principal
point, seconds. The rotation error is also split (:func:`camera_frame_bias`) into the part
common to all cameras in their own frame (what an intrinsics error such as a principal point
held at the image centre does) and the rest. The reference:

* fountain-P11: the ground-truth cameras (``cameras/*.camera``, Strecha et al.);
* lund (no ground-truth poses): the photos' EXIF GPS positions in ENU metres (phone GPS,
  metres of noise). The centre error against them is mostly the GPS's own error, so it only
  catches a model that is bent, broken or wrongly scaled; there is no rotation reference. Note
  that citysplat uses the same GPS as priors in its bundle adjustment, which pulls its centres
  towards it; pycolmap's defaults ignore it. Registration, points and reprojection error are
  the checkable figures there.

Each figure is the median over ``--repeats`` runs (default 1: a run takes one to a few minutes
on two cores). The table gives, for every method, the ratio of its figures to the peer's
(``pycolmap`` plain defaults) measured in the same run. ``--json OUT`` writes every run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import fields
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np

import citysplat  # noqa: F401  (zlib before pycolmap)
from citysplat.groundtruth import (
    nearest_rotation,
    pose_errors,
    read_strecha_cameras,
    rotation_angle_deg,
)

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SETS = ("fountain-P11", "lund")
PEER = "pycolmap"
DEFAULT_METHODS = ("citysplat", PEER)
FIGURES = ("rotation_deg", "centre_pct", "points", "reprojection_px", "seconds")


# --------------------------------------------------------------------------- citysplat's API
def citysplat_api() -> tuple[Callable[..., Any], type]:
    """(``reconstruct_folder``, ``SfmOptions``), wherever the SfM stages put them."""
    try:
        from citysplat.sfm.folder import reconstruct_folder  # type: ignore[import-not-found]
    except ImportError:
        from citysplat.sfm.reconstruct import reconstruct_folder
    try:
        from citysplat.sfm import SfmOptions
    except ImportError:
        from citysplat.sfm.reconstruct import SfmOptions
    return reconstruct_folder, SfmOptions


# --------------------------------------------------------------------------- references
def reference_poses(root: Path) -> tuple[dict[str, Any], str]:
    """``({image name: reference}, kind)`` of a set: ground-truth cameras (kind ``"truth"``)
    from ``cameras/`` when the set has them, else the photos' GPS positions in ENU metres
    (kind ``"gps"``, a centre ``(3,)`` per photo)."""
    if (root / "cameras").is_dir():
        return dict(read_strecha_cameras(root / "cameras")), "truth"
    from citysplat.photos import gps_track_enu, scan_photos

    scan = scan_photos(root / "images")
    if len(scan.geotagged) < 3:
        raise SystemExit(f"{root}: neither cameras/ nor 3 geotagged photos to check against")
    _, enu = gps_track_enu(scan)
    return {record.name: centre for record, centre in zip(scan.geotagged, enu)}, "gps"


def camera_frame_bias(true_rotations: Sequence[np.ndarray],
                      aligned_rotations: Sequence[np.ndarray]) -> tuple[float, float]:
    """``(bias, median residual)`` in degrees of per-camera rotation errors that share a common
    part in the camera frame.

    Each camera's error ``E_i = R_true_i @ R_aligned_i^T`` (world-to-camera rotations, the
    estimate already aligned to the truth's frame) is a rotation of the camera's own axes. An
    intrinsics error common to all images, such as a principal point held at the image centre
    when the true one is a few pixels off, turns every camera by the same ``B`` in its own
    frame: ``E_i = B``. ``B`` is the chordal mean of the ``E_i`` (the rotation nearest their
    sum); the residual is ``angle(E_i B^T)``, the pose error that is left.
    """
    errors = [np.asarray(t, dtype=np.float64) @ np.asarray(a, dtype=np.float64).T
              for t, a in zip(true_rotations, aligned_rotations, strict=True)]
    if not errors:
        raise ValueError("no rotations to compare")
    bias = nearest_rotation(np.sum(errors, axis=0))
    residuals = [rotation_angle_deg(error @ bias.T) for error in errors]
    return rotation_angle_deg(bias), float(np.median(residuals))


def accuracy(poses: Mapping[str, tuple[np.ndarray, np.ndarray]], reference: Mapping[str, Any],
             kind: str) -> dict[str, float | None]:
    """Median rotation error (degrees; None without a rotation reference), its common
    camera-frame part and what is left without it (:func:`camera_frame_bias`), and median
    centre error (reference units and % of the reference centres' extent), after a similarity
    alignment of the estimated centres onto the reference ones."""
    bias: float | None = None
    debiased: float | None = None
    if kind == "truth":
        centres = np.array([camera.center for camera in reference.values()])
        errors = pose_errors(poses, reference)
        rotation: float | None = float(np.median(errors.rotation_deg))
        align = errors.similarity[1]
        bias, debiased = camera_frame_bias(
            [reference[n].world_to_camera()[0] for n in errors.names],
            [poses[n][0] @ align.T for n in errors.names])
    else:  # centres only: a pose with the identity rotation at the GPS position
        centres = np.array(list(reference.values()), dtype=np.float64)
        as_poses = {n: (np.eye(3), -np.asarray(c, dtype=np.float64)) for n, c in reference.items()}
        errors = pose_errors(poses, as_poses)
        rotation = None
    extent = float(np.linalg.norm(np.ptp(centres, axis=0)))
    centre = float(np.median(errors.center_error))
    return {"rotation_deg": rotation, "rotation_bias_deg": bias,
            "rotation_debiased_deg": debiased, "centre": centre,
            "centre_pct": 100.0 * centre / extent, "extent": extent,
            "compared": len(errors.names)}


# --------------------------------------------------------------------------- methods
def parse_method(spec: str) -> tuple[str, dict[str, str]]:
    """``"citysplat:first_octave=-1,mapper=global"`` -> ``("citysplat", {...})``."""
    base, _, rest = spec.partition(":")
    if base not in ("citysplat", PEER):
        raise SystemExit(f"unknown method {base!r} in {spec!r}: use citysplat or pycolmap")
    settings = {}
    for item in filter(None, (part.strip() for part in rest.split(","))):
        key, eq, value = item.partition("=")
        if not eq:
            raise SystemExit(f"setting {item!r} of {spec!r} is not key=value")
        settings[key.strip()] = value.strip()
    return base, settings


def _number(text: str) -> Any:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return {"true": True, "false": False, "none": None}.get(text.lower(), text)


def run_citysplat(images: Path, scratch: Path, settings: Mapping[str, str]
                  ) -> tuple[Any, dict[str, Any]]:
    """``reconstruct_folder`` on ``images``; returns (model, extras)."""
    import pycolmap

    reconstruct_folder, sfm_options = citysplat_api()
    known = {f.name for f in fields(sfm_options)}
    option_values, kwargs = {}, {}
    for key, value in settings.items():
        if key in known:
            option_values[key] = _number(value)
        elif key in ("mapper",):
            kwargs[key] = value
        elif key == "seed":
            kwargs[key] = int(value)
        elif key == "pairs" and value == "exhaustive":
            names = sorted(p.name for p in images.iterdir() if not p.name.startswith("."))
            kwargs["pairs"] = list(combinations(names, 2))
        else:
            raise SystemExit(f"citysplat setting {key}={value} is neither an SfmOptions field "
                             "nor mapper=, seed=, pairs=exhaustive")
    if option_values:
        kwargs["options"] = sfm_options(**option_values)
    result = reconstruct_folder(images, scratch / "out", work_dir=scratch / "work", **kwargs)
    with pycolmap.Database.open(scratch / "work" / "database.db") as db:
        keypoints = db.num_keypoints() / max(1, db.num_images())
    return result.reconstruction, {"keypoints_per_image": keypoints,
                                   "mappers": result.metrics.get("component_mappers"),
                                   "messages": result.messages}


def run_pycolmap(images: Path, scratch: Path, settings: Mapping[str, str]
                 ) -> tuple[Any, dict[str, Any]]:
    """pycolmap's plain defaults (features, exhaustive matching, incremental mapping) on
    ``images``, with the given overrides; returns (largest model or None, extras)."""
    import pycolmap

    database = scratch / "database.db"
    extraction = pycolmap.FeatureExtractionOptions()
    mapping = pycolmap.IncrementalPipelineOptions()
    camera_mode = pycolmap.CameraMode.AUTO
    for key, value in settings.items():
        if key == "camera_mode":
            camera_mode = pycolmap.CameraMode.__members__[value.upper()]
        elif key in ("first_octave", "max_num_features"):
            setattr(extraction.sift, key, int(value))
        elif hasattr(mapping, key) and not key.startswith("_"):
            setattr(mapping, key, _number(value))
        else:
            raise SystemExit(f"pycolmap setting {key}={value} is not camera_mode=, "
                             "first_octave=, max_num_features= nor an "
                             "IncrementalPipelineOptions field")
    pycolmap.extract_features(database, images, camera_mode=camera_mode,
                              extraction_options=extraction)
    pycolmap.match_exhaustive(database)
    models = pycolmap.incremental_mapping(database, images, scratch / "sparse", mapping) or {}
    with pycolmap.Database.open(database) as db:
        keypoints = db.num_keypoints() / max(1, db.num_images())
    model = max(models.values(), key=lambda m: m.num_reg_images(), default=None)
    return model, {"keypoints_per_image": keypoints, "models": len(models)}


def camera_figures(model: Any) -> dict[str, float]:
    """Median focal length and principal point (pixels) over the registered images' cameras."""
    cameras = [model.cameras[image.camera_id] for image in model.images.values()
               if image.has_pose]
    return {"focal_px": float(np.median([c.mean_focal_length() for c in cameras])),
            "cx": float(np.median([c.principal_point_x for c in cameras])),
            "cy": float(np.median([c.principal_point_y for c in cameras]))}


def measure(root: Path, spec: str, reference: Mapping[str, Any], kind: str) -> dict[str, Any]:
    """One run of one method on one set: its figures as a flat dict."""
    import pycolmap

    base, settings = parse_method(spec)
    images = root / "images"
    total = sum(1 for p in images.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    runner = run_citysplat if base == "citysplat" else run_pycolmap
    previous = pycolmap.logging.minloglevel
    pycolmap.logging.minloglevel = 2  # errors only: the figures are printed here
    try:
        with tempfile.TemporaryDirectory(prefix="citysplat-bench-") as tmp:
            started = time.perf_counter()
            try:
                model, extras = runner(images, Path(tmp), settings)
            except RuntimeError as exc:  # citysplat's ReconstructionFailedError: no model
                model, extras = None, {"error": str(exc)}
            seconds = time.perf_counter() - started
    finally:
        pycolmap.logging.minloglevel = previous
    row: dict[str, Any] = {"set": root.name, "method": spec, "total": total, "seconds": seconds,
                           **extras}
    if model is None or model.num_reg_images() < 3:
        return {**row, "registered": 0 if model is None else model.num_reg_images()}
    poses = {}
    for image in model.images.values():
        if image.has_pose:
            pose = image.cam_from_world()
            poses[image.name] = (np.asarray(pose.rotation.matrix()), np.asarray(pose.translation))
    try:
        errors: dict[str, Any] = accuracy(poses, reference, kind)
    except ValueError as exc:  # e.g. 3 collinear centres: no similarity to align them
        errors = {"accuracy_error": str(exc)}
    return {**row, "registered": len(poses), "points": int(model.num_points3D()),
            "reprojection_px": float(model.compute_mean_reprojection_error()),
            "track_length": float(model.compute_mean_track_length()),
            "cameras": len({image.camera_id for image in model.images.values()
                            if image.has_pose}),
            **camera_figures(model), **errors}


# --------------------------------------------------------------------------- report
def median_row(runs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The per-figure median of a method's repeats (numbers only; the rest from the first)."""
    out = dict(runs[0])
    for key, value in runs[0].items():
        values = [run.get(key) for run in runs]
        if isinstance(value, (int, float)) and not isinstance(value, bool) and all(
                isinstance(v, (int, float)) for v in values):
            out[key] = statistics.median(values)
    out["repeats"] = len(runs)
    return out


def _fmt(value: Any, digits: int) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}" if isinstance(value, float) else f"{value:,}"


def table(rows: Sequence[Mapping[str, Any]]) -> str:
    """A Markdown table of the median rows, with each figure's ratio to the peer's."""
    head = ("| set | method | registered | rotation ° median (common bias / rest) | "
            "centre % of extent, median (m) | "
            "points | reprojection px | keypoints / image | cameras | seconds | "
            "ratio to pycolmap: rotation / centre / points / seconds |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    peers = {row["set"]: row for row in rows if row["method"] == PEER}
    for row in rows:
        peer = peers.get(row["set"])
        ratios = []
        for key in ("rotation_deg", "centre_pct", "points", "seconds"):
            a, b = row.get(key), (peer or {}).get(key)
            ratios.append(f"{a / b:.2f}" if a is not None and b else "-")
        centre = row.get("centre_pct")
        centre_text = "-" if centre is None else f"{centre:.3f} ({row['centre']:.3f})"
        rotation_text = _fmt(row.get("rotation_deg"), 3)
        if row.get("rotation_bias_deg") is not None:
            rotation_text += (f" ({row['rotation_bias_deg']:.3f} / "
                              f"{row['rotation_debiased_deg']:.3f})")
        lines.append(
            f"| {row['set']} | `{row['method']}` | {row['registered']}/{row['total']} | "
            f"{rotation_text} | {centre_text} | {_fmt(row.get('points'), 0)} | "
            f"{_fmt(row.get('reprojection_px'), 3)} | {_fmt(row.get('keypoints_per_image'), 0)} | "
            f"{_fmt(row.get('cameras'), 0)} | {row['seconds']:.1f} | {' / '.join(ratios)} |")
    return "\n".join(lines)


def main() -> None:
    """Run every method on every set, print the runs, the table and SUMMARY lines."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=SHARED, help="folder of the real sets")
    parser.add_argument("--sets", default=",".join(SETS), help="comma-separated set names")
    parser.add_argument("--method", action="append", dest="methods", metavar="SPEC",
                        help="a method, repeatable (default: citysplat and pycolmap), e.g. "
                             "'citysplat:first_octave=-1,mapper=global'")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--json", type=Path, help="write every run and the medians here")
    args = parser.parse_args()
    methods = args.methods or list(DEFAULT_METHODS)
    for spec in methods:
        parse_method(spec)
    runs: list[dict[str, Any]] = []
    medians: list[dict[str, Any]] = []
    for name in filter(None, (s.strip() for s in args.sets.split(","))):
        root = args.data / name
        if not (root / "images").is_dir():
            raise SystemExit(f"{root}/images is missing: is ../shared/data beside this checkout?")
        reference, kind = reference_poses(root)
        for spec in methods:
            mine = []
            for repeat in range(args.repeats):
                row = {**measure(root, spec, reference, kind), "repeat": repeat,
                       "reference": kind}
                print(json.dumps(row, default=float), flush=True)
                mine.append(row)
            runs += mine
            medians.append(median_row(mine))
    print()
    print(table(medians))
    peers = {row["set"]: row for row in medians if row["method"] == PEER}
    for row in medians:
        peer = peers.get(row["set"])
        if row["method"] == PEER or peer is None:
            continue
        ratio = {key: (row[key] / peer[key] if row.get(key) is not None and peer.get(key)
                       else None) for key in FIGURES}
        print(f"SUMMARY {row['set']} {row['method']}: registered {row['registered']}/"
              f"{row['total']} vs {peer['registered']}/{peer['total']}; ratio to pycolmap "
              + " ".join(f"{k}={'-' if v is None else f'{v:.2f}'}" for k, v in ratio.items()))
    if args.json:
        args.json.write_text(json.dumps({"runs": runs, "medians": medians}, indent=2,
                                        default=float) + "\n")


if __name__ == "__main__":
    main()
