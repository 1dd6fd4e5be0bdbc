"""The new-imagery sensor: polls the area's coverage tiles and asks for a catalog update only
when a tile changed (the cursor holds each tile's content hash)."""

import hashlib

import dagster as dg

from assets.ingest import downloaded_images, image_catalog
from assets.resources import IngestArea, MapillaryApi
from citysplat.watch import check_for_new_imagery


@dg.sensor(
    name="new_mapillary_imagery",
    asset_selection=[image_catalog, downloaded_images],
    minimum_interval_seconds=3600,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description="Polls the area's z14 coverage tiles; requests a catalog update and downloads "
    "when any tile's content changed since the last tick.",
)
def new_mapillary_imagery(context: dg.SensorEvaluationContext, mapillary: MapillaryApi,
                          area: IngestArea) -> dg.SensorResult | dg.SkipReason:
    change = check_for_new_imagery(area.area(), mapillary.config(), context.cursor)
    if not change.changed:
        failed = f" ({len(change.failed_tiles)} tiles could not be read)" if change.failed_tiles else ""
        return dg.SkipReason(f"no coverage tile changed{failed}")
    first = context.cursor is None
    return dg.SensorResult(
        run_requests=[dg.RunRequest(
            run_key="imagery-" + hashlib.sha256(change.cursor().encode()).hexdigest()[:16],
            asset_selection=[image_catalog.key, downloaded_images.key],
            tags={"citysplat/changed_tiles": str(len(change.changed_tiles)),
                  "citysplat/reason": "first scan" if first else "new imagery"},
        )],
        cursor=change.cursor(),
    )
