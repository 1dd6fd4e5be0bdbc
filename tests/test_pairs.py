"""Candidate image pairs: recall of the truly co-visible pairs of the generated city at a small
fraction of all pairs, and the rules (distance, heading, sequence, panoramas) they follow.

"Truly co-visible" is a pair sharing at least ``TRUE_MIN_CELLS`` = 60 of the generator's 0.5 m
surface cells (15 square metres of static scene). The generator lists pairs from 25 cells up;
those between 25 and 60 are grazing overlaps (a corner of a facade, seen at a steep angle)
where few features match, so they are reported but not held to the 98 % bar.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from citysplat.frames import LocalFrame
from citysplat.pairs import (
    PairConfig,
    PairImages,
    pair_quality,
    read_pairs_file,
    sectors_overlap,
    select_pairs,
    write_pairs_file,
)
from citysplat.positions import best_lonlat

TRUE_MIN_CELLS = 60


@pytest.fixture(scope="module")
def sample_pairs(sample_city, sample_images) -> list[tuple[str, str]]:
    return select_pairs(PairImages.from_catalog(sample_images, sample_city.frame))


def test_pairs_recall_the_covisible_pairs_of_the_sample_city(sample_city, sample_images,
                                                             sample_pairs):
    ids = sample_images["id"].tolist()
    truth = [(a, b) for a, b, n in sample_city.covisible if n >= TRUE_MIN_CELLS]
    recall, precision, fraction = pair_quality(sample_pairs, truth, ids)
    weak_recall, _, _ = pair_quality(sample_pairs, sample_city.covisible, ids)
    total = len(ids) * (len(ids) - 1) // 2
    print(f"\nsample city: {len(ids)} images, {total} pairs in all, {len(truth)} truly "
          f"co-visible (>= {TRUE_MIN_CELLS} cells): selected {len(sample_pairs)}, recall "
          f"{recall:.3f}, precision {precision:.3f}, fraction {fraction:.3f}; recall of "
          f"pairs >= 25 cells {weak_recall:.3f}")
    assert recall >= 0.98
    assert weak_recall >= 0.96
    # the true pairs alone are 8 % of all pairs in this small city; stay close to that
    assert fraction <= 0.15
    assert precision >= 0.6


def test_pairs_are_sorted_unique_and_ordered(sample_pairs, sample_images):
    ids = set(sample_images["id"])
    assert sample_pairs == sorted(set(sample_pairs))
    assert all(a < b and a in ids and b in ids for a, b in sample_pairs)


def test_pairs_never_join_distant_images_except_along_a_sequence(sample_city, sample_images,
                                                                 sample_pairs):
    config = PairConfig()
    lon, lat = best_lonlat(sample_images)
    xy = sample_city.frame.to_enu(lon, lat)[:, :2]
    pos = dict(zip(sample_images["id"], xy))
    order = (sample_images.sort_values(["sequence_id", "captured_at_ms", "id"])
             .groupby("sequence_id").cumcount())
    rank = dict(zip(sample_images.loc[order.index, "id"], order))
    seq = dict(zip(sample_images["id"], sample_images["sequence_id"]))
    for a, b in sample_pairs:
        d = float(np.linalg.norm(pos[a] - pos[b]))
        if d > config.radius_m + 1e-6:
            assert seq[a] == seq[b], (a, b, d)
            assert abs(rank[a] - rank[b]) <= config.sequence_neighbors, (a, b, d)
    # and each sequence is chained: every image is paired with its successor
    chained = set(sample_pairs)
    for _, group in sample_images.sort_values(["captured_at_ms", "id"]).groupby("sequence_id"):
        ids = group["id"].tolist()
        for a, b in zip(ids, ids[1:]):
            assert (min(a, b), max(a, b)) in chained


def test_a_tighter_radius_and_no_sequence_pairs_stay_within_the_radius(sample_city,
                                                                        sample_images):
    config = PairConfig(radius_m=25.0, sequence_neighbors=0, k_nearest=8)
    pairs = select_pairs(PairImages.from_catalog(sample_images, sample_city.frame), config)
    lon, lat = best_lonlat(sample_images)
    xy = dict(zip(sample_images["id"], sample_city.frame.to_enu(lon, lat)[:, :2]))
    assert pairs
    assert max(np.linalg.norm(xy[a] - xy[b]) for a, b in pairs) <= 25.0 + 1e-6
    # k_nearest bounds the partners each image picks (panoramas excepted)
    assert len(pairs) <= 8 * len(sample_images)


def _frame() -> LocalFrame:
    return LocalFrame(-122.45, 37.75, 20.0)


def _images(rows: list[tuple]) -> pd.DataFrame:
    """(id, sequence, east, north, heading, pano) in a test frame."""
    frame = _frame()
    lonlat = frame.to_lonlat([[e, n, 0.0] for _, _, e, n, _, _ in rows])
    return pd.DataFrame({
        "id": [r[0] for r in rows], "sequence_id": [r[1] for r in rows],
        "captured_at_ms": np.arange(len(rows)) * 1000,
        "lon": lonlat[:, 0], "lat": lonlat[:, 1],
        "computed_lon": lonlat[:, 0], "computed_lat": lonlat[:, 1],
        "compass_angle": [r[4] for r in rows], "computed_compass_angle": [r[4] for r in rows],
        "camera_type": ["spherical" if r[5] else "perspective" for r in rows],
        "is_pano": [bool(r[5]) for r in rows],
        "camera_parameters": [[] if r[5] else [0.8, 0.0, 0.0] for r in rows],
        "width": 640, "height": 480})


def test_heading_keeps_only_pairs_whose_views_can_overlap():
    images = _images([
        ("1", "s1", 0.0, 0.0, 0.0, False),     # looks north
        ("2", "s2", 0.0, 15.0, 0.0, False),    # 15 m ahead, same way: overlap
        ("3", "s3", 0.0, -15.0, 180.0, False),  # behind, looking south: back to back
        ("4", "s4", 40.0, 0.0, 90.0, False),   # 40 m east, looking further east
        ("5", "s5", 10.0, -10.0, 0.0, True),   # a panorama nearby sees all around
        ("6", "s6", 20.0, 20.0, 270.0, False),  # looks west across 1's view
    ])
    catalog = PairImages.from_catalog(images, _frame())
    pairs = set(select_pairs(catalog, PairConfig(sequence_neighbors=0)))
    assert ("1", "2") in pairs and ("1", "6") in pairs
    assert ("1", "3") not in pairs and ("1", "4") not in pairs
    assert {("1", "5"), ("2", "5"), ("3", "5"), ("4", "5")} <= pairs
    # without the heading test, everything within the radius pairs up
    everything = set(select_pairs(catalog, PairConfig(sequence_neighbors=0,
                                                      use_heading=False)))
    assert ("1", "3") in everything and ("1", "4") in everything


def test_sector_overlap_is_symmetric_and_respects_depth():
    rng = np.random.default_rng(1)
    m = 2000
    pa, pb = rng.uniform(-50, 50, (m, 2)), rng.uniform(-50, 50, (m, 2))
    ha, hb = rng.uniform(0, 360, m), rng.uniform(0, 360, m)
    half_a, half_b = np.full(m, 40.0), rng.choice([40.0, 180.0], m)
    ab = sectors_overlap(pa, ha, half_a, pb, hb, half_b, 35.0)
    ba = sectors_overlap(pb, hb, half_b, pa, ha, half_a, 35.0)
    assert (ab == ba).all()
    far = np.hypot(*(pa - pb).T) > 70.0
    assert not ab[far].any()  # two sectors of 35 m cannot meet beyond 70 m
    assert 0.05 < ab.mean() < 0.6


def test_sector_overlap_when_every_sampled_pair_meets_at_once():
    """Two discs 50 m apart (neither camera inside the other's 35 m reach) meet on the first
    grid test: nothing is left for the second one."""
    pa, pb = np.array([[0.0, 0.0]]), np.array([[50.0, 0.0]])
    disc, heading = np.array([180.0]), np.array([0.0])
    assert sectors_overlap(pa, heading, disc, pb, heading, disc, 35.0).tolist() == [True]


def test_sequence_pairs_join_consecutive_images_even_far_apart():
    images = _images([(str(k), "s", 100.0 * k, 0.0, 90.0, False) for k in range(5)])
    pairs = select_pairs(PairImages.from_catalog(images, _frame()),
                         PairConfig(sequence_neighbors=2))
    assert pairs == [("0", "1"), ("0", "2"), ("1", "2"), ("1", "3"), ("2", "3"), ("2", "4"),
                     ("3", "4")]


def test_images_without_a_position_or_heading(sample_city, sample_images):
    images = sample_images.copy()
    images.loc[images.index[:5], ["lon", "lat", "computed_lon", "computed_lat", "pos_lon",
                                  "pos_lat"]] = np.nan
    images.loc[images.index[5:20], ["compass_angle", "computed_compass_angle"]] = np.nan
    pairs = select_pairs(PairImages.from_catalog(images, sample_city.frame))
    no_pos = set(images["id"][:5])
    # unplaced images only pair along their sequence
    seq = dict(zip(images["id"], images["sequence_id"]))
    assert all(seq[a] == seq[b] for a, b in pairs if a in no_pos or b in no_pos)
    assert select_pairs(PairImages.from_catalog(images.iloc[:1], sample_city.frame)) == []


def test_pairs_file_is_colmaps_format(tmp_path):
    pairs = [("1", "2"), ("1", "3"), ("2", "9")]
    path = tmp_path / "districts" / "d000" / "pairs.txt"
    assert write_pairs_file(pairs, None, path) == 3
    assert path.read_text() == "1.jpg 2.jpg\n1.jpg 3.jpg\n2.jpg 9.jpg\n"
    assert read_pairs_file(path) == [("1.jpg", "2.jpg"), ("1.jpg", "3.jpg"), ("2.jpg", "9.jpg")]
    names = {"1": "a/1.jpg", "2": "a/2.jpg", "3": "b/3.jpg", "9": "b/9.jpg"}
    write_pairs_file(pairs, names, path)
    assert path.read_text().splitlines()[0] == "a/1.jpg a/2.jpg"
    write_pairs_file(pairs, lambda i: f"img_{i}.png", path)
    assert path.read_text().splitlines()[-1] == "img_2.png img_9.png"
    with pytest.raises(ValueError, match="spaces"):
        write_pairs_file(pairs, lambda i: f"my image {i}.jpg", path)
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]


def test_pair_quality():
    ids = ["a", "b", "c", "d", "e"]
    truth = [("a", "b", 100), ("c", "b", 80), ("d", "e", 70), ("a", "zz", 90)]
    chosen = [("b", "a"), ("a", "c"), ("b", "c")]
    recall, precision, fraction = pair_quality(chosen, truth, ids)
    assert recall == pytest.approx(2 / 3)
    assert precision == pytest.approx(2 / 3)
    assert fraction == pytest.approx(3 / 10)
    assert pair_quality([], [], ids) == (1.0, 1.0, 0.0)
    assert math.isclose(pair_quality(chosen, [], ids)[1], 0.0)


def test_pairs_recall_on_the_tiny_city(tiny_city, tiny_images):
    images = tiny_images
    pairs = select_pairs(PairImages.from_catalog(images, tiny_city.frame))
    truth = [(a, b) for a, b, n in tiny_city.covisible if n >= TRUE_MIN_CELLS]
    recall, precision, fraction = pair_quality(pairs, truth, images["id"])
    # one block: cameras on crossing streets see the same corner from up to 60 m apart
    assert recall >= 0.98, (recall, precision, fraction)
