"""V2EX: API v2 node topics with a personal access token, or the public v1 endpoints.

- ``nodes`` and ``token_env``: ``GET /api/v2/nodes/{node}/topics?p=N`` with
  ``Authorization: Bearer``, paged.
- ``nodes`` alone: ``GET /api/topics/show.json?node_name={node}``, one page per node.
- neither: ``GET /api/topics/latest.json``, one page.

Topics map as V2EX documents them: ``content_rendered`` (HTML) is kept as the raw body and turned
into text for the model, ``content`` (the author's source) stands in when nothing was rendered.
V2EX sits behind Cloudflare, which answers 403 to clients it dislikes: a stable User-Agent and a
modest ``min_delay_seconds`` help, and the source's health shows when it happens.
"""

from __future__ import annotations

import os
from collections.abc import AsyncGenerator
from functools import partial
from typing import Any

from pydantic import BaseModel

from lawscreen.crawl._config import V2exSource
from lawscreen.crawl._cursor import Cursor, Validators
from lawscreen.crawl._http import SourceHttp
from lawscreen.crawl._items import Listing, Page, RejectReason, build_page, build_post, from_unix, validate
from lawscreen.errors import CrawlError, FetchError, InputRejected
from lawscreen.repo.posts import NewPost


class _Member(BaseModel):
    username: str


class _Topic(BaseModel):
    id: int
    title: str
    content: str = ""
    content_rendered: str = ""
    url: str | None = None
    member: _Member | None = None
    created: int
    last_modified: int | None = None


def listings(config: V2exSource, http: SourceHttp, cursor: Cursor) -> list[Listing]:
    if config.nodes and config.token_env:
        token = os.environ.get(config.token_env, "").strip()
        if not token:
            raise CrawlError(f"the environment variable {config.token_env} (token_env) is not set")
        headers = {"Authorization": f"Bearer {token}"}
        return [
            Listing(f"node {node}", partial(_v2_pages, config, http, cursor, node, headers))
            for node in config.nodes
        ]
    if config.nodes:
        return [
            Listing(
                f"node {node}",
                partial(
                    _v1_pages, config, http, cursor, f"{config.url}/api/topics/show.json?node_name={node}"
                ),
            )
            for node in config.nodes
        ]
    return [
        Listing("latest", partial(_v1_pages, config, http, cursor, f"{config.url}/api/topics/latest.json"))
    ]


async def _v2_pages(
    config: V2exSource, http: SourceHttp, cursor: Cursor, node: str, headers: dict[str, str]
) -> AsyncGenerator[Page, None]:
    for number in range(1, config.max_pages + 1):
        url = f"{config.url}/api/v2/nodes/{node}/topics?p={number}"
        data, response = await http.get_json(url, headers=headers, validators=cursor.http.get(url))
        if response.not_modified:
            yield Page(url)
            return
        if isinstance(data, dict) and data.get("success") is False:
            # The API's own refusal (unknown node, bad token) comes with a message, not a 4xx.
            raise FetchError(f"{url}: V2EX refused: {str(data.get('message'))[:200]}")
        topics = data.get("result") if isinstance(data, dict) else None
        if not isinstance(topics, list):
            raise InputRejected(RejectReason.MISSING_FIELD, "no 'result' list of topics", url=url)
        yield _page(config, cursor, url, topics, response.validators)
        if not topics:
            return


async def _v1_pages(
    config: V2exSource, http: SourceHttp, cursor: Cursor, url: str
) -> AsyncGenerator[Page, None]:
    data, response = await http.get_json(url, validators=cursor.http.get(url))
    if response.not_modified:
        yield Page(url)
        return
    if not isinstance(data, list):
        raise InputRejected(RejectReason.INVALID_FIELD, "expected a JSON list of topics", url=url)
    yield _page(config, cursor, url, data, response.validators)


def _page(config: V2exSource, cursor: Cursor, url: str, topics: list[Any], validators: Validators) -> Page:
    page = build_page(url, topics, partial(_post, config.url))
    page.commit = partial(cursor.remember_validators, url, validators)
    return page


def _post(base_url: str, raw: Any) -> NewPost:
    topic = validate(_Topic, raw, "topic")
    rendered = bool(topic.content_rendered)
    return build_post(
        external_id=str(topic.id),
        title=topic.title,
        body=topic.content_rendered if rendered else topic.content,
        is_html=rendered,
        url=topic.url or f"{base_url}/t/{topic.id}",
        author=topic.member.username if topic.member else None,
        posted_at=from_unix(topic.created),
        edited_at=from_unix(topic.last_modified),
    )
