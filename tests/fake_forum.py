"""A fake forum for the crawler's tests and benchmark: real HTTP on 127.0.0.1, on a random port.

A stdlib ``ThreadingHTTPServer`` in a background thread speaks V2EX (API v1 and v2), Discourse,
RSS 2.0 and Atom over one set of topics, supports conditional requests (ETag, Last-Modified), and
injects faults on demand: ``forum.fail(path, Fault(...), ...)`` makes the next requests to
``path`` misbehave, in order. Every request is logged with its headers and arrival time.

``loopback_guard`` makes a test fail if anything tries to reach a non-loopback address.
"""

from __future__ import annotations

import hashlib
import html
import ipaddress
import json
import socket
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from lawscreen.crawl import SourceConfig, load_sources, sync_sources
from lawscreen.database import transaction
from lawscreen.settings import get_settings

TOKEN = "test-token-3f1c"
EPOCH = 1_763_000_000  # topic timestamps count from here (Nov 2025)
ALLOW_ALL = "User-agent: *\nAllow: /\n"


@dataclass
class Fault:
    """How one request misbehaves. Fields combine: a delay, then the answer."""

    status: int = 200
    body: bytes | None = None  # None: the normal body (if status is 200) or a short error text
    content_type: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds before answering: a slow server
    truncate: bool = False  # announce the whole body, send half of it, close
    unsized: bool = False  # no Content-Length: the body ends when the connection closes
    trickle: float = 0.0  # seconds between the bytes of the body: a slow-loris server
    drop: bool = False  # close the connection without answering


@dataclass(frozen=True)
class Request:
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    at: float  # time.monotonic()


@dataclass
class Topic:
    id: int
    title: str
    content: str
    author: str = "alice"
    created: int = 0
    last_modified: int = 0
    bumped: int = 0  # Discourse bumped_at

    def __post_init__(self) -> None:
        self.created = self.created or EPOCH + self.id
        self.last_modified = self.last_modified or self.created
        self.bumped = self.bumped or self.created

    def edit(self, content: str) -> None:
        self.content = content
        self.last_modified += 100
        self.bumped += 100

    @property
    def rendered(self) -> str:
        return "".join(f"<p>{html.escape(line)}</p>" for line in self.content.split("\n"))


def make_topics(count: int, first: int = 1) -> list[Topic]:
    """Topics numbered ``first`` .. ``first + count - 1``, newest first as forums list them."""
    return [
        Topic(i, f"帖子 {i}", f"第 {i} 个帖子的内容：房东不退押金怎么办？")
        for i in range(first + count - 1, first - 1, -1)
    ]


def _rfc822(unix: int) -> str:
    return format_datetime(datetime.fromtimestamp(unix, UTC), usegmt=True)


def _iso(unix: int) -> str:
    return datetime.fromtimestamp(unix, UTC).isoformat().replace("+00:00", "Z")


class FakeForum:
    def __init__(self, topics: int = 0, page_size: int = 20) -> None:
        self.topics = make_topics(topics)
        self.page_size = page_size
        self.robots: str | None = ALLOW_ALL  # None: robots.txt answers 404
        self.requests: list[Request] = []
        self.in_flight = self.max_in_flight = 0
        self.routes: dict[str, Callable[[dict[str, str]], tuple[str, bytes]]] = {}  # extra paths
        self._faults: defaultdict[str, deque[Fault]] = defaultdict(deque)
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.forum = self
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, name="fake-forum", daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> FakeForum:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stopping.set()  # cuts slow answers short
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def add(self, *topics: Topic) -> None:
        """New topics, on top of the listings."""
        self.topics[:0] = sorted(topics, key=lambda topic: -topic.id)

    def fail(self, path: str, *faults: Fault) -> None:
        """The next requests to ``path`` (``/a/b`` or ``/a/b?x=1``) get these faults, in order."""
        with self._lock:
            self._faults[path].extend(faults)

    def requests_to(self, path: str) -> list[Request]:
        return [request for request in self.requests if request.path == path]

    def _next_fault(self, path: str, query: str) -> Fault | None:
        with self._lock:
            for key in (f"{path}?{query}", path):
                if self._faults.get(key):
                    return self._faults[key].popleft()
        return None

    # --- formats -------------------------------------------------------------------------------

    def page(self, number: int) -> list[Topic]:
        """Topics of page ``number`` (1-based), sorted by last activity like the real listings."""
        ordered = sorted(self.topics, key=lambda topic: -topic.bumped)
        return ordered[(number - 1) * self.page_size : number * self.page_size]

    def v2ex_topic(self, topic: Topic) -> dict[str, Any]:
        return {
            "id": topic.id,
            "title": topic.title,
            "url": f"https://www.v2ex.com/t/{topic.id}",
            "content": topic.content,
            "content_rendered": topic.rendered,
            "syntax": 0,
            "replies": 3,
            "member": {
                "id": 7,
                "username": topic.author,
                "url": f"https://www.v2ex.com/member/{topic.author}",
            },
            "node": {"id": 12, "name": "qna", "title": "问与答"},
            "created": topic.created,
            "last_modified": topic.last_modified,
            "last_touched": topic.bumped,
        }

    def discourse_listed(self, topic: Topic) -> dict[str, Any]:
        return {
            "id": topic.id,
            "title": topic.title,
            "fancy_title": topic.title,
            "slug": f"topic-{topic.id}",
            "posts_count": 2,
            "created_at": _iso(topic.created),
            "last_posted_at": _iso(topic.bumped),
            "bumped": True,
            "bumped_at": _iso(topic.bumped),
            "pinned": False,
            "posters": [{"user_id": 7}],
        }

    def discourse_topic(self, topic: Topic) -> dict[str, Any]:
        post = {
            "id": topic.id * 10,
            "username": topic.author,
            "cooked": topic.rendered,
            "post_number": 1,
            "created_at": _iso(topic.created),
            "updated_at": _iso(topic.last_modified),
        }
        return {
            "id": topic.id,
            "title": topic.title,
            "slug": f"topic-{topic.id}",
            "created_at": _iso(topic.created),
            "post_stream": {"posts": [post], "stream": [topic.id * 10]},
        }

    def rss(self) -> bytes:
        items = "".join(
            f"<item><guid isPermaLink='false'>topic-{t.id}</guid><title>{html.escape(t.title)}</title>"
            f"<link>{self.url}/t/{t.id}</link><description>{html.escape(t.rendered)}</description>"
            f"<author>{t.author}@forum.example</author>"
            f"<pubDate>{_rfc822(t.created)}</pubDate></item>"
            for t in self.page(1)
        )
        return (
            '<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel><title>Forum</title>'
            f"<link>{self.url}</link><description>d</description>{items}</channel></rss>"
        ).encode()

    def atom(self) -> bytes:
        entries = "".join(
            f"<entry><id>tag:forum.example,2025:{t.id}</id><title>{html.escape(t.title)}</title>"
            f"<link href='{self.url}/t/{t.id}'/><author><name>{t.author}</name></author>"
            f"<published>{_iso(t.created)}</published><updated>{_iso(t.last_modified)}</updated>"
            f"<content type='html'>{html.escape(t.rendered)}</content></entry>"
            for t in self.page(1)
        )
        return (
            '<?xml version="1.0" encoding="utf-8"?><feed xmlns="http://www.w3.org/2005/Atom">'
            f"<title>Forum</title><id>tag:forum.example,2025:feed</id><updated>{_iso(EPOCH)}</updated>"
            f"{entries}</feed>"
        ).encode()

    def answer(self, path: str, query: dict[str, str], headers: dict[str, str]) -> tuple[int, str, bytes]:
        """Status, content type and body of the normal answer to a GET."""
        if path in self.routes:
            content_type, body = self.routes[path](query)
            return 200, content_type, body
        if path == "/robots.txt":
            if self.robots is None:
                return 404, "text/plain", b"not found"
            return 200, "text/plain", self.robots.encode()
        if path.startswith("/api/v2/nodes/") and path.endswith("/topics"):
            if headers.get("authorization") != f"Bearer {TOKEN}":
                return 401, "application/json", b'{"success": false, "message": "Invalid token"}'
            topics = self.page(int(query.get("p", "1")))
            return _json({"success": True, "message": "", "result": [self.v2ex_topic(t) for t in topics]})
        if path in ("/api/topics/latest.json", "/api/topics/show.json"):
            return _json([self.v2ex_topic(t) for t in self.page(1)])
        if path == "/latest.json":
            number = int(query.get("page", "0"))
            topic_list: dict[str, Any] = {
                "per_page": self.page_size,
                "topics": [self.discourse_listed(t) for t in self.page(number + 1)],
            }
            if self.page(number + 2):
                topic_list["more_topics_url"] = f"/latest?page={number + 1}"
            return _json({"users": [], "topic_list": topic_list})
        if path.startswith("/t/") and path.endswith(".json"):
            wanted = path.removeprefix("/t/").removesuffix(".json")
            for topic in self.topics:
                if str(topic.id) == wanted:
                    return _json(self.discourse_topic(topic))
            return 404, "application/json", b'{"errors": ["not found"]}'
        if path == "/feed.rss":
            return 200, "application/rss+xml; charset=utf-8", self.rss()
        if path == "/feed.atom":
            return 200, "application/atom+xml", self.atom()
        return 404, "text/plain", b"not found"


def _json(value: Any) -> tuple[int, str, bytes]:
    return 200, "application/json; charset=utf-8", json.dumps(value, ensure_ascii=False).encode()


class _Server(ThreadingHTTPServer):
    daemon_threads = False  # server_close() joins the handlers: no socket outlives a test
    forum: FakeForum

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that gave up on a slow or broken answer is what the tests ask for


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like real servers
    disable_nagle_algorithm = True  # headers and body are two writes: Nagle would hold the second
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        forum = self.server.forum
        parts = urlsplit(self.path)
        query = {key: values[0] for key, values in parse_qs(parts.query).items()}
        headers = {key.lower(): value for key, value in self.headers.items()}
        forum.requests.append(Request(parts.path, query, headers, time.monotonic()))
        with forum._lock:
            forum.in_flight += 1
            forum.max_in_flight = max(forum.max_in_flight, forum.in_flight)
        try:
            self._answer(forum, parts.path, parts.query, query, headers)
        finally:
            with forum._lock:
                forum.in_flight -= 1

    def _answer(
        self, forum: FakeForum, path: str, raw_query: str, query: dict[str, str], headers: dict[str, str]
    ) -> None:

        fault = forum._next_fault(path, raw_query)
        if fault is not None and fault.delay and forum._stopping.wait(fault.delay):
            return
        if fault is not None and fault.drop:
            self.close_connection = True
            return
        status, content_type, body = forum.answer(path, query, headers)
        extra: dict[str, str] = {}
        if fault is not None:
            status = fault.status
            if fault.body is not None:
                body = fault.body
            elif status != 200:
                body = f"error {status}".encode()
            content_type = fault.content_type or content_type
            extra = fault.headers
        elif status == 200 and path == "/feed.rss":  # validated by date, the others by ETag
            newest = max((topic.last_modified for topic in forum.topics), default=EPOCH)
            extra = {"Last-Modified": _rfc822(newest)}
            if headers.get("if-modified-since") == extra["Last-Modified"]:
                self._send(304, extra, b"")
                return
        elif status == 200:
            extra = {"ETag": '"' + hashlib.sha1(body).hexdigest()[:16] + '"'}
            if headers.get("if-none-match") == extra["ETag"]:
                self._send(304, extra, b"")
                return
        self._send(status, {"Content-Type": content_type, **extra}, body, fault)

    def _send(self, status: int, headers: dict[str, str], body: bytes, fault: Fault | None = None) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        if fault is not None and (fault.truncate or fault.unsized):
            self.close_connection = True
        if "Content-Length" not in headers and not (fault is not None and fault.unsized):
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if fault is not None and fault.trickle:
            for index in range(len(body)):
                self.wfile.write(body[index : index + 1])
                if self.server.forum._stopping.wait(fault.trickle):
                    return
            return
        self.wfile.write(body[: len(body) // 2] if fault is not None and fault.truncate else body)


@pytest.fixture(name="loopback_attempts", autouse=True)
def loopback_guard(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Refuse (and record) any connection or name lookup for a non-loopback address, and fail the
    test if any was attempted, since the crawler would turn a refusal into a mere error.

    Autouse in every module that imports it."""
    attempts: list[str] = []

    def loopback(host: Any) -> bool:
        if host in ("localhost", None):
            return True
        try:
            return ipaddress.ip_address(str(host).split("%")[0]).is_loopback
        except ValueError:
            return False

    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex
    real_getaddrinfo = socket.getaddrinfo

    def check(sock: socket.socket, address: Any) -> None:
        if sock.family in (socket.AF_INET, socket.AF_INET6) and not loopback(address[0]):
            attempts.append(f"connect {address}")
            raise ConnectionRefusedError(f"test tried to reach {address}")

    def connect(sock: socket.socket, address: Any) -> None:
        check(sock, address)
        real_connect(sock, address)

    def connect_ex(sock: socket.socket, address: Any) -> int:
        check(sock, address)
        return real_connect_ex(sock, address)

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if not loopback(host.decode() if isinstance(host, bytes) else host):
            attempts.append(f"resolve {host}")
            raise socket.gaierror(socket.EAI_NONAME, f"test tried to resolve {host}")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    yield attempts
    assert attempts == [], f"the test tried to reach non-loopback addresses: {attempts}"


# Tiny waits and timeouts, so retries and timeouts are real but fast.
FAST_CRAWL = {
    "CRAWL_CONNECT_TIMEOUT_SECONDS": "2",
    "CRAWL_READ_TIMEOUT_SECONDS": "1",
    "CRAWL_MAX_ATTEMPTS": "3",
    "CRAWL_BACKOFF_SECONDS": "0.01",
    "CRAWL_BACKOFF_MAX_SECONDS": "0.05",
    "CRAWL_RETRY_AFTER_MAX_SECONDS": "3",
}


def crawl_settings(monkeypatch: pytest.MonkeyPatch, **overrides: str) -> None:
    """Point the crawler's settings at FAST_CRAWL, with ``overrides`` (names without the prefix)."""
    for name, value in {**FAST_CRAWL, **{key.upper(): value for key, value in overrides.items()}}.items():
        monkeypatch.setenv(f"LAWSCREEN_{name}", value)
    get_settings.cache_clear()


def use_sources(directory: Path, toml: str) -> list[SourceConfig]:
    """Write ``toml`` as the sources file, load it and sync it into the database."""
    path = directory / "sources.toml"
    path.write_text(toml, encoding="utf-8")
    configs = load_sources(path)
    with transaction() as session:
        sync_sources(session, configs)
    return configs


def source_toml(name: str, kind: str, **fields: Any) -> str:
    """One ``[[source]]`` table (JSON scalars and arrays are valid TOML); HTTP sources default to
    no delay between requests, to keep tests fast."""
    if kind != "jsonl":
        fields.setdefault("min_delay_seconds", 0)
    lines = [f"{key} = {json.dumps(value, ensure_ascii=False)}" for key, value in fields.items()]
    return "\n".join(["[[source]]", f'name = "{name}"', f'kind = "{kind}"', *lines]) + "\n"
