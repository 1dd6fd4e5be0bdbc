"""What checking every entity at the catalog's door costs: ``Catalog.upsert_images`` with
:mod:`citysplat.catalog.validate` against the same upsert with the checks switched off, in the
same process, alternating, on the same synthetic entities (the catalog benchmark's city).

    .venv/bin/python benchmarks/catalog_validation.py --rows 200000 --repeats 5

Prints the Python checks alone (per 100,000 entities), the fresh and the unchanged upsert with
and without all checks (Python and the text checks DuckDB runs in the staging SQL), and the
throughput cost in per cent (target: at most 5 %).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import timeit
from pathlib import Path

import numpy as np

import citysplat  # noqa: F401  (zlib before anything that might pull pycolmap)
from citysplat.catalog import Catalog, store
from citysplat.catalog.normalize import staging_frame
from citysplat.catalog.validate import row_problems, screen_entities

sys.path.insert(0, str(Path(__file__).parent))
from catalog_upsert import synthetic_entities  # noqa: E402


def _no_screen(ents):
    return list(ents), []


def _no_problems(frame):
    return np.full(len(frame), None, dtype=object)


def upsert_seconds(entities: list[dict], folder: Path, checks: bool) -> tuple[float, float]:
    """(fresh, unchanged) upsert wall seconds, with or without the door checks."""
    saved = store.screen_entities, store.row_problems, store.text_checks_sql
    if not checks:
        store.screen_entities, store.row_problems = _no_screen, _no_problems
        store.text_checks_sql = lambda: "NULL"
    try:
        path = folder / f"catalog-{time.monotonic_ns()}.duckdb"
        with Catalog(path) as catalog:
            started = time.perf_counter()
            catalog.upsert_images(entities)
            fresh = time.perf_counter() - started
            started = time.perf_counter()
            stats = catalog.upsert_images(entities)
            again = time.perf_counter() - started
            assert stats.unchanged == len(entities) and stats.rejected == 0
        path.unlink()
        return fresh, again
    finally:
        store.screen_entities, store.row_problems, store.text_checks_sql = saved


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    entities = synthetic_entities(args.rows)
    sample = entities[:100_000]
    frame, _ = staging_frame(sample)
    screen_ms = min(timeit.repeat(lambda: screen_entities(sample), number=1, repeat=5)) * 1000
    rows_ms = min(timeit.repeat(lambda: row_problems(frame), number=1, repeat=5)) * 1000
    stage_ms = min(timeit.repeat(lambda: staging_frame(sample), number=1, repeat=3)) * 1000
    print(f"checks per 100,000 entities: screen {screen_ms:.1f} ms + values {rows_ms:.1f} ms "
          f"(the staging frame they check: {stage_ms:.0f} ms)")
    runs: dict[bool, list[tuple[float, float]]] = {True: [], False: []}
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(args.repeats):
            for checks in ((True, False) if k % 2 else (False, True)):
                runs[checks].append(upsert_seconds(entities, Path(tmp), checks))
                fresh, again = runs[checks][-1]
                print(f"  repeat {k + 1} {'with' if checks else 'without'} checks: fresh "
                      f"{fresh:.2f} s, unchanged {again:.2f} s")
    med = {c: tuple(statistics.median(r[i] for r in runs[c]) for i in (0, 1)) for c in runs}
    best = {c: tuple(min(r[i] for r in runs[c]) for i in (0, 1)) for c in runs}
    cost = [100 * (med[True][i] / med[False][i] - 1) for i in (0, 1)]
    best_cost = [100 * (best[True][i] / best[False][i] - 1) for i in (0, 1)]
    print(f"SUMMARY catalog_validation rows={args.rows} medians of {args.repeats}: fresh "
          f"{med[True][0]:.2f} s with checks vs {med[False][0]:.2f} s without ({cost[0]:+.1f} %, "
          f"best runs {best_cost[0]:+.1f} %); unchanged {med[True][1]:.2f} s vs "
          f"{med[False][1]:.2f} s ({cost[1]:+.1f} %, best runs {best_cost[1]:+.1f} %); Python "
          f"checks alone {screen_ms + rows_ms:.0f} ms per 100,000 entities")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
