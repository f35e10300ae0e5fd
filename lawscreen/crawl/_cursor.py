"""A source's incremental state, stored in ``sources.cursor`` (JSONB) between runs.

Everything in it is an optimization: an empty cursor only costs a full re-fetch, never a
duplicate, because posts are upserted on (source, external id). So an unreadable cursor (from an
older version, say) is dropped, and any change to a source's configuration resets it.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

logger = logging.getLogger(__name__)

# Discourse topics remembered with their bump time. A run looks at max_pages x 30 topics at most,
# so this covers many runs while keeping the JSON small.
MAX_TOPICS_REMEMBERED = 2000


class Validators(BaseModel):
    """What a server said identifies a response, sent back as If-None-Match / If-Modified-Since."""

    etag: str | None = None
    last_modified: str | None = None


class RobotsEntry(BaseModel):
    """A robots.txt fetched at ``fetched_at``: its body, or a 4xx ``status`` meaning "allow all"."""

    fetched_at: datetime
    status: int
    body: str = ""


class FileStamp(BaseModel):
    size: int
    mtime_ns: int


class Cursor(BaseModel):
    model_config = ConfigDict(extra="ignore")

    http: dict[str, Validators] = Field(default_factory=dict)  # listing URL -> validators
    robots: dict[str, RobotsEntry] = Field(default_factory=dict)  # origin -> robots.txt
    topics: dict[str, str] = Field(default_factory=dict)  # Discourse topic id -> bumped_at
    file: FileStamp | None = None  # JSONL: the file as last read completely

    @classmethod
    def load(cls, stored: dict[str, Any]) -> Cursor:
        try:
            return cls.model_validate(stored)
        except ValidationError:
            logger.warning("dropping an unreadable cursor; the next run fetches everything again")
            return cls()

    def dump(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_defaults=True)

    def remember_validators(self, url: str, validators: Validators) -> None:
        if validators.etag or validators.last_modified:
            self.http[url] = validators
        else:
            self.http.pop(url, None)

    def remember_topic(self, topic_id: str, bumped_at: str) -> None:
        self.topics.pop(topic_id, None)  # re-inserted last: the dict stays ordered oldest first
        self.topics[topic_id] = bumped_at
        for stale in list(self.topics)[: max(0, len(self.topics) - MAX_TOPICS_REMEMBERED)]:
            del self.topics[stale]
