"""Ingest an area: coverage tiles -> catalog -> (optionally) verified downloads.

One ingest run is the catalog's single writer. It streams: tiles are recorded as they arrive,
entities are fetched and upserted in chunks, downloads are recorded in batches, so a crash (or
``kill -9``) loses at most the chunk in flight, and re-running picks up where it stopped:
tiles are fetched again (they are the source of truth for what exists), entities only for
images the catalog does not hold yet (``refresh=True`` re-fetches all), downloads only for
images not yet verified on disk.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from citysplat import event_loop
from citysplat.catalog import Catalog, UpsertStats
from citysplat.catalog.validate import Rejection
from citysplat.download import DownloadSummary, download_images, download_images_sync
from citysplat.mapillary import MAX_TILES, Area, MapillaryClient, MapillaryConfig, scan_tiles
from citysplat.progress import ProgressFn, StageProgressFn

ENTITY_CHUNK = 1000  # entities fetched and upserted per step (crash granularity)
DEFAULT_TILESET = "mly1_public"  # every image, processed or not (the computed set lags)

BROKEN_AT_SOURCE = "not a decodable image"  # the downloader's word for a source-side break

"""``progress(stage, done, total)`` with stage ``tiles``, ``entities`` or ``downloads``."""


@dataclass
class IngestResult:
    """What one ingest run found, stored and downloaded."""

    area: str
    tiles: int = 0
    tiles_failed: int = 0
    listed: int = 0
    fetched: int = 0
    missing: list[str] = field(default_factory=list)  # listed by tiles, unknown to the API
    failed: dict[str, str] = field(default_factory=dict)  # id -> why its batch failed
    rejections: dict[tuple[str, str], Rejection] = field(default_factory=dict, repr=False)
    """Records kept out of the catalog (bad values, unusable tile features, answers for ids
    not asked for), by (source, record): also in the catalog's ``rejected`` table."""
    upsert: UpsertStats = field(default_factory=UpsertStats)
    downloads: DownloadSummary | None = None
    requests: dict[str, dict[str, int]] = field(default_factory=dict)
    rejected_fields: dict[str, str] = field(default_factory=dict)
    """Image fields the API refused (name -> its message): fetched without, their columns empty."""
    seconds: float = 0.0

    @property
    def rejected(self) -> int:
        """How many records were rejected (see :attr:`rejections`)."""
        return len(self.rejections)

    @property
    def broken_images(self) -> dict[str, str]:
        """Images the API serves but that never decode (broken at the source): reported, but
        no re-run can fix them."""
        if self.downloads is None:
            return {}
        return {k: v for k, v in self.downloads.failures.items()
                if v.startswith(BROKEN_AT_SOURCE)}

    @property
    def complete(self) -> bool:
        """Every tile read, every listed image catalogued, and (if asked) every image that
        can be downloaded is: what a re-run could still fill is nothing."""
        ok = self.tiles_failed == 0 and not self.missing and not self.failed
        if self.downloads is None:
            return ok
        return ok and self.downloads.failed == len(self.broken_images)


async def ingest_area_async(
    area: Area,
    config: MapillaryConfig,
    catalog_path: Path,
    *,
    data_root: Path,
    download: bool = False,
    size: int | str = 2048,
    refresh: bool = False,
    tileset: str = DEFAULT_TILESET,
    progress: StageProgressFn | None = None,
    download_progress: bool = False,
    max_tiles: int | None = MAX_TILES,
) -> IngestResult:
    """Enumerate ``area`` through the coverage tiles, catalogue every image, download them.

    An area over ``max_tiles`` z14 tiles raises :class:`~citysplat.mapillary.AreaTooLargeError`
    before anything is fetched. A record that cannot be catalogued is rejected (counted, kept
    in the catalog's ``rejected`` table with its reason), never a reason to stop the rest."""
    started = time.perf_counter()
    result = IngestResult(area=area.name or "area")
    area.check_size(max_tiles)
    tiles = area.tiles()
    result.tiles = len(tiles)
    async with MapillaryClient(config) as client:
        with Catalog(catalog_path) as catalog:
            listed: set[str] = set()
            done_tiles = 0
            async for tile in scan_tiles(client, area, tileset, tiles=tiles):
                catalog.record_tiles([tile])
                _reject(result, catalog, [Rejection(f"tile {tileset}/{tile.z}/{tile.x}/{tile.y}",
                                                    feature, why)
                                          for feature, why in tile.unusable])
                done_tiles += 1
                if tile.ok:
                    listed.update(im.image_id for im in tile.images)
                else:
                    result.tiles_failed += 1
                    # what this tile listed the last time it was read still counts, and so do
                    # the usable images of a tile that was read but had unusable features
                    listed.update(im.image_id for im in tile.images)
                    listed.update(_inside(catalog.tile_listing(tileset, tile.z, tile.x, tile.y),
                                          catalog, area))
                if progress:
                    progress("tiles", done_tiles, len(tiles))
            result.listed = len(listed)
            result.rejected_fields = client.rejected_fields  # filled as entities are fetched

            known = set() if refresh else catalog.image_ids() & listed
            todo = sorted(listed - known)
            unanswered: list[str] = []
            for start in range(0, len(todo), ENTITY_CHUNK):
                chunk = todo[start:start + ENTITY_CHUNK]
                unanswered += await _fetch_and_store(client, catalog, chunk, result)
                if progress:
                    progress("entities", min(start + ENTITY_CHUNK, len(todo)), len(todo))
            if unanswered:  # asked once more (one by one) before they count as holes
                client.failed_ids.clear()
                still = await _fetch_and_store(client, catalog, unanswered, result, batch=False)
                result.failed = dict(client.failed_ids)
                result.missing = [i for i in still if i not in result.failed]
            catalog.refresh_sequences()

            if download:
                wanted = sorted(listed & catalog.image_ids())
                result.downloads = await download_images(
                    client, wanted, data_root, ledger=catalog, size=size,
                    progress=download_progress or (
                        (lambda d, t: progress("downloads", d, t)) if progress else None),
                )
        result.requests = client.stats.snapshot()
    result.seconds = time.perf_counter() - started
    return result


def download_area(area: Area, config: MapillaryConfig, catalog_path: Path, *,
                  data_root: Path, size: int | str = 2048, tileset: str = DEFAULT_TILESET,
                  progress: bool | ProgressFn | None = None,
                  max_tiles: int | None = MAX_TILES) -> DownloadSummary:
    """Download the catalogued images of ``area`` without enumerating it again: the images
    its coverage tiles listed at the last :func:`ingest_area` that the catalog holds and that
    lie in the area, as an ingest with ``download=True`` would have downloaded them."""
    area.check_size(max_tiles)
    with Catalog(catalog_path) as catalog:
        listed = catalog.listed_in_tiles(tileset, [(t.z, t.x, t.y) for t in area.tiles()])
        ids = _inside(sorted(listed & catalog.image_ids()), catalog, area)
        return download_images_sync(config, ids, data_root, catalog, size=size,
                                    progress=progress)


async def preflight_async(area: Area, config: MapillaryConfig,
                          tileset: str = DEFAULT_TILESET) -> None:
    """One request before anything is written: a bad token (``AuthError``) or an unreachable
    API (``NetworkError``) fails here, leaving no catalog behind."""
    tile = area.tiles()[0]
    async with MapillaryClient(config.model_copy(update={"max_attempts": 2})) as client:
        await client.tile(tileset, tile.z, tile.x, tile.y)


def preflight(area: Area, config: MapillaryConfig, tileset: str = DEFAULT_TILESET) -> None:
    """Synchronous :func:`preflight_async`."""
    event_loop.run(preflight_async(area, config, tileset))


def ingest_area(area: Area, config: MapillaryConfig, catalog_path: Path, **kwargs
                ) -> IngestResult:
    """Synchronous :func:`ingest_area_async` (for the CLI and Dagster)."""
    return event_loop.run(ingest_area_async(area, config, catalog_path, **kwargs))


async def _fetch_and_store(client: MapillaryClient, catalog: Catalog, ids: list[str],
                           result: IngestResult, *, batch: bool = True) -> list[str]:
    """Fetch the entities of ``ids`` and upsert them; returns the ids with no answer (unknown
    to the API, their batch failed, or the answer was not the one asked for). An answer the
    catalog rejects is final: it is not asked for again."""
    if batch:
        entities = await client.entities(ids, _catalog_fields(), skip_failed=True)
    else:
        entities = {}
        for image_id in ids:
            entities.update(await client.entities([image_id], _catalog_fields(),
                                                  skip_failed=True))
    stats = catalog.upsert_images(entities.values())
    result.upsert = result.upsert + stats
    result.fetched += stats.total
    _reject(result, catalog, client.rejections)
    client.rejections.clear()
    if stats.rejected:  # the catalog has stored them; count every one, not just the examples
        stored = catalog.image_ids() & set(entities)
        _count(result, stats.rejections)
        _count(result, [Rejection("entity", image_id, "rejected by the catalog") for image_id
                        in set(entities) - stored - {r.record for r in stats.rejections}])
    return [i for i in ids if i not in entities]


def _reject(result: IngestResult, catalog: Catalog, rejections: list[Rejection]) -> None:
    """Keep ``rejections`` in the catalog and count them in ``result``."""
    if rejections:
        catalog.record_rejections(rejections)
        _count(result, rejections)


def _count(result: IngestResult, rejections: Iterable[Rejection]) -> None:
    for r in rejections:
        result.rejections[(r.source, r.record)] = r


def _catalog_fields() -> tuple[str, ...]:
    from citysplat.mapillary import CATALOG_FIELDS

    return CATALOG_FIELDS


def _inside(ids: list[str], catalog: Catalog, area: Area) -> list[str]:
    """Of ``ids`` (a tile's previous listing), those whose catalogued position is in ``area``."""
    if not ids:
        return []
    frame = catalog.images(ids)
    if frame.empty:
        return []
    keep = area.contains(frame["lon"].to_numpy(), frame["lat"].to_numpy())
    return [str(i) for i in frame["id"][keep]]
