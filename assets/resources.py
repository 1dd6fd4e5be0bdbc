"""Configurable resources: where data lives, and how to reach Mapillary."""


from pathlib import Path

import dagster as dg

from citysplat.config import data_root


class CitysplatStorage(dg.ConfigurableResource):
    """The data root (``CITYSPLAT_HOME``, default ``./citysplat-data``) and the render cache."""

    root: str | None = None
    cache_dir: str | None = None

    def root_path(self) -> Path:
        return data_root(self.root)

    def cache_path(self) -> Path | None:
        return Path(self.cache_dir) if self.cache_dir else None


class MapillaryApi(dg.ConfigurableResource):
    """Where the Mapillary API v4 is, and the token (read from the environment, never logged).

    Defaults are Mapillary's production endpoints; point both URLs at the fixture server
    (``citysplat fixture serve``) to work offline.
    """

    graph_url: str = "https://graph.mapillary.com"
    tiles_url: str = "https://tiles.mapillary.com/maps/vtp"
    access_token: str | None = None
