"""Mapillary API v4: configuration, an async client with retries and rate limits, and area
enumeration through the z14 coverage tiles."""

from citysplat.mapillary.area import (
    CATALOG_FIELDS,
    TILESETS,
    Area,
    AreaScan,
    ImageLayer,
    TileImage,
    TileResult,
    decode_image_layer,
    entities_for,
    enumerate_area,
    polygon_from_geojson,
    rescan_failed,
    scan_tiles,
    validate_bbox,
)
from citysplat.mapillary.client import MapillaryClient, RequestStats
from citysplat.mapillary.config import MapillaryConfig, RateLimit
from citysplat.mapillary.errors import (
    ApiError,
    AuthError,
    FieldRejectedError,
    MapillaryError,
    MissingTokenError,
    NetworkError,
    NotFoundError,
    RateLimitError,
    TransientError,
    UrlExpiredError,
)

__all__ = [
    "CATALOG_FIELDS",
    "TILESETS",
    "ApiError",
    "Area",
    "AreaScan",
    "AuthError",
    "FieldRejectedError",
    "MapillaryClient",
    "MapillaryConfig",
    "MapillaryError",
    "MissingTokenError",
    "NetworkError",
    "NotFoundError",
    "RateLimit",
    "RateLimitError",
    "RequestStats",
    "ImageLayer",
    "TileImage",
    "TileResult",
    "TransientError",
    "UrlExpiredError",
    "decode_image_layer",
    "entities_for",
    "enumerate_area",
    "polygon_from_geojson",
    "rescan_failed",
    "scan_tiles",
    "validate_bbox",
]
