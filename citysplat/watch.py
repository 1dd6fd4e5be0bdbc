"""Has new imagery appeared? Fingerprints of an area's coverage tiles, compared to a cursor.

A fingerprint maps each z14 tile to a short hash of its content; a tile whose hash differs
from the previous fingerprint has new (or removed, or moved) images. Tiles that fail to load
keep their previous hash, so an outage never looks like a change.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from citysplat import event_loop
from citysplat.mapillary import Area, MapillaryClient, MapillaryConfig, scan_tiles

DEFAULT_TILESET = "mly1_public"


@dataclass(frozen=True)
class CoverageChange:
    """What changed between two fingerprints."""

    fingerprint: dict[str, str]
    changed_tiles: list[str]  # "z/x/y"
    failed_tiles: list[str]

    @property
    def changed(self) -> bool:
        return bool(self.changed_tiles)

    def cursor(self) -> str:
        return json.dumps(self.fingerprint, sort_keys=True, separators=(",", ":"))


async def fingerprint_async(area: Area, config: MapillaryConfig, previous: dict[str, str],
                            tileset: str = DEFAULT_TILESET) -> CoverageChange:
    """Fetch the area's tiles and compare each one's hash with ``previous``."""
    current: dict[str, str] = {}
    failed: list[str] = []
    async with MapillaryClient(config) as client:
        async for tile in scan_tiles(client, area, tileset):
            key = f"{tile.z}/{tile.x}/{tile.y}"
            if tile.ok:
                current[key] = (tile.content_sha256 or "empty")[:16]
            else:
                failed.append(key)
                if key in previous:
                    current[key] = previous[key]
    changed = sorted(k for k in current if previous.get(k) != current[k])
    return CoverageChange(current, changed, sorted(failed))


def check_for_new_imagery(area: Area, config: MapillaryConfig, cursor: str | None,
                          tileset: str = DEFAULT_TILESET) -> CoverageChange:
    """Synchronous :func:`fingerprint_async` from a cursor string (``None`` on first run)."""
    previous = json.loads(cursor) if cursor else {}
    return event_loop.run(fingerprint_async(area, config, previous, tileset))
