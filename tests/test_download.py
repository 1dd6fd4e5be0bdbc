"""The image downloader against the fixture server: verified, atomic, resumable, fault tolerant."""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from citysplat.download import (
    DownloadRecord,
    DownloadSummary,
    download_images,
)
from citysplat.fixtures.faults import FaultSpec
from citysplat.fixtures.server import MapillaryFixtureServer
from citysplat.fixtures.world import WorldImage
from citysplat.layout import DataLayout
from citysplat.mapillary import MapillaryClient, MapillaryConfig


class MemoryLedger:
    """The smallest ledger: a dict of the latest record per id."""

    def __init__(self) -> None:
        self.records: dict[str, DownloadRecord] = {}
        self.calls = 0

    def done(self, ids: Sequence[str]) -> Mapping[str, tuple[str, str, int]]:
        out = {}
        for i in ids:
            r = self.records.get(i)
            if r is not None and r.state == "done":
                out[i] = (r.path, r.sha256, r.bytes)
        return out

    def record(self, results: list[DownloadRecord]) -> None:
        self.calls += 1
        for r in results:
            self.records[r.image_id] = r


def config_for(server: MapillaryFixtureServer, **overrides: Any) -> MapillaryConfig:
    """A config pointing at the fixture server, with fast backoff for tests."""
    return server.client_config(**{"backoff_initial_s": 0.01, "backoff_max_s": 0.05, **overrides})


def download(
    server: MapillaryFixtureServer, ids: list[str], root: Path, ledger: MemoryLedger, **kw: Any
) -> DownloadSummary:
    async def main() -> DownloadSummary:
        async with MapillaryClient(config_for(server)) as client:
            return await download_images(client, ids, root, ledger, **kw)

    return asyncio.run(main())


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def assert_store_matches(root: Path, world: list[WorldImage], ledger: MemoryLedger) -> None:
    """Every image is in place, decodes, and is byte for byte the original the server holds."""
    for image in world:
        record = ledger.records[image.id]
        assert record.state == "done", record
        assert (
            record.path == DataLayout.relative_image_path(image.id) == f"images/{image.id[:2]}/{image.id}.jpg"
        )
        data = (root / record.path).read_bytes()
        with Image.open(io.BytesIO(data)) as im:
            im.load()
        original = image.jpeg_path.read_bytes()
        assert sha(data) == record.sha256 == sha(original)
        assert record.bytes == len(original) and record.size_label == "original"
    assert not any((DataLayout(root).partial_dir).iterdir())


def test_download_verifies_and_a_second_run_downloads_nothing(
    mapillary_server, small_world, tmp_path
):
    ids = [i.id for i in small_world]
    ledger = MemoryLedger()
    calls: list[tuple[int, int]] = []
    first = download(
        mapillary_server,
        ids,
        tmp_path,
        ledger,
        size="original",
        progress=lambda d, t: calls.append((d, t)),
    )
    assert first.downloaded == 40 and first.failed == 0 and first.skipped == 0 and first.complete
    assert first.bytes == sum(i.jpeg_path.stat().st_size for i in small_world)
    assert calls[-1] == (40, 40)
    assert_store_matches(tmp_path, small_world, ledger)
    assert mapillary_server.stats.count("ids") == 1  # one batch of fresh URLs for 40 ids

    before = mapillary_server.stats.total
    mtimes = {i.id: DataLayout(tmp_path).image_path(i.id).stat().st_mtime_ns for i in small_world}
    second = download(mapillary_server, ids, tmp_path, ledger, size="original", progress=True)
    assert second.skipped == 40 and second.downloaded == 0 and second.failed == 0
    assert mapillary_server.stats.total == before, "nothing was requested"
    assert {i.id: DataLayout(tmp_path).image_path(i.id).stat().st_mtime_ns for i in small_world} == mtimes


def test_stale_partials_are_removed_and_files_are_checked(mapillary_server, small_world, tmp_path):
    ids = [i.id for i in small_world]
    ledger = MemoryLedger()
    download(mapillary_server, ids, tmp_path, ledger, size="original")
    partial = DataLayout(tmp_path).partial_dir
    dead = partial / f"999999999-{ids[0]}-abcd.tmp"  # from a writer that crashed
    junk = partial / "something-else"
    old = partial / f"{os.getpid()}-{ids[1]}-abcd.tmp"
    for path in (dead, junk, old):
        path.write_bytes(b"\xff\xd8half a jpeg")
    os.utime(old, (time.time() - 3 * 86400,) * 2)
    # the ledger says done but the file went missing; another file is cut short on disk and the
    # ledger forgot it; a third file is fine on disk but the ledger never heard of it (a crash
    # between rename and record)
    DataLayout(tmp_path).image_path(ids[2]).unlink()
    cut = DataLayout(tmp_path).image_path(ids[3])
    cut.write_bytes(cut.read_bytes()[:100])
    del ledger.records[ids[3]], ledger.records[ids[4]]
    thumbs_before = mapillary_server.stats.count("thumbs")

    summary = download(mapillary_server, ids, tmp_path, ledger, size="original")
    assert summary.stale_partials_removed == 3 and not any(partial.iterdir())
    assert summary.downloaded == 2 and summary.recovered == 1 and summary.skipped == 37
    assert mapillary_server.stats.count("thumbs") == thumbs_before + 2
    assert_store_matches(tmp_path, small_world, ledger)


@pytest.mark.parametrize(
    ("faults", "frontend"),
    [
        ("truncate=0.4", "threads"),
        ("reset=0.3", "threads"),
        ("server_error=0.4", "threads"),
        ("truncate=0.2,reset=0.1,server_error=0.1,query_timeout=0.3", "threads"),
        ("truncate=0.2,reset=0.1,server_error=0.1,query_timeout=0.3", "asyncio"),
    ],
)
def test_thumbnail_faults_are_survived(
    make_mapillary_server, small_world, tmp_path, faults, frontend
):
    server = make_mapillary_server(faults=FaultSpec.parse(faults), frontend=frontend)
    ledger = MemoryLedger()
    summary = download(
        server, [i.id for i in small_world], tmp_path, ledger, size="original", concurrency=8
    )
    assert summary.downloaded == 40 and summary.failed == 0
    kind = faults.split("=")[0]
    assert server.stats.faults.get(kind, 0) > 0
    assert_store_matches(tmp_path, small_world, ledger)


def test_expired_urls_are_fetched_again(make_mapillary_server, small_world, tmp_path):
    # URLs live 0.5-1.5 s; one download at a time at 40 ms each outlives them within a batch
    server = make_mapillary_server(thumb_ttl_s=0.5, latency_ms=40)
    ledger = MemoryLedger()
    summary = download(
        server, [i.id for i in small_world], tmp_path, ledger, size="original", concurrency=1
    )
    expired = server.stats.count("thumbs", 403)
    assert expired > 0 and summary.expired_urls == expired
    # one refresh request renews the URLs of the rest of the batch, not one request per image
    assert 1 <= summary.url_refreshes <= expired
    assert summary.url_refreshes < len(small_world) // 4
    assert server.stats.count("ids") == 1 + summary.url_refreshes
    assert summary.downloaded == 40 and summary.failed == 0
    assert_store_matches(tmp_path, small_world, ledger)


def test_sizes_unknown_ids_and_bad_arguments(mapillary_server, small_world, tmp_path):
    ledger = MemoryLedger()
    ids = [small_world[0].id, "999999999999"]
    summary = download(mapillary_server, ids, tmp_path, ledger, size=256)
    assert summary.downloaded == 1 and summary.failed == 1
    assert ledger.records["999999999999"].state == "failed"
    assert "unknown to the API" in (ledger.records["999999999999"].error or "")
    with Image.open(DataLayout(tmp_path).image_path(small_world[0].id)) as im:
        assert max(im.size) <= 256
    assert ledger.records[small_world[0].id].size_label == "256"
    with pytest.raises(ValueError, match="size must be one of"):
        download(mapillary_server, ids, tmp_path, ledger, size=999)
    with pytest.raises(ValueError, match="not alphanumeric"):
        DataLayout(tmp_path).image_path("../etc")
    # an id that is not one never becomes a path, and never stops the other images
    summary = download(mapillary_server, ["../etc", small_world[1].id], tmp_path, ledger)
    assert summary.downloaded == 1 and summary.failures == {
        "../etc": "not an image id (letters and digits only)"}
    assert not (tmp_path.parent / "etc").exists() and "../etc" not in ledger.records


def test_verify_catches_cut_jpegs_even_when_pil_is_lenient(small_world, monkeypatch):
    from PIL import ImageFile

    from citysplat.download import BadImageError, verify_image

    data = small_world[0].jpeg_path.read_bytes()
    verify_image(data)
    for cut in (data[: len(data) // 2], data[:-20], b"<html>503</html>"):
        with pytest.raises(BadImageError):
            verify_image(cut)
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    with pytest.raises(BadImageError, match="truncated"):
        verify_image(data[: len(data) // 2])
    verify_image(data)


def test_the_synchronous_wrapper(mapillary_server, small_world, tmp_path):
    from citysplat.download import download_images_sync

    ledger = MemoryLedger()
    ids = [i.id for i in small_world[:3]]
    summary = download_images_sync(config_for(mapillary_server), ids, tmp_path, ledger, size=1024)
    assert summary.downloaded == 3 and all(DataLayout(tmp_path).image_path(i).is_file() for i in ids)


@pytest.mark.parametrize("kind", ["RGB", "L", "CMYK", "progressive", "PNG"])
def test_verify_decodes_every_kind_of_image_and_rejects_cut_ones(kind):
    from citysplat.download import BadImageError, verify_image

    gradient = Image.linear_gradient("L").resize((320, 240))
    im = Image.merge(
        "RGB", (gradient, gradient.transpose(Image.Transpose.FLIP_LEFT_RIGHT), gradient.rotate(90))
    )
    out = io.BytesIO()
    if kind == "PNG":
        im.save(out, "PNG")
    elif kind == "progressive":
        im.save(out, "JPEG", progressive=True, quality=90)
    else:
        im.convert(kind).save(out, "JPEG", quality=90)
    data = out.getvalue()
    verify_image(data)
    for cut in (data[: len(data) // 2], data[: len(data) * 9 // 10]):
        with pytest.raises(BadImageError):
            verify_image(cut)


def test_a_file_that_cannot_be_written_fails_alone(mapillary_server, small_world, tmp_path):
    ids = [i.id for i in small_world]
    blocked = ids[0]
    # a plain file where the image's directory should be: its rename fails, the others land
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / blocked[:2]).write_bytes(b"not a directory")
    others = [i for i in small_world if i.id[:2] != blocked[:2]]
    ledger = MemoryLedger()
    summary = download(mapillary_server, ids, tmp_path, ledger, size="original", concurrency=16)
    assert summary.failed == len(small_world) - len(others) >= 1
    assert "could not write" in (ledger.records[blocked].error or "")
    assert summary.downloaded == len(others)
    assert_store_matches(tmp_path, others, ledger)  # also: nothing left in .partial
