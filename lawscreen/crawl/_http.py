"""HTTP for every source: one shared ``httpx.AsyncClient`` per run, polite, bounded and retried.

- Timeouts: connect and read limits from settings (``crawl_connect_timeout_seconds``,
  ``crawl_read_timeout_seconds``); writing a request and waiting for a pooled connection get the
  read limit.
- Politeness: robots.txt is checked before every request, including each redirect hop (which is
  why httpx does not follow redirects by itself), and ``HostLimiter`` spaces requests per host.
- Retries (tenacity): 429 and 503 wait for ``Retry-After`` (seconds or an HTTP-date); a server
  asking for longer than ``crawl_retry_after_max_seconds`` is not retried but left until the next
  run, so we never come back before it allows. Other 5xx, timeouts and connection errors back off
  exponentially with full jitter. Other 4xx are final. ``crawl_max_attempts`` bounds it all.
- Bodies are streamed and aborted past ``crawl_max_body_bytes``.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_random_exponential,
)

from lawscreen.crawl._cursor import Cursor, Validators
from lawscreen.crawl._items import RejectReason
from lawscreen.crawl._limiter import HostLimiter, host_key
from lawscreen.crawl._robots import RobotsCache
from lawscreen.errors import FetchError, InputRejected, RobotsDisallowed
from lawscreen.settings import Settings

logger = logging.getLogger(__name__)

MAX_REDIRECTS = 5
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
RETRY_AFTER_STATUSES = frozenset({429, 503})
# Connections kept per run: a few per host across the handful of hosts a run touches.
MAX_CONNECTIONS = 32
# The read timeout bounds each wait for bytes; this bounds a whole response (in read timeouts),
# so a server trickling a byte at a time cannot hold a run for hours.
RESPONSE_DEADLINE_READ_TIMEOUTS = 4

Permit = Callable[[str], Awaitable[float]]


@dataclass(frozen=True, slots=True)
class Response:
    url: str  # after redirects
    status: int  # 2xx, or 304 for a conditional request that matched
    body: bytes
    content_type: str
    validators: Validators
    location: str | None = None  # set on a redirect

    @property
    def media_type(self) -> str:
        return self.content_type.split(";", 1)[0].strip().lower()

    @property
    def not_modified(self) -> bool:
        return self.status == 304


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: a number of seconds or an HTTP-date."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


class Http:
    """What the sources of one run share: the client, the per-host limits, the robots.txt cache."""

    def __init__(self, client: httpx.AsyncClient, settings: Settings) -> None:
        self.client = client
        self.settings = settings
        self.limiter = HostLimiter(settings.crawl_host_concurrency)
        self.robots = RobotsCache()
        self._backoff = wait_random_exponential(
            multiplier=settings.crawl_backoff_seconds, max=settings.crawl_backoff_max_seconds
        )

    @classmethod
    @asynccontextmanager
    async def open(cls, settings: Settings) -> AsyncIterator[Http]:
        timeout = httpx.Timeout(
            connect=settings.crawl_connect_timeout_seconds,
            read=settings.crawl_read_timeout_seconds,
            write=settings.crawl_read_timeout_seconds,
            pool=settings.crawl_read_timeout_seconds,
        )
        async with httpx.AsyncClient(
            timeout=timeout,
            headers={"User-Agent": settings.crawl_user_agent},
            follow_redirects=False,
            limits=httpx.Limits(max_connections=MAX_CONNECTIONS),
        ) as client:
            yield cls(client, settings)

    def for_source(self, *, min_delay: float, respect_robots: bool, cursor: Cursor) -> SourceHttp:
        return SourceHttp(self, min_delay=min_delay, respect_robots=respect_robots, cursor=cursor)

    async def send(self, url: str, headers: dict[str, str], min_delay: float) -> Response:
        """One GET of ``url`` (redirects are returned, not followed), retried as the module says."""
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.settings.crawl_max_attempts),
            wait=self._wait,
            retry=retry_if_exception(lambda exc: isinstance(exc, FetchError) and exc.retryable),
            before_sleep=_log_retry,
            reraise=True,
        )
        return await retrying(self._attempt, url, headers, min_delay)

    def _wait(self, state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        if isinstance(error, FetchError) and error.retry_after is not None:
            return error.retry_after
        return float(self._backoff(state))

    async def _attempt(self, url: str, headers: dict[str, str], min_delay: float) -> Response:
        deadline = self.settings.crawl_read_timeout_seconds * RESPONSE_DEADLINE_READ_TIMEOUTS
        async with self.limiter.slot(url, min_delay):
            try:
                async with (
                    asyncio.timeout(deadline),
                    self.client.stream("GET", url, headers=headers) as response,
                ):
                    return await self._read(url, response)
            except httpx.TimeoutException as exc:
                raise FetchError(f"{url}: timed out ({type(exc).__name__})", retryable=True) from exc
            except TimeoutError as exc:
                raise FetchError(
                    f"{url}: no complete response within {deadline:g} s", retryable=True
                ) from exc
            except httpx.UnsupportedProtocol as exc:
                raise FetchError(f"{url}: {exc}") from exc
            except httpx.TransportError as exc:
                raise FetchError(f"{url}: {type(exc).__name__}: {exc}", retryable=True) from exc
            except httpx.DecodingError as exc:
                raise InputRejected(
                    RejectReason.BAD_ENCODING, f"body could not be decompressed ({exc})", url=url
                ) from exc

    async def _read(self, url: str, response: httpx.Response) -> Response:
        status = response.status_code
        if status in REDIRECT_STATUSES and "Location" in response.headers:
            location = response.url.join(response.headers["Location"])
            if location.scheme not in ("http", "https"):
                raise FetchError(f"{url}: redirected to a {location.scheme or 'relative'} URL", status=status)
            return Response(url, status, b"", "", Validators(), location=str(location))
        if status != 304 and not 200 <= status < 300:
            raise self._status_error(url, response)
        return Response(
            url=url,
            status=status,
            body=b"" if status == 304 else await self._read_capped(url, response),
            content_type=response.headers.get("Content-Type", ""),
            validators=Validators(
                etag=response.headers.get("ETag"), last_modified=response.headers.get("Last-Modified")
            ),
        )

    def _status_error(self, url: str, response: httpx.Response) -> FetchError:
        status = response.status_code
        message = f"HTTP {status} from {url}"
        retryable = status == 429 or status >= 500
        retry_after = (
            parse_retry_after(response.headers.get("Retry-After")) if status in RETRY_AFTER_STATUSES else None
        )
        if retry_after is not None:
            cap = self.settings.crawl_retry_after_max_seconds
            # The whole host waits, whichever source asked: its other requests would be refused too.
            self.limiter.defer(url, min(retry_after, cap))
            if retry_after > cap:
                retryable = False
                message += (
                    f" (Retry-After {retry_after:.0f} s is over our {cap:.0f} s limit: left for the next run)"
                )
        return FetchError(message, status=status, retryable=retryable, retry_after=retry_after)

    async def _read_capped(self, url: str, response: httpx.Response) -> bytes:
        cap = self.settings.crawl_max_body_bytes
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > cap:
            raise InputRejected(
                RejectReason.TOO_LARGE,
                f"declares {int(declared):,} bytes, over the {cap:,}-byte cap",
                url=url,
            )
        body = bytearray()
        async for chunk in response.aiter_bytes():
            body += chunk
            if len(body) > cap:
                raise InputRejected(RejectReason.TOO_LARGE, f"over the {cap:,}-byte cap, aborted", url=url)
        return bytes(body)


def _log_retry(state: RetryCallState) -> None:
    error = state.outcome.exception() if state.outcome else None
    wait = state.next_action.sleep if state.next_action else 0.0
    logger.info("retrying in %.1f s (attempt %d failed: %s)", wait, state.attempt_number, error)


class SourceHttp:
    """One source's view of the run's HTTP: its delay, its robots.txt choice, its cursor."""

    def __init__(self, http: Http, *, min_delay: float, respect_robots: bool, cursor: Cursor) -> None:
        self._http = http
        self._min_delay = min_delay
        self._respect_robots = respect_robots
        self._cursor = cursor

    async def get(
        self, url: str, *, headers: dict[str, str] | None = None, validators: Validators | None = None
    ) -> Response:
        """GET ``url``, following redirects; with ``validators``, a conditional request (may be 304)."""
        request_headers = dict(headers or {})
        if validators is not None and validators.etag:
            request_headers["If-None-Match"] = validators.etag
        if validators is not None and validators.last_modified:
            request_headers["If-Modified-Since"] = validators.last_modified
        return await self._follow(url, request_headers, self._permit)

    async def get_json(
        self, url: str, *, headers: dict[str, str] | None = None, validators: Validators | None = None
    ) -> tuple[Any, Response]:
        """The decoded JSON (None when not modified) and the response."""
        response = await self.get(url, headers=headers, validators=validators)
        return (None if response.not_modified else decode_json(response)), response

    async def _follow(self, url: str, headers: dict[str, str], permit: Permit) -> Response:
        target = url
        for _ in range(MAX_REDIRECTS + 1):
            delay = await permit(target)
            response = await self._http.send(target, headers, delay)
            if response.location is None:
                return response
            target = response.location
        raise FetchError(f"{url}: more than {MAX_REDIRECTS} redirects")

    async def _permit(self, url: str) -> float:
        """The delay to keep before requesting ``url``; RobotsDisallowed when robots.txt forbids it."""
        if not self._respect_robots:
            return self._min_delay
        origin = host_key(url)
        rules = await self._http.robots.rules(origin, self._cursor, self._fetch_robots)
        user_agent = self._http.settings.crawl_user_agent
        if not rules.allows(url, user_agent):
            raise RobotsDisallowed(f"{url}: " + (rules.reason or f"disallowed by {origin}/robots.txt"))
        return max(self._min_delay, rules.crawl_delay(user_agent))

    async def _fetch_robots(self, url: str) -> bytes:
        async def no_robots_check(_: str) -> float:
            return self._min_delay

        return (await self._follow(url, {}, no_robots_check)).body


def decode_json(response: Response) -> Any:
    media = response.media_type
    if media and media != "application/json" and not media.endswith("+json"):
        raise InputRejected(RejectReason.WRONG_CONTENT_TYPE, f"expected JSON, got {media}", url=response.url)
    try:
        text = response.body.decode("utf-8-sig")  # RFC 8259: JSON on the wire is UTF-8
    except UnicodeDecodeError as exc:
        raise InputRejected(
            RejectReason.BAD_ENCODING, f"not UTF-8 (bad byte at offset {exc.start})", url=response.url
        ) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputRejected(
            RejectReason.MALFORMED_JSON,
            f"{exc.msg} at line {exc.lineno} column {exc.colno}",
            url=response.url,
        ) from None
