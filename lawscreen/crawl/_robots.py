"""robots.txt per RFC 9309, parsed by protego.

What a fetch of ``/robots.txt`` means (RFC 9309 section 2.3.1):

- success: the rules in the file (its first 500 KiB, the minimum the RFC says to parse);
- 4xx ("unavailable"), 429 aside: no rules, everything is allowed;
- 5xx, 429, network errors, redirect loops, an unreadable body ("unreachable"): everything is
  disallowed.

Caching (section 2.4 allows 24 hours at most): in the source's cursor. Every run is a short-lived
process, a CLI call or a Prefect task, so a memory-only cache would fetch robots.txt on every run;
the cursor keeps it across runs and processes. Within a run, one fetch per origin serves every
source on that host. An "unreachable" outcome is never stored: the next run asks again.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from protego import Protego

from lawscreen.crawl._cursor import Cursor, RobotsEntry
from lawscreen.errors import CrawlError, FetchError

ROBOTS_TTL = timedelta(hours=24)
ROBOTS_PARSE_BYTES = 500 * 1024
# A Crawl-delay longer than this is capped: it would stretch one run over hours.
MAX_CRAWL_DELAY_SECONDS = 60.0

FetchBody = Callable[[str], Awaitable[bytes]]


@dataclass(frozen=True)
class RobotsRules:
    parser: Protego | None  # None: everything disallowed
    entry: RobotsEntry | None  # what sources store in their cursor; None for "unreachable"
    reason: str = ""

    @classmethod
    def from_entry(cls, entry: RobotsEntry) -> RobotsRules:
        return cls(Protego.parse(entry.body if entry.status < 300 else ""), entry)

    def allows(self, url: str, user_agent: str) -> bool:
        return self.parser is not None and bool(self.parser.can_fetch(url, user_agent))

    def crawl_delay(self, user_agent: str) -> float:
        delay = self.parser.crawl_delay(user_agent) if self.parser is not None else None
        return min(float(delay or 0.0), MAX_CRAWL_DELAY_SECONDS)


class RobotsCache:
    """The robots.txt of every origin a run touches, fetched at most once per run."""

    def __init__(self) -> None:
        self._rules: dict[str, RobotsRules] = {}
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)

    async def rules(self, origin: str, cursor: Cursor, fetch: FetchBody) -> RobotsRules:
        async with self._locks[origin]:
            rules = self._rules.get(origin)
            if rules is None:
                stored = cursor.robots.get(origin)
                if stored is not None and datetime.now(UTC) - stored.fetched_at < ROBOTS_TTL:
                    rules = RobotsRules.from_entry(stored)
                else:
                    rules = await _fetch(origin, fetch)
                self._rules[origin] = rules
        if rules.entry is not None:
            cursor.robots[origin] = rules.entry
        return rules


async def _fetch(origin: str, fetch: FetchBody) -> RobotsRules:
    now = datetime.now(UTC)
    try:
        body = await fetch(f"{origin}/robots.txt")
    except FetchError as exc:
        if exc.status is not None and 400 <= exc.status < 500 and exc.status != 429:
            return RobotsRules.from_entry(RobotsEntry(fetched_at=now, status=exc.status))
        return RobotsRules(None, None, f"robots.txt unreachable ({exc}), so everything is disallowed")
    except CrawlError as exc:
        return RobotsRules(None, None, f"robots.txt unreadable ({exc}), so everything is disallowed")
    text = body[:ROBOTS_PARSE_BYTES].decode("utf-8", errors="replace")
    return RobotsRules.from_entry(RobotsEntry(fetched_at=now, status=200, body=text))
