"""A district as a simulation loads it: ``from citysplat.scene import CityScene``."""

from citysplat.sim.scene import CityScene, SceneError

__all__ = ["CityScene", "SceneError"]
