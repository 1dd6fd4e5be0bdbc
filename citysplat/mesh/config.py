"""Settings of the mesh stage, one dataclass: depth rendering, fusion, cleaning, agents."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from citysplat.mesh.agent import AgentConfig
from citysplat.mesh.depth import DepthFilter
from citysplat.mesh.fusion import FusionSettings


class MeshConfigError(ValueError):
    """A mesh setting is out of range."""


@dataclass(frozen=True)
class MeshConfig:
    """Everything the mesh stage depends on (saved in ``mesh/metrics.json``)."""

    max_side: int = 320  # depth maps: the longer image side, pixels
    backend: str = "auto"  # the rasterizer rendering depths (auto: gsplat on CUDA, else torch)
    depth: DepthFilter = field(default_factory=DepthFilter)
    fusion: FusionSettings = field(default_factory=FusionSettings)
    min_component_triangles: int = 50  # smaller connected pieces are floaters
    surface_triangles: int = 400_000  # budget of surface.glb
    collision_triangles: int = 40_000  # budget of collision.glb
    margin: float = 8.0  # metres of ground mapped beyond the cameras' extent
    vehicle_speed: float = 3.0  # m/s: sequences faster than this were driven (road seeds)
    pedestrian: AgentConfig = field(default_factory=AgentConfig.pedestrian)
    vehicle: AgentConfig = field(default_factory=AgentConfig.vehicle)

    def __post_init__(self) -> None:
        problems = []
        if self.max_side < 16:
            problems.append(f"max_side={self.max_side} (at least 16 pixels)")
        if self.backend not in ("auto", "gsplat", "torch"):
            problems.append(f"backend={self.backend!r} (auto, gsplat or torch)")
        if not 0.005 <= self.fusion.voxel_size <= 1.0:
            problems.append(f"voxel_size={self.fusion.voxel_size} (0.005 to 1 metre)")
        if self.surface_triangles < 100 or self.collision_triangles < 100:
            problems.append("triangle budgets below 100")
        if self.margin < 0:
            problems.append(f"margin={self.margin} (metres, at least 0)")
        if problems:
            raise MeshConfigError("mesh settings out of range: " + "; ".join(problems))

    @classmethod
    def from_options(cls, voxel_size: float = 0.05, max_side: int = 320,
                     backend: str = "auto") -> MeshConfig:
        """The settings the CLI and the Dagster asset expose, the rest at their defaults
        (raises :class:`MeshConfigError` naming any value out of range)."""
        return cls(max_side=max_side, backend=backend,
                   fusion=FusionSettings(voxel_size=voxel_size))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
