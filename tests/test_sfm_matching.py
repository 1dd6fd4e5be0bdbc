"""The matching stage (citysplat.sfm.matching): which pairs of the inputs are matched (the one
selector, citysplat.pairs.select_pairs), real matching of fountain-P11 images with its cache, and
the match graph read back."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import citysplat  # noqa: F401  (loads zlib before pycolmap)
from citysplat.groundtruth import read_strecha_cameras
from citysplat.layout import SfmLayout, SfmWorkLayout
from citysplat.pairs import PairConfig, read_pairs_file
from citysplat.sfm.features import extract_features
from citysplat.sfm.inputs import SfmInput, screen_inputs
from citysplat.sfm.intrinsics import default_guess, from_matrix
from citysplat.sfm.matching import (
    MatchGraph,
    choose_pairs,
    match_pairs,
    pair_images,
)
from citysplat.sfm.options import SfmOptions
from citysplat.sfm.workdir import WorkState, claim_work_dir, link_images

pycolmap = pytest.importorskip("pycolmap")


# ------------------------------------------------------------------------------ which pairs
def _street_and_crossing() -> list[SfmInput]:
    """A street of 20 images 3 m apart (sequence a), a crossing street (b) and one image
    500 m away; no headings (each image sees all around)."""
    street = [SfmInput(f"a{k}.jpg", Path("."), prior_enu=(3.0 * k, 0.0, 0.0), sequence="a",
                       order=k) for k in range(20)]
    crossing = [SfmInput(f"b{k}.jpg", Path("."), prior_enu=(30.0, 3.0 * k - 30.0, 0.0),
                         sequence="b", order=k) for k in range(20)]
    return street + crossing + [SfmInput("far.jpg", Path("."), prior_enu=(500.0, 500.0, 0.0))]


def test_pairs_along_sequences_and_between_neighbours_never_all():
    inputs = _street_and_crossing()
    sequential = choose_pairs(inputs, None, PairConfig(sequence_neighbors=3, k_nearest=0))
    assert sequential.how == "sequential+spatial"
    assert ("a0.jpg", "a3.jpg") in sequential.pairs and ("a0.jpg", "a4.jpg") not in sequential.pairs
    assert not any(a[0] != b[0] for a, b in sequential.pairs)  # within sequences only
    chosen = choose_pairs(inputs, None, PairConfig(sequence_neighbors=3, radius_m=20.0,
                                                   k_nearest=4))
    pairs = set(chosen.pairs)
    assert set(sequential.pairs) < pairs
    assert any(a.startswith("a") and b.startswith("b") for a, b in pairs)  # the crossing
    assert not any("far.jpg" in p for p in pairs)
    assert len(pairs) < len(inputs) * 8  # never all pairs


def test_a_small_set_without_positions_is_matched_exhaustively():
    loose = [SfmInput(f"{k}.jpg", Path(".")) for k in range(6)]
    chosen = choose_pairs(loose, None, PairConfig())
    assert chosen.how == "exhaustive" and len(chosen.pairs) == 15
    many = [SfmInput(f"{k:02d}.jpg", Path("."), order=k) for k in range(50)]
    chain = choose_pairs(many, None, PairConfig(sequence_neighbors=2))
    # a folder without positions or sequence: one sequence in capture order
    assert chain.how == "sequential" and len(chain.pairs) == 49 + 48
    assert ("00.jpg", "02.jpg") in chain.pairs and ("00.jpg", "03.jpg") not in chain.pairs


def test_given_pairs_are_kept_between_inputs_only_once_each():
    inputs = [SfmInput(f"{k}.jpg", Path(".")) for k in range(3)]
    chosen = choose_pairs(inputs, [("1.jpg", "0.jpg"), ("0.jpg", "1.jpg"), ("2.jpg", "9.jpg"),
                                   ("2.jpg", "2.jpg")], PairConfig())
    assert chosen.how == "given" and chosen.pairs == [("0.jpg", "1.jpg")]


def test_the_selector_reads_the_inputs_fields_of_view_headings_and_time():
    known = from_matrix(np.array([[500.0, 0, 320], [0, 500.0, 240], [0, 0, 1]]), 640, 480)
    inputs = [SfmInput("a.jpg", Path("."), camera=known, heading_deg=90.0, order=2.0,
                       prior_enu=(1.0, 2.0, 3.0)),
              SfmInput("b.jpg", Path("."), camera=default_guess(640, 480), sequence="s")]
    images = pair_images(inputs)
    assert images.hfov_deg[0] == pytest.approx(math.degrees(2 * math.atan(320 / 500)))
    assert np.isnan(images.hfov_deg[1])  # a guess says nothing: the selector's default
    assert images.headings[0] == 90.0 and np.isnan(images.headings[1])
    assert np.allclose(images.xy[0], (1.0, 2.0)) and np.isnan(images.xy[1]).all()
    assert images.sequence[1] == "s" and images.sequence[0] != ""
    assert images.order[0] == 2.0 and images.order[1] == np.inf


# ------------------------------------------------------------------------------ matching
OPTIONS = SfmOptions(max_num_features=2048, first_octave=0)


@pytest.fixture(scope="module")
def features(shared_data, tmp_path_factory):
    """(inputs, work layout, Features) of three 640 px fountain-P11 thumbnails."""
    root = shared_data / "fountain-P11"
    folder = tmp_path_factory.mktemp("fountain")
    truth = read_strecha_cameras(root / "cameras")
    inputs = []
    for name in list(truth)[:3]:
        image = Image.open(root / "images" / name)
        image.thumbnail((640, 640))
        image.save(folder / name, quality=92)
        camera = from_matrix(truth[name].K, truth[name].width, truth[name].height)
        inputs.append(SfmInput(name, folder / name, camera=camera))
    usable = screen_inputs(inputs).usable
    work = SfmWorkLayout(folder / "work")
    claim_work_dir(work)
    link_images(usable, work.images_dir)
    return usable, work, extract_features(usable, work, OPTIONS, WorkState.load(work))


def test_overlapping_images_match_and_the_matches_are_reused(features, tmp_path):
    inputs, work, found = features
    out = SfmLayout(tmp_path / "out")
    chosen = choose_pairs(inputs, None, OPTIONS.pair_config)
    assert chosen.how == "exhaustive" and len(chosen.pairs) == 3
    matches = match_pairs(found, chosen.pairs, out.pairs_txt, WorkState.load(work))
    assert not matches.reused and matches.verified == 3
    assert read_pairs_file(out.pairs_txt) == chosen.pairs
    graph = MatchGraph.read(found.database)
    assert len(graph.edges) == 3 and min(inliers for _, _, inliers, _ in graph.edges) > 50
    assert graph.components(30) == [sorted(graph.names)]
    assert len(graph.components(10**6)) == 3  # no pair has a million inliers: apart
    again = match_pairs(found, chosen.pairs, out.pairs_txt, WorkState.load(work))
    assert again.reused and again.verified == 3
    fewer = match_pairs(found, chosen.pairs[:1], out.pairs_txt, WorkState.load(work))
    assert not fewer.reused and fewer.verified == 1
    assert len(read_pairs_file(out.pairs_txt)) == 1
