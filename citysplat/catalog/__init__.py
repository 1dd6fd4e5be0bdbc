"""The catalog: one DuckDB file (``<data root>/catalog.duckdb``) of what is known about a city.

Tables
------
``images``          one row per image entity, every field typed (positions as lon/lat DOUBLEs,
                    ``captured_at`` TIMESTAMPTZ plus ``captured_at_ms``, lists as DOUBLE[]), the
                    z14 tile of ``geometry`` and of ``computed_geometry``, a z-order
                    ``spatial_key`` the rows are physically ordered by, ``content_hash``,
                    ``first_seen_at`` and ``updated_at``. Thumbnail URLs are never stored (they
                    expire, and nothing secret goes in the catalog).
``sequences``       derived from ``images`` (refreshed for the sequences an upsert touched).
``tiles``           the last fetch of each coverage tile (tileset, z, x, y): status, time,
                    error, and the count / hash / time of its last *good* listing.
``tile_listings``   the image ids each tile listed at its last good fetch (a failed fetch keeps
                    the previous good listing).
``downloads``       per image: 'done' or 'failed', path relative to the data root, size, sha256.
``districts``, ``district_images``   filled by the geofence stage.

The single-writer rule
----------------------
DuckDB lets one process open a file read-write, or many open it read-only, never both. So:

* one process writes: the ingest run, or the Dagster catalog asset, whose writers share a
  concurrency pool of size 1;
* sensors, reports and the webserver open the catalog read-only (:func:`read_only_snapshot` /
  :meth:`Catalog.open_read_only`) and close it quickly: an open reader keeps the writer out;
* per-district artifacts (sparse models, splats, meshes) go to files under
  ``districts/<name>/``, never into the catalog.

Opening a locked file raises :class:`CatalogLockedError` ("catalog.duckdb is being written by
another process ..."); pass ``wait_s`` to retry for a while first.

Upserts are idempotent and bulk: a batch becomes one DataFrame, DuckDB types it, hashes each
row's canonical JSON (the normalised entity in API v4 shape, keys sorted, without URLs) and runs
one ``INSERT ... ON CONFLICT DO UPDATE ... WHERE content_hash differs`` over the rows that are
new or changed; unchanged rows are not touched. New rows go in ordered by ``spatial_key`` (a
Hilbert index of the position), so DuckDB's zonemaps let a district query skip most of the
table; after a large bulk load in arbitrary order, :meth:`Catalog.optimize` re-sorts the whole
table once.
"""

from citysplat.catalog.normalize import spatial_key, tile_xy
from citysplat.catalog.store import (
    Catalog,
    CatalogFileError,
    CatalogLockedError,
    UpsertStats,
    as_geometry,
    default_catalog_path,
    read_only_snapshot,
    row_to_entity,
)

__all__ = [
    "Catalog",
    "CatalogFileError",
    "CatalogLockedError",
    "UpsertStats",
    "as_geometry",
    "default_catalog_path",
    "read_only_snapshot",
    "row_to_entity",
    "spatial_key",
    "tile_xy",
]
