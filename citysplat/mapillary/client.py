"""An async Mapillary API v4 client: Graph API, coverage vector tiles and thumbnail bytes.

* The token travels in the ``Authorization: OAuth <token>`` header of Graph requests and, as
  the coverage tiles accept nothing else, in the ``access_token`` query parameter of tile
  requests (``docs/MAPILLARY_API.md``). Tile URLs are never logged with their query, and every
  error text and library log line goes through :func:`~citysplat.mapillary.redaction.redact`.
* Fields drift: when the API answers a batch with code 100 "Tried accessing nonexisting field
  (X)", X is dropped for the rest of the run (one warning names it) and the batch is retried.
* Every request is retried with exponential backoff and jitter (tenacity) on 429, 5xx,
  400 "Query Timeout" (code -2) and other transient Graph errors, timeouts, connection resets
  and bodies cut short; a ``Retry-After`` is honoured and pauses the whole API class.
* Each API class (entity, search, tiles) has its own rate limiter (aiolimiter); Graph and tile
  requests share a concurrency bound. Thumbnails go to the CDN without any auth header.
* Every request goes over aiohttp (the downloader asks for fresh thumbnail URLs 50 ids at a
  time, then fetches the thumbnails): aiohttp costs about a fifth of httpx's CPU per
  request, which is what bounds concurrent downloading on a small machine.
* :attr:`MapillaryClient.stats` counts requests, retries and failures per API class.
"""

from __future__ import annotations

import asyncio
import email.utils
import functools
import json
import logging
import re
import ssl
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import urlsplit

import aiohttp
import httpx  # only for its certificate store (certifi, or SSL_CERT_FILE / SSL_CERT_DIR)
import yarl
from aiolimiter import AsyncLimiter
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt
from tenacity.wait import wait_base, wait_exponential, wait_random

from citysplat.catalog.validate import Rejection, shown
from citysplat.mapillary._aio import bounded_as_completed
from citysplat.mapillary.config import MapillaryConfig, RateLimit
from citysplat.mapillary.errors import (
    ApiError,
    AuthError,
    FieldRejectedError,
    MapillaryError,
    NetworkError,
    NotFoundError,
    RateLimitError,
    ResponseTooLargeError,
    TransientError,
    UrlExpiredError,
)
from citysplat.mapillary.redaction import redact, redact_library_logs

log = logging.getLogger(__name__)

ApiClass = Literal["entity", "search", "tiles", "thumbs"]
API_CLASSES: tuple[ApiClass, ...] = ("entity", "search", "tiles", "thumbs")
MAX_IDS_PER_REQUEST = 50
SEARCH_LIMIT = 2000
RATE_LIMIT_CODES = frozenset({4, 17, 32, 613})
"""Graph API codes for request limits (Mapillary answers "Application request limit reached")."""
TRANSIENT_CODES = frozenset({-2, 1, 2})
"""Query Timeout, unknown error, service temporarily unavailable."""
AUTH_CODES = frozenset({102, 190})
"""Graph API codes for a missing, invalid or expired access token."""
_NONEXISTING_FIELD = re.compile(r"nonexisting field \(([^()\s]{1,64})\)")
_NEEDS_QUOTING = re.compile(r"[\x00-\x20\x7f\"<>\\^`{|}]|%(?![0-9A-Fa-f]{2})")
"""What may not appear in a quoted URL (a bare "%" included): such a URL is left to yarl."""


@dataclass(frozen=True)
class _Fetched:
    """A response read by aiohttp, with the attributes the error mapping reads."""

    status_code: int
    headers: Mapping[str, str]
    content: bytes
    reason_phrase: str = ""

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        """The body as JSON; ValueError when it is not JSON or nests too deeply to be an
        API answer (Python's parser would raise RecursionError)."""
        try:
            return json.loads(self.content)
        except RecursionError:
            raise _TooDeepError("the JSON nests too deeply") from None


class _TooDeepError(ValueError):
    """JSON nested beyond Python's recursion limit: no API answer looks like that."""


class _AioSession:
    """GETs over aiohttp: about a fifth of httpx's CPU per request, which is what bounds
    concurrent downloading on a small machine (measured: 0.3 vs 1.5 ms)."""

    def __init__(
        self,
        connections: int,
        config: MapillaryConfig,
        *,
        follow_redirects: bool,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._connections = connections
        self._ssl: ssl.SSLContext | bool = ssl_context if ssl_context is not None else True
        self._timeout = aiohttp.ClientTimeout(
            total=config.timeout_s, connect=config.connect_timeout_s
        )
        self._headers = {"User-Agent": config.user_agent}
        self._follow_redirects = follow_redirects
        self._session: aiohttp.ClientSession | None = None

    async def get(
        self,
        url: str,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        max_bytes: int | None = None,
    ) -> _Fetched:
        """GET ``url``; a body longer than ``max_bytes`` raises :class:`ResponseTooLargeError`
        as soon as that is known (from Content-Length, or while reading), never held whole."""
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._connections, ssl=self._ssl),
                timeout=self._timeout,
                headers=self._headers,
                cookie_jar=aiohttp.DummyCookieJar(),  # an API and a CDN: no cookies
            )
        target: str | yarl.URL = url
        if params is None and url.isascii() and not _NEEDS_QUOTING.search(url):
            # a signed CDN URL as given, not re-quoted: cheaper, and the signature stays intact
            target = yarl.URL(url, encoded=True)
        async with self._session.get(
            target, params=params, headers=headers, allow_redirects=self._follow_redirects
        ) as response:
            length = response.content_length
            if max_bytes is None or (length is not None and length <= max_bytes):
                body = await response.read()  # aiohttp reads exactly Content-Length
            elif length is not None:
                raise ResponseTooLargeError(length, max_bytes)
            else:
                chunks: list[bytes] = []
                size = 0
                async for chunk in response.content.iter_any():
                    size += len(chunk)
                    if size > max_bytes:
                        raise ResponseTooLargeError(size, max_bytes)
                    chunks.append(chunk)
                body = b"".join(chunks)
            return _Fetched(response.status, response.headers, body, response.reason or "")

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


_AIOHTTP_ERRORS = (aiohttp.ClientError, asyncio.TimeoutError)


@dataclass
class RequestStats:
    """Per-run counters by API class: HTTP attempts, retries, and requests that finally failed."""

    requests: Counter[str] = field(default_factory=Counter)
    retries: Counter[str] = field(default_factory=Counter)
    failures: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    """Failed attempts by ``"<class>:<status or exception>"`` (e.g. ``tiles:503``)."""

    @property
    def total(self) -> int:
        return sum(self.requests.values())

    def snapshot(self) -> dict[str, dict[str, int]]:
        """``{"requests": {...}, "retries": {...}, "failures": {...}, "errors": {...}}``."""
        return {
            "requests": dict(self.requests),
            "retries": dict(self.retries),
            "failures": dict(self.failures),
            "errors": dict(self.errors),
        }

    def reset(self) -> None:
        for counter in (self.requests, self.retries, self.failures, self.errors):
            counter.clear()


class _WaitRetryAfter(wait_base):
    """Exponential backoff with jitter, but at least the server's Retry-After (capped)."""

    def __init__(self, fallback: wait_base, cap_s: float) -> None:
        self.fallback = fallback
        self.cap_s = cap_s

    def __call__(self, retry_state: RetryCallState) -> float:
        wait = float(self.fallback(retry_state))
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        if isinstance(exc, RateLimitError) and exc.retry_after is not None:
            wait = max(wait, min(exc.retry_after, self.cap_s))
        return wait


def parse_retry_after(value: str | None) -> float | None:
    """A ``Retry-After`` header (seconds or an HTTP date) -> seconds from now, or None."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _limiter(rate: RateLimit) -> AsyncLimiter:
    return AsyncLimiter(rate.max_rate, rate.period_s)


def _chunks(items: Sequence[str], size: int) -> list[list[str]]:
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


def _unique(ids: Iterable[str | int]) -> list[str]:
    return list(dict.fromkeys(str(i) for i in ids))


def _param(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(value, (list, tuple, set, frozenset)):
        return ",".join(str(v) for v in value)
    return str(value)


class MapillaryClient:
    """Async Mapillary API v4 client; use ``async with MapillaryClient(config) as client:``."""

    def __init__(self, config: MapillaryConfig, *, thumb_connections: int = 64) -> None:
        self.config = config
        self.stats = RequestStats()
        self._thumb_connections = thumb_connections
        self._api_http: _AioSession | None = None
        self._thumbs: _AioSession | None = None
        self._limiters: dict[str, AsyncLimiter] = {}
        self._slots: asyncio.Semaphore | None = None
        self._cooldown: dict[str, float] = {}
        self.rejected_fields: dict[str, str] = {}
        """Fields the API refused this run (name -> its message); they are no longer asked for."""
        self.rejections: list[Rejection] = []
        """Records of answers that were not what was asked for (an entity under an id not
        asked for, or under another id than its own), kept aside with their reasons."""
        self.failed_ids: dict[str, str] = {}
        """Ids whose entity batch failed after its retries (``skip_failed=True``): id -> why."""
        self._wait = _WaitRetryAfter(
            wait_exponential(multiplier=config.backoff_initial_s, max=config.backoff_max_s)
            + wait_random(0, config.backoff_initial_s),
            config.max_retry_after_s,
        )

    def __repr__(self) -> str:
        return (
            f"MapillaryClient(graph_url={self.config.graph_url!r}, "
            f"tiles_url={self.config.tiles_url!r}, requests={self.stats.total})"
        )

    # -- lifecycle ------------------------------------------------------------------------------

    async def __aenter__(self) -> MapillaryClient:
        self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def open(self) -> None:
        """Create the HTTP connection pools (``async with`` does this for you)."""
        if self._api_http is not None:
            return
        redact_library_logs()
        cfg = self.config
        # one context for both sessions (creating one is slow), with httpx's certificate store
        ssl_context = httpx.create_ssl_context()
        self._api_http = _AioSession(
            cfg.concurrency, cfg, follow_redirects=False, ssl_context=ssl_context
        )
        self._thumbs = _AioSession(
            self._thumb_connections, cfg, follow_redirects=True, ssl_context=ssl_context
        )
        self._limiters = {
            "entity": _limiter(cfg.entity_rate),
            "search": _limiter(cfg.search_rate),
            "tiles": _limiter(cfg.tiles_rate),
        }
        self._slots = asyncio.Semaphore(cfg.concurrency)

    async def aclose(self) -> None:
        """Close the connection pools."""
        for session in (self._api_http, self._thumbs):
            if session is not None:
                await session.aclose()
        self._api_http = self._thumbs = None

    # -- public API -----------------------------------------------------------------------------

    async def tile(self, tileset: str, z: int, x: int, y: int) -> bytes:
        """The MVT bytes of a coverage tile (``b""`` for an empty tile). The token goes in the
        ``access_token`` query parameter: the tile service answers 403 to a token in a header."""
        url = f"{self.config.tiles_url}/{tileset}/2/{int(z)}/{int(x)}/{int(y)}"
        response = await self._get("tiles", url, self.config.token_param())
        return b"" if response.status_code == 204 else response.content

    async def entity(self, image_id: str | int, fields: Sequence[str]) -> dict[str, Any]:
        """One image entity (``id`` plus the asked fields it has). Raises NotFoundError."""
        url = f"{self.config.graph_url}/{int(image_id)}"
        return self._json(await self._get_fields("entity", url, {}, fields), url)

    async def entities(
        self, ids: Iterable[str | int], fields: Sequence[str], *, skip_failed: bool = False
    ) -> dict[str, dict[str, Any]]:
        """Entities by id, fetched in concurrent batches of 50 (``GET /?ids=``). Ids the API does
        not know are left out; so are answers for ids not asked for (see :attr:`rejections`).
        With ``skip_failed``, a batch that still fails after its retries (other than for the
        token) is logged and left out, its ids in :attr:`failed_ids`, and the rest goes on."""
        out: dict[str, dict[str, Any]] = {}
        async for batch in self.iter_entities(ids, fields, skip_failed=skip_failed):
            out.update(batch)
        return out

    async def iter_entities(
        self,
        ids: Iterable[str | int],
        fields: Sequence[str],
        *,
        window: int | None = None,
        skip_failed: bool = False,
    ) -> AsyncIterator[dict[str, dict[str, Any]]]:
        """Like :meth:`entities`, yielding each batch's answer as it completes; at most ``window``
        batches (default: twice the concurrency) are in flight, so any number of ids streams."""
        batches = _chunks(_unique(ids), MAX_IDS_PER_REQUEST)
        fetch = self._entity_batch_or_skip if skip_failed else self._entity_batch
        jobs = (functools.partial(fetch, batch, fields) for batch in batches)
        async for answer in bounded_as_completed(jobs, window or 2 * self.config.concurrency):
            yield answer

    async def sequence_image_ids(self, sequence_id: str) -> list[str]:
        """The image ids of a sequence, in capture order."""
        url = f"{self.config.graph_url}/image_ids"
        response = await self._get("entity", url, {"sequence_id": sequence_id})
        return [str(d["id"]) for d in self._json(response, url).get("data", [])]

    async def search_bbox(
        self,
        bbox: tuple[float, float, float, float],
        *,
        fields: Sequence[str] = ("id",),
        limit: int = SEARCH_LIMIT,
        **filters: Any,
    ) -> list[dict[str, Any]]:
        """``GET /images?bbox=W,S,E,N``: at most 2000 images, no paging (a silent cap, and empty
        during incidents). For baselines and spot checks; enumerate areas with the tiles."""
        w, s, e, n = (float(v) for v in bbox)
        params = {"bbox": f"{w:.8f},{s:.8f},{e:.8f},{n:.8f}", "limit": str(limit)}
        params.update({k: _param(v) for k, v in filters.items() if v is not None})
        url = f"{self.config.graph_url}/images"
        response = await self._get_fields("search", url, params, fields)
        return list(self._json(response, url).get("data", []))

    async def fetch_bytes(self, url: str) -> bytes:
        """The body at ``url`` (a thumbnail), retried like any request; no auth header is sent.
        A 403 (expired signed URL) raises :class:`UrlExpiredError` at once: fetch a fresh URL."""
        if not url[:8].lower().startswith(("http://", "https://")):
            raise ApiError("not an http(s) URL", where="fetch_bytes")
        response = await self._get("thumbs", url, auth=False)
        return response.content

    # -- internals ------------------------------------------------------------------------------

    async def _entity_batch(
        self, batch: list[str], fields: Sequence[str]
    ) -> dict[str, dict[str, Any]]:
        url = f"{self.config.graph_url}/"
        data = self._json(await self._get_fields("entity", url, {"ids": ",".join(batch)}, fields), url)
        asked = set(batch)
        out: dict[str, dict[str, Any]] = {}
        for key, entity in data.items():
            if key not in asked:
                self.rejections.append(Rejection("entity", shown(key), "answered but not asked for"))
            elif not isinstance(entity, dict):
                self.rejections.append(Rejection("entity", key, "the answer is not an object"))
            elif str(entity.get("id", key)) != key:
                self.rejections.append(Rejection(
                    "entity", key, f"answered with the entity of id {shown(entity.get('id'))}"))
            else:
                out[key] = entity
        return out

    async def _entity_batch_or_skip(
        self, batch: list[str], fields: Sequence[str]
    ) -> dict[str, dict[str, Any]]:
        try:
            return await self._entity_batch(batch, fields)
        except AuthError:
            raise
        except MapillaryError as exc:
            log.warning("an entity batch of %d ids failed, left for a re-run: %s", len(batch), exc)
            for image_id in batch:
                self.failed_ids[image_id] = str(exc)
            return {}

    async def _get_fields(
        self, api: ApiClass, url: str, params: Mapping[str, str], fields: Sequence[str]
    ) -> _Fetched:
        """GET with ``fields=``, leaving out the fields the API has refused this run; a newly
        refused field is dropped (one warning) and the request made again without it."""
        while True:
            asked = [f for f in fields if f not in self.rejected_fields]
            query = {**params, "fields": ",".join(asked)} if asked else dict(params)
            try:
                return await self._get(api, url, query)
            except FieldRejectedError as exc:
                if exc.field == "id" or exc.field not in asked:
                    raise
                self._reject_field(exc.field, exc.message)

    def _reject_field(self, name: str, message: str) -> None:
        if name in self.rejected_fields:
            return
        self.rejected_fields[name] = message
        log.warning(
            "Mapillary refuses the image field %r (%s): continuing without it, so it stays "
            "empty in the catalog",
            name,
            message,
        )

    def _json(self, response: _Fetched, url: str) -> dict[str, Any]:
        try:
            data = response.json()
        except _TooDeepError:
            raise ApiError("the answer is JSON nested too deeply to be an API answer",
                           status=response.status_code, where=_path(url)) from None
        except ValueError:
            raise NetworkError(
                "the response is not JSON", status=response.status_code, where=_path(url)
            ) from None
        if not isinstance(data, dict):
            raise ApiError("unexpected JSON shape", status=response.status_code, where=_path(url))
        return data

    async def _get(
        self,
        api: ApiClass,
        url: str,
        params: Mapping[str, str] | None = None,
        *,
        auth: bool = True,
    ) -> _Fetched:
        """GET with the retry policy; raises a typed :class:`MapillaryError`.

        The first attempt runs directly; only when it fails transiently does tenacity take over
        (its first outcome is that failure): setting tenacity up cost about as much CPU per
        request as aiohttp's whole GET, for the one request in many that needs it."""
        if self._api_http is None:
            self.open()
        try:
            return await self._attempt(api, url, params, auth)
        except TransientError as exc:
            first: TransientError | None = exc
        except MapillaryError:
            self.stats.failures[api] += 1
            raise
        attempts = 0

        async def once() -> _Fetched:
            nonlocal attempts, first
            attempts += 1
            if first is not None:  # attempt 1 already happened (above)
                error, first = first, None
                raise error
            self.stats.retries[api] += 1
            return await self._attempt(api, url, params, auth)

        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.config.max_attempts),
            wait=self._wait,
            retry=retry_if_exception_type(TransientError),
            reraise=True,
            before_sleep=lambda state: self._log_retry(api, url, state),
        )
        try:
            return await retrying(once)
        except TransientError as exc:
            self.stats.failures[api] += 1
            raise exc.gave_up(attempts) from None
        except MapillaryError:
            self.stats.failures[api] += 1
            raise

    async def _attempt(
        self, api: ApiClass, url: str, params: Mapping[str, str] | None, auth: bool
    ) -> _Fetched:
        if api == "thumbs":
            assert self._thumbs is not None
            return await self._send(self._thumbs, api, url)
        assert self._api_http is not None and self._slots is not None
        async with self._slots:
            await self._wait_cooldown(api)
            async with self._limiters[api]:
                # tiles: the token is in params (access_token=), with no header
                headers = self.config.auth_header() if auth and api != "tiles" else None
                return await self._send(self._api_http, api, url, params, headers)

    async def _send(
        self,
        session: _AioSession,
        api: ApiClass,
        url: str,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> _Fetched:
        """One HTTP attempt, bounded in time (``timeout_s`` for the whole request, body
        included) and in size (the cap of its kind); a non-2xx answer raises its typed error."""
        self.stats.requests[api] += 1
        try:
            response = await session.get(url, params, headers, self.config.max_bytes(api))
        except _AIOHTTP_ERRORS as exc:  # resets, bodies cut short, timeouts
            self.stats.errors[f"{api}:{type(exc).__name__}"] += 1
            raise NetworkError(
                self._redact(f"{type(exc).__name__}: {exc}"), where=_path(url)
            ) from None
        except ResponseTooLargeError as exc:
            self.stats.errors[f"{api}:too_large"] += 1
            exc.where = _path(url)
            exc.args = (exc._text(),)
            raise
        if response.status_code < 300:
            return response  # the common path: no URL parsing (it cost 23 us a request)
        self.stats.errors[f"{api}:{response.status_code}"] += 1
        error = self._error(api, response, _path(url))
        if isinstance(error, RateLimitError) and error.retry_after:
            self._pause(api, error.retry_after)
        raise error

    def _error(
        self, api: ApiClass, response: _Fetched, where: str
    ) -> MapillaryError:
        """The typed error for a non-2xx response."""
        status = response.status_code
        message, code, subcode, transient, trace = _graph_error(response)
        message = self._redact(message)
        kw: dict[str, Any] = {"status": status, "code": code, "where": where, "fbtrace_id": trace}
        if status == 429 or code in RATE_LIMIT_CODES:
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            return RateLimitError(message, retry_after=retry_after, **kw)
        if code in AUTH_CODES:
            return AuthError(message, **kw)
        if status >= 500 or status == 408 or code in TRANSIENT_CODES or transient:
            return TransientError(message, **kw)
        if code == 100 and (rejected := _NONEXISTING_FIELD.search(message)):
            return FieldRejectedError(message, field=rejected.group(1), **kw)
        if api == "tiles" and status in (401, 403):
            return AuthError(
                message or "Forbidden",
                hint="coverage tiles accept the token only as the access_token query parameter",
                **kw,
            )
        if api == "thumbs":
            if status == 403:
                return UrlExpiredError(message or "the signed URL expired or is invalid", **kw)
            if status in (404, 410):
                return NotFoundError(message, **kw)
            return ApiError(message, **kw)
        if status == 401:
            return AuthError(message, **kw)
        if status == 404 or subcode == 33:
            return NotFoundError(message, **kw)
        return ApiError(message, **kw)

    def _pause(self, api: str, asked_s: float) -> None:
        """Hold every request of ``api`` for the server's Retry-After (capped at
        ``max_retry_after_s``); a Retry-After longer than ``announce_wait_s`` is announced."""
        seconds = min(asked_s, self.config.max_retry_after_s)
        until = time.monotonic() + seconds
        if until > self._cooldown.get(api, 0.0):
            if asked_s > self.config.announce_wait_s and until > self._cooldown.get(api, 0) + 1:
                capped = f" (it asked for {asked_s:.0f} s)" if asked_s > seconds else ""
                log.warning(
                    "Mapillary's %s requests are rate limited: waiting %.0f s%s before the next",
                    api, seconds, capped,
                )
            self._cooldown[api] = until

    async def _wait_cooldown(self, api: str) -> None:
        delay = self._cooldown.get(api, 0.0) - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)

    def _log_retry(self, api: str, url: str, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0.0
        log.debug(
            "retrying %s request to %s in %.2f s (attempt %d failed: %s)",
            api,
            _path(url),
            wait,
            state.attempt_number,
            exc,
        )

    def _redact(self, text: str) -> str:
        return redact(text, self.config.token.get_secret_value())


def _path(url: str) -> str:
    """The URL without its query (for messages: short, and never a signature)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


def _graph_error(
    response: _Fetched,
) -> tuple[str, int | None, int | None, bool, str | None]:
    """``(message, code, subcode, is_transient, fbtrace_id)`` of a Graph API error response."""
    reason = response.reason_phrase or "error"
    try:
        body = response.json()
    except ValueError:
        text = (
            response.text.strip()
            if "text/plain" in response.headers.get("content-type", "")
            else ""
        )
        return (text if 0 < len(text) <= 200 else reason), None, None, False, None
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return reason, None, None, False, None
    code = error.get("code")
    subcode = error.get("error_subcode")
    return (
        str(error.get("message") or reason),
        code if isinstance(code, int) else None,
        subcode if isinstance(subcode, int) else None,
        bool(error.get("is_transient", False)),
        str(error["fbtrace_id"]) if error.get("fbtrace_id") else None,
    )
