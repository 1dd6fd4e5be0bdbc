"""The output stage (citysplat.sfm.output): a model replaces the last one only once it is
written, metrics are JSON, and the result's poses are the model's."""

from __future__ import annotations

import json

import numpy as np
import pytest

import citysplat  # noqa: F401  (loads zlib before pycolmap)
from citysplat.layout import SfmLayout
from citysplat.sfm.georegister import Georegistration
from citysplat.sfm.merge import PlacedModel
from citysplat.sfm.output import SfmResult, model_metrics, write_metrics, write_model_atomically

pycolmap = pytest.importorskip("pycolmap")


def _model(centres) -> object:
    """A model of cameras at ``centres`` looking along +y (a street's side), one 3D point."""
    model = pycolmap.Reconstruction()
    model.add_camera_with_trivial_rig(
        pycolmap.Camera.create_from_model_name(1, "SIMPLE_PINHOLE", 60.0, 64, 48))
    R = np.array([[1.0, 0, 0], [0, 0, -1], [0, 1, 0]])  # world -> camera: z_cam = y_world
    for k, centre in enumerate(centres, start=1):
        image = pycolmap.Image(name=f"{k}.jpg", keypoints=np.array([[32.0, 24.0]]),
                               camera_id=1, image_id=k)
        model.add_image_with_trivial_frame(
            image, pycolmap.Rigid3d(pycolmap.Rotation3d(R), -R @ np.asarray(centre, float)))
    track = pycolmap.Track()
    for k in range(1, len(centres) + 1):
        track.add_element(k, 0)
    model.add_point3D(np.array([0.0, 10.0, 0.0]), track, np.zeros(3, dtype=np.uint8))
    return model


class _Unwritable:
    def write_binary(self, path):
        raise OSError("disk full")


def test_a_model_replaces_the_last_one_only_when_written(tmp_path):
    out = SfmLayout(tmp_path / "district")
    out.dir.mkdir()
    write_model_atomically(_model([(0, 0, 0), (1, 0, 0)]), out.sparse_dir)
    assert out.has_model() and pycolmap.Reconstruction(out.sparse_dir).num_reg_images() == 2
    write_model_atomically(_model([(0, 0, 0), (1, 0, 0), (2, 0, 0)]), out.sparse_dir)
    assert pycolmap.Reconstruction(out.sparse_dir).num_reg_images() == 3
    with pytest.raises(OSError, match="disk full"):
        write_model_atomically(_Unwritable(), out.sparse_dir)
    assert pycolmap.Reconstruction(out.sparse_dir).num_reg_images() == 3  # the last good one
    assert [p.name for p in out.dir.iterdir()] == [out.sparse_dir.name]  # no temporary left


def test_metrics_are_json_with_numpy_numbers(tmp_path):
    path = SfmLayout(tmp_path / "new").sfm_metrics
    write_metrics(path, {"seconds": np.float64(1.5), "error_px": np.float32(0.25), "n": 3})
    assert json.loads(path.read_text()) == {"seconds": 1.5, "error_px": 0.25, "n": 3}


def test_the_results_poses_and_figures_are_the_models(tmp_path):
    centres = [(0.0, 0.0, 1.5), (2.0, 0.0, 1.5), (4.0, 0.5, 1.5)]
    model = _model(centres)
    placed = PlacedModel(model, Georegistration(True, "given"), [{"images": 3}])
    figures = model_metrics(placed)
    assert figures["points3D"] == 1 and figures["georeferenced"] is True
    assert figures["components"] == [{"images": 3}]
    out = SfmLayout(tmp_path)
    result = SfmResult(out.dir, out.sparse_dir, out.sfm_metrics, model, ["1.jpg", "2.jpg",
                       "3.jpg"], [], {}, 3, "auto", True, placed.georegistration,
                       figures["mean_reprojection_error_px"], 0.0, {}, [], figures)
    found = result.camera_centers()
    assert result.registered_images == 3
    for k, centre in enumerate(centres, start=1):
        assert np.allclose(found[f"{k}.jpg"], centre)
    result.metrics["district"] = "d"
    result.save_metrics()
    assert json.loads(out.sfm_metrics.read_text())["district"] == "d"
