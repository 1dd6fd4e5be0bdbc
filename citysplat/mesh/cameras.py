"""Where the cameras stood, and which of them drove: the seeds of the walkable area.

People and cars stood where their cameras were, so the ground under every camera is walkable
(the pedestrian seeds), and the ground under the cameras of driven sequences is road (the
vehicle seeds). A sequence was driven when its median speed between consecutive images
(camera centres of the sparse model, capture times of the catalog) is above a threshold.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np


@dataclass
class CameraSeeds:
    """Registered camera centres (ENU) by image name, and the names of driven ones."""

    centres: dict[str, np.ndarray]
    driven: set[str]

    @property
    def all_xy(self) -> np.ndarray:
        return np.array([c[:2] for c in self.centres.values()]).reshape(-1, 2)

    @property
    def driven_xy(self) -> np.ndarray:
        return np.array([c[:2] for n, c in self.centres.items() if n in self.driven]
                        ).reshape(-1, 2)


def sequence_speeds(centres: Mapping[str, np.ndarray], sequences: Mapping[str, str],
                    captured_ms: Mapping[str, int]) -> dict[str, float]:
    """Median speed (m/s) of each sequence between consecutive registered images."""
    by_seq: dict[str, list[tuple[int, np.ndarray]]] = {}
    for name, c in centres.items():
        seq, t = sequences.get(name), captured_ms.get(name)
        if seq is not None and t is not None:
            by_seq.setdefault(seq, []).append((int(t), np.asarray(c, np.float64)))
    speeds = {}
    for seq, items in by_seq.items():
        items.sort(key=lambda it: it[0])
        steps = [(np.linalg.norm(b[1] - a[1]), (b[0] - a[0]) / 1000.0)
                 for a, b in zip(items, items[1:]) if b[0] > a[0]]
        if steps:
            speeds[seq] = float(np.median([d / dt for d, dt in steps]))
    return speeds


def camera_seeds(centres: Mapping[str, np.ndarray], sequences: Mapping[str, str] | None = None,
                 captured_ms: Mapping[str, int] | None = None, vehicle_speed: float = 3.0
                 ) -> CameraSeeds:
    """Seeds from registered camera centres; driven = sequences faster than ``vehicle_speed``."""
    sequences, captured_ms = sequences or {}, captured_ms or {}
    speeds = sequence_speeds(centres, sequences, captured_ms)
    driven = {n for n in centres if speeds.get(sequences.get(n, ""), 0.0) > vehicle_speed}
    return CameraSeeds({n: np.asarray(c, np.float64) for n, c in centres.items()}, driven)
