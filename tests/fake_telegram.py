"""The notification tests' harness: a fake Telegram Bot API server on 127.0.0.1 with fault
injection, the fixtures that point lawscreen at it, and helpers that seed the outbox.

It implements getMe, sendMessage, editMessageText, answerCallbackQuery, getUpdates (long polling
of queued commands and callback queries), deleteWebhook and setMyCommands, and records every call
with its arrival time. A method's next calls can be answered with a fault: 429 with retry_after,
403, 400, a slow answer (the message is delivered, the client times out) or a connection closed
before any answer (delivered too). Message HTML is parsed as Telegram does: malformed HTML, or
text over 4096 UTF-16 units once parsed, is refused with 400.

It is a ``ThreadingHTTPServer`` rather than an ASGI app because closing a connection without an
answer, after reading the request, is one of the faults, and ASGI servers answer 500 instead.

Test modules register the ``telegram`` fixture by importing ``telegram_fixture``.
"""

from __future__ import annotations

import asyncio
import html
import json
import re
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl

import pytest
from sqlmodel import Session

from lawscreen.models import (
    Chat,
    ModelStatus,
    ModelVersion,
    Notification,
    NotificationKind,
    Prediction,
    PredictionStatus,
    SourceKind,
)
from lawscreen.notify import ratelimit
from lawscreen.notify.bot import UPDATES, build_application
from lawscreen.repo.posts import NewPost, upsert_posts
from lawscreen.repo.sources import ensure_source
from lawscreen.settings import get_settings

TOKEN = "123456:TEST-TOKEN"
BOT_USER = {"id": 123456, "is_bot": True, "first_name": "lawscreen", "username": "lawscreen_test_bot"}
MESSAGE_LIMIT = 4096
MAX_POLL_S = 1.0  # getUpdates waits at most this long, so a stopping bot is not held up
ALLOWED_TAGS = {"b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "a", "code", "pre", "blockquote"}
_HTML_TOKEN = re.compile(
    r"<(?P<close>/?)(?P<tag>[a-z-]+)(?P<attrs>(?:\s+[a-z-]+=\"[^\"<>]*\")*)\s*>"
    r"|&(?P<entity>lt|gt|amp|quot|#\d+|#x[0-9a-fA-F]+);"
    r"|(?P<bare>[<>&])"
    r"|(?P<text>[^<>&]+)",
    re.DOTALL,
)
_INT_PARAMS = {"chat_id", "message_id", "offset", "limit", "timeout"}
_JSON_PARAMS = {"reply_markup", "allowed_updates", "link_preview_options", "commands"}


@dataclass(frozen=True)
class Parsed:
    text: str
    styles: list[tuple[str, ...]]  # per character of text: the open tags (with attributes) around it


def parse_html(source: str) -> Parsed:
    """Parse Telegram's HTML subset strictly: every <, > and & must be a tag or an entity."""
    text: list[str] = []
    styles: list[tuple[str, ...]] = []
    stack: list[str] = []
    position = 0
    for match in _HTML_TOKEN.finditer(source):
        if match.start() != position or match["bare"]:
            raise ValueError(f"unexpected character at {match.start()}")
        position = match.end()
        if match["tag"]:
            tag = match["tag"]
            if tag not in ALLOWED_TAGS:
                raise ValueError(f"unsupported tag <{tag}>")
            if match["close"]:
                if not stack or stack[-1].split()[0] != tag:
                    raise ValueError(f"unmatched </{tag}>")
                stack.pop()
            else:
                stack.append((tag + match["attrs"]).strip())
        else:
            chunk = html.unescape(f"&{match['entity']};") if match["entity"] else match["text"]
            text.append(chunk)
            styles += [tuple(stack)] * len(chunk)
    if position != len(source):
        raise ValueError("trailing garbage")
    if stack:
        raise ValueError(f"unclosed <{stack[-1]}>")
    return Parsed("".join(text), styles)


def utf16_len(value: str) -> int:
    return len(value.encode("utf-16-le")) // 2


@dataclass(frozen=True)
class Fault:
    kind: str  # "error", "slow" or "drop"
    status: int = 200
    description: str = ""
    parameters: dict[str, int] | None = None  # Telegram's ResponseParameters
    delay: float = 0.0

    @classmethod
    def too_many(cls, seconds: int) -> Fault:
        return cls("error", 429, f"Too Many Requests: retry after {seconds}", {"retry_after": seconds})

    @classmethod
    def forbidden(cls) -> Fault:
        return cls("error", 403, "Forbidden: bot was blocked by the user")

    @classmethod
    def bad_request(cls, description: str = "Bad Request: chat not found") -> Fault:
        return cls("error", 400, description)

    @classmethod
    def migrated(cls, new_chat_id: int) -> Fault:
        description = "Bad Request: group chat was upgraded to a supergroup chat"
        return cls("error", 400, description, {"migrate_to_chat_id": new_chat_id})

    @classmethod
    def server_error(cls) -> Fault:
        return cls("error", 500, "Internal Server Error")

    @classmethod
    def slow(cls, delay: float) -> Fault:
        """Deliver, then answer after ``delay`` seconds (a client with a shorter timeout gives up)."""
        return cls("slow", delay=delay)

    @classmethod
    def drop(cls) -> Fault:
        """Deliver, then close the connection without answering."""
        return cls("drop")


@dataclass
class Call:
    method: str
    params: dict[str, Any]
    at: float  # time.monotonic() when the request had been read
    delivered: bool  # for sendMessage / editMessageText: whether it took effect


@dataclass
class _Injected:
    method: str
    fault: Fault
    times: int
    chat_id: int | None
    skip: int  # matching calls to let through first


@dataclass
class FakeTelegram:
    token: str = TOKEN
    calls: list[Call] = field(default_factory=list)
    messages: dict[tuple[int, int], dict[str, Any]] = field(default_factory=dict)
    _faults: list[_Injected] = field(default_factory=list)
    _updates: list[dict[str, Any]] = field(default_factory=list)
    _next_update: int = 1
    _next_message: dict[int, int] = field(default_factory=dict)
    _lock: threading.Condition = field(default_factory=threading.Condition)
    _stopping: threading.Event = field(default_factory=threading.Event)
    _server: ThreadingHTTPServer | None = None

    # --- running ---

    @contextmanager
    def running(self) -> Iterator[FakeTelegram]:
        server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        server.daemon_threads = True
        self._server = server
        thread = threading.Thread(target=server.serve_forever, name="fake-telegram", daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._stopping.set()
            with self._lock:
                self._lock.notify_all()
            server.shutdown()
            server.server_close()
            thread.join()

    @property
    def base_url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}/bot"

    # --- scripting ---

    def fail(
        self, method: str, fault: Fault, *, times: int = 1, chat_id: int | None = None, skip: int = 0
    ) -> None:
        """Answer the next ``times`` calls of ``method`` (to ``chat_id``), after ``skip``, with ``fault``."""
        with self._lock:
            self._faults.append(_Injected(method, fault, times, chat_id, skip))

    def command(self, chat_id: int, text: str, *, user_id: int = 1000) -> int:
        command = text.split()[0]
        return self._push(
            {
                "message": {
                    "message_id": self._new_message_id(chat_id),
                    "date": int(time.time()),
                    "chat": {"id": chat_id, "type": "private", "first_name": "Lawyer"},
                    "from": {"id": user_id, "is_bot": False, "first_name": "Lawyer", "username": "lawyer"},
                    "text": text,
                    "entities": [{"type": "bot_command", "offset": 0, "length": len(command)}],
                }
            }
        )

    def press(self, chat_id: int, message_id: int, data: str, *, user_id: int = 1000) -> str:
        """A button press on a stored message (or a forged one, if there is none); the query id."""
        stored = self.messages.get((chat_id, message_id), {})
        query_id = f"q{self._next_update}"
        message: dict[str, Any] = {
            "message_id": message_id,
            "date": int(time.time()),
            "chat": {"id": chat_id, "type": "private", "first_name": "Lawyer"},
            "text": stored.get("plain", "forged"),
        }
        if "reply_markup" in stored:
            message["reply_markup"] = stored["reply_markup"]
        self._push(
            {
                "callback_query": {
                    "id": query_id,
                    "from": {"id": user_id, "is_bot": False, "first_name": "Lawyer", "username": "lawyer"},
                    "chat_instance": str(chat_id),
                    "data": data,
                    "message": message,
                }
            }
        )
        return query_id

    # --- inspecting ---

    def sent(self, chat_id: int | None = None) -> list[Call]:
        """Delivered sendMessage calls, in arrival order."""
        with self._lock:
            return [
                call
                for call in self.calls
                if call.method == "sendMessage"
                and call.delivered
                and (chat_id is None or call.params["chat_id"] == chat_id)
            ]

    def called(self, method: str) -> list[Call]:
        with self._lock:
            return [call for call in self.calls if call.method == method]

    def wait_for(self, condition: Callable[[], bool], timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError("the fake Telegram server did not see what was expected in time")
            time.sleep(0.02)

    # --- serving ---

    def _push(self, update: dict[str, Any]) -> int:
        with self._lock:
            update_id = self._next_update
            self._next_update += 1
            self._updates.append({"update_id": update_id, **update})
            self._lock.notify_all()
            return update_id

    def _new_message_id(self, chat_id: int) -> int:
        with self._lock:
            self._next_message[chat_id] = self._next_message.get(chat_id, 0) + 1
            return self._next_message[chat_id]

    def _take_fault(self, method: str, chat_id: Any) -> Fault | None:
        with self._lock:
            for injected in self._faults:
                if injected.method == method and injected.chat_id in (None, chat_id) and injected.times > 0:
                    if injected.skip:
                        injected.skip -= 1
                        return None
                    injected.times -= 1
                    return injected.fault
            return None

    def handle(self, method: str, params: dict[str, Any], fault: Fault | None) -> tuple[int, dict[str, Any]]:
        """Apply a call; (HTTP status, JSON answer)."""
        if fault is not None and fault.kind == "error":
            self._record(method, params, delivered=False)
            answer: dict[str, Any] = {
                "ok": False,
                "error_code": fault.status,
                "description": fault.description,
            }
            if fault.parameters is not None:
                answer["parameters"] = fault.parameters
            return fault.status, answer
        handler = getattr(self, f"_api_{method}", None)
        if handler is None:
            self._record(method, params, delivered=False)
            return 404, {"ok": False, "error_code": 404, "description": "Not Found: method not found"}
        status, result = handler(params)
        if status != 200:
            return status, {"ok": False, "error_code": status, "description": result}
        return 200, {"ok": True, "result": result}

    def _record(self, method: str, params: dict[str, Any], delivered: bool) -> None:
        with self._lock:
            self.calls.append(Call(method, params, time.monotonic(), delivered))

    def _checked_text(self, params: dict[str, Any]) -> tuple[str | None, str]:
        """(error, plain text) for a message's text in HTML parse mode."""
        source = params.get("text", "")
        try:
            plain = parse_html(source).text if params.get("parse_mode") == "HTML" else source
        except ValueError as exc:
            return f"Bad Request: can't parse entities: {exc}", ""
        if not plain.strip():
            return "Bad Request: message text is empty", ""
        if utf16_len(plain) > MESSAGE_LIMIT:
            return "Bad Request: message is too long", ""
        return None, plain

    def _message_json(self, chat_id: int, message_id: int) -> dict[str, Any]:
        stored = self.messages[(chat_id, message_id)]
        message = {
            "message_id": message_id,
            "date": int(time.time()),
            "chat": {"id": chat_id, "type": "private", "first_name": "Lawyer"},
            "from": BOT_USER,
            "text": stored["plain"],
        }
        if "reply_markup" in stored:
            message["reply_markup"] = stored["reply_markup"]
        return message

    def _api_getMe(self, params: dict[str, Any]) -> tuple[int, Any]:
        self._record("getMe", params, delivered=True)
        return 200, BOT_USER

    def _api_deleteWebhook(self, params: dict[str, Any]) -> tuple[int, Any]:
        self._record("deleteWebhook", params, delivered=True)
        return 200, True

    def _api_setMyCommands(self, params: dict[str, Any]) -> tuple[int, Any]:
        self._record("setMyCommands", params, delivered=True)
        return 200, True

    def _api_answerCallbackQuery(self, params: dict[str, Any]) -> tuple[int, Any]:
        self._record("answerCallbackQuery", params, delivered=True)
        return 200, True

    def _api_sendMessage(self, params: dict[str, Any]) -> tuple[int, Any]:
        error, plain = self._checked_text(params)
        if error:
            self._record("sendMessage", params, delivered=False)
            return 400, error
        chat_id = params["chat_id"]
        message_id = self._new_message_id(chat_id)
        stored: dict[str, Any] = {"text": params["text"], "plain": plain}
        if "reply_markup" in params:
            stored["reply_markup"] = params["reply_markup"]
        with self._lock:
            self.messages[(chat_id, message_id)] = stored
        self._record("sendMessage", params, delivered=True)
        return 200, self._message_json(chat_id, message_id)

    def _api_editMessageText(self, params: dict[str, Any]) -> tuple[int, Any]:
        key = (params.get("chat_id"), params.get("message_id"))
        error, plain = self._checked_text(params)
        stored = self.messages.get(key)  # type: ignore[arg-type]
        if stored is None:
            error = "Bad Request: message to edit not found"
        elif stored["text"] == params["text"] and stored.get("reply_markup") == params.get("reply_markup"):
            error = "Bad Request: message is not modified"
        if error or stored is None:
            self._record("editMessageText", params, delivered=False)
            return 400, error
        stored.update(text=params["text"], plain=plain, reply_markup=params.get("reply_markup"))
        self._record("editMessageText", params, delivered=True)
        return 200, self._message_json(*key)  # type: ignore[arg-type]

    def _api_getUpdates(self, params: dict[str, Any]) -> tuple[int, Any]:
        self._record("getUpdates", params, delivered=True)
        offset = params.get("offset", 0)
        wait = min(float(params.get("timeout", 0)), MAX_POLL_S)
        deadline = time.monotonic() + wait
        with self._lock:
            if offset:  # Telegram forgets updates below the offset once asked for it
                self._updates = [update for update in self._updates if update["update_id"] >= offset]
            while not self._updates and not self._stopping.is_set():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._lock.wait(remaining)
            return 200, list(self._updates[: params.get("limit", 100)])


def _decode(raw: dict[str, str]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for name, value in raw.items():
        if name in _INT_PARAMS:
            params[name] = int(value)
        elif name in _JSON_PARAMS:
            params[name] = json.loads(value)
        else:
            params[name] = value
    return params


def _handler(fake: FakeTelegram) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as with the real API

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", 0))
            body = self.rfile.read(length).decode()
            prefix = f"/bot{fake.token}/"
            if not self.path.startswith(prefix):
                self._answer(401, {"ok": False, "error_code": 401, "description": "Unauthorized"})
                return
            method = self.path[len(prefix) :]
            params = _decode(dict(parse_qsl(body, keep_blank_values=True)))
            fault = fake._take_fault(method, params.get("chat_id"))
            status, answer = fake.handle(method, params, fault)
            if fault is not None and fault.kind == "drop":
                self.close_connection = True  # delivered, but the client never hears of it
                return
            if fault is not None and fault.kind == "slow":
                fake._stopping.wait(fault.delay)
            self._answer(status, answer)

        def _answer(self, status: int, answer: dict[str, Any]) -> None:
            body = json.dumps(answer).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True  # the client gave up waiting (a slow answer)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # quiet tests

    return Handler


# --- fixtures ---

ALLOWED = (1, 2)  # the chats the fixtures put on the allow-list
SEND_TIMEOUT_S = 1.0  # short, so a slow answer times out quickly


def configure(monkeypatch: pytest.MonkeyPatch, **env: str) -> None:
    for name, value in env.items():
        monkeypatch.setenv(f"LAWSCREEN_{name.upper()}", value)
    get_settings.cache_clear()


@pytest.fixture(name="telegram")
def telegram_fixture(database: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeTelegram]:
    """A running fake server, the settings pointing at it, and a fresh process rate limiter."""
    with FakeTelegram().running() as fake:
        configure(
            monkeypatch,
            telegram_token=fake.token,
            telegram_base_url=fake.base_url,
            telegram_chat_ids=",".join(map(str, ALLOWED)),
            notify_send_timeout_s=str(SEND_TIMEOUT_S),
        )
        monkeypatch.setattr(ratelimit, "LIMITER", ratelimit.RateLimiter())
        yield fake


# --- seeding ---

PAST = datetime(2026, 1, 1, tzinfo=UTC)  # chats created before any digest window of the tests


def add_chats(session: Session, *chat_ids: int, **fields: Any) -> None:
    session.add_all(Chat(chat_id=chat_id, created_at=PAST, **fields) for chat_id in chat_ids)
    session.flush()


def add_model(session: Session, threshold: float = 0.5) -> int:
    model = ModelVersion(
        version="m1", base="tiny", artifact_path="/m", threshold=threshold, status=ModelStatus.PRODUCTION
    )
    session.add(model)
    session.flush()
    assert model.id is not None
    return model.id


def add_posts(session: Session, count: int, *, source: str = "v2ex", start: int = 0) -> list[int]:
    source_id = ensure_source(session, source, SourceKind.V2EX).id
    assert source_id is not None
    posts = [
        NewPost.build(
            external_id=str(number),
            title=f"问题 {number}",
            body_text=f"公司拖欠工资第 {number} 个月，怎么办？",
            url=f"https://{source}.example/t/{number}",
            posted_at=PAST,
        )
        for number in range(start, start + count)
    ]
    result = upsert_posts(session, source_id, posts)
    return [result.id_by_external_id[post.external_id] for post in posts]


def add_predictions(session: Session, model_id: int, scores: dict[int, float]) -> None:
    session.add_all(
        Prediction(
            post_id=post_id,
            model_version_id=model_id,
            status=PredictionStatus.SCORED,
            score=score,
            label=score >= 0.5,
        )
        for post_id, score in scores.items()
    )
    session.flush()


def queue(
    session: Session,
    chat_id: int,
    post_ids: list[int],
    *,
    kind: NotificationKind = NotificationKind.ALERT,
    score: float = 0.97,
) -> list[int]:
    rows = [Notification(chat_id=chat_id, post_id=post_id, kind=kind, score=score) for post_id in post_ids]
    session.add_all(rows)
    session.flush()
    return [row.id for row in rows if row.id is not None]


def run_bot(fake: FakeTelegram, script: Callable[[], Awaitable[None]]) -> None:
    """Run the application, polling the fake server, for as long as ``script`` takes."""

    async def main() -> None:
        application = build_application(get_settings())
        async with application:  # initialize, then shutdown
            assert application.post_init is not None
            await application.post_init(application)
            assert application.updater is not None
            await application.updater.start_polling(
                poll_interval=0, timeout=timedelta(seconds=1), allowed_updates=UPDATES
            )
            await application.start()
            try:
                await script()
            finally:
                await application.updater.stop()
                await application.stop()

    asyncio.run(main())
