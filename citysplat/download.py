"""Resumable, concurrent, verified image download into the store.

``images/<id[:2]>/<id>.jpg`` under the store root, each file fully decoded (PIL) and hashed
before it is written to ``images/.partial/`` and renamed into place, so a reader never sees half
a file, and a process killed at any point leaves only ``.partial`` leftovers (removed by the next
run). Files are not fsynced one by one (a journal commit per image, for a crash of the OS rather
than of the process): after an OS crash a file the OS had not written yet is missing or short,
and the next run's size check (ledger) or decode check (files the ledger does not know) fetches
it again. Thumbnail URLs expire: each batch of 50 ids gets fresh URLs right before its
downloads, and a 403 re-fetches the URL once. Ids that the ledger says are done (and whose file
exists with that size) are skipped without re-hashing. The ledger is any object with
``done(ids)`` and ``record(records)`` (the catalog implements it).

Decoding, hashing and writing run on a few threads (PIL's decoder, hashlib and file I/O release
the GIL), which hand their results back to the event loop in groups; the event loop does HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import io
import logging
import os
import queue
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from PIL import Image, ImageFile
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from citysplat import event_loop
from citysplat.layout import DataLayout
from citysplat.mapillary._aio import bounded_as_completed
from citysplat.mapillary.client import MAX_IDS_PER_REQUEST, MapillaryClient
from citysplat.mapillary.config import MapillaryConfig
from citysplat.mapillary.errors import AuthError, MapillaryError, UrlExpiredError
from citysplat.progress import ProgressFn

log = logging.getLogger(__name__)

SizeLabel = Literal["256", "1024", "2048", "original"]
SIZES: tuple[str, ...] = ("256", "1024", "2048", "original")
LEDGER_CHUNK = 1000
STALE_PARTIAL_S = 24 * 3600
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
DISK_THREADS = 4
"""At most this many threads verify, hash and write (fewer on fewer cores)."""


@dataclass(frozen=True)
class DownloadRecord:
    """The outcome for one image; ``path`` is relative to the store root (POSIX separators)."""

    image_id: str
    state: Literal["done", "failed"]
    path: str | None
    size_label: str
    bytes: int = 0
    sha256: str | None = None
    error: str | None = None


class Ledger(Protocol):
    """Where download outcomes are kept (the catalog; an in-memory dict in tests)."""

    def done(self, ids: Sequence[str]) -> Mapping[str, tuple[str, str, int]]:
        """``{id: (path relative to the store root, sha256, bytes)}`` for the ids already done."""
        ...

    def record(self, results: list[DownloadRecord]) -> None:
        """Keep these outcomes (called in batches, from the event loop thread only)."""
        ...


@dataclass
class DownloadSummary:
    """What one run did."""

    requested: int = 0
    skipped: int = 0
    """Already done according to the ledger, file present with the right size."""
    recovered: int = 0
    """Verified files found on disk that the ledger did not know (e.g. after a crash)."""
    downloaded: int = 0
    failed: int = 0
    bytes: int = 0
    seconds: float = 0.0
    expired_urls: int = 0
    """Thumbnail URLs that had expired (403) when used."""
    url_refreshes: int = 0
    """Requests for fresh URLs after an expiry (each refreshes the rest of a batch at once)."""
    bad_bodies: int = 0
    """Bodies that did not decode (e.g. truncated) and were fetched again."""
    stale_partials_removed: int = 0
    failures: dict[str, str] = field(default_factory=dict)

    @property
    def images_per_s(self) -> float:
        return self.downloaded / self.seconds if self.seconds > 0 else 0.0

    @property
    def complete(self) -> bool:
        return self.failed == 0


class BadImageError(Exception):
    """The body is not a fully decodable image."""


def size_field(size: int | str) -> tuple[str, str]:
    """``(size label, entity field)``: 2048 -> ("2048", "thumb_2048_url")."""
    label = str(size).strip().lower()
    if label not in SIZES:
        raise ValueError(f"size must be one of 256, 1024, 2048 or 'original', got {size!r}")
    return label, f"thumb_{label}_url"


def verify_image(data: bytes) -> None:
    """Raise :class:`BadImageError` unless ``data`` decodes completely.

    JPEGs decode in draft mode (DCT scaled to 1/8, colour JPEGs to grey): every byte of the
    entropy-coded stream of every component is still decoded, so a cut or corrupt file fails,
    at a fraction of a full decode's cost (no full-size inverse DCT, upsampling or colour
    conversion)."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            if im.format == "JPEG":
                im.draft("L", (max(1, im.size[0] // 8), max(1, im.size[1] // 8)))
            im.load()
            fmt = im.format
    except Exception as exc:  # noqa: BLE001 - PIL raises OSError, SyntaxError, ValueError...
        raise BadImageError(f"not a decodable image: {exc}") from None
    # PIL decodes a cut JPEG silently when someone set LOAD_TRUNCATED_IMAGES: check the EOI too
    if ImageFile.LOAD_TRUNCATED_IMAGES and fmt == "JPEG" and b"\xff\xd9" not in data[-64:]:
        raise BadImageError("JPEG without its end-of-image marker (truncated)")


def write_atomic(
    data: bytes,
    dest: Path | str,
    partial_dir: Path | str,
    image_id: str,
    *,
    made_dirs: set[str] | None = None,
) -> None:
    """Write to ``partial_dir``, then rename onto ``dest`` (same filesystem): ``dest`` is either
    absent, the old file or the whole new one, even if the process is killed. ``made_dirs``
    remembers parent directories already created (saves a syscall per file)."""
    tmp = os.path.join(partial_dir, f"{os.getpid()}-{image_id}-{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, _CREATE_FLAGS, 0o666)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        parent = os.path.dirname(dest)
        if made_dirs is None or parent not in made_dirs:
            os.makedirs(parent, exist_ok=True)
            if made_dirs is not None:
                made_dirs.add(parent)
        try:
            os.replace(tmp, dest)
        except FileNotFoundError:  # the directory was removed since: make it again
            os.makedirs(parent, exist_ok=True)
            os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _verify_and_write(
    data: bytes, dest: str, partial_dir: str, image_id: str, made_dirs: set[str]
) -> str:
    verify_image(data)
    digest = hashlib.sha256(data).hexdigest()
    write_atomic(data, dest, partial_dir, image_id, made_dirs=made_dirs)
    return digest


def _verify_file(path: Path) -> tuple[str, int]:
    data = path.read_bytes()
    verify_image(data)
    return hashlib.sha256(data).hexdigest(), len(data)


def _pid_alive(pid: int) -> bool:
    if os.name == "nt":
        return True  # no cheap check: rely on age
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_partials(partial_dir: Path, *, max_age_s: float = STALE_PARTIAL_S) -> int:
    """Remove leftovers of crashed runs from ``partial_dir``: files whose writer process is gone,
    files older than ``max_age_s`` and files not named by this module. Returns how many."""
    removed = 0
    if not partial_dir.is_dir():
        return 0
    now = time.time()
    for entry in partial_dir.iterdir():
        if not entry.is_file():
            continue
        pid_text = entry.name.split("-", 1)[0]
        try:
            stale = (
                not entry.name.endswith(".tmp")
                or not pid_text.isdigit()
                or not _pid_alive(int(pid_text))
                or now - entry.stat().st_mtime > max_age_s
            )
        except FileNotFoundError:
            continue
        if stale:
            entry.unlink(missing_ok=True)
            removed += 1
    return removed


_STOP = object()


class _DiskPool:
    """A few threads that verify, hash and write bodies (PIL's decoder, hashlib and file I/O
    release the GIL, so they run beside the event loop). Each thread hands back the results of
    the jobs it found queued in one group, one event-loop wake-up per group: per image,
    ``asyncio.to_thread``'s submit and wake-up cost the event loop about as much as an HTTP GET's
    parsing."""

    GROUP = 8

    def __init__(self, workers: int) -> None:
        self.loop = asyncio.get_running_loop()
        self.jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.threads = [
            threading.Thread(target=self._work, name=f"citysplat-disk-{i}", daemon=True)
            for i in range(max(1, workers))
        ]
        for thread in self.threads:
            thread.start()

    def run(self, fn: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
        """``fn(*args)`` on a pool thread; await the returned future for its result."""
        future = self.loop.create_future()
        self.jobs.put((future, fn, args))
        return future

    def close(self) -> None:
        """Let the threads finish what is queued, then end (does not wait for them)."""
        for _ in self.threads:
            self.jobs.put(_STOP)

    def _work(self) -> None:
        get, get_nowait = self.jobs.get, self.jobs.get_nowait
        while True:
            job = get()
            done: list[tuple[asyncio.Future[Any], Any, BaseException | None]] = []
            while job is not _STOP:
                future, fn, args = job
                try:
                    done.append((future, fn(*args), None))
                except BaseException as exc:  # noqa: BLE001 - handed to the awaiting coroutine
                    done.append((future, None, exc))
                if len(done) >= self.GROUP:
                    break
                try:
                    job = get_nowait()
                except queue.Empty:
                    break
            if done:
                try:
                    self.loop.call_soon_threadsafe(_settle, done)
                except RuntimeError:  # the event loop is closed: nobody waits any more
                    return
            if job is _STOP:
                return


def _settle(done: list[tuple[asyncio.Future[Any], Any, BaseException | None]]) -> None:
    for future, result, error in done:
        if future.done():  # cancelled
            continue
        if error is None:
            future.set_result(result)
        else:
            future.set_exception(error)


class _RateColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(
            "-- img/s" if speed is None else f"{speed:.1f} img/s", style="progress.data.speed"
        )


@contextmanager
def _progress(progress: bool | ProgressFn | None, total: int) -> Iterator[ProgressFn]:
    if callable(progress):
        yield progress
        return
    if not progress:
        yield lambda done, total: None
        return
    with Progress(
        TextColumn("[bold]download"),
        BarColumn(),
        MofNCompleteColumn(),
        _RateColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
    ) as bar:
        task = bar.add_task("download", total=total)
        yield lambda done, total: bar.update(task, completed=done, total=total)


class _UrlBook:
    """The signed thumbnail URLs of one batch. When one has expired, the others fetched with it
    have too: a refresh re-fetches the URLs of every id of the batch not downloaded yet, in one
    request, and concurrent refreshes of the same generation share it."""

    def __init__(self, run: _Run, ids: list[str]) -> None:
        self.run = run
        self.waiting = set(ids)
        self.started: set[str] = set()
        self.known: set[str] = set()
        self.urls: dict[str, str | None] = {}
        self.generation = 0
        self.lock = asyncio.Lock()

    async def fetch(self, ids: list[str]) -> None:
        entities = await self.run.client.entities(ids, ["id", self.run.url_field])
        self.known.update(entities)
        self.urls.update({i: entities.get(i, {}).get(self.run.url_field) for i in ids})
        self.generation += 1

    def get(self, image_id: str) -> tuple[str | None, int]:
        self.waiting.discard(image_id)
        return self.urls.get(image_id), self.generation

    async def refresh(self, image_id: str, seen: int) -> tuple[str | None, int]:
        """A fresh URL for ``image_id`` (whose URL of generation ``seen`` expired)."""
        async with self.lock:
            if self.generation == seen:
                self.run.summary.url_refreshes += 1
                ids = [image_id, *sorted((self.waiting | self.started) - {image_id})]
                for chunk in range(0, len(ids), MAX_IDS_PER_REQUEST):
                    await self.fetch(ids[chunk : chunk + MAX_IDS_PER_REQUEST])
            return self.urls.get(image_id), self.generation


class _Run:
    """State of one :func:`download_images` call."""

    def __init__(
        self,
        client: MapillaryClient,
        root: Path,
        ledger: Ledger,
        size: int | str,
        concurrency: int,
        max_attempts: int,
    ) -> None:
        self.client = client
        self.root = root
        self.root_s = os.fspath(root)
        self.partial = DataLayout(root).partial_dir
        self.partial_s = os.fspath(self.partial)
        self.ledger = ledger
        self.size_label, self.url_field = size_field(size)
        self.slots = asyncio.Semaphore(concurrency)
        self.max_attempts = max_attempts
        self.summary = DownloadSummary()
        self.made_dirs: set[str] = set()
        self.disk: _DiskPool | None = None

    def plan(self, ids: Sequence[str]) -> Iterator[list[str]]:
        """Batches of ids that need work; ids already done are counted as skipped."""
        for start in range(0, len(ids), LEDGER_CHUNK):
            chunk = list(ids[start : start + LEDGER_CHUNK])
            done = self.ledger.done(chunk)
            need: list[str] = []
            for image_id in chunk:
                entry = done.get(image_id)
                if entry is not None and self._present(entry[0], entry[2]):
                    self.summary.skipped += 1
                else:
                    need.append(image_id)
            for b in range(0, len(need), MAX_IDS_PER_REQUEST):
                yield need[b : b + MAX_IDS_PER_REQUEST]

    def _present(self, rel_path: str, size: int) -> bool:
        try:
            return (self.root / rel_path).stat().st_size == size
        except OSError:
            return False

    async def batch(self, ids: list[str]) -> list[DownloadRecord]:
        """Recover verified files already on disk, then download the rest with fresh URLs."""
        records, todo = await asyncio.to_thread(self._recover_all, ids)
        self.summary.recovered += len(records)
        if not todo:
            return records
        book = _UrlBook(self, todo)
        try:
            await book.fetch(todo)
        except AuthError:
            raise
        except MapillaryError as exc:
            return records + [self._failed(i, f"could not get thumbnail URLs: {exc}") for i in todo]
        records += await asyncio.gather(*(self._one(i, book) for i in todo))
        return records

    def _recover_all(self, ids: list[str]) -> tuple[list[DownloadRecord], list[str]]:
        """(records of verified files already on disk, ids to download); on a worker thread."""
        records: list[DownloadRecord] = []
        todo: list[str] = []
        for image_id in ids:
            rel = DataLayout.relative_image_path(image_id)
            path = Path(self.root_s, rel)
            try:
                if not path.is_file():
                    todo.append(image_id)
                    continue
                digest, size = _verify_file(path)
            except (BadImageError, OSError):
                todo.append(image_id)  # download it again (the rename replaces it)
                continue
            records.append(DownloadRecord(image_id, "done", rel, self.size_label, size, digest))
        return records, todo

    async def _one(self, image_id: str, book: _UrlBook) -> DownloadRecord:
        # one slot per image in progress: a refreshed URL is used at once, not after a queue
        async with self.slots:
            try:
                return await self._download(image_id, book)
            finally:
                book.started.discard(image_id)

    async def _download(self, image_id: str, book: _UrlBook) -> DownloadRecord:
        expired = 0
        bad = 0
        rel = DataLayout.relative_image_path(image_id)
        dest = os.path.join(self.root_s, rel)
        book.started.add(image_id)
        url, generation = book.get(image_id)
        while True:
            if image_id not in book.known:
                return self._failed(image_id, "unknown to the API (removed, private or a wrong id)")
            if url is None:
                return self._failed(image_id, f"the API gives no {self.url_field} for it")
            try:
                data = await self.client.fetch_bytes(url)
                assert self.disk is not None
                digest = await self.disk.run(
                    _verify_and_write, data, dest, self.partial_s, image_id, self.made_dirs
                )
            except UrlExpiredError as exc:
                expired += 1
                self.summary.expired_urls += 1
                if expired > 1:
                    return self._failed(image_id, f"{exc} (after a fresh URL)")
                try:
                    url, generation = await book.refresh(image_id, generation)
                except AuthError:
                    raise
                except MapillaryError as exc2:
                    return self._failed(image_id, f"{exc}; fetching a fresh URL failed: {exc2}")
                continue
            except BadImageError as exc:
                bad += 1
                self.summary.bad_bodies += 1
                if bad >= self.max_attempts:
                    return self._failed(image_id, f"{exc} ({bad} attempts)")
                continue
            except AuthError:
                raise
            except MapillaryError as exc:
                return self._failed(image_id, str(exc))
            except OSError as exc:
                return self._failed(image_id, f"could not write {rel}: {exc}")
            self.summary.downloaded += 1
            self.summary.bytes += len(data)
            return DownloadRecord(image_id, "done", rel, self.size_label, len(data), digest)

    def _failed(self, image_id: str, error: str) -> DownloadRecord:
        self.summary.failed += 1
        self.summary.failures[image_id] = error
        return DownloadRecord(image_id, "failed", None, self.size_label, error=error)


async def download_images(
    client: MapillaryClient,
    ids: Iterable[str | int],
    store_root: Path | str,
    ledger: Ledger,
    size: int | str = 2048,
    concurrency: int = 32,
    progress: bool | ProgressFn | None = None,
    *,
    max_attempts: int = 3,
    record_every: int = 200,
) -> DownloadSummary:
    """Download the images ``ids`` at ``size`` (256, 1024, 2048 or "original") into
    ``store_root/images/``, verified and atomically; skip what the ledger says is done.

    ``progress``: True for a rich progress bar (rate, ETA), or a ``callback(done, total)``.
    ``max_attempts`` bounds re-fetches of bodies that do not decode (network retries are the
    client's). Outcomes go to ``ledger.record`` every ``record_every`` images and at the end."""
    if concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    started = time.perf_counter()
    root = Path(store_root)
    run = _Run(client, root, ledger, size, concurrency, max_attempts)
    run.partial.mkdir(parents=True, exist_ok=True)
    run.summary.stale_partials_removed = clean_partials(run.partial)
    unique = []
    for image_id in dict.fromkeys(str(i) for i in ids):
        if image_id.isascii() and image_id.isalnum():
            unique.append(image_id)
        else:  # never a path: reported, and the other images go on
            run.summary.failed += 1
            run.summary.failures[image_id] = "not an image id (letters and digits only)"
    run.summary.requested = len(unique) + run.summary.failed
    handled = 0
    pending: list[DownloadRecord] = []

    def flush() -> None:
        if pending:
            ledger.record(list(pending))
            pending.clear()

    # batches in flight: each first spends a round trip fetching its URLs, then queues its
    # images for the download slots, and ends with its slowest image; 2 batches plus 4 times
    # the slots in images keep the slots busy (measured at concurrency 128: 124 of 128 on
    # average, 85 with 2 batches plus once the slots); URLs then wait for a few hundred images
    # before use (an expired one is refreshed)
    window = 2 + (4 * concurrency) // MAX_IDS_PER_REQUEST
    run.disk = _DiskPool(min(concurrency, DISK_THREADS, os.cpu_count() or 1))
    try:
        with _progress(progress, len(unique)) as tick:
            try:
                jobs = (functools.partial(run.batch, b) for b in run.plan(unique))
                async for records in bounded_as_completed(jobs, window):
                    handled += len(records)
                    pending.extend(records)
                    if len(pending) >= record_every:
                        flush()
                    tick(handled + run.summary.skipped, len(unique))
                tick(handled + run.summary.skipped, len(unique))
            finally:
                flush()
    finally:
        run.disk.close()
    run.summary.seconds = time.perf_counter() - started
    if run.summary.failed:
        log.warning("%d of %d images failed to download", run.summary.failed, len(unique))
    return run.summary


def download_images_sync(
    config: MapillaryConfig,
    ids: Iterable[str | int],
    store_root: Path | str,
    ledger: Ledger,
    **kwargs: object,
) -> DownloadSummary:
    """:func:`download_images` with its own client and event loop (for synchronous callers)."""

    async def main() -> DownloadSummary:
        async with MapillaryClient(config) as client:
            return await download_images(client, ids, store_root, ledger, **kwargs)  # type: ignore[arg-type]

    return event_loop.run(main())
