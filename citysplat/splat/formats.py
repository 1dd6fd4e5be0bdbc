"""The compact files of a trained splat, beside its 3DGS PLY: SPZ (:mod:`.spz`) and the
compressed PLY (:mod:`.compressed_ply`), each read back and compared with the splat it was
written from, so every file's size and error are known.

The errors, per format: position (metres, max and median), base colour (0.5 + SH_C0 * sh0, in
1/255 units, max), opacity (after the sigmoid, 1/255 units, max) and the higher SH
coefficients (max absolute). Sizes in bytes, and each file's size over the PLY's.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from citysplat.layout import SplatLayout
from citysplat.splat.compressed_ply import read_compressed_ply, write_compressed_ply
from citysplat.splat.export import SplatArrays, read_ply
from citysplat.splat.spz import read_spz, write_spz

SH_C0 = 0.28209479177387814


@dataclass(frozen=True)
class FormatReport:
    """One compact file: where, how big, how long, and how far its splat is from the PLY's."""

    path: str
    bytes: int
    ratio_to_ply: float
    write_seconds: float
    read_seconds: float
    position_max_m: float
    position_median_m: float
    share_within_1mm: float
    colour_max_255: float
    opacity_max_255: float
    sh_rest_max: float


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(x, np.float64)))


def compare(reference: SplatArrays, other: SplatArrays) -> dict[str, float]:
    """How far ``other`` is from ``reference`` (the same splats in the same order)."""
    d = np.linalg.norm(other.means.astype(np.float64) - reference.means, axis=1)
    colour = np.clip(0.5 + SH_C0 * reference.sh0.astype(np.float64), 0, 1)
    colour_back = np.clip(0.5 + SH_C0 * other.sh0.astype(np.float64), 0, 1)
    sh = (np.abs(other.shN.astype(np.float64) - reference.shN).max()
          if reference.shN.size else 0.0)
    return {
        "position_max_m": float(d.max()) if len(d) else 0.0,
        "position_median_m": float(np.median(d)) if len(d) else 0.0,
        "share_within_1mm": float((d <= 1e-3).mean()) if len(d) else 1.0,
        "colour_max_255": float(np.abs(colour_back - colour).max() * 255) if len(d) else 0.0,
        "opacity_max_255": float(np.abs(_sigmoid(other.opacities_logit)
                                        - _sigmoid(reference.opacities_logit)).max() * 255)
        if len(d) else 0.0,
        "sh_rest_max": float(sh),
    }


def _permuted(splats: SplatArrays, order: np.ndarray) -> SplatArrays:
    return SplatArrays(splats.means[order], splats.scales_log[order], splats.quats[order],
                       splats.opacities_logit[order], splats.sh0[order], splats.shN[order])


def write_compact_formats(layout: SplatLayout, splats: SplatArrays | None = None
                          ) -> dict[str, FormatReport]:
    """``point_cloud.spz`` and ``point_cloud.compressed.ply`` of the splat in ``layout`` (or
    of ``splats``), each read back and measured against it."""
    splats = splats if splats is not None else read_ply(layout.ply)
    ply_bytes = layout.ply.stat().st_size if layout.ply.is_file() else 0
    reports: dict[str, FormatReport] = {}

    def measured(path: Path, write, read) -> FormatReport:
        t = time.perf_counter()
        info = write(path, splats)
        written = time.perf_counter() - t
        t = time.perf_counter()
        back = read(path)
        seconds = time.perf_counter() - t
        order = getattr(info, "order", None)  # the compressed PLY stores Morton order
        reference = _permuted(splats, order) if order is not None else splats
        return FormatReport(str(path), info.bytes,
                            round(info.bytes / ply_bytes, 4) if ply_bytes else 0.0,
                            round(written, 3), round(seconds, 3), **compare(reference, back))

    reports["spz"] = measured(layout.spz, write_spz, read_spz)
    reports["compressed_ply"] = measured(layout.compressed_ply, write_compressed_ply,
                                         read_compressed_ply)
    return reports


def reports_as_metrics(reports: dict[str, FormatReport]) -> dict[str, dict]:
    """The reports as plain numbers for ``metrics.json`` (paths relative to the splat folder)."""
    return {name: {**asdict(r), "path": Path(r.path).name} for name, r in reports.items()}
