"""Reconstruct one district of the data root: catalog rows + downloaded images -> SfM in ENU.

:func:`reconstruct_district` reads the catalog read-only (briefly), takes the district's
current images (:func:`citysplat.districts.membership.district_members`) that are downloaded
and verified, selects the pairs worth matching on their catalog rows
(:func:`citysplat.pairs.select_pairs`: position, heading, sequence, panoramas; never all pairs
unless asked for a baseline), and runs :func:`citysplat.sfm.reconstruct.reconstruct` into the
district's folder (its :class:`citysplat.layout.DistrictLayout`): ``sparse/`` (COLMAP binary,
ENU metres), ``pairs.txt``, ``metrics.json``, ``frame.json`` and ``sparse.png`` (cameras and
GPS seen from above). ``work/`` keeps the features and matches, so a re-run with the same
images only maps again.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from citysplat.catalog import Catalog
from citysplat.catalog.store import row_to_entity
from citysplat.districts.files import load_district
from citysplat.districts.membership import district_members
from citysplat.frames import LocalFrame
from citysplat.io import atomic_write_bytes
from citysplat.layout import DataLayout, SfmLayout, image_file_name, image_id_of
from citysplat.pairs import PairImages, select_pairs
from citysplat.sfm.inputs import NotEnoughImagesError, SfmInput, SfmInputError
from citysplat.sfm.options import DEFAULT_MAPPER, SfmOptions
from citysplat.sfm.output import SfmResult
from citysplat.sfm.plots import plot_reconstruction
from citysplat.sfm.reconstruct import reconstruct


class DistrictNotFoundError(SfmInputError):
    """No such district under the data root."""


@dataclass
class DistrictReconstruction:
    """An :class:`SfmResult` of a district and how its input was chosen."""

    district: str
    sfm: SfmResult
    images: int  # the district's current images
    not_downloaded: list[str] = field(default_factory=list)
    pairs: int = 0
    all_pairs: int = 0
    plot: Path | None = None

    @property
    def registration_rate(self) -> float:
        """Registered / usable images (usable: downloaded, decodable, sharp, calibrated)."""
        usable = self.sfm.total_images - len(self.sfm.unusable)
        return self.sfm.registered_images / usable if usable else 0.0

    def figures(self) -> dict[str, Any]:
        """The figures worth showing (asset metadata, the CLI's table)."""
        m = self.sfm.metrics
        return {
            "images": self.images,
            "not_downloaded": len(self.not_downloaded),
            "unusable": len(self.sfm.unusable),
            "registered_images": self.sfm.registered_images,
            "registration_rate": round(self.registration_rate, 4),
            "pairs_matched": self.pairs,
            "pairs_fraction": round(self.pairs / self.all_pairs, 4) if self.all_pairs else 0.0,
            "points3D": int(m.get("points3D", 0)),
            "mean_reprojection_error_px": round(float(self.sfm.mean_reprojection_error_px), 3),
            "gps_residual_median_m": (None if self.sfm.gps_residual_median_m is None
                                      else round(float(self.sfm.gps_residual_median_m), 3)),
            "georeferenced": bool(self.sfm.georeferenced),
            "mapper": self.sfm.mapper,
            "seconds": round(float(self.sfm.seconds), 1),
        }


def district_inputs(layout: DataLayout, name: str, *, use_computed: bool = True
                    ) -> tuple[list[SfmInput], Any, LocalFrame, list[str]]:
    """``(inputs, catalog rows, frame, ids not downloaded)`` of district ``name``: an
    :class:`SfmInput` per downloaded image, named ``<id>.jpg``, with the API's camera and the
    best position (``computed_geometry`` where known and ``use_computed``) as its prior."""
    district_layout = layout.district(name)
    if not district_layout.exists():
        known = ", ".join(layout.district_names()[:8]) or "none yet"
        raise DistrictNotFoundError(f"no district {name!r} under {layout.root} (known: {known});"
                                    " run `citysplat districts --auto` or `--geojson FILE`")
    district = load_district(layout, name)
    if not layout.catalog_path.is_file():
        raise SfmInputError(f"no catalog at {layout.catalog_path}: run `citysplat ingest` first")
    with Catalog.open_read_only(layout.catalog_path) as catalog:
        rows = district_members(layout, name, catalog)
        done = catalog.done(rows["id"].astype(str))
    inputs, missing = [], []
    for row in rows.to_dict("records"):
        image_id = str(row["id"])
        record = done.get(image_id)
        path = layout.root / record[0] if record else None
        if path is None or not path.is_file():
            missing.append(image_id)
            continue
        inputs.append(SfmInput.from_entity(row_to_entity(row), path, district.frame,
                                           name=image_file_name(image_id),
                                           use_computed=use_computed))
    return inputs, rows, district.frame, missing


def reconstruct_district(layout: DataLayout, name: str, *, mapper: str = DEFAULT_MAPPER,
                         options: SfmOptions | None = None, exhaustive: bool = False,
                         use_computed: bool = True, seed: int = 0, out_dir: Path | None = None,
                         work_dir: Path | None = None, log: Callable[[str], None] | None = None
                         ) -> DistrictReconstruction:
    """Reconstruct district ``name`` of ``layout`` into its folder (or ``out_dir``).

    The pairs are selected on the district's catalog rows with ``options.pair_config``;
    ``exhaustive``: match every pair instead (the baseline the selected pairs are measured
    against). Raises :class:`DistrictNotFoundError`, :class:`NotEnoughImagesError` (fewer than
    3 usable downloaded images; says to download them) and the errors of :func:`reconstruct`.
    """
    options = options or SfmOptions()
    inputs, rows, frame, missing = district_inputs(layout, name, use_computed=use_computed)
    district_layout = layout.district(name)
    out = SfmLayout(Path(out_dir)) if out_dir else district_layout
    work_dir = Path(work_dir) if work_dir else district_layout.work_dir
    if len(inputs) < 3:
        raise NotEnoughImagesError(
            f"district {name}: {len(inputs)} of its {len(rows)} images are downloaded, SfM "
            "needs at least 3: run `citysplat ingest ... --download` (or materialize "
            "district_images) first")
    if log and missing:
        log(f"{len(missing)} of {len(rows)} images are not downloaded and are left out")
    names = [i.name for i in inputs]
    total_pairs = len(names) * (len(names) - 1) // 2
    if exhaustive:
        pairs = list(itertools.combinations(sorted(names), 2))
    else:
        downloaded = rows[rows["id"].astype(str).isin({image_id_of(n) for n in names})]
        selected = select_pairs(PairImages.from_catalog(downloaded, frame), options.pair_config)
        pairs = [(image_file_name(a), image_file_name(b)) for a, b in selected]
    if log:
        log(f"{len(inputs)} images, {len(pairs)} pairs to match "
            f"({len(pairs) / max(1, total_pairs):.1%} of all pairs)")
    result = reconstruct(inputs, work_dir, out, pairs=pairs, mapper=mapper, seed=seed,
                         options=options, frame=frame)
    outcome = DistrictReconstruction(name, result, len(rows), missing, len(pairs), total_pairs)
    result.metrics.update({"district": name, "not_downloaded": missing,
                           "pairs_matched": len(pairs), "pairs_possible": total_pairs,
                           "registration_rate": outcome.registration_rate})
    result.save_metrics()
    outcome.plot = out.sfm_plot
    atomic_write_bytes(outcome.plot, plot_reconstruction(result, inputs, title=name))
    return outcome
