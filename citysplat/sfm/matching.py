"""Feature matching of chosen image pairs, and the match graph it leaves.

* :func:`choose_pairs`: the pairs given by the caller (a district's selection), or, without
  them, :func:`citysplat.pairs.select_pairs` over the inputs (:func:`pair_images`); never all
  pairs of a large set;
* :func:`match_pairs`: ``pycolmap.match_image_pairs`` with the pair list written to a pairs
  file, seeded verification; the matches are kept in the database and reused while the
  features and the pairs are unchanged;
* :class:`MatchGraph`: the verified pairs read back (inlier counts, geometry kinds) and their
  connected components, which mapping reconstructs one by one.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import citysplat  # noqa: F401  (loads zlib before pycolmap)
from citysplat.pairs import Pair, PairConfig, PairImages, select_pairs, write_pairs_file
from citysplat.sfm.features import Features
from citysplat.sfm.inputs import SfmInput
from citysplat.sfm.workdir import WorkState, fingerprint

PHOTO_SEQUENCE = "(photos without a sequence)"
"""The sequence :func:`pair_images` gives inputs that have none (a folder of photos)."""


def pair_images(inputs: Sequence[SfmInput]) -> PairImages:
    """The inputs as :func:`citysplat.pairs.select_pairs` reads them: their names, prior
    positions, headings, horizontal fields of view (from their cameras; unknown for a
    guessed camera) and sequences. Inputs without a sequence are one sequence in capture
    order: a folder of one's own photos is one walk, and its neighbours in time are the
    photos most likely to match."""
    hfov = []
    for item in inputs:
        camera = item.camera
        if camera is None or camera.source == "default" or camera.focal_px <= 0:
            hfov.append(None)
        else:
            hfov.append(math.degrees(2 * math.atan(camera.width / (2 * camera.focal_px))))
    return PairImages.of(
        [item.name for item in inputs], [item.prior_enu for item in inputs],
        headings=[item.heading_deg for item in inputs], hfov_deg=hfov,
        sequence=[item.sequence or PHOTO_SEQUENCE for item in inputs],
        order=[item.order for item in inputs])


@dataclass
class ChosenPairs:
    """The image pairs to match (names, each pair once, sorted) and how they were chosen:
    ``"given"``, ``"sequential+spatial"``, ``"exhaustive"`` or ``"sequential"``."""

    pairs: list[Pair]
    how: str


def choose_pairs(inputs: Sequence[SfmInput], given: Iterable[tuple[str, str]] | None,
                 config: PairConfig) -> ChosenPairs:
    """The pairs of ``inputs`` to match: those of ``given`` between two of them, or, when
    None, :func:`citysplat.pairs.select_pairs` under ``config``."""
    names = {item.name for item in inputs}
    if given is not None:
        seen = {(a, b) if a < b else (b, a) for a, b in given
                if a in names and b in names and a != b}
        return ChosenPairs(sorted(seen), "given")
    pairs = select_pairs(pair_images(inputs), config)
    if any(item.prior_enu is not None for item in inputs):
        how = "sequential+spatial"
    else:
        how = "exhaustive" if len(inputs) < config.exhaustive_below else "sequential"
    return ChosenPairs(pairs, how)


@dataclass
class Matches:
    """What :func:`match_pairs` left in the database: ``verified`` image pairs of the
    ``pairs`` matched; ``reused``: an earlier run's matches were kept."""

    pairs: list[Pair]
    verified: int
    reused: bool


def match_pairs(features: Features, pairs: Sequence[Pair], pairs_file: Path, state: WorkState,
                *, seed: int = 0, num_threads: int = -1) -> Matches:
    """Match and verify ``pairs`` (image names) in ``features.database``; the list is written
    to ``pairs_file`` (COLMAP's format), the input of ``pycolmap.match_image_pairs``. The
    matches of an earlier run are reused when ``state`` says they were made from the same
    features, pairs and seed."""
    import pycolmap

    pairs = list(pairs)
    key = fingerprint({"features": features.key, "pairs": pairs, "seed": seed})
    pairs_file.parent.mkdir(parents=True, exist_ok=True)
    write_pairs_file(pairs, lambda name: name, pairs_file)
    reused = state.matches == key
    if not reused:
        with pycolmap.Database.open(features.database) as db:  # an earlier run's, or pairs
            db.clear_matches()
            db.clear_two_view_geometries()
        verification = pycolmap.TwoViewGeometryOptions()
        verification.ransac.random_seed = seed
        matching = pycolmap.FeatureMatchingOptions()
        matching.num_threads = num_threads
        matching.use_gpu = False
        if pairs:
            pycolmap.match_image_pairs(
                features.database, matching_options=matching,
                pairing_options=pycolmap.ImportedPairingOptions(match_list_path=str(pairs_file)),
                verification_options=verification, device=pycolmap.Device.cpu)
        state.matches = key
        state.save()
    with pycolmap.Database.open(features.database) as db:
        verified = int(db.num_verified_image_pairs())
    return Matches(pairs, verified, reused)


CALIBRATED, UNCALIBRATED = 2, 3
"""``pycolmap.TwoViewGeometryConfiguration`` values of pairs explained by epipolar geometry."""


@dataclass
class MatchGraph:
    """The verified image pairs of a database: ids, names, cameras, inlier matches."""

    database_path: Path
    names: dict[int, str]
    camera_ids: dict[int, int]
    cameras: dict[int, Any]
    edges: list[tuple[int, int, int, int]]  # (image_id1, image_id2, inliers, config)
    matches: dict[tuple[int, int], np.ndarray]

    @classmethod
    def read(cls, database_path: Path) -> MatchGraph:
        import pycolmap

        with pycolmap.Database.open(database_path) as db:
            images = db.read_all_images()
            cameras = {camera.camera_id: camera for camera in db.read_all_cameras()}
            pair_ids, geometries = db.read_two_view_geometries()
        edges, matches = [], {}
        for pair_id, geometry in zip(pair_ids, geometries):
            a, b = pycolmap.pair_id_to_image_pair(pair_id)
            inliers = np.asarray(geometry.inlier_matches).reshape(-1, 2)
            if len(inliers):
                edges.append((int(a), int(b), len(inliers), int(geometry.config)))
                matches[(int(a), int(b))] = inliers
        return cls(Path(database_path), {i.image_id: i.name for i in images},
                   {i.image_id: i.camera_id for i in images}, cameras, edges, matches)

    def components(self, min_inliers: int) -> list[list[int]]:
        """Connected components (image ids, largest first) over pairs with >= min_inliers."""
        parent = {i: i for i in self.names}

        def find(i: int) -> int:
            while parent[i] != i:
                parent[i] = parent[parent[i]]
                i = parent[i]
            return i

        for a, b, inliers, _ in self.edges:
            if inliers >= min_inliers and a in parent and b in parent:
                parent[find(a)] = find(b)
        groups: dict[int, list[int]] = defaultdict(list)
        for i in self.names:
            groups[find(i)].append(i)
        return sorted((sorted(g) for g in groups.values()), key=len, reverse=True)
