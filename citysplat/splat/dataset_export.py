"""A training scene as an undistorted COLMAP dataset, for other 3DGS trainers.

:func:`write_pinhole_dataset` writes the views exactly as citysplat trains on them (resampled to
a pinhole camera at the training size, see :mod:`.data`) in the layout of COLMAP's
``image_undistorter``, which gsplat's ``simple_trainer``, Inria's 3DGS and nerfstudio read::

    out/images/<stem>.png    the pixels (PNG: lossless; or JPEG, quality 95, to travel light)
    out/masks/<stem>.png     255 where a pixel is left out of the loss (moving objects, holes)
    out/sparse/0/            the model, each camera replaced by its views' PINHOLE camera

Training citysplat on ``out`` (``load_scene(out/sparse/0, out/images, masks=out/masks)``) sees
the same pixels, cameras and split as training on the original model, so a peer trainer run on
``out`` is compared on the same data.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from citysplat.splat.data import SceneData, SceneDataError


def write_pinhole_dataset(
    sparse_dir: str | Path, scene: SceneData, out_dir: str | Path, image_format: str = "png"
) -> Path:
    """Write ``scene`` (loaded from the COLMAP model ``sparse_dir``) as an undistorted dataset
    under ``out_dir``; returns ``out_dir``. ``image_format``: ``png`` or ``jpg``. Model images
    without a view are deregistered."""
    import pycolmap

    from citysplat.sfm.model_files import read_sparse_model

    if image_format not in ("png", "jpg"):
        raise ValueError(f"image_format must be png or jpg, not {image_format!r}")

    out_dir = Path(out_dir)
    model = read_sparse_model(sparse_dir)  # checked first: a damaged model is one line
    views = {v.name: v for v in scene.views}
    pinhole: dict[int, list[float]] = {}
    for image_id in list(model.reg_image_ids()):
        image = model.images[image_id]
        view = views.get(image.name)
        if view is None:
            model.deregister_frame(image.frame_id)
            continue
        K = view.K.double().numpy()
        params = [K[0, 0], K[1, 1], K[0, 2], K[1, 2]]
        size = (view.width, view.height)
        known = pinhole.setdefault(image.camera_id, [*params, *size])
        if not np.allclose(known, [*params, *size]):
            raise SceneDataError(
                f"{image.name}: views of camera {image.camera_id} were "
                "resampled to different pinhole cameras"
            )
        image.name = f"{Path(image.name).stem}.{image_format}"
    for camera_id, (fx, fy, cx, cy, width, height) in pinhole.items():
        model.cameras[camera_id] = pycolmap.Camera(
            model="PINHOLE",
            width=int(width),
            height=int(height),
            params=[fx, fy, cx, cy],
            camera_id=camera_id,
        )
    for folder in ("images", "masks", "sparse/0"):
        (out_dir / folder).mkdir(parents=True, exist_ok=True)
    for view in views.values():
        stem = Path(view.name).stem
        pixels = (view.image.numpy() * 255.0).round().clip(0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(out_dir / "images" / f"{stem}.{image_format}", quality=95)
        left_out = ((view.weight.numpy() == 0) * 255).astype(np.uint8)
        Image.fromarray(left_out).save(out_dir / "masks" / f"{stem}.png")
    model.write(str(out_dir / "sparse" / "0"))
    return out_dir
