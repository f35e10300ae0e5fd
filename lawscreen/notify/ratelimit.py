"""Telegram's flood limits, kept per process: about 1 message a second per chat, 30 overall.

One limiter serves every relay in the process, whatever thread or event loop runs it, so
concurrent relays share one budget. Separate processes (the bot and a flow, say) each keep their
own: together they may exceed the limits, and Telegram then answers 429 with ``retry_after``, which
the relay honours by rescheduling the row. Run one relay process where that matters.

A send is granted when the chat's last send and the process's last send are far enough in the
past, measured when granting rather than when a slot was booked, so a late wake-up can never
bunch two sends together. The margin covers the time between a grant and the request reaching
Telegram.
"""

from __future__ import annotations

import asyncio
import threading
import time

MARGIN = 1.2
PER_CHAT_INTERVAL_S = 1.0 * MARGIN
GLOBAL_INTERVAL_S = MARGIN / 30


class RateLimiter:
    def __init__(
        self, per_chat_interval: float = PER_CHAT_INTERVAL_S, global_interval: float = GLOBAL_INTERVAL_S
    ) -> None:
        self._per_chat = per_chat_interval
        self._global = global_interval
        self._lock = threading.Lock()  # not asyncio's: relays in other threads share this limiter
        self._chat_next: dict[int, float] = {}
        self._global_next = 0.0

    async def acquire(self, chat_id: int) -> None:
        """Wait until a message to ``chat_id`` may be sent, and book that moment."""
        while (wait := self._grant(chat_id)) > 0:
            await asyncio.sleep(wait)

    def hold(self, chat_id: int, seconds: float) -> None:
        """Send nothing to the chat for ``seconds`` (Telegram's retry_after)."""
        with self._lock:
            until = time.monotonic() + seconds
            self._chat_next[chat_id] = max(self._chat_next.get(chat_id, 0.0), until)

    def _grant(self, chat_id: int) -> float:
        """0 if granted now (and booked), else how long to wait before asking again."""
        with self._lock:
            now = time.monotonic()
            wait = max(self._chat_next.get(chat_id, 0.0), self._global_next) - now
            if wait > 0:
                return wait
            self._chat_next[chat_id] = now + self._per_chat
            self._global_next = now + self._global
            return 0.0


LIMITER = RateLimiter()
