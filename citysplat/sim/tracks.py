"""Capture tracks: the registered camera centres of each sequence in capture order, split where
images are missing, and told driven from walked by their speed."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from citysplat.mesh.cameras import sequence_speeds


@dataclass(frozen=True)
class Track:
    """One unbroken run of a sequence: camera centres (N, 3) ENU in capture order."""

    sequence: str
    names: tuple[str, ...]
    centres: np.ndarray
    driven: bool

    @property
    def xy(self) -> np.ndarray:
        return self.centres[:, :2]

    @property
    def length(self) -> float:
        return float(np.linalg.norm(np.diff(self.xy, axis=0), axis=1).sum())


def capture_tracks(centres: Mapping[str, np.ndarray], sequences: Mapping[str, str],
                   captured_ms: Mapping[str, int], *, vehicle_speed: float = 3.0,
                   max_gap: float = 15.0, min_images: int = 3) -> list[Track]:
    """Tracks of the registered images ``centres`` (by image name), grouped by sequence and
    sorted by capture time; a jump of more than ``max_gap`` metres (images missing or not
    registered) splits a track. A sequence is driven when its median speed is above
    ``vehicle_speed`` (m/s); images without a sequence or time form no track."""
    speeds = sequence_speeds(centres, sequences, captured_ms)
    by_seq: dict[str, list[tuple[int, str]]] = {}
    for name in centres:
        seq, t = sequences.get(name), captured_ms.get(name)
        if seq is not None and t is not None:
            by_seq.setdefault(seq, []).append((int(t), name))
    tracks: list[Track] = []
    for seq in sorted(by_seq):
        items = sorted(by_seq[seq])
        names = [n for _, n in items]
        xyz = np.array([np.asarray(centres[n], np.float64) for n in names]).reshape(-1, 3)
        jumps = np.linalg.norm(np.diff(xyz[:, :2], axis=0), axis=1) > max_gap
        cuts = np.r_[0, np.flatnonzero(jumps) + 1, len(names)]
        driven = speeds.get(seq, 0.0) > vehicle_speed
        for lo, hi in zip(cuts[:-1], cuts[1:]):
            if hi - lo >= min_images:
                tracks.append(Track(seq, tuple(names[lo:hi]), xyz[lo:hi], driven))
    return tracks
