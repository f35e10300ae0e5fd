"""Discourse: ``/latest.json`` lists topics newest-bumped first, ``/t/{id}.json`` holds the first
post's body (``post_stream.posts[0].cooked``, HTML).

A topic's body costs one request, so a topic is fetched only when it is new or was bumped since
the last run (the cursor remembers each topic's ``bumped_at``). An edit of the first post is seen
when the topic is next bumped: ``/latest.json`` carries no other sign of it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from functools import partial
from typing import Any

from pydantic import AwareDatetime, BaseModel, Field

from lawscreen.crawl._config import DiscourseSource
from lawscreen.crawl._cursor import Cursor, Validators
from lawscreen.crawl._http import SourceHttp
from lawscreen.crawl._items import Listing, Page, Reject, RejectReason, build_post, item_id, validate
from lawscreen.errors import CrawlError, FetchError, InputRejected, RobotsDisallowed
from lawscreen.repo.posts import NewPost


class _ListedTopic(BaseModel):
    id: int
    title: str
    bumped_at: str | None = None


class _TopicList(BaseModel):
    topics: list[Any]
    more_topics_url: str | None = None


class _Latest(BaseModel):
    topic_list: _TopicList


class _Post(BaseModel):
    username: str | None = None
    cooked: str
    created_at: AwareDatetime | None = None
    updated_at: AwareDatetime | None = None


class _PostStream(BaseModel):
    posts: list[_Post] = Field(min_length=1)


class _Topic(BaseModel):
    id: int
    title: str
    slug: str = "topic"
    created_at: AwareDatetime | None = None
    post_stream: _PostStream


def listings(config: DiscourseSource, http: SourceHttp, cursor: Cursor) -> list[Listing]:
    return [Listing("latest", partial(_pages, config, http, cursor))]


async def _pages(config: DiscourseSource, http: SourceHttp, cursor: Cursor) -> AsyncGenerator[Page, None]:
    for number in range(config.max_pages):
        url = f"{config.url}/latest.json" + (f"?page={number}" if number else "")
        data, response = await http.get_json(url, validators=cursor.http.get(url))
        if response.not_modified:
            yield Page(url)
            return
        latest = validate(_Latest, data, "latest.json")
        page = await _page(config, http, cursor, url, latest.topic_list.topics, response.validators)
        yield page
        if page.error is not None or not latest.topic_list.more_topics_url:
            return


async def _page(
    config: DiscourseSource,
    http: SourceHttp,
    cursor: Cursor,
    url: str,
    raw_topics: list[Any],
    validators: Validators,
) -> Page:
    page = Page(url)
    changed: list[_ListedTopic] = []
    for raw in raw_topics:
        try:
            topic = validate(_ListedTopic, raw, "topic")
        except InputRejected as exc:
            page.rejects.append(Reject(exc.reason, exc.detail, url, item_id(raw)))
            continue
        if topic.bumped_at is not None and cursor.topics.get(str(topic.id)) == topic.bumped_at:
            page.known += 1
        else:
            changed.append(topic)

    results = await asyncio.gather(
        *(_first_post(config, http, topic) for topic in changed), return_exceptions=True
    )
    settled: list[_ListedTopic] = []
    for topic, result in zip(changed, results, strict=True):
        topic_url = f"{config.url}/t/{topic.id}.json"
        if isinstance(result, NewPost):
            page.posts.append(result)
        elif isinstance(result, InputRejected):
            page.rejects.append(Reject(result.reason, result.detail, result.url or topic_url, str(topic.id)))
        elif isinstance(result, FetchError) and _gone(result):
            page.rejects.append(Reject(RejectReason.HTTP_STATUS, str(result), topic_url, str(topic.id)))
        elif isinstance(result, CrawlError):
            page.error = page.error or result
            continue
        else:
            raise result
        settled.append(topic)

    def commit() -> None:
        for topic in settled:
            if topic.bumped_at is not None:
                cursor.remember_topic(str(topic.id), topic.bumped_at)
        if page.error is None:  # else the next run must not get a 304 and miss the failed topics
            cursor.remember_validators(url, validators)

    page.commit = commit
    return page


def _gone(error: FetchError) -> bool:
    """A topic that answers 4xx was deleted or made private since it was listed."""
    return (
        not isinstance(error, RobotsDisallowed)
        and error.status is not None
        and 400 <= error.status < 500
        and error.status != 429
    )


async def _first_post(config: DiscourseSource, http: SourceHttp, listed: _ListedTopic) -> NewPost:
    data, _ = await http.get_json(f"{config.url}/t/{listed.id}.json")
    topic = validate(_Topic, data, "topic")
    first = topic.post_stream.posts[0]
    return build_post(
        external_id=str(listed.id),
        title=topic.title,
        body=first.cooked,
        is_html=True,
        url=f"{config.url}/t/{topic.slug}/{listed.id}",
        author=first.username,
        posted_at=first.created_at or topic.created_at,
        edited_at=first.updated_at,
    )
