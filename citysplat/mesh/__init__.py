"""Navmesh-ready meshes of a district, in its ENU frame: a surface from the splat's depth
(TSDF fusion), where agents can stand (road and sidewalk, split by the kerb), and navmeshes
with path queries.

Modules, one step each: :mod:`.depth` (depth maps of a splat), :mod:`.fusion` (TSDF),
:mod:`.surface` (floaters, decimation), :mod:`.heightfield` (the walkable floor),
:mod:`.walkable` (areas by kind), :mod:`.agent` (Recast-like agents), :mod:`.navmesh` (the
builder), :mod:`.path` (A* / Polyanya and string pulling), :mod:`.shortest` (exact shortest
paths, for scoring), :mod:`.gltf` (glTF / OBJ), :mod:`.outputs` and :mod:`.plots` (files),
:mod:`.quality` (figures), :mod:`.stage` (the orchestration).
"""

from citysplat.mesh.agent import AgentConfig
from citysplat.mesh.navmesh import NavMesh, build_navmesh
from citysplat.mesh.path import NavPath, NoPathError, find_path

__all__ = ["AgentConfig", "NavMesh", "NavPath", "NoPathError", "build_navmesh", "find_path"]
