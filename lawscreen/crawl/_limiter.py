"""Politeness per host, shared by every source of a run: a cap on requests in flight and a
minimum delay between the starts of two requests.

Two sources on the same forum share one budget, so adding a source never doubles the load on a
host. A ``Retry-After`` seen by one request holds back every request to that host.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import httpx


@dataclass
class _Host:
    semaphore: asyncio.Semaphore
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    delay: float = 0.0  # the longest min_delay any source asked for on this host
    next_start: float = 0.0  # loop time before which no request may start


def host_key(url: str) -> str:
    parsed = httpx.URL(url)
    return f"{parsed.scheme}://{parsed.netloc.decode('ascii')}"


class HostLimiter:
    def __init__(self, concurrency: int) -> None:
        self._concurrency = concurrency
        self._hosts: dict[str, _Host] = {}

    def _host(self, url: str) -> _Host:
        key = host_key(url)
        if key not in self._hosts:
            self._hosts[key] = _Host(asyncio.Semaphore(self._concurrency))
        return self._hosts[key]

    @asynccontextmanager
    async def slot(self, url: str, min_delay: float) -> AsyncIterator[None]:
        """Hold a slot for one request to ``url``'s host, waiting for the cap and the delay."""
        host = self._host(url)
        loop = asyncio.get_running_loop()
        async with host.semaphore:
            async with host.lock:  # starts are spaced one at a time, in arrival order
                host.delay = max(host.delay, min_delay)
                wait = host.next_start - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                host.next_start = loop.time() + host.delay
            yield

    def defer(self, url: str, seconds: float) -> None:
        """No request to ``url``'s host starts in the next ``seconds`` (the server's Retry-After)."""
        host = self._host(url)
        host.next_start = max(host.next_start, asyncio.get_running_loop().time() + seconds)
