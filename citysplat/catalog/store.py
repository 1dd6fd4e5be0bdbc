"""The :class:`Catalog`: one DuckDB file holding what is known about a city's imagery.

See the package docstring (:mod:`citysplat.catalog`) for the single-writer rule.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import shapely
from shapely.geometry import mapping as shapely_mapping
from shapely.geometry import shape as shapely_shape
from shapely.geometry.base import BaseGeometry

from citysplat.catalog.normalize import dedupe_last, staging_frame
from citysplat.catalog.schema import DDL, IMAGE_COLUMN_NAMES, SCHEMA_VERSION, images_ddl
from citysplat.catalog.validate import (
    Rejection,
    row_problems,
    screen_entities,
    text_checks_sql,
    text_problems,
)
from citysplat.failures import UserFacingError
from citysplat.layout import DataLayout

DEFAULT_BATCH = 200_000
TILE_STATUSES = ("ok", "failed")
DOWNLOAD_STATES = ("done", "failed")


class CatalogFileError(UserFacingError):
    """``catalog.duckdb`` is not a usable catalog: a folder, or a file DuckDB cannot open."""


class CatalogLockedError(RuntimeError):
    """The catalog file is locked by another process (a writer, or readers blocking a writer)."""

    def __init__(self, path: Path, read_only: bool, detail: str) -> None:
        msg = (f"{path.name} is being written by another process (ingest or a Dagster run); "
               + ("wait for it and retry (readers should open it briefly)" if read_only
                  else "wait for it, or open read-only"))
        super().__init__(msg)
        self.path = path
        self.read_only = read_only
        self.detail = detail


@dataclass(frozen=True)
class UpsertStats:
    """What an upsert did: new rows, rows whose content changed, rows left as they were, and
    the records rejected at the catalog's door (kept in the ``rejected`` table; up to
    :data:`MAX_REJECTION_EXAMPLES` of them in ``rejections``)."""

    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    rejections: tuple[Rejection, ...] = ()

    @property
    def total(self) -> int:
        return self.inserted + self.updated + self.unchanged

    def __add__(self, other: UpsertStats) -> UpsertStats:
        return UpsertStats(self.inserted + other.inserted, self.updated + other.updated,
                           self.unchanged + other.unchanged, self.rejected + other.rejected,
                           (self.rejections + other.rejections)[:MAX_REJECTION_EXAMPLES])


MAX_REJECTION_EXAMPLES = 100


def _batches(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _unregister(con: duckdb.DuckDBPyConnection, name: str) -> None:
    """Unregister a DataFrame view, quietly when the transaction has already failed (so the
    error that failed it is the one that reaches the caller)."""
    try:
        con.unregister(name)
    except duckdb.Error:
        pass


def _prepare(batch: Sequence[Any]) -> tuple[pd.DataFrame, dict[str, int], list[Rejection]]:
    """The batch's staging frame (valid rows only), list widths, and its rejected records."""
    entities, rejected = screen_entities(batch)
    if not entities:
        return pd.DataFrame(), {}, rejected
    frame, widths = staging_frame(dedupe_last(entities))
    reasons = row_problems(frame)
    bad = reasons != None  # noqa: E711 - elementwise
    if bad.any():
        rejected += [Rejection("entity", i, r) for i, r in zip(frame["id"][bad], reasons[bad])]
        frame = frame[~bad].reset_index(drop=True)
    return frame, widths, rejected


def default_catalog_path(root: str | Path | None = None) -> Path:
    """The catalog of the data root ``root`` (default: ``CITYSPLAT_HOME``)."""
    return DataLayout.at(root).catalog_path


def _field(obj: Any, name: str, default: Any = None) -> Any:
    """An attribute of a result object, or a key of a mapping."""
    if isinstance(obj, Mapping):
        return obj.get(name, default)
    return getattr(obj, name, default)


def _utc(ts: datetime | None) -> datetime | None:
    if ts is None:
        return None
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts


def as_geometry(geometry: Any) -> BaseGeometry:
    """A shapely geometry from shapely, a GeoJSON geometry / Feature (dict) or its JSON text."""
    if isinstance(geometry, BaseGeometry):
        return geometry
    if isinstance(geometry, (str, bytes)):
        geometry = json.loads(geometry)
    if isinstance(geometry, Mapping):
        if geometry.get("type") == "Feature":
            geometry = geometry["geometry"]
        return shapely_shape(geometry)
    raise TypeError(f"not a geometry: {type(geometry).__name__}")


def _geojson_text(geometry: Any) -> str:
    return json.dumps(shapely_mapping(as_geometry(geometry)), separators=(",", ":"))


def _list_sql(prefix: str, width: int) -> str:
    if width == 0:
        return f"CASE WHEN {prefix}_n IS NULL THEN NULL ELSE []::DOUBLE[] END"
    items = ", ".join(f"CAST({prefix}{j} AS DOUBLE)" for j in range(width))
    return (f"CASE WHEN {prefix}_n IS NULL THEN NULL "
            f"ELSE list_slice([{items}], 1, CAST({prefix}_n AS BIGINT)) END")


def _position_sql(lon: str, lat: str) -> str:
    return f"CASE WHEN {lon} IS NULL OR {lat} IS NULL THEN NULL ELSE [{lon}, {lat}] END"


# The canonical form of an entity: the normalised fields in API v4 shape, keys sorted, as DuckDB's
# to_json writes them (shortest round-trip floats). Thumbnail URLs are not part of it.
_CANONICAL_JSON = f"""to_json(struct_pack(
    altitude := altitude,
    camera_parameters := camera_parameters,
    camera_type := camera_type,
    captured_at := captured_at_ms,
    compass_angle := compass_angle,
    computed_altitude := computed_altitude,
    computed_compass_angle := computed_compass_angle,
    computed_geometry := {_position_sql("computed_lon", "computed_lat")},
    computed_rotation := computed_rotation,
    creator := struct_pack(id := creator_id, username := creator_username),
    exif_orientation := exif_orientation,
    extra := extra,
    geometry := {_position_sql("lon", "lat")},
    height := height,
    id := id,
    is_pano := is_pano,
    make := make,
    model := model,
    organization_id := organization_id,
    sequence := sequence_id,
    width := width))"""

_STAGED = tuple(c for c in IMAGE_COLUMN_NAMES if c not in ("first_seen_at", "updated_at"))
_UPDATE_SET = ", ".join(f"{c} = excluded.{c}" for c in IMAGE_COLUMN_NAMES
                        if c not in ("id", "first_seen_at"))


def _stage_sql(widths: Mapping[str, int]) -> str:
    def ints(c: str) -> str:
        return f"CAST({c} AS INTEGER) AS {c}"

    typed = ",\n        ".join([
        "CAST(id AS VARCHAR) AS id",
        "CAST(sequence_id AS VARCHAR) AS sequence_id",
        "CAST(captured_at_ms AS BIGINT) AS captured_at_ms",
        *(f"CAST({c} AS DOUBLE) AS {c}" for c in (
            "lon", "lat", "computed_lon", "computed_lat", "altitude", "computed_altitude",
            "compass_angle", "computed_compass_angle")),
        f"{_list_sql('rot', widths['rot'])} AS computed_rotation",
        "CAST(camera_type AS VARCHAR) AS camera_type",
        f"{_list_sql('cp', widths['cp'])} AS camera_parameters",
        "CAST(make AS VARCHAR) AS make",
        "CAST(model AS VARCHAR) AS model",
        ints("width"), ints("height"),
        "CAST(is_pano AS BOOLEAN) AS is_pano",
        ints("exif_orientation"),
        "CAST(creator_id AS VARCHAR) AS creator_id",
        "CAST(creator_username AS VARCHAR) AS creator_username",
        "CAST(organization_id AS VARCHAR) AS organization_id",
        "CAST(extra AS VARCHAR) AS extra",
        ints("tile_x"), ints("tile_y"), ints("computed_tile_x"), ints("computed_tile_y"),
        "CAST(pos_lon AS DOUBLE) AS pos_lon", "CAST(pos_lat AS DOUBLE) AS pos_lat",
        "CAST(spatial_key AS BIGINT) AS spatial_key",
    ])
    outer = [c for c in _STAGED if c not in ("captured_at", "content_hash")]
    return f"""CREATE OR REPLACE TEMP TABLE _stage AS
    WITH typed AS (SELECT
        {typed}
        FROM _stage_df)
    SELECT id, sequence_id, epoch_ms(captured_at_ms) AT TIME ZONE 'UTC' AS captured_at,
        {", ".join(c for c in outer if c not in ("id", "sequence_id"))},
        md5({_CANONICAL_JSON}) AS content_hash,
        {text_checks_sql()} AS reject_reason
    FROM typed"""


class Catalog:
    """The DuckDB catalog of one city's imagery (``<data root>/catalog.duckdb``).

    Use it as a context manager so the file lock is held only as long as needed::

        with Catalog(path) as cat:               # the one writer
            cat.upsert_images(entities)
        with Catalog(path, read_only=True) as cat:   # sensors, reports: open briefly
            cat.counts()

    ``wait_s`` retries for that long while another process holds the lock, then raises
    :class:`CatalogLockedError`.
    """

    def __init__(self, path: str | Path | None = None, read_only: bool = False,
                 wait_s: float = 0.0) -> None:
        self.path = Path(path) if path is not None else default_catalog_path()
        self.read_only = read_only
        self.root = self.path.parent
        self._lock = threading.RLock()
        self._con = self._connect(wait_s)
        try:
            self._con.execute("SET TimeZone = 'UTC'")
            self._entity_rejections = False
            if not read_only:
                self._create_schema()
                self._entity_rejections = bool(self._con.execute(
                    "SELECT count(*) FROM rejected WHERE source = 'entity'").fetchall()[0][0])
        except BaseException:
            self._con.close()
            raise

    # -- opening ------------------------------------------------------------------------------
    def _connect(self, wait_s: float) -> duckdb.DuckDBPyConnection:
        if self.path.is_dir():
            raise CatalogFileError(
                f"{self.path} is a folder, not a catalog file: move it aside, or choose another "
                "data root (CITYSPLAT_HOME or --home)")
        if self.read_only and not self.path.exists():
            raise FileNotFoundError(f"no catalog at {self.path} (nothing ingested yet?)")
        if not self.read_only:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + max(0.0, wait_s)
        delay = 0.05
        while True:
            try:
                return duckdb.connect(str(self.path), read_only=self.read_only)
            except (duckdb.IOException, duckdb.ConnectionException) as exc:
                text = str(exc)
                if "not a valid DuckDB database" in text or "Corrupt" in text:
                    raise CatalogFileError(
                        f"{self.path} is not a DuckDB catalog (damaged, or another file): move "
                        "it aside and run `citysplat ingest` again to rebuild it") from None
                locked = "lock" in text.lower() or "different configuration" in text
                if not locked:
                    raise
                if time.monotonic() >= deadline:
                    raise CatalogLockedError(self.path, self.read_only, text) from exc
                time.sleep(delay)
                delay = min(delay * 2, 1.0)

    @classmethod
    def open_read_only(cls, path: str | Path | None = None, wait_s: float = 0.0) -> Catalog:
        """A read-only catalog (close it soon: readers keep the writer out)."""
        return cls(path, read_only=True, wait_s=wait_s)

    def _create_schema(self) -> None:
        with self._transaction():
            for statement in DDL:
                self._con.execute(statement)
            self._con.execute(
                "INSERT INTO catalog_meta VALUES ('schema_version', ?) ON CONFLICT DO NOTHING",
                [str(SCHEMA_VERSION)])

    def close(self) -> None:
        """Close the connection (releases the file lock)."""
        with self._lock:
            if self._con is not None:
                self._con.close()
                self._con = None  # type: ignore[assignment]

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def con(self) -> duckdb.DuckDBPyConnection:
        """The DuckDB connection, for ad-hoc SQL (do not keep it beyond the catalog)."""
        if self._con is None:
            raise RuntimeError("the catalog is closed")
        return self._con

    def sql(self, query: str, params: Sequence[Any] | None = None) -> pd.DataFrame:
        """Run ``query`` and return the result as a DataFrame."""
        with self._lock:
            return self.con.execute(query, params or []).df()

    @contextmanager
    def _transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        with self._lock:
            con = self.con
            con.begin()
            try:
                yield con
            except BaseException:
                con.rollback()
                raise
            con.commit()

    def _writable(self) -> None:
        if self.read_only:
            raise PermissionError(f"{self.path.name} is open read-only")

    # -- images -------------------------------------------------------------------------------
    def upsert_images(self, entities: Iterable[Mapping[str, Any]],
                      batch_size: int = DEFAULT_BATCH, now: datetime | None = None
                      ) -> UpsertStats:
        """Insert new image entities and update those whose content changed (by content hash);
        unchanged rows keep their ``updated_at``. Entities are consumed in batches of
        ``batch_size``, each in one transaction, then the touched sequences are refreshed.
        An entity that fails :mod:`citysplat.catalog.validate` is not stored: it goes to the
        ``rejected`` table with its reason and is counted, and the rest of its batch goes on."""
        self._writable()
        now = _utc(now) or datetime.now(UTC)
        stats = UpsertStats()
        # the next batch is normalised (Python, holds the GIL) while DuckDB writes the current
        # one (releases the GIL): on two cores this overlaps the two halves of the work
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="catalog-stage") as pool:
            pending: Future | None = None
            for batch in _batches(entities, batch_size):
                prepared = pool.submit(_prepare, batch)
                if pending is not None:
                    stats += self._write_batch(*pending.result(), now)
                pending = prepared
            if pending is not None:
                stats += self._write_batch(*pending.result(), now)
        return stats

    def _write_batch(self, frame: pd.DataFrame, widths: Mapping[str, int],
                     rejected: list[Rejection], now: datetime) -> UpsertStats:
        try:
            return self._write_staged(frame, widths, rejected, now)
        except duckdb.InvalidInputException as exc:
            if "encode" not in str(exc):
                raise
        # text DuckDB cannot store (a lone surrogate from JSON): find it in Python, keep the rest
        reasons = text_problems(frame)
        bad = reasons != None  # noqa: E711 - elementwise
        rejected = rejected + [Rejection("entity", i, r)
                               for i, r in zip(frame["id"][bad], reasons[bad])]
        return self._write_staged(frame[~bad].reset_index(drop=True), widths, rejected, now)

    def _write_staged(self, frame: pd.DataFrame, widths: Mapping[str, int],
                      rejected: list[Rejection], now: datetime) -> UpsertStats:
        if frame.empty:
            self.record_rejections(rejected, now)
            return UpsertStats(rejected=len(rejected),
                               rejections=tuple(rejected[:MAX_REJECTION_EXAMPLES]))
        with self._transaction() as con:
            con.register("_stage_df", frame)
            try:
                con.execute(_stage_sql(widths))
            finally:
                _unregister(con, "_stage_df")
            refused = con.execute("SELECT id, reject_reason FROM _stage "
                                  "WHERE reject_reason IS NOT NULL").fetchall()
            if refused:  # text too long or with NUL characters (checked by DuckDB, at speed)
                con.execute("DELETE FROM _stage WHERE reject_reason IS NOT NULL")
                rejected = rejected + [Rejection("entity", i, r) for i, r in refused]
            self._store_rejections(con, rejected, now)
            if self._entity_rejections:  # an entity that is valid now is no longer rejected
                con.execute("DELETE FROM rejected WHERE source = 'entity' AND record IN "
                            "(SELECT id FROM _stage)")
            con.execute("""CREATE OR REPLACE TEMP TABLE _changes AS
                SELECT s.id, s.sequence_id, i.sequence_id AS old_sequence_id,
                       i.id IS NULL AS is_new
                FROM _stage s LEFT JOIN images i ON i.id = s.id
                WHERE i.id IS NULL OR i.content_hash <> s.content_hash""")
            inserted, changed = con.execute(
                "SELECT count(*) FILTER (WHERE is_new), count(*) FILTER (WHERE NOT is_new) "
                "FROM _changes").fetchone()
            cols = ", ".join(_STAGED)
            if inserted:
                # new ids cannot conflict (one writer, same transaction as _changes): a plain
                # insert, in spatial order so zonemaps prune bbox scans
                con.execute(f"""INSERT INTO images ({cols}, first_seen_at, updated_at)
                    SELECT {cols}, $now, $now FROM _stage
                    WHERE id IN (SELECT id FROM _changes WHERE is_new)
                    ORDER BY spatial_key, id""", {"now": now})
            if changed:
                con.execute(f"""INSERT INTO images ({cols}, first_seen_at, updated_at)
                    SELECT {cols}, $now, $now FROM _stage
                    WHERE id IN (SELECT id FROM _changes WHERE NOT is_new)
                    ON CONFLICT (id) DO UPDATE SET {_UPDATE_SET}
                    WHERE images.content_hash IS DISTINCT FROM excluded.content_hash""",
                            {"now": now})
            if inserted or changed:
                con.execute("""CREATE OR REPLACE TEMP TABLE _touched AS
                    SELECT DISTINCT sequence_id AS id FROM (
                        SELECT sequence_id FROM _changes UNION ALL
                        SELECT old_sequence_id FROM _changes) WHERE sequence_id IS NOT NULL""")
                self._refresh_sequences("WHERE sequence_id IN (SELECT id FROM _touched)", now)
                con.execute("""DELETE FROM sequences WHERE id IN (SELECT id FROM _touched)
                    AND id NOT IN (SELECT DISTINCT sequence_id FROM images
                                   WHERE sequence_id IN (SELECT id FROM _touched))""")
            con.execute("DROP TABLE IF EXISTS _stage")
            con.execute("DROP TABLE IF EXISTS _changes")
            con.execute("DROP TABLE IF EXISTS _touched")
        unchanged = len(frame) - len(refused) - int(inserted) - int(changed)
        return UpsertStats(int(inserted), int(changed), unchanged,
                           len(rejected), tuple(rejected[:MAX_REJECTION_EXAMPLES]))

    # -- rejected records ---------------------------------------------------------------------
    def record_rejections(self, rejections: Iterable[Rejection],
                          now: datetime | None = None) -> int:
        """Keep records that could not be catalogued aside with their reasons (the
        ``rejected`` table; the latest reason per source and record). Returns how many."""
        rows = list(rejections)
        if not rows:
            return 0
        self._writable()
        with self._transaction() as con:
            self._store_rejections(con, rows, _utc(now) or datetime.now(UTC))
        return len(rows)

    def _store_rejections(self, con: duckdb.DuckDBPyConnection, rows: Sequence[Rejection],
                          now: datetime) -> None:
        if not rows:
            return
        frame = pd.DataFrame(list(rows), columns=["source", "record", "reason"])
        self._entity_rejections |= bool((frame["source"] == "entity").any())
        frame = frame.drop_duplicates(["source", "record"], keep="last")
        frame["seen_at"] = pd.Timestamp(now)
        con.register("_rejected_df", frame)
        try:
            con.execute("""INSERT INTO rejected SELECT source, record, reason, seen_at
                FROM _rejected_df ON CONFLICT (source, record) DO UPDATE
                SET reason = excluded.reason, seen_at = excluded.seen_at""")
        finally:
            _unregister(con, "_rejected_df")

    def rejected(self) -> pd.DataFrame:
        """The rejected records: ``source, record, reason, seen_at``, newest first."""
        try:
            return self.sql("SELECT * FROM rejected ORDER BY seen_at DESC, source, record")
        except duckdb.CatalogException:  # a catalog from before the table, opened read-only
            return pd.DataFrame(columns=["source", "record", "reason", "seen_at"])

    def _refresh_sequences(self, where: str, now: datetime) -> None:
        self.con.execute(f"""INSERT INTO sequences
            SELECT sequence_id, count(*), min(captured_at), max(captured_at), bool_or(is_pano),
                   arg_min(creator_id, captured_at_ms), arg_min(creator_username, captured_at_ms),
                   $now
            FROM images {where} GROUP BY sequence_id HAVING sequence_id IS NOT NULL
            ON CONFLICT (id) DO UPDATE SET image_count = excluded.image_count,
                first_captured_at = excluded.first_captured_at,
                last_captured_at = excluded.last_captured_at, is_pano = excluded.is_pano,
                creator_id = excluded.creator_id, creator_username = excluded.creator_username,
                updated_at = excluded.updated_at""", {"now": now})

    def refresh_sequences(self) -> int:
        """Rebuild the whole ``sequences`` table from ``images`` (upserts keep it current on
        their own); returns the number of sequences."""
        self._writable()
        now = datetime.now(UTC)
        with self._transaction() as con:
            con.execute("DELETE FROM sequences")
            self._refresh_sequences("", now)
            return int(con.execute("SELECT count(*) FROM sequences").fetchone()[0])

    def optimize(self) -> None:
        """Rewrite ``images`` in spatial order (after many small upserts) and checkpoint, so
        bbox and district queries prune by zonemaps again."""
        self._writable()
        with self._transaction() as con:
            con.execute(images_ddl("_images_sorted"))
            cols = ", ".join(IMAGE_COLUMN_NAMES)
            con.execute(f"INSERT INTO _images_sorted SELECT {cols} FROM images "
                        "ORDER BY spatial_key, id")
            con.execute("DROP TABLE images")
            con.execute("ALTER TABLE _images_sorted RENAME TO images")
        with self._lock:
            self.con.execute("CHECKPOINT")

    def image_ids(self) -> set[str]:
        """Every image id in the catalog."""
        with self._lock:
            return {r[0] for r in self.con.execute("SELECT id FROM images").fetchall()}

    def images(self, ids: Iterable[str] | None = None) -> pd.DataFrame:
        """Rows of ``images`` (all, or those of ``ids``), ordered by id."""
        with self._lock:
            if ids is None:
                return self.con.execute("SELECT * FROM images ORDER BY id").df()
            frame = pd.DataFrame({"id": [str(i) for i in ids]})
            self.con.register("_ids_df", frame)
            try:
                return self.con.execute("SELECT * FROM images WHERE id IN "
                                        "(SELECT id FROM _ids_df) ORDER BY id").df()
            finally:
                self.con.unregister("_ids_df")

    def entities(self, ids: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """Image entities rebuilt in API v4 shape (fields that are NULL are left out, except
        ``organization_id``); the inverse of :meth:`upsert_images` up to thumbnail URLs."""
        return [row_to_entity(r) for r in self.images(ids).to_dict("records")]

    def images_in_bbox(self, w: float, s: float, e: float, n: float, computed: bool = True,
                       columns: Sequence[str] | None = None) -> pd.DataFrame:
        """Images whose position lies in the lon/lat box (edges included), ordered by id.

        ``computed=True`` tests ``pos_lon`` / ``pos_lat`` (``computed_geometry`` where the image
        has one, ``geometry`` otherwise); ``computed=False`` tests ``geometry``, and the frame's
        ``pos_lon`` / ``pos_lat`` are then ``lon`` / ``lat``. Columns: all of ``images``, or
        ``id``, ``columns`` and ``pos_lon`` / ``pos_lat``."""
        x, y = ("pos_lon", "pos_lat") if computed else ("lon", "lat")
        if columns is None:
            select = "*" if computed else "* REPLACE (lon AS pos_lon, lat AS pos_lat)"
        else:
            wanted = ["id", *(c for c in columns if c not in ("id", "pos_lon", "pos_lat"))]
            unknown = set(wanted) - set(IMAGE_COLUMN_NAMES)
            if unknown:
                raise ValueError(f"unknown image columns: {sorted(unknown)}")
            select = ", ".join([*dict.fromkeys(wanted), f"{x} AS pos_lon", f"{y} AS pos_lat"])
        query = (f"SELECT {select} FROM images "
                 f"WHERE {x} BETWEEN $w AND $e AND {y} BETWEEN $s AND $n")
        params = {"w": float(w), "s": float(s), "e": float(e), "n": float(n)}
        with self._lock:
            frame = self.con.execute(query, params).df()
        return frame.sort_values("id", ignore_index=True) if len(frame) > 1 else frame

    def images_in_polygon(self, geometry: Any, computed: bool = True,
                          columns: Sequence[str] | None = None) -> pd.DataFrame:
        """Images whose position lies in ``geometry`` (shapely or GeoJSON; boundary included):
        a bbox prefilter in SQL, then an exact vectorised shapely test. Same frame as
        :meth:`images_in_bbox`."""
        geom = as_geometry(geometry)
        if geom.is_empty:
            return self.images_in_bbox(1, 1, 0, 0, computed, columns)
        w, s, e, n = geom.bounds
        frame = self.images_in_bbox(w, s, e, n, computed, columns)
        if len(frame) == 0:
            return frame
        shapely.prepare(geom)
        inside = shapely.intersects_xy(geom, frame["pos_lon"].to_numpy(),
                                       frame["pos_lat"].to_numpy())
        return frame[inside].reset_index(drop=True)

    def sequences(self) -> pd.DataFrame:
        """The ``sequences`` table, ordered by id."""
        return self.sql("SELECT * FROM sequences ORDER BY id")

    # -- coverage tiles -----------------------------------------------------------------------
    def record_tiles(self, results: Iterable[Any]) -> int:
        """Record coverage-tile fetches. Each result has ``tileset, z, x, y, status`` ('ok' or
        'failed'), ``image_ids``, ``fetched_at``, ``content_sha256`` and ``error`` (attributes
        or keys). A good fetch replaces the tile's listing; a failed one only marks the tile
        (its last good listing, count and hash stay). Returns the number recorded."""
        self._writable()
        rows: list[tuple] = []
        listings: dict[tuple[str, int, int, int], list[str]] = {}
        for r in results:
            status = str(_field(r, "status"))
            if status not in TILE_STATUSES:
                raise ValueError(f"tile status must be one of {TILE_STATUSES}, not {status!r}")
            key = (str(_field(r, "tileset")), int(_field(r, "z")), int(_field(r, "x")),
                   int(_field(r, "y")))
            fetched = _utc(_field(r, "fetched_at")) or datetime.now(UTC)
            if status == "ok":
                ids = list(dict.fromkeys(str(i) for i in (_field(r, "image_ids") or ())))
                listings[key] = ids
                rows.append((*key, status, fetched, len(ids), _field(r, "content_sha256"),
                             None, fetched))
            else:
                rows.append((*key, status, fetched, None, None,
                             str(_field(r, "error") or "failed"), None))
        if not rows:
            return 0
        frame = pd.DataFrame(rows, columns=["tileset", "z", "x", "y", "status", "fetched_at",
                                            "image_count", "content_sha256", "error",
                                            "last_ok_at"])
        frame = frame.drop_duplicates(["tileset", "z", "x", "y"], keep="last")
        frame["image_count"] = frame["image_count"].astype("Int64")
        for c in ("fetched_at", "last_ok_at"):
            frame[c] = pd.to_datetime(frame[c], utc=True)
        listing_frame = pd.DataFrame(
            [(*k, i) for k, ids in listings.items() for i in ids],
            columns=["tileset", "z", "x", "y", "image_id"])
        ok_keys = pd.DataFrame(list(listings), columns=["tileset", "z", "x", "y"])
        with self._transaction() as con:
            con.register("_tiles_df", frame)
            con.register("_listing_df", listing_frame)
            con.register("_ok_df", ok_keys)
            try:
                con.execute("""INSERT INTO tiles
                    SELECT tileset, CAST(z AS INTEGER), CAST(x AS INTEGER), CAST(y AS INTEGER),
                           status, fetched_at, CAST(image_count AS INTEGER),
                           CAST(content_sha256 AS VARCHAR), CAST(error AS VARCHAR), last_ok_at
                    FROM _tiles_df
                    ON CONFLICT (tileset, z, x, y) DO UPDATE SET
                        status = excluded.status, fetched_at = excluded.fetched_at,
                        error = excluded.error,
                        image_count = CASE WHEN excluded.status = 'ok'
                            THEN excluded.image_count ELSE tiles.image_count END,
                        content_sha256 = CASE WHEN excluded.status = 'ok'
                            THEN excluded.content_sha256 ELSE tiles.content_sha256 END,
                        last_ok_at = CASE WHEN excluded.status = 'ok'
                            THEN excluded.last_ok_at ELSE tiles.last_ok_at END""")
                if len(ok_keys):
                    con.execute("""DELETE FROM tile_listings t WHERE EXISTS (
                        SELECT 1 FROM _ok_df o WHERE o.tileset = t.tileset AND o.z = t.z
                          AND o.x = t.x AND o.y = t.y)""")
                if len(listing_frame):
                    con.execute("""INSERT INTO tile_listings SELECT tileset,
                        CAST(z AS INTEGER), CAST(x AS INTEGER), CAST(y AS INTEGER),
                        CAST(image_id AS VARCHAR) FROM _listing_df""")
            finally:
                for name in ("_tiles_df", "_listing_df", "_ok_df"):
                    con.unregister(name)
        return len(frame)

    def tiles(self, tileset: str | None = None) -> pd.DataFrame:
        """The ``tiles`` table (optionally one tileset), ordered by tileset, z, x, y."""
        if tileset is None:
            return self.sql("SELECT * FROM tiles ORDER BY tileset, z, x, y")
        return self.sql("SELECT * FROM tiles WHERE tileset = ? ORDER BY z, x, y", [tileset])

    def tile_listing(self, tileset: str, z: int, x: int, y: int) -> list[str]:
        """The image ids of a tile's last good listing (empty if it never had one)."""
        with self._lock:
            rows = self.con.execute(
                "SELECT image_id FROM tile_listings WHERE tileset = ? AND z = ? AND x = ? "
                "AND y = ? ORDER BY image_id", [tileset, z, x, y]).fetchall()
        return [r[0] for r in rows]

    def listed_ids(self, tileset: str | None = None) -> set[str]:
        """Every image id some tile listed at its last good fetch."""
        with self._lock:
            if tileset is None:
                rows = self.con.execute("SELECT DISTINCT image_id FROM tile_listings").fetchall()
            else:
                rows = self.con.execute("SELECT DISTINCT image_id FROM tile_listings "
                                        "WHERE tileset = ?", [tileset]).fetchall()
        return {r[0] for r in rows}

    def listed_in_tiles(self, tileset: str, tiles: Iterable[tuple[int, int, int]]) -> set[str]:
        """The image ids the tiles ``(z, x, y)`` of ``tileset`` listed at their last good
        fetch (one query, however many tiles)."""
        frame = pd.DataFrame(list(tiles), columns=["z", "x", "y"])
        if frame.empty:
            return set()
        with self._lock:
            self.con.register("wanted_tiles", frame)
            try:
                rows = self.con.execute(
                    "SELECT DISTINCT l.image_id FROM tile_listings l JOIN wanted_tiles w "
                    "ON l.z = w.z AND l.x = w.x AND l.y = w.y WHERE l.tileset = ?",
                    [tileset]).fetchall()
            finally:
                self.con.unregister("wanted_tiles")
        return {r[0] for r in rows}

    # -- downloads ----------------------------------------------------------------------------
    def _relative(self, path: Any) -> str | None:
        if path is None or path == "":
            return None
        p = Path(path)
        if p.is_absolute():
            try:
                p = p.resolve().relative_to(self.root.resolve())
            except ValueError as exc:
                raise ValueError(f"download path {path} is outside the data root") from exc
        return p.as_posix()

    def record_downloads(self, records: Iterable[Any]) -> int:
        """Record download outcomes (``image_id, state`` ('done' or 'failed'), ``path``
        (relative to the data root; absolute ones under it are made relative), ``size_label,
        bytes, sha256, error``; attributes or keys). The last record of an image wins."""
        self._writable()
        rows = []
        now = datetime.now(UTC)
        for r in records:
            state = str(_field(r, "state"))
            if state not in DOWNLOAD_STATES:
                raise ValueError(f"download state must be one of {DOWNLOAD_STATES}, not {state!r}")
            size = _field(r, "bytes")
            rows.append((str(_field(r, "image_id")), state, self._relative(_field(r, "path")),
                         _field(r, "size_label"), None if size is None else int(size),
                         _field(r, "sha256"), _field(r, "error"), now))
        if not rows:
            return 0
        frame = pd.DataFrame(rows, columns=["image_id", "state", "path", "size_label", "bytes",
                                            "sha256", "error", "updated_at"])
        frame = frame.drop_duplicates("image_id", keep="last")
        frame["bytes"] = frame["bytes"].astype("Int64")
        frame["updated_at"] = pd.to_datetime(frame["updated_at"], utc=True)
        with self._transaction() as con:
            con.register("_dl_df", frame)
            try:
                con.execute("""INSERT INTO downloads SELECT image_id, state,
                    CAST(path AS VARCHAR), CAST(size_label AS VARCHAR), CAST(bytes AS BIGINT),
                    CAST(sha256 AS VARCHAR), CAST(error AS VARCHAR), updated_at FROM _dl_df
                    ON CONFLICT (image_id) DO UPDATE SET state = excluded.state,
                        path = excluded.path, size_label = excluded.size_label,
                        bytes = excluded.bytes, sha256 = excluded.sha256,
                        error = excluded.error, updated_at = excluded.updated_at""")
            finally:
                con.unregister("_dl_df")
        return len(frame)

    record = record_downloads  # the downloader's ledger protocol: done() and record()

    def _with_ids(self, ids: Iterable[str], query: str) -> list[tuple]:
        frame = pd.DataFrame({"id": pd.Series([str(i) for i in ids], dtype=object)})
        with self._lock:
            self.con.register("_ids_df", frame)
            try:
                return self.con.execute(query).fetchall()
            finally:
                self.con.unregister("_ids_df")

    def done(self, ids: Iterable[str] | None = None) -> dict[str, tuple[str, str, int]]:
        """``{image_id: (path, sha256, bytes)}`` of finished downloads (of ``ids``, or all)."""
        query = "SELECT image_id, path, sha256, bytes FROM downloads WHERE state = 'done'"
        if ids is None:
            with self._lock:
                rows = self.con.execute(query).fetchall()
        else:
            rows = self._with_ids(ids, query + " AND image_id IN (SELECT id FROM _ids_df)")
        return {r[0]: (r[1], r[2], r[3]) for r in rows}

    def pending_download_ids(self, ids: Iterable[str] | None = None) -> list[str]:
        """Ids without a finished download, sorted: of ``ids``, or of every catalog image."""
        done = "SELECT image_id FROM downloads WHERE state = 'done'"
        if ids is None:
            with self._lock:
                rows = self.con.execute(
                    f"SELECT id FROM images WHERE id NOT IN ({done}) ORDER BY id").fetchall()
        else:
            rows = self._with_ids(ids, f"SELECT DISTINCT id FROM _ids_df WHERE id NOT IN "
                                       f"({done}) ORDER BY id")
        return [r[0] for r in rows]

    def downloads(self) -> pd.DataFrame:
        """The ``downloads`` table, ordered by image id."""
        return self.sql("SELECT * FROM downloads ORDER BY image_id")

    # -- districts ----------------------------------------------------------------------------
    def set_district(self, name: str, geometry_geojson: Any, image_ids: Iterable[str]) -> None:
        """Create or replace a district: its polygon (GeoJSON text or dict, or shapely) and the
        ids of its images."""
        self._writable()
        text = _geojson_text(geometry_geojson)
        ids = pd.DataFrame({"image_id": pd.Series(list(dict.fromkeys(str(i) for i in image_ids)),
                                                  dtype=object)})
        with self._transaction() as con:
            created = con.execute("SELECT created_at FROM districts WHERE name = ?",
                                  [name]).fetchone()
            con.execute("DELETE FROM districts WHERE name = ?", [name])
            con.execute("DELETE FROM district_images WHERE name = ?", [name])
            con.execute("INSERT INTO districts VALUES (?, ?, ?)",
                        [name, text, created[0] if created else datetime.now(UTC)])
            con.register("_d_df", ids)
            try:
                con.execute("INSERT INTO district_images SELECT ?, CAST(image_id AS VARCHAR) "
                            "FROM _d_df", [name])
            finally:
                con.unregister("_d_df")

    def retain_districts(self, names: Iterable[str]) -> int:
        """Delete every district not in ``names`` (a new district set replaces the old one).
        Returns how many were deleted."""
        self._writable()
        keep = pd.DataFrame({"name": pd.Series(list(dict.fromkeys(names)), dtype=object)})
        with self._transaction() as con:
            con.register("_keep_df", keep)
            try:
                gone = con.execute("SELECT count(*) FROM districts WHERE name NOT IN "
                                   "(SELECT name FROM _keep_df)").fetchone()[0]
                for table in ("districts", "district_images"):
                    con.execute(f"DELETE FROM {table} WHERE name NOT IN "
                                "(SELECT name FROM _keep_df)")
            finally:
                con.unregister("_keep_df")
        return int(gone)

    def district_image_ids(self, name: str) -> list[str]:
        """The image ids of district ``name``, sorted (empty if unknown)."""
        with self._lock:
            rows = self.con.execute("SELECT image_id FROM district_images WHERE name = ? "
                                    "ORDER BY image_id", [name]).fetchall()
        return [r[0] for r in rows]

    def districts(self) -> dict[str, dict[str, Any]]:
        """``{name: GeoJSON geometry}`` of every district."""
        with self._lock:
            rows = self.con.execute("SELECT name, geometry FROM districts ORDER BY name"
                                    ).fetchall()
        return {name: json.loads(text) for name, text in rows}

    # -- summary ------------------------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        """Row counts worth showing: images (and those without a computed position),
        sequences, tiles (failed, holes), listed ids, downloads (done, failed), districts."""
        with self._lock:
            row = self.con.execute("""SELECT
                (SELECT count(*) FROM images),
                (SELECT count(*) FROM images WHERE computed_lon IS NULL),
                (SELECT count(*) FROM sequences),
                (SELECT count(*) FROM tiles),
                (SELECT count(*) FROM tiles WHERE status = 'failed'),
                (SELECT count(*) FROM tiles WHERE last_ok_at IS NULL),
                (SELECT count(*) FROM tile_listings),
                (SELECT count(*) FROM downloads WHERE state = 'done'),
                (SELECT count(*) FROM downloads WHERE state = 'failed'),
                (SELECT count(*) FROM districts)""").fetchone()
        keys = ("images", "images_without_computed", "sequences", "tiles", "tiles_failed",
                "tile_holes", "tile_listings", "downloads_done", "downloads_failed", "districts")
        return {k: int(v) for k, v in zip(keys, row)}


def _clean(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, float) and np.isnan(value):
        return None
    if value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, np.ndarray):
        return [float(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def row_to_entity(row: Mapping[str, Any]) -> dict[str, Any]:
    """An ``images`` row (a dict) back in API v4 entity shape."""
    r = {k: _clean(v) for k, v in row.items()}
    out: dict[str, Any] = {"id": r["id"]}

    def put(key: str, value: Any) -> None:
        if value is not None:
            out[key] = value

    put("sequence", r["sequence_id"])
    put("captured_at", None if r["captured_at_ms"] is None else int(r["captured_at_ms"]))
    if r["lon"] is not None:
        out["geometry"] = {"type": "Point", "coordinates": [r["lon"], r["lat"]]}
    if r["computed_lon"] is not None:
        out["computed_geometry"] = {"type": "Point",
                                    "coordinates": [r["computed_lon"], r["computed_lat"]]}
    for key in ("altitude", "computed_altitude", "compass_angle", "computed_compass_angle",
                "computed_rotation", "camera_type", "camera_parameters", "make", "model"):
        put(key, r[key])
    for key in ("width", "height", "exif_orientation"):
        put(key, None if r[key] is None else int(r[key]))
    put("is_pano", None if r["is_pano"] is None else bool(r["is_pano"]))
    if r["creator_id"] is not None or r["creator_username"] is not None:
        out["creator"] = {"id": r["creator_id"], "username": r["creator_username"]}
    out["organization_id"] = r["organization_id"]
    if r.get("extra"):
        out.update(json.loads(r["extra"]))
    return out


@contextmanager
def read_only_snapshot(path: str | Path | None = None, wait_s: float = 10.0
                       ) -> Iterator[Catalog]:
    """Open the catalog read-only for the length of a ``with`` block, waiting up to ``wait_s``
    for a writer to finish. Keep the block short: while it is open the writer cannot start."""
    catalog = Catalog(path, read_only=True, wait_s=wait_s)
    try:
        yield catalog
    finally:
        catalog.close()
