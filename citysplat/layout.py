"""The on-disk layout of a data root: one object owns every file and folder name, so no stage
spells them.

This is the floor of the house: it imports nothing of citysplat's stages, and every stage takes
a layout and asks it for paths (``tests/test_layout_names.py`` checks that no other module
spells a data-root name).

::

    catalog.duckdb                      the catalog (single writer): images, downloads, districts
    images/<id[:2]>/<id>.jpg            downloaded images (images/.partial/: downloads under way)
    reports/                            coverage.png, districts.png, sample_city_map.png
    districts/index.json                the current set of districts (what partitions follow)
    districts/<name>/
        frame.json  images.txt  district.geojson  images.png    the district (membership)
        masks/                          moving-object masks, <id>.png (optional)
        pairs.txt  metrics.json  sparse.png  sparse/  work/     structure from motion
        splat/   point_cloud.ply  metrics.json  frame.json  renders/  checkpoints/
        mesh/    surface.glb  surface.obj  collision.glb  walkable.glb  walkable.geojson
                 navmesh.json  vehicle_navmesh.json  metrics.json  mesh.png  frame.json
        sim/     network.net.xml  fcd.parquet  scene.json  frame.json

A bring-your-own model (``citysplat reconstruct-folder DIR --out OUT``) has the structure from
motion part of a district's folder under ``OUT`` (:class:`SfmLayout`), and ``citysplat
train-model ... --out OUT`` the splat part (:class:`SplatLayout`).

Image files are named ``<id>.jpg`` wherever citysplat names them (downloads, SfM image names,
pairs files): :func:`image_file_name` and :func:`image_id_of` are the one rule.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from citysplat.config import data_root

CATALOG_FILE = "catalog.duckdb"
FRAME_FILE = "frame.json"
IMAGE_SUFFIX = ".jpg"
PARTIAL_DIR = ".partial"

MAX_NAME_LENGTH = 100
_NAME_OK = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_RESERVED_NAMES = frozenset({"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(1, 10)),
                             *(f"LPT{i}" for i in range(1, 10))})


# ------------------------------------------------------------------------------------------
# names

def image_file_name(image_id: str | int) -> str:
    """The file name of image ``image_id`` (``<id>.jpg``): downloads, SfM models, pairs."""
    return f"{image_id}{IMAGE_SUFFIX}"


def image_id_of(file_name: str) -> str:
    """The image id a file name made by :func:`image_file_name` stands for (the name less its
    ``.jpg``; a name without it is returned unchanged)."""
    name = Path(file_name).name
    return name[: -len(IMAGE_SUFFIX)] if name.endswith(IMAGE_SUFFIX) else name


def folder_name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a district folder (and Dagster partition) on common file
    systems, or None when it can."""
    if len(name) > MAX_NAME_LENGTH:
        return f"{len(name)} characters, at most {MAX_NAME_LENGTH}"
    if not _NAME_OK.match(name) or ".." in name:
        return "it must start with a letter or digit and hold only letters, digits, '.', '_', '-'"
    if name.endswith("."):
        return "it ends with '.'"
    if name.split(".")[0].upper() in _RESERVED_NAMES:
        return "a device name reserved on Windows"
    return None


def check_district_name(name: str) -> str:
    """``name`` if it is a safe folder and partition name, else ValueError saying why."""
    problem = folder_name_problem(name)
    if problem:
        shown = name if len(name) <= 40 else name[:40] + "..."
        raise ValueError(f"district name {shown!r} is not usable as a folder and partition "
                         f"name ({problem}): use letters, digits, '.', '_' and '-'")
    return name


# ------------------------------------------------------------------------------------------
# stage folders

@dataclass(frozen=True)
class SfmLayout:
    """The structure-from-motion files of one folder: a district's, or ``reconstruct-folder
    --out OUT``'s."""

    dir: Path

    @property
    def frame_json(self) -> Path:
        return self.dir / FRAME_FILE

    @property
    def sim(self) -> SimLayout:
        """The traffic simulation made from this model (``sim/``)."""
        return SimLayout(self.dir / "sim")

    @property
    def pairs_txt(self) -> Path:
        return self.dir / "pairs.txt"

    @property
    def sparse_dir(self) -> Path:
        return self.dir / "sparse"

    @property
    def sfm_metrics(self) -> Path:
        return self.dir / "metrics.json"

    @property
    def sfm_plot(self) -> Path:
        return self.dir / "sparse.png"

    @property
    def work_dir(self) -> Path:
        """Scratch kept between runs: features, matches, the mapping database."""
        return self.dir / "work"

    def has_model(self) -> bool:
        """Whether a sparse model has been written."""
        return (self.sparse_dir / "images.bin").is_file()


@dataclass(frozen=True)
class SfmWorkLayout:
    """The scratch folder of one reconstruction (:attr:`SfmLayout.work_dir`)."""

    dir: Path

    @property
    def images_dir(self) -> Path:
        """Links to the input images under their SfM names."""
        return self.dir / "images"

    @property
    def database(self) -> Path:
        return self.dir / "database.db"

    @property
    def state_json(self) -> Path:
        """What the features and matches in the database were made from."""
        return self.dir / "state.json"

    @property
    def marker(self) -> Path:
        """Marks a folder as citysplat's scratch, so it may be cleared."""
        return self.dir / ".citysplat-sfm-work"

    def component_dir(self, index: int) -> Path:
        return self.dir / f"component-{index}"


@dataclass(frozen=True)
class SplatLayout:
    """The files of one trained splat (a district's ``splat/``, or ``train-model --out``)."""

    dir: Path

    @property
    def ply(self) -> Path:
        return self.dir / "point_cloud.ply"

    @property
    def spz(self) -> Path:
        """The splat as SPZ (Niantic's compact format; RUB axes inside, ENU when read)."""
        return self.dir / "point_cloud.spz"

    @property
    def compressed_ply(self) -> Path:
        """The splat as PlayCanvas's compressed PLY (SuperSplat, Spark)."""
        return self.dir / "point_cloud.compressed.ply"

    @property
    def metrics_json(self) -> Path:
        return self.dir / "metrics.json"

    @property
    def frame_json(self) -> Path:
        return self.dir / FRAME_FILE

    @property
    def renders_dir(self) -> Path:
        return self.dir / "renders"

    def render_png(self, view_name: str) -> Path:
        """The prediction | truth picture of a held-out view."""
        return self.renders_dir / f"{Path(view_name).stem}.png"

    @property
    def checkpoint(self) -> Path:
        return self.dir / "checkpoints" / "latest.pt"


@dataclass(frozen=True)
class MeshLayout:
    """The meshes and navmesh of one district (``mesh/``), in its ENU frame."""

    dir: Path

    @property
    def frame_json(self) -> Path:
        return self.dir / FRAME_FILE

    @property
    def surface_glb(self) -> Path:
        return self.dir / "surface.glb"

    @property
    def surface_obj(self) -> Path:
        return self.dir / "surface.obj"

    @property
    def collision_glb(self) -> Path:
        return self.dir / "collision.glb"

    @property
    def walkable_glb(self) -> Path:
        return self.dir / "walkable.glb"

    @property
    def walkable_geojson(self) -> Path:
        return self.dir / "walkable.geojson"

    @property
    def navmesh_json(self) -> Path:
        """The pedestrian agent's navmesh (the default agent)."""
        return self.dir / "navmesh.json"

    @property
    def vehicle_navmesh_json(self) -> Path:
        """The vehicle agent's navmesh (roads only: a car does not climb the kerb)."""
        return self.dir / "vehicle_navmesh.json"

    @property
    def metrics_json(self) -> Path:
        return self.dir / "metrics.json"

    @property
    def plot_png(self) -> Path:
        return self.dir / "mesh.png"


@dataclass(frozen=True)
class SimLayout:
    """The traffic simulation of one district (``sim/``), in its ENU frame."""

    dir: Path

    @property
    def frame_json(self) -> Path:
        return self.dir / FRAME_FILE

    @property
    def network_net_xml(self) -> Path:
        return self.dir / "network.net.xml"

    @property
    def fcd_parquet(self) -> Path:
        return self.dir / "fcd.parquet"

    @property
    def scene_json(self) -> Path:
        """The CityScene manifest: every file of the district and its frame."""
        return self.dir / "scene.json"

    @property
    def metrics_json(self) -> Path:
        """The network's and the scenario's figures."""
        return self.dir / "metrics.json"

    @property
    def routes_xml(self) -> Path:
        return self.dir / "routes.rou.xml"

    @property
    def plot_png(self) -> Path:
        return self.dir / "sim.png"


@dataclass(frozen=True)
class DistrictLayout(SfmLayout):
    """The files of one district. Its own folder holds its membership (frame, image list,
    polygon) and its structure from motion (the :class:`SfmLayout` part); later stages have
    a folder each."""

    name: str = ""

    @property
    def images_txt(self) -> Path:
        """The district's image ids, one a line: the one record of its membership."""
        return self.dir / "images.txt"

    @property
    def geojson(self) -> Path:
        return self.dir / "district.geojson"

    @property
    def images_png(self) -> Path:
        return self.dir / "images.png"

    @property
    def masks_dir(self) -> Path:
        """Moving-object masks, ``<id>.png`` (non-zero = moving), when a source has them."""
        return self.dir / "masks"

    def mask_png(self, image_id: str) -> Path:
        """The moving-object mask of image ``image_id``."""
        return self.masks_dir / f"{image_id}.png"

    @property
    def splat(self) -> SplatLayout:
        return SplatLayout(self.dir / "splat")

    @property
    def splat_dir(self) -> Path:
        return self.splat.dir

    @property
    def mesh(self) -> MeshLayout:
        return MeshLayout(self.dir / "mesh")

    def exists(self) -> bool:
        """Whether the districts stage wrote this district."""
        return self.geojson.is_file() and self.images_txt.is_file()

    def image_ids(self) -> list[str]:
        """The district's image ids (``images.txt``), in file order."""
        return [line.strip() for line in self.images_txt.read_text().splitlines()
                if line.strip()]


@dataclass(frozen=True)
class DataLayout:
    """A data root (``CITYSPLAT_HOME``, default ``./citysplat-data``) and its paths."""

    root: Path

    @classmethod
    def at(cls, root: str | os.PathLike | None = None) -> DataLayout:
        """The layout of ``root`` (default: :func:`citysplat.config.data_root`)."""
        return cls(Path(data_root(root)))

    @property
    def catalog_path(self) -> Path:
        return self.root / CATALOG_FILE

    @property
    def images_dir(self) -> Path:
        return self.root / "images"

    @property
    def partial_dir(self) -> Path:
        """Downloads under way (renamed into place once verified)."""
        return self.images_dir / PARTIAL_DIR

    @staticmethod
    def relative_image_path(image_id: str) -> str:
        """``images/<id[:2]>/<id>.jpg``: where an image is stored, relative to the root
        (POSIX separators; the catalog records this). ValueError for an id that is not
        ASCII letters and digits (it would name another path)."""
        image_id = str(image_id)
        if not (image_id.isascii() and image_id.isalnum()):
            raise ValueError(f"image id {image_id!r} is not alphanumeric")
        return f"images/{image_id[:2]}/{image_file_name(image_id)}"

    def image_path(self, image_id: str) -> Path:
        return self.root / self.relative_image_path(image_id)

    @property
    def reports_dir(self) -> Path:
        return self.root / "reports"

    @property
    def coverage_png(self) -> Path:
        return self.reports_dir / "coverage.png"

    @property
    def districts_png(self) -> Path:
        return self.reports_dir / "districts.png"

    @property
    def sample_city_map_png(self) -> Path:
        return self.reports_dir / "sample_city_map.png"

    @property
    def districts_dir(self) -> Path:
        return self.root / "districts"

    @property
    def districts_index(self) -> Path:
        """``districts/index.json``: the current set of districts."""
        return self.districts_dir / "index.json"

    def district(self, name: str) -> DistrictLayout:
        """The layout of district ``name`` (the name is checked to be a safe folder name)."""
        return DistrictLayout(dir=self.districts_dir / check_district_name(name), name=name)

    def district_names(self) -> list[str]:
        """The current districts: those of ``districts/index.json`` that are on disk, or,
        before any index was written, every district folder, sorted."""
        if self.districts_index.is_file():
            names = json.loads(self.districts_index.read_text()).get("districts", [])
            return [n for n in names if isinstance(n, str) and folder_name_problem(n) is None
                    and self.district(n).exists()]
        if not self.districts_dir.is_dir():
            return []
        return sorted(p.parent.name for p in self.districts_dir.glob("*/district.geojson")
                      if folder_name_problem(p.parent.name) is None)
