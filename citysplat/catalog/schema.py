"""The catalog's tables (DuckDB DDL). Bump :data:`SCHEMA_VERSION` when a table changes."""

from __future__ import annotations

SCHEMA_VERSION = 1

IMAGE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("id", "VARCHAR NOT NULL PRIMARY KEY"),      # Mapillary image id (numeric string)
    ("sequence_id", "VARCHAR"),                  # entity field "sequence"
    ("captured_at", "TIMESTAMPTZ"),
    ("captured_at_ms", "BIGINT"),                # as served: ms since the epoch
    ("lon", "DOUBLE"),                           # geometry (the uploaded GPS position)
    ("lat", "DOUBLE"),
    ("computed_lon", "DOUBLE"),                  # computed_geometry (Mapillary's SfM), may be NULL
    ("computed_lat", "DOUBLE"),
    ("altitude", "DOUBLE"),
    ("computed_altitude", "DOUBLE"),
    ("compass_angle", "DOUBLE"),
    ("computed_compass_angle", "DOUBLE"),
    ("computed_rotation", "DOUBLE[]"),           # angle-axis, world to camera
    ("camera_type", "VARCHAR"),
    ("camera_parameters", "DOUBLE[]"),           # OpenSfM convention (focal/max side, k1, k2)
    ("make", "VARCHAR"),
    ("model", "VARCHAR"),
    ("width", "INTEGER"),
    ("height", "INTEGER"),
    ("is_pano", "BOOLEAN"),
    ("exif_orientation", "INTEGER"),
    ("creator_id", "VARCHAR"),
    ("creator_username", "VARCHAR"),
    ("organization_id", "VARCHAR"),
    ("extra", "VARCHAR"),                        # JSON of any other entity field (never URLs)
    ("tile_x", "INTEGER"),                       # z14 tile of geometry
    ("tile_y", "INTEGER"),
    ("computed_tile_x", "INTEGER"),              # z14 tile of computed_geometry
    ("computed_tile_y", "INTEGER"),
    ("pos_lon", "DOUBLE"),                       # the best position: computed where known,
    ("pos_lat", "DOUBLE"),                       # else geometry (what spatial queries test)
    ("spatial_key", "BIGINT"),                   # Hilbert index of pos: the physical order
    ("content_hash", "VARCHAR NOT NULL"),        # md5 of the normalised entity's canonical JSON
    ("first_seen_at", "TIMESTAMPTZ NOT NULL"),
    ("updated_at", "TIMESTAMPTZ NOT NULL"),      # last time the content changed
)

IMAGE_COLUMN_NAMES: tuple[str, ...] = tuple(name for name, _ in IMAGE_COLUMNS)


def images_ddl(table: str = "images") -> str:
    """``CREATE TABLE`` for the images table (under another name for a rewrite)."""
    cols = ",\n    ".join(f"{name} {kind}" for name, kind in IMAGE_COLUMNS)
    return f"CREATE TABLE IF NOT EXISTS {table} (\n    {cols}\n)"


DDL: tuple[str, ...] = (
    """CREATE TABLE IF NOT EXISTS catalog_meta (
        key VARCHAR PRIMARY KEY, value VARCHAR)""",
    images_ddl(),
    """CREATE TABLE IF NOT EXISTS sequences (
        id VARCHAR NOT NULL PRIMARY KEY,
        image_count INTEGER,
        first_captured_at TIMESTAMPTZ,
        last_captured_at TIMESTAMPTZ,
        is_pano BOOLEAN,
        creator_id VARCHAR,
        creator_username VARCHAR,
        updated_at TIMESTAMPTZ)""",
    """CREATE TABLE IF NOT EXISTS tiles (
        tileset VARCHAR NOT NULL,
        z INTEGER NOT NULL,
        x INTEGER NOT NULL,
        y INTEGER NOT NULL,
        status VARCHAR NOT NULL CHECK (status IN ('ok', 'failed')),  -- of the last fetch
        fetched_at TIMESTAMPTZ,                                     -- of the last fetch
        image_count INTEGER,             -- of the last good listing (kept when a fetch fails)
        content_sha256 VARCHAR,          -- of the last good listing
        error VARCHAR,                   -- of the last fetch, NULL when it succeeded
        last_ok_at TIMESTAMPTZ,          -- NULL: never listed successfully (a hole)
        PRIMARY KEY (tileset, z, x, y))""",
    """CREATE TABLE IF NOT EXISTS tile_listings (
        tileset VARCHAR NOT NULL,
        z INTEGER NOT NULL,
        x INTEGER NOT NULL,
        y INTEGER NOT NULL,
        image_id VARCHAR NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS downloads (
        image_id VARCHAR NOT NULL PRIMARY KEY,
        state VARCHAR NOT NULL CHECK (state IN ('done', 'failed')),
        path VARCHAR,                    -- relative to the data root
        size_label VARCHAR,
        bytes BIGINT,
        sha256 VARCHAR,
        error VARCHAR,
        updated_at TIMESTAMPTZ)""",
    """CREATE TABLE IF NOT EXISTS districts (
        name VARCHAR NOT NULL PRIMARY KEY,
        geometry VARCHAR NOT NULL,       -- GeoJSON geometry, lon/lat
        created_at TIMESTAMPTZ)""",
    """CREATE TABLE IF NOT EXISTS rejected (
        source VARCHAR NOT NULL,         -- 'entity' (the Graph API) or 'tile z/x/y'
        record VARCHAR NOT NULL,         -- the record's id as served (printable, shortened)
        reason VARCHAR NOT NULL,
        seen_at TIMESTAMPTZ,
        PRIMARY KEY (source, record))""",
    """CREATE TABLE IF NOT EXISTS district_images (
        name VARCHAR NOT NULL,
        image_id VARCHAR NOT NULL)""",
)
