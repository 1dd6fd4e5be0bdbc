"""Agents a navmesh is built for: Recast-like size, climb, slope and voxel settings.

Recast's demo defaults (radius 0.6 m, height 2.0 m, climb 0.9 m, slope 45 deg, cell 0.3 m,
cell height 0.2 m) describe a game character that vaults waist-high ledges. A street navmesh
needs real people and real cars, so the presets below are tighter: a person steps up a kerb but
not a wall, and a car does not mount the kerb at all, which keeps road and sidewalk apart.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, fields
from types import MappingProxyType
from typing import Any

__all__ = ["AgentConfig", "agent_preset", "AGENT_PRESETS"]

_NUMBER_RULES: dict[str, tuple[str, Any]] = {
    "radius": ("a finite number >= 0 (metres)", lambda v: v >= 0),
    "height": ("a finite number > 0 (metres)", lambda v: v > 0),
    "max_climb": ("a finite number >= 0 (metres)", lambda v: v >= 0),
    "max_slope_deg": ("a number of degrees in 0..90 (90 excluded)", lambda v: 0 <= v < 90),
    "cell_size": ("a finite number > 0 (metres)", lambda v: v > 0),
    "cell_height": ("a finite number > 0 (metres)", lambda v: v > 0),
}


@dataclass(frozen=True)
class AgentConfig:
    """One kind of agent, in metres and degrees, as Recast's ``rcConfig`` describes it.

    ``radius`` erodes the walkable area away from walls, ``height`` is the clearance needed,
    ``max_climb`` the highest step walked up (a higher step between two areas separates them),
    ``max_slope_deg`` the steepest walkable ground, ``cell_size`` / ``cell_height`` the voxel
    size (the navmesh builder simplifies outlines by about half a cell).
    """

    name: str
    radius: float
    height: float
    max_climb: float
    max_slope_deg: float
    cell_size: float
    cell_height: float

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ValueError(f"AgentConfig name {self.name!r} is not allowed: give a non-empty "
                             "string such as 'pedestrian'")
        for field_name, (allowed, ok) in _NUMBER_RULES.items():
            value = getattr(self, field_name)
            valid_number = (isinstance(value, numbers.Real) and not isinstance(value, bool)
                            and math.isfinite(value))
            if not valid_number or not ok(value):
                raise ValueError(f"AgentConfig {self.name!r}: {field_name}={value!r} is not "
                                 f"allowed: it must be {allowed}")

    @classmethod
    def pedestrian(cls) -> AgentConfig:
        """A person on foot.

        radius 0.4 m: half a person's shoulder width (about 0.25 m) plus a margin (Recast demo:
        0.6 m); height 2.0 m (as Recast); max_climb 0.25 m: kerbs (about 15 cm) and single steps,
        where Recast's 0.9 m is a game character that vaults; max_slope 30 deg: the steepest
        streets (San Francisco's 31.5 % grade is 17.5 deg) and ramps, where Recast allows 45;
        cell 0.2 m and cell height 0.05 m: fine enough to resolve a kerb and a pole
        (Recast: 0.3 m and 0.2 m).
        """
        return cls("pedestrian", radius=0.4, height=2.0, max_climb=0.25, max_slope_deg=30.0,
                   cell_size=0.2, cell_height=0.05)

    @classmethod
    def vehicle(cls) -> AgentConfig:
        """A car.

        radius 1.0 m: half a car's width (Recast demo: 0.6 m); height 2.0 m (as Recast);
        max_climb 0.10 m: a car does not mount a 15 cm kerb, so the kerb separates road from
        sidewalk (Recast: 0.9 m); max_slope 20 deg: steeper than any public road (Recast: 45);
        cell 0.3 m (as Recast) and cell height 0.05 m to tell a kerb from a road bump
        (Recast: 0.2 m).
        """
        return cls("vehicle", radius=1.0, height=2.0, max_climb=0.10, max_slope_deg=20.0,
                   cell_size=0.3, cell_height=0.05)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AgentConfig:
        """The inverse of :meth:`to_dict`; unknown or missing keys are a ValueError."""
        names = [f.name for f in fields(cls)]
        unknown = sorted(set(data) - set(names))
        missing = [n for n in names if n not in data]
        if unknown or missing:
            raise ValueError(f"AgentConfig data has unknown keys {unknown} and lacks {missing}: "
                             f"it needs exactly {names}")
        return cls(**{n: data[n] for n in names})


AGENT_PRESETS: Mapping[str, Callable[[], AgentConfig]] = MappingProxyType(
    {"pedestrian": AgentConfig.pedestrian, "vehicle": AgentConfig.vehicle})


def agent_preset(name: str) -> AgentConfig:
    """The preset agent called ``name`` ('pedestrian' or 'vehicle')."""
    try:
        return AGENT_PRESETS[name]()
    except (KeyError, TypeError):
        raise ValueError(f"no agent preset named {name!r}: choose one of "
                         f"{sorted(AGENT_PRESETS)} or build an AgentConfig") from None
