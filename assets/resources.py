"""Configurable resources: where data lives, which area, and how to reach Mapillary."""

from pathlib import Path
from typing import Optional

import dagster as dg

from citysplat.config import data_root
from citysplat.layout import DataLayout


class CitysplatStorage(dg.ConfigurableResource):
    """The data root (``CITYSPLAT_HOME``, default ``./citysplat-data``) and the render cache."""

    root: Optional[str] = None
    cache_dir: Optional[str] = None

    def root_path(self) -> Path:
        return data_root(self.root)

    def catalog_path(self) -> Path:
        return DataLayout(self.root_path()).catalog_path

    def cache_path(self) -> Optional[Path]:
        return Path(self.cache_dir) if self.cache_dir else None


class MapillaryApi(dg.ConfigurableResource):
    """Where the Mapillary API v4 is, and the token (from the environment, never logged).

    Defaults are Mapillary's production endpoints; point both URLs at the fixture server
    (``citysplat fixture serve``) to work offline.
    """

    graph_url: str = "https://graph.mapillary.com"
    tiles_url: str = "https://tiles.mapillary.com/maps/vtp"
    access_token: Optional[str] = None
    max_attempts: int = 6  # tries per request before a tile counts as failed

    def config(self):
        """The SDK's :class:`~citysplat.mapillary.MapillaryConfig` (raises a clear
        ``dg.Failure`` when no token is configured)."""
        from citysplat.mapillary import MapillaryConfig, MissingTokenError

        try:
            return MapillaryConfig.from_env(
                token=self.access_token, graph_url=self.graph_url, tiles_url=self.tiles_url,
                max_attempts=self.max_attempts)
        except MissingTokenError as exc:
            raise dg.Failure(description=str(exc)) from None


class IngestArea(dg.ConfigurableResource):
    """The area this deployment ingests: a bbox ``W,S,E,N`` or a GeoJSON file of polygons."""

    bbox: Optional[str] = None
    geojson: Optional[str] = None
    max_tiles: int = 25_000
    """Refuse areas of more z14 coverage tiles than this (0: no cap)."""

    def cap(self) -> Optional[int]:
        """The tile cap for ``ingest_area`` (None: no cap)."""
        return self.max_tiles or None

    def area(self):
        """The SDK :class:`~citysplat.mapillary.Area` (a clear ``dg.Failure`` if unset/bad)."""
        from citysplat.mapillary import Area

        try:
            if self.geojson:
                area = Area.from_geojson(self.geojson, name=Path(self.geojson).stem)
            elif self.bbox:
                area = Area.from_bbox([float(v) for v in self.bbox.split(",")])
            else:
                area = None
            if area is not None:
                area.check_size(self.cap())
                return area
        except (ValueError, OSError) as exc:
            raise dg.Failure(description=f"ingest area: {exc}") from None
        raise dg.Failure(description="no ingest area: set CITYSPLAT_AREA_BBOX (W,S,E,N) or "
                         "CITYSPLAT_AREA_GEOJSON, or configure the 'area' resource")
