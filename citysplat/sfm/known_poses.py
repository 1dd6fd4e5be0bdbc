"""A COLMAP model from known cameras: features, matches and triangulation with the poses held
fixed (pycolmap's ``triangulate_points``). For data that comes with ground-truth or survey
poses (e.g. fountain-P11), so splats can be trained on them without running SfM."""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from citysplat.layout import SfmWorkLayout


@dataclass(frozen=True)
class KnownCamera:
    """A pinhole camera with a known pose (``x_cam = R @ X + t``)."""

    K: np.ndarray
    width: int
    height: int
    R: np.ndarray
    t: np.ndarray


def triangulate_known_poses(images: Mapping[str, Path], cameras: Mapping[str, KnownCamera],
                            work_dir: str | Path, out_dir: str | Path,
                            max_num_features: int = 8192) -> Path:
    """SIFT features and exhaustive matching of ``images`` (``{name: path}``), then 3D points
    triangulated with the ``cameras`` held fixed; the model is written to ``out_dir`` (which
    is returned). ``work_dir`` holds the database and image links."""
    import pycolmap

    work, out_dir = SfmWorkLayout(Path(work_dir)), Path(out_dir)
    image_dir = work.images_dir
    shutil.rmtree(work.dir, ignore_errors=True)
    image_dir.mkdir(parents=True)
    for name, path in images.items():
        (image_dir / name).symlink_to(Path(path).resolve())
    database = work.database
    extraction = pycolmap.FeatureExtractionOptions()
    extraction.sift.max_num_features = max_num_features
    pycolmap.extract_features(database, image_dir, image_names=sorted(images),
                              camera_mode=pycolmap.CameraMode.PER_IMAGE,
                              extraction_options=extraction, device=pycolmap.Device.cpu)
    reconstruction = pycolmap.Reconstruction()
    with pycolmap.Database.open(database) as db:
        db_images = db.read_all_images()
        for image in db_images:  # the known intrinsics replace the extractor's guess
            K = np.asarray(cameras[image.name].K, dtype=np.float64)
            db.update_camera(pycolmap.Camera(
                model="PINHOLE", width=int(cameras[image.name].width),
                height=int(cameras[image.name].height),
                params=[K[0, 0], K[1, 1], K[0, 2], K[1, 2]], camera_id=image.camera_id))
    pycolmap.match_exhaustive(database, device=pycolmap.Device.cpu)
    for image in db_images:
        cam = cameras[image.name]
        K = np.asarray(cam.K, dtype=np.float64)
        camera = pycolmap.Camera(model="PINHOLE", width=int(cam.width), height=int(cam.height),
                                 params=[K[0, 0], K[1, 1], K[0, 2], K[1, 2]],
                                 camera_id=image.camera_id)
        if not reconstruction.exists_camera(image.camera_id):
            reconstruction.add_camera_with_trivial_rig(camera)
        pose = pycolmap.Rigid3d(pycolmap.Rotation3d(np.asarray(cam.R, dtype=np.float64)),
                                np.asarray(cam.t, dtype=np.float64))
        new = pycolmap.Image(name=image.name, camera_id=image.camera_id,
                             image_id=image.image_id)
        reconstruction.add_image_with_trivial_frame(new, pose)
    out_dir.mkdir(parents=True, exist_ok=True)
    model = pycolmap.triangulate_points(reconstruction, database, image_dir, out_dir)
    model.write(str(out_dir))
    return out_dir
