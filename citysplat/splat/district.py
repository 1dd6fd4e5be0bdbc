"""Train the splat of one district of the data root, or of any COLMAP model.

:func:`train_district` trains from the district's sparse model and downloaded images into its
splat folder (:class:`citysplat.layout.SplatLayout`: the PLY, metrics, held-out renders,
checkpoint, and the district's frame so the PLY can be placed on the map). Moving-object masks
are read from the district's masks folder (``<image id>.png``, non-zero = moving) when it
exists, or from ``masks=``.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from citysplat.catalog import Catalog
from citysplat.districts.membership import district_members
from citysplat.layout import DataLayout, SfmLayout, SplatLayout, image_file_name
from citysplat.splat.config import TrainConfig
from citysplat.splat.data import SceneDataError, load_scene
from citysplat.splat.trainer import ProgressFn, SplatTrainer, TrainResult


def train_model(sparse_dir: str | Path, images: str | Path | dict, out_dir: str | Path,
                config: TrainConfig | None = None, *, masks: str | Path | None = None,
                sequences: dict[str, str] | None = None, frame_json: Path | None = None,
                progress: ProgressFn | None = None) -> TrainResult:
    """Train a splat of the COLMAP model ``sparse_dir`` (images: a folder or name -> path)
    into ``out_dir``; resumes a checkpoint left there by an interrupted run."""
    config = config or TrainConfig()
    scene = load_scene(sparse_dir, images, masks=masks if config.masks else None,
                       max_side=config.max_side, test_every=config.test_every,
                       sequences=sequences, max_points=config.max_init_points,
                       seed=config.seed)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    result = SplatTrainer(scene, config, out_dir).train(progress)
    frame_json = frame_json or SfmLayout(Path(sparse_dir).parent).frame_json
    if frame_json.is_file():
        shutil.copyfile(frame_json, SplatLayout(out_dir).frame_json)
    return result


@dataclass
class DistrictPhotos:
    """A district's downloaded photos as its COLMAP model names them (``<id>.jpg``)."""

    paths: dict[str, Path]  # name -> file
    sequences: dict[str, str]  # name -> sequence id (every member, downloaded or not)
    captured_ms: dict[str, int]  # name -> capture time, ms since the epoch


def district_photos(layout: DataLayout, name: str) -> DistrictPhotos:
    """Where district ``name``'s downloaded photos are, with their sequences and times."""
    with Catalog.open_read_only(layout.catalog_path) as catalog:
        rows = district_members(layout, name, catalog)[["id", "sequence_id", "captured_at_ms"]]
        done = catalog.done(rows["id"].astype(str))
    paths = {image_file_name(i): layout.root / record[0] for i, record in done.items()}
    names = [image_file_name(i) for i in rows["id"]]
    sequences = {n: str(s) for n, s in zip(names, rows["sequence_id"])}
    captured = {n: int(t) for n, t in zip(names, rows["captured_at_ms"]) if t == t}
    return DistrictPhotos(paths, sequences, captured)


def train_district(layout: DataLayout, name: str, config: TrainConfig | None = None, *,
                   masks: str | Path | None = None, out_dir: Path | None = None,
                   progress: ProgressFn | None = None) -> TrainResult:
    """Train district ``name``'s splat from its sparse model (``citysplat reconstruct``)."""
    district = layout.district(name)
    if not district.has_model():
        raise SceneDataError(f"district {name} has no sparse model yet: run `citysplat "
                             f"reconstruct {name}` (or materialize sparse_model) first")
    photos = district_photos(layout, name)
    if masks is None and district.masks_dir.is_dir():
        masks = district.masks_dir
    return train_model(district.sparse_dir, photos.paths, out_dir or district.splat.dir, config,
                       masks=masks, sequences=photos.sequences, frame_json=district.frame_json,
                       progress=progress)
