"""Generate (once, then from cache) a city: rendered images, API metadata and ground truth.

On-disk layout of a generated city (one folder per spec key, written to a temporary folder and
renamed into place, so a crash leaves a complete city or none)::

    spec.json             the spec and generator version
    metadata.json         API v4 image entities (what the server shows), sorted by id
    images/<id>.jpg       the images as served (bad ones included: blurred, truncated, ...)
    truth/cameras.json    true poses (ENU and lon/lat/alt), intrinsics, quality, per image
    truth/masks/<id>.png  moving objects (255) in each image
    truth/covisible_pairs.json   image pairs that truly see common static surface
    truth/roads.geojson, junctions.geojson, buildings.geojson, walkable.geojson, frame.json
    truth/streets.osm     the streets as a mapper drew them (OSM XML, offset 1-3 m), and
    truth/osm_offset.json the truth of that offset (see citysplat.synthetic.osm)
    truth/surface.ply     the true static surface (ENU of frame.json), a kind per face
    truth/walkable_by_kind.geojson       road and sidewalk polygons (lon/lat), and
    truth/walkable_by_kind_enu.geojson   the same in ENU metres

A truth-only city (``generate_city(..., images=False)``, folder ``<key>-truth``) has all of this
but ``images/`` and ``truth/masks/``: its co-visibility comes from the very rays a render casts
for it (:func:`~citysplat.synthetic.render.surface_cells`), at a sixteenth of the rays and
without shading, so pair selection can be scored on cities far too large to render here.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import tempfile
from collections import defaultdict
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import cached_property
from itertools import combinations
from pathlib import Path

import numpy as np
from PIL import Image

from citysplat.fixtures.world import WorldImage, merge_cc
from citysplat.frames import LocalFrame
from citysplat.io import atomic_write_bytes, atomic_write_text
from citysplat.progress import ProgressFn
from citysplat.synthetic import geo, osm
from citysplat.synthetic.captures import Capture, plan_captures, report
from citysplat.synthetic.layout import Layout, make_layout
from citysplat.synthetic.render import Rendering, render_capture, surface_cells
from citysplat.synthetic.spec import CitySpec
from citysplat.synthetic.truth_geometry import true_surface

COVISIBLE_MIN_CELLS = 25  # shared 0.5 m surface cells for a pair to count as co-visible



def default_cache_dir() -> Path:
    """``$CITYSPLAT_CACHE`` or ``$XDG_CACHE_HOME/citysplat`` (``~/.cache/citysplat``)."""
    env = os.environ.get("CITYSPLAT_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "citysplat"


def city_frame(spec: CitySpec) -> LocalFrame:
    """The city's ENU frame: origin on the street at the grid centre."""
    return LocalFrame(spec.lon, spec.lat, spec.ground_alt)


# ------------------------------------------------------------------------------------------
# rendering workers (one CityScene per process, built once)
# ------------------------------------------------------------------------------------------
_WORKER_SCENE = None


def _init_worker(spec: CitySpec, atlas) -> None:
    global _WORKER_SCENE  # per-process cache of the static scene; not shared state
    from citysplat.synthetic.scene import CityScene

    _WORKER_SCENE = CityScene(make_layout(spec), atlas)


def _render_one(capture: Capture) -> Rendering:
    return render_capture(_WORKER_SCENE, capture)


def _cells_one(capture: Capture) -> Rendering:
    return Rendering(b"", np.zeros((0, 0), bool), surface_cells(_WORKER_SCENE, capture))


def render_all(spec: CitySpec, captures: list[Capture], workers: int | None = None,
               progress: ProgressFn | None = None, images: bool = True
               ) -> Iterable[tuple[Capture, Rendering]]:
    """Render captures in parallel processes, yielding in order (``images=False``: only the
    surface cells each one sees)."""
    work = _render_one if images else _cells_one
    from citysplat.synthetic.scene import FacadeAtlas
    from citysplat.synthetic.textures import NoiseBank

    workers = workers or min(len(captures), os.cpu_count() or 1, 4)
    # the facades are the costly part of a scene: draw them once, share them with the workers
    atlas = FacadeAtlas.build(make_layout(spec), NoiseBank.make(spec.seed))
    if workers <= 1:
        _init_worker(spec, atlas)
        for k, c in enumerate(captures):
            yield c, work(c)
            if progress:
                progress(k + 1, len(captures))
        return
    # fork: workers inherit the atlas without pickling it (the parent holds no open3d scene)
    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker,
                             initargs=(spec, atlas)) as pool:
        for k, (c, r) in enumerate(zip(captures, pool.map(work, captures, chunksize=4))):
            yield c, r
            if progress:
                progress(k + 1, len(captures))


# ------------------------------------------------------------------------------------------
# metadata and truth
# ------------------------------------------------------------------------------------------
def _rotation_vector_w2c(rotation_c2w: np.ndarray) -> list[float]:
    from scipy.spatial.transform import Rotation

    return [round(float(v), 6) for v in Rotation.from_matrix(rotation_c2w.T).as_rotvec()]


def image_entity(c: Capture, rep, spec: CitySpec) -> dict:
    """The API v4 image entity for one capture (thumb URLs are minted by the server)."""
    entity = {
        "id": c.image_id,
        "sequence": c.sequence_id,
        "captured_at": c.captured_at_ms,
        "geometry": {"type": "Point", "coordinates": [round(rep.lonlat[0], 8),
                                                      round(rep.lonlat[1], 8)]},
        "computed_geometry": {"type": "Point",
                              "coordinates": [round(rep.computed_lonlat[0], 8),
                                              round(rep.computed_lonlat[1], 8)]},
        "altitude": round(rep.altitude, 3),
        "computed_altitude": round(rep.computed_altitude, 3),
        "compass_angle": round(rep.compass, 3),
        "computed_compass_angle": round(rep.computed_compass, 3),
        "computed_rotation": _rotation_vector_w2c(c.rotation),
        "camera_type": c.camera.camera_type,
        "camera_parameters": c.camera.camera_parameters,
        "make": c.make,
        "model": c.model,
        "width": c.camera.width,
        "height": c.camera.height,
        "is_pano": c.camera.camera_type == "spherical",
        "exif_orientation": 1,
        "creator": {"id": c.creator[0], "username": c.creator[1]},
        "organization_id": None,
        "merge_cc": merge_cc(spec.seed, c.sequence_id),
    }
    if not entity["camera_parameters"]:
        # spherical images omit camera_parameters rather than answering [] (MAPILLARY_API.md)
        del entity["camera_parameters"]
    return entity



def camera_truth(c: Capture, frame: LocalFrame, spec: CitySpec) -> dict:
    """True pose and intrinsics of one capture."""
    lon, lat, alt = frame.to_lonlat([c.position])[0]
    model, params = c.camera.colmap()
    return {
        "id": c.image_id,
        "sequence": c.sequence_id,
        "index": c.index,
        "kind": c.kind,
        "quality": c.quality,
        "captured_at": c.captured_at_ms,
        "position_enu": [round(float(v), 6) for v in c.position],
        "rotation_c2w": [[round(float(v), 9) for v in row] for row in c.rotation],
        "lon": float(lon), "lat": float(lat), "alt": float(alt),
        "camera_type": c.camera.camera_type,
        "width": c.camera.width, "height": c.camera.height,
        "colmap_model": model if c.camera.camera_type == "perspective" else None,
        "colmap_params": params if c.camera.camera_type == "perspective" else None,
    }


def covisible_pairs(cells: dict[str, np.ndarray], min_shared: int = COVISIBLE_MIN_CELLS
                    ) -> list[tuple[str, str, int]]:
    """Pairs of images sharing at least ``min_shared`` surface cells (inverted index, never
    all-pairs)."""
    index: dict[tuple, list[str]] = defaultdict(list)
    for image_id, c in cells.items():
        for key in map(tuple, c):
            index[key].append(image_id)
    shared: dict[tuple[str, str], int] = defaultdict(int)
    for ids in index.values():
        if len(ids) > 1:
            for a, b in combinations(sorted(ids), 2):
                shared[(a, b)] += 1
    return sorted((a, b, n) for (a, b), n in shared.items() if n >= min_shared)


# ------------------------------------------------------------------------------------------
@dataclass
class SyntheticCity:
    """A generated city on disk: what the API serves plus the ground truth."""

    root: Path

    @cached_property
    def spec(self) -> CitySpec:
        data = json.loads((self.root / "spec.json").read_text())
        if data.pop("generator_version", 0) < 3:
            data.setdefault("kerb_height", 0.0)  # cities before kerbs were flat
        for k in ("car_spacing", "walk_spacing"):
            data[k] = tuple(data[k])
        return CitySpec(**data)

    @cached_property
    def frame(self) -> LocalFrame:
        return LocalFrame.load(self.root / "truth" / "frame.json")

    @cached_property
    def metadata(self) -> list[dict]:
        """API v4 image entities, sorted by id."""
        return json.loads((self.root / "metadata.json").read_text())

    @cached_property
    def cameras(self) -> dict[str, dict]:
        """Ground-truth camera of every image, by id."""
        return {c["id"]: c for c in json.loads((self.root / "truth/cameras.json").read_text())}

    @cached_property
    def covisible(self) -> list[tuple[str, str, int]]:
        return [tuple(p) for p in json.loads((self.root / "truth/covisible_pairs.json").read_text())]

    def image_path(self, image_id: str) -> Path:
        return self.root / "images" / f"{image_id}.jpg"

    def mask_path(self, image_id: str) -> Path:
        return self.root / "truth" / "masks" / f"{image_id}.png"

    def world_images(self) -> list[WorldImage]:
        """Everything the fixture server should serve."""
        return [WorldImage(m, self.image_path(m["id"])) for m in self.metadata]

    def sequences(self) -> dict[str, list[str]]:
        """Image ids per sequence, in capture order."""
        out: dict[str, list[dict]] = defaultdict(list)
        for c in self.cameras.values():
            out[c["sequence"]].append(c)
        return {k: [c["id"] for c in sorted(v, key=lambda c: c["index"])] for k, v in out.items()}

    def summary(self) -> dict:
        cams = self.cameras.values()
        kinds = defaultdict(int)
        for c in cams:
            kinds[c["kind"]] += 1
        return {
            "images": len(self.metadata),
            "sequences": len(self.sequences()),
            "by_kind": dict(kinds),
            "bad_images": sum(c["quality"] != "ok" for c in cams),
            "covisible_pairs": len(self.covisible),
            "origin": [self.spec.lon, self.spec.lat],
        }


def _write_city(spec: CitySpec, root: Path, layout: Layout, captures: list[Capture],
                progress: ProgressFn | None, workers: int | None, images: bool = True) -> None:
    frame = city_frame(spec)
    reported = report(captures, layout, frame)
    (root / "truth").mkdir(parents=True)
    if images:
        (root / "images").mkdir()
        (root / "truth" / "masks").mkdir()
    cells: dict[str, np.ndarray] = {}
    for c, r in render_all(spec, captures, workers, progress, images):
        if images:
            (root / "images" / f"{c.image_id}.jpg").write_bytes(r.jpeg)
            Image.fromarray(r.moving_mask.astype(np.uint8) * 255).save(
                root / "truth" / "masks" / f"{c.image_id}.png", optimize=True)
        cells[c.image_id] = r.surface_cells
    entities = sorted((image_entity(c, reported[c.image_id], spec) for c in captures),
                      key=lambda e: e["id"])
    (root / "metadata.json").write_text(json.dumps(entities, sort_keys=True, indent=1))
    (root / "spec.json").write_text(json.dumps(spec.to_dict(), sort_keys=True, indent=2))
    truth = root / "truth"
    (truth / "cameras.json").write_text(
        json.dumps([camera_truth(c, frame, spec) for c in captures], indent=1))
    (truth / "covisible_pairs.json").write_text(json.dumps(covisible_pairs(cells)))
    frame.save(truth / "frame.json")
    for name, fc in geo.truth_geojson(layout, frame).items():
        (truth / f"{name}.geojson").write_text(json.dumps(fc))
    for name, fc in geo.walkable_by_kind_geojson(layout, frame).items():
        (truth / f"{name}.geojson").write_text(json.dumps(fc))
    streets_osm, osm_offset = osm.osm_extract(layout, frame, spec.seed)
    (truth / "streets.osm").write_text(streets_osm)
    (truth / "osm_offset.json").write_text(json.dumps(osm_offset, indent=1))
    true_surface(layout).write_ply(truth / "surface.ply")


def generate_city(spec: CitySpec | None = None, cache_dir: Path | None = None,
                  progress: ProgressFn | None = None, workers: int | None = None,
                  images: bool = True) -> SyntheticCity:
    """The city for ``spec``, rendered on first use and read from the cache afterwards
    (``images=False``: metadata and ground truth only, see the module docstring)."""
    spec = spec or CitySpec()
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    final = cache_dir / "cities" / (spec.key() + ("" if images else "-truth"))
    if (final / "spec.json").exists():
        return SyntheticCity(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{spec.key()}.", dir=final.parent))
    try:
        layout = make_layout(spec)
        _write_city(spec, tmp, layout, plan_captures(layout), progress, workers, images)
        try:
            os.replace(tmp, final)
        except OSError:
            if not (final / "spec.json").exists():  # a concurrent generator won the race
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return SyntheticCity(final)


def extra_sequence(city: SyntheticCity, out_dir: Path, number: int = 1, kind: str = "car",
                   workers: int | None = 1) -> list[WorldImage]:
    """Render a new sequence captured after everything in ``city`` (for new-imagery tests).

    ``number`` picks which extra sequence (1, 2, ...): the same number gives the same images.
    """
    spec = city.spec
    layout = make_layout(spec)
    first = len(city.sequences()) + 30 * number  # later days than any sequence of the city
    captures = plan_captures(layout, seed_offset=1000 + number, first_sequence=first,
                             kinds=[kind])
    frame = city_frame(spec)
    reported = report(captures, layout, frame)
    out_dir = Path(out_dir)
    out: list[WorldImage] = []
    for c, r in render_all(spec, captures, workers):
        path = out_dir / f"{c.image_id}.jpg"
        atomic_write_bytes(path, r.jpeg)
        out.append(WorldImage(image_entity(c, reported[c.image_id], spec), path))
    atomic_write_text(out_dir / "cameras.json",
                      json.dumps([camera_truth(c, frame, spec) for c in captures], indent=1))
    return out
