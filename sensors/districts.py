"""The district sensor: asks for a district's download and reconstruction only when the
district's images changed (new images inside it, or changed metadata), and registers districts
that have no partition yet.

The cursor holds each district's fingerprint (a hash of its images' ids and catalog content
hashes). The catalog is opened read-only and briefly; while a run writes it, the tick skips.
"""

import json

import dagster as dg

from assets.districts import DISTRICTS, district_images, district_partitions, sparse_model
from assets.resources import CitysplatStorage
from citysplat.layout import DataLayout


@dg.sensor(
    name="changed_districts",
    asset_selection=[district_images, sparse_model],
    minimum_interval_seconds=600,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description="Compares each district's images with the last tick; requests "
    "district_images + sparse_model runs for the districts that changed, and only those.",
)
def changed_districts(context: dg.SensorEvaluationContext,
                      storage: CitysplatStorage) -> dg.SensorResult | dg.SkipReason:
    from citysplat.catalog import Catalog, CatalogLockedError
    from citysplat.districts.membership import district_fingerprints
    from citysplat.districts.membership import districts_with_changed_images as changed

    layout = DataLayout.at(storage.root_path())
    names = layout.district_names()
    if not names or not layout.catalog_path.is_file():
        return dg.SkipReason("no districts yet: materialize image_catalog and districts")
    try:
        with Catalog.open_read_only(layout.catalog_path) as catalog:
            now = district_fingerprints(layout, catalog, names)
    except CatalogLockedError:
        return dg.SkipReason("the catalog is being written; trying again at the next tick")
    before = json.loads(context.cursor) if context.cursor else {}
    todo = changed(before, now)
    known = set(context.instance.get_dynamic_partitions(DISTRICTS))
    missing = [n for n in names if n not in known]
    if not todo and not missing:
        return dg.SkipReason(f"no district changed ({len(names)} districts)")
    return dg.SensorResult(
        run_requests=[dg.RunRequest(
            run_key=f"{name}-{now[name]}", partition_key=name,
            asset_selection=[district_images.key, sparse_model.key],
            tags={"citysplat/district": name,
                  "citysplat/reason": "new district" if name not in before else "images changed"},
        ) for name in todo],
        dynamic_partitions_requests=(
            [district_partitions.build_add_request(missing)] if missing else []),
        cursor=json.dumps(now, sort_keys=True),
    )
