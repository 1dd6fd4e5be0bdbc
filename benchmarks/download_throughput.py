"""Download throughput at server latency: the concurrent downloader vs one image at a time.

Serves a dense world (small shared JPEG) with ``--latency-ms`` per request from the fixture
server, then downloads ``--images`` images into a fresh store three ways, each repeat:

* ``concurrent``: :func:`citysplat.download.download_images` at ``--concurrency``;
* ``sequential``: the same downloader at concurrency 1 (URLs still come 50 at a time);
* ``naive``: a plain loop a user might write: per image, GET the entity for its thumb URL, then
  GET the thumbnail (two round trips per image); only with ``--naive``.

Prints images/s, the client's and the server's CPU time per image (all threads) and the ratio
concurrent / sequential per repeat, the machine's load average, and a final summary line with
medians. Target: >= 50x at 50 ms. Run: ``python benchmarks/download_throughput.py``.

The server runs in a child process on aiohttp's event loop (``--server-frontend threads``: the
tests' http.server), so it takes as little as it can of the cores it shares with the client.

Every run fills a fresh store; the stores are deleted only at the end. Deleting thousands of
files right before a timed run made it pay for them: ext4 without a journal (as on the machine
these figures come from) skips inodes deleted in the last minute (up to six while not written
back) one by one when it allocates new ones, which more than doubled the client's CPU time per
image (1.0 -> 2.5 ms) in a run right after a deletion. ``--work-dir`` on a tmpfs takes the disk
out of the comparison. Before the runs, the script times the creation of 300 small files in the
work folder and warns when the folder is in that state.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import citysplat  # noqa: F401 - first: loads zlib before anything else
from citysplat import event_loop
from citysplat.download import DownloadRecord, download_images
from citysplat.fixtures.remote import serve
from citysplat.fixtures.server import FRONTENDS
from citysplat.fixtures.small_world import build_dense_world
from citysplat.mapillary import MapillaryClient, MapillaryConfig

SLOW_CREATE_MS = 0.3
"""Above this file creation cost, the run prints a warning: the disk, not the downloader,
sets the figure."""


class MemoryLedger:
    """An in-memory ledger (the catalog's role)."""

    def __init__(self) -> None:
        self.records: dict[str, DownloadRecord] = {}

    def done(self, ids: Sequence[str]) -> Mapping[str, tuple[str, str, int]]:
        return {
            i: (r.path, r.sha256, r.bytes)
            for i in ids
            if (r := self.records.get(i)) is not None and r.state == "done" and r.path and r.sha256
        }

    def record(self, results: list[DownloadRecord]) -> None:
        self.records.update({r.image_id: r for r in results})


def config_for(server: Any, concurrency: int) -> MapillaryConfig:
    return server.client_config(concurrency=max(4, min(concurrency, 32)))


@dataclass
class Timing:
    seconds: float
    images: int
    cpu_s: float
    """CPU time of this process (all threads) during the run."""

    @property
    def rate(self) -> float:
        return self.images / self.seconds


async def run_downloader(server: Any, ids: list[str], store: Path, concurrency: int) -> Timing:
    """Time the downloader filling an empty store."""
    ledger = MemoryLedger()
    async with MapillaryClient(
        config_for(server, concurrency), thumb_connections=concurrency
    ) as client:
        start, cpu = time.perf_counter(), time.process_time()
        summary = await download_images(
            client, ids, store, ledger, size=2048, concurrency=concurrency
        )
        timing = Timing(time.perf_counter() - start, summary.downloaded, time.process_time() - cpu)
    if summary.failed:
        raise SystemExit(f"{summary.failed} downloads failed: {list(summary.failures.items())[:3]}")
    return timing


async def run_naive(server: Any, ids: list[str], store: Path) -> Timing:
    """A plain sequential loop: entity (for the URL) then thumbnail, one image at a time."""
    async with MapillaryClient(config_for(server, 1)) as client:
        start, cpu = time.perf_counter(), time.process_time()
        for image_id in ids:
            url = (await client.entity(image_id, ["thumb_2048_url"]))["thumb_2048_url"]
            data = await client.fetch_bytes(url)
            path = store / f"{image_id}.jpg"
            path.write_bytes(data)
            hashlib.sha256(data).hexdigest()
        return Timing(time.perf_counter() - start, len(ids), time.process_time() - cpu)


def _server_cpu(server: Any) -> float | None:
    """The server process's CPU seconds so far (None for a server in this process)."""
    cpu_seconds = getattr(server, "cpu_seconds", None)
    return cpu_seconds() if cpu_seconds is not None else None


def file_create_cost_ms(folder: Path, files: int = 300, size: int = 4096) -> float:
    """CPU milliseconds to create, write and close one small file in ``folder`` (the files are
    kept: deleting them now would slow the runs that follow, see the module docstring)."""
    folder.mkdir(parents=True)
    data = os.urandom(size)
    cpu = time.process_time()
    for k in range(files):
        (folder / f"{k}.bin").write_bytes(data)
    return (time.process_time() - cpu) / files * 1000


def _load() -> str:
    """The 1, 5 and 15 minute load averages ("n/a" where the OS has none)."""
    try:
        return "/".join(f"{v:.2f}" for v in os.getloadavg())
    except (AttributeError, OSError):
        return "n/a"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=400)
    parser.add_argument(
        "--sequential-images",
        type=int,
        default=100,
        help="images for the slow baselines (their rate is steady; 0: all)",
    )
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--naive", action="store_true", help="also time the two-round-trip naive loop"
    )
    parser.add_argument(
        "--in-process", action="store_true", help="serve from this process (shares the GIL)"
    )
    parser.add_argument(
        "--server-frontend",
        choices=FRONTENDS,
        default="asyncio",
        help="the fixture server's front end (threads: http.server, the tests' server)",
    )
    parser.add_argument(
        "--work-dir",
        type=Path,
        default=None,
        help="where the stores go (default: the system's temporary directory)",
    )
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="citysplat-bench-dl-", dir=args.work_dir))
    try:
        world = build_dense_world(work / "world", args.images)
        ids = [i.id for i in world]
        slow_ids = ids[: args.sequential_images or None]
        print(
            f"download {len(ids)} images (baselines: {len(slow_ids)}), server latency "
            f"{args.latency_ms:g} ms, concurrency {args.concurrency}, {args.repeats} repeats, "
            f"{os.cpu_count()} CPUs (server in {'this' if args.in_process else 'a child'} process), "
            f"stores under {work.parent}"
        )
        print(f"load average at start: {_load()}")
        create_ms = file_create_cost_ms(work / "probe")
        print(
            f"creating a small file there costs {create_ms:.2f} ms of CPU "
            "(tmpfs about 0.03, a quiet ext4 folder about 0.1)"
        )
        if create_ms > SLOW_CREATE_MS:
            print(
                "  slow: ext4 without a journal skips the inodes freed near this folder in the "
                "last 1-6 minutes one by one; expect a lower ratio: run again later, or with "
                "--work-dir on a tmpfs"
            )
        ratios, naive_ratios, fast_rates, slow_rates, fast_cpu = [], [], [], [], []
        server_ms: list[float] = []
        with serve(
            world,
            in_process=args.in_process,
            latency_ms=args.latency_ms,
            frontend=args.server_frontend,
        ) as server:
            for r in range(args.repeats):
                server_cpu = _server_cpu(server)
                fast = event_loop.run(run_downloader(server, ids, work / f"c{r}", args.concurrency))
                if server_cpu is not None:
                    server_ms.append((_server_cpu(server) - server_cpu) / fast.images * 1000)
                slow = event_loop.run(run_downloader(server, slow_ids, work / f"s{r}", 1))
                ratio = fast.rate / slow.rate
                ratios.append(ratio)
                fast_rates.append(fast.rate)
                slow_rates.append(slow.rate)
                fast_cpu.append(fast.cpu_s / fast.images * 1000)
                line = (
                    f"  repeat {r + 1}: concurrent {fast.seconds:6.2f} s ({fast.rate:6.1f} img/s, "
                    f"{fast.cpu_s / fast.images * 1000:4.2f} ms CPU/img"
                    f"{f', server {server_ms[-1]:4.2f}' if server_ms else ''})  sequential "
                    f"{slow.seconds:6.2f} s ({slow.rate:5.1f} img/s)  ratio {ratio:5.1f}x"
                )
                if args.naive:
                    (work / f"n{r}").mkdir()
                    naive = event_loop.run(run_naive(server, slow_ids, work / f"n{r}"))
                    naive_ratios.append(fast.rate / naive.rate)
                    line += f"  naive {naive.rate:5.1f} img/s (ratio {naive_ratios[-1]:5.1f}x)"
                print(line, flush=True)
        median = statistics.median(ratios)
        naive = (
            f" naive_speedup_median={statistics.median(naive_ratios):.1f}x" if naive_ratios else ""
        )
        print(
            f"SUMMARY download_throughput images={len(ids)} latency_ms={args.latency_ms:g} "
            f"concurrency={args.concurrency} cpus={os.cpu_count()} "
            f"concurrent_img_s={statistics.median(fast_rates):.1f} "
            f"sequential_img_s={statistics.median(slow_rates):.1f} speedup_median={median:.1f}x"
            f" client_cpu_ms_per_img={statistics.median(fast_cpu):.2f}"
            + (f" server_cpu_ms_per_img={statistics.median(server_ms):.2f}" if server_ms else "")
            + f" server={args.server_frontend}"
            f"{naive} target=50x {'PASS' if median >= 50 else 'MISS'} "
            f"file_create_ms={create_ms:.2f} load_end={_load()}"
        )
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
