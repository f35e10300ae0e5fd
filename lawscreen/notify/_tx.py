"""Database work from async code: each call is one transaction on a worker thread.

The database layer is synchronous; running it on the event loop would stall every other send
(and, in the bot, polling) for the length of a query.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Concatenate, ParamSpec, TypeVar

from sqlmodel import Session

from lawscreen.database import transaction

P = ParamSpec("P")
T = TypeVar("T")


async def in_transaction(fn: Callable[Concatenate[Session, P], T], *args: P.args, **kwargs: P.kwargs) -> T:
    def run() -> T:
        with transaction() as session:
            return fn(session, *args, **kwargs)

    return await asyncio.to_thread(run)
