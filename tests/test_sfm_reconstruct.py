"""The orchestration (citysplat.sfm.reconstruct.reconstruct) on real fountain-P11 and lund
thumbnails: the files of the output's layout, a re-run that reuses the work folder, and the
errors of unusable input as a whole."""

from __future__ import annotations

import json

import pytest
from PIL import Image

import citysplat  # noqa: F401  (loads zlib before pycolmap)
from citysplat.frames import LocalFrame
from citysplat.groundtruth import read_strecha_cameras
from citysplat.layout import SfmLayout, SfmWorkLayout
from citysplat.pairs import read_pairs_file
from citysplat.sfm.inputs import SfmInput, SfmInputError
from citysplat.sfm.intrinsics import from_matrix
from citysplat.sfm.mapping import ReconstructionFailedError
from citysplat.sfm.options import SfmOptions
from citysplat.sfm.reconstruct import reconstruct

pycolmap = pytest.importorskip("pycolmap")

OPTIONS = SfmOptions(max_num_features=2048, first_octave=0)
STAGES = {"screening", "features", "matching", "mapping", "georegistration", "write", "total"}


def _thumbnails(folder, root, names, size=640):
    for name in names:
        image = Image.open(root / name)
        image.thumbnail((size, size))
        image.save(folder / name, quality=92)


@pytest.fixture(scope="module")
def fountain(shared_data, tmp_path_factory) -> list[SfmInput]:
    """Five 640 px fountain-P11 thumbnails with their true intrinsics."""
    root = shared_data / "fountain-P11"
    folder = tmp_path_factory.mktemp("fountain")
    truth = read_strecha_cameras(root / "cameras")
    names = list(truth)[:5]
    _thumbnails(folder, root / "images", names)
    return [SfmInput(n, folder / n, camera=from_matrix(truth[n].K, truth[n].width,
                                                       truth[n].height)) for n in names]


def test_a_reconstruction_writes_its_layout_and_a_rerun_reuses_the_work(fountain, tmp_path):
    out, work = SfmLayout(tmp_path / "out"), SfmWorkLayout(tmp_path / "work")
    frame = LocalFrame(5.0, 45.0, 100.0)
    result = reconstruct(fountain, work.dir, out.dir, options=OPTIONS, frame=frame)
    assert result.registered_images == 5 and not result.georeferenced
    assert out.has_model() and LocalFrame.load(out.frame_json) == frame
    assert len(read_pairs_file(out.pairs_txt)) == 10  # five images, no positions: every pair
    metrics = json.loads(out.sfm_metrics.read_text())
    assert metrics["registered_images"] == 5 and metrics["pairing"] == "exhaustive"
    assert metrics["verified_pairs"] == 10 and set(metrics["timings"]) == STAGES
    assert metrics["points3D"] == result.reconstruction.num_points3D() > 100
    assert work.marker.exists() and work.database.exists() and work.state_json.exists()
    again = reconstruct(fountain, work, out, options=OPTIONS)
    assert again.timings["features"] < 0.5 and again.timings["matching"] < 0.5
    assert again.registered == result.registered


def test_unusable_input_as_a_whole_is_refused_before_any_work(fountain, tmp_path):
    with pytest.raises(SfmInputError, match="unknown mapper"):
        reconstruct(fountain, tmp_path / "work", tmp_path / "out", mapper="magic")
    with pytest.raises(SfmInputError, match="unique"):
        reconstruct([*fountain, fountain[0]], tmp_path / "work", tmp_path / "out")
    assert not (tmp_path / "work").exists() and not (tmp_path / "out").exists()


def test_images_that_do_not_match_leave_metrics_and_an_error(fountain, shared_data, tmp_path):
    lund = tmp_path / "lund"
    lund.mkdir()
    _thumbnails(lund, shared_data / "lund" / "images", ["01.jpg", "02.jpg"])
    inputs = fountain[:2] + [SfmInput(f"lund/{n}", lund / n) for n in ("01.jpg", "02.jpg")]
    across = [(a.name, b.name) for a in inputs[:2] for b in inputs[2:]]  # fountain x lund
    out = SfmLayout(tmp_path / "out")
    with pytest.raises(ReconstructionFailedError, match="SfM found no model") as caught:
        reconstruct(inputs, tmp_path / "work", out, pairs=across, options=OPTIONS)
    assert "\n" not in str(caught.value)
    metrics = json.loads(out.sfm_metrics.read_text())
    assert metrics["registered_images"] == 0 and metrics["pairing"] == "given"
    assert metrics["pairs"] == 4 and "no model" in metrics["error"]
