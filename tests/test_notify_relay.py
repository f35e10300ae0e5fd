"""The relay against the fake Bot API: at most once, each error's outcome, the rate limits."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import psycopg
import pytest
from sqlalchemy import update
from sqlmodel import col, select
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TimedOut,
)
from typer.testing import CliRunner

from lawscreen.cli import app
from lawscreen.database import transaction
from lawscreen.errors import ConfigError, NotUncertainError, TelegramTokenError
from lawscreen.models import Chat, Notification, NotificationKind, Post
from lawscreen.notify import deliver_pending, served_chat_ids, sync_chats
from lawscreen.notify.chats import CONSOLE_CHAT_ID
from lawscreen.notify.ratelimit import RateLimiter
from lawscreen.notify.transport import Action, PartlyDeliveredError, classify
from lawscreen.settings import get_settings
from tests.conftest import REPO_ROOT, run_cli
from tests.fake_telegram import (
    SEND_TIMEOUT_S,
    FakeTelegram,
    Fault,
    add_chats,
    add_posts,
    configure,
    queue,
    telegram_fixture,  # noqa: F401 - registers the telegram fixture
)


def _rows() -> list[Notification]:
    with transaction() as session:
        return list(session.scalars(select(Notification).order_by(col(Notification.id))).all())


def _seed_alerts(chat_alerts: dict[int, int]) -> list[int]:
    """Chats (created) and their alert counts; the alerts' row ids."""
    with transaction() as session:
        add_chats(session, *chat_alerts)
        posts = add_posts(session, sum(chat_alerts.values()))
        ids = []
        for chat_id, count in chat_alerts.items():
            ids += queue(session, chat_id, posts[:count])
            posts = posts[count:]
        return ids


def test_alerts_are_sent_once_in_html_with_buttons_and_marked_sent(telegram: FakeTelegram) -> None:
    _seed_alerts({1: 2})

    report = deliver_pending()

    assert (report.transport, report.sent) == ("telegram", 2)
    sent = telegram.sent(chat_id=1)
    assert [call.params["parse_mode"] for call in sent] == ["HTML", "HTML"]
    assert all(call.params["reply_markup"]["inline_keyboard"][0][0]["text"] == "✅ 法律咨询" for call in sent)
    rows = _rows()
    assert [row.status for row in rows] == ["sent", "sent"]
    assert [row.telegram_message_id for row in rows] == [1, 2]
    assert all(row.sent_at is not None and row.attempts == 1 for row in rows)
    assert deliver_pending().sent == 0  # nothing is sent twice
    assert len(telegram.sent()) == 2


def test_four_concurrent_relays_send_each_row_once_within_the_rate_limits(
    telegram: FakeTelegram, monkeypatch: pytest.MonkeyPatch
) -> None:
    chats = list(range(1, 38))
    configure(monkeypatch, telegram_chat_ids=",".join(map(str, chats)))
    ids = _seed_alerts({chat: (4 if chat == 1 else 1) for chat in chats})  # 40 rows
    barrier = threading.Barrier(4)
    reports = []

    def relay() -> None:
        barrier.wait()
        reports.append(deliver_pending())

    threads = [threading.Thread(target=relay) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sum(report.sent for report in reports) == len(ids) == 40
    assert sum(report.sent > 0 for report in reports) > 1  # the work was shared
    sent = telegram.sent()
    assert len(sent) == 40
    assert len({(call.params["chat_id"], call.params["text"]) for call in sent}) == 40
    assert {row.status for row in _rows()} == {"sent"}
    # Rate limits, as the server saw them: 1 a second per chat, at most 30 in any second.
    chat_one = [call.at for call in sent if call.params["chat_id"] == 1]
    assert all(later - earlier >= 1.0 for earlier, later in itertools.pairwise(chat_one))
    times = sorted(call.at for call in sent)
    assert max(sum(1 for t in times if start <= t < start + 1.0) for start in times) <= 30


def test_rate_limiter_spaces_one_chat_and_the_whole_process() -> None:
    limiter = RateLimiter(per_chat_interval=0.2, global_interval=0.05)

    async def grants() -> list[tuple[int, float]]:
        order = []

        async def one(chat_id: int) -> None:
            await limiter.acquire(chat_id)
            order.append((chat_id, time.monotonic()))

        await asyncio.gather(*(one(chat) for chat in [1, 1, 1, 2, 3, 4]))
        return order

    order = asyncio.run(grants())
    ones = [at for chat, at in order if chat == 1]
    assert all(b - a >= 0.2 for a, b in itertools.pairwise(ones))
    times = sorted(at for _, at in order)
    assert all(b - a >= 0.05 for a, b in itertools.pairwise(times))


def test_retry_after_reschedules_the_row_and_holds_the_chat(telegram: FakeTelegram) -> None:
    first, second = _seed_alerts({1: 2})
    telegram.fail("sendMessage", Fault.too_many(30))

    report = deliver_pending()

    assert (report.sent, report.rescheduled) == (0, 2)
    rows = {row.id: row for row in _rows()}
    assert rows[first].status == rows[second].status == "pending"
    assert (rows[first].attempts, rows[second].attempts) == (1, 0)  # the second was not tried
    assert "RetryAfter" in (rows[first].last_error or "")
    not_before = rows[first].not_before
    assert not_before is not None
    assert not_before > datetime.now(UTC) + timedelta(seconds=25)
    assert deliver_pending().sent == 0  # not due yet
    assert len(telegram.called("sendMessage")) == 1


def test_forbidden_disables_the_chat_and_cancels_what_waits_for_it(telegram: FakeTelegram) -> None:
    _seed_alerts({1: 3, 2: 1})
    telegram.fail("sendMessage", Fault.forbidden(), chat_id=1)

    report = deliver_pending()

    assert report.disabled_chats == [1]
    assert (report.sent, report.failed, report.cancelled) == (1, 1, 2)
    statuses = [(row.chat_id, row.status) for row in _rows()]
    assert statuses == [(1, "failed"), (1, "cancelled"), (1, "cancelled"), (2, "sent")]
    with transaction() as session:
        chat = session.get(Chat, 1)
        assert chat is not None
        assert not chat.enabled
        assert "blocked" in (chat.disabled_reason or "")


def test_a_migrated_group_disables_the_chat_with_its_new_id(telegram: FakeTelegram) -> None:
    _seed_alerts({1: 1})
    telegram.fail("sendMessage", Fault.migrated(-100777))
    assert deliver_pending().disabled_chats == [1]
    with transaction() as session:
        chat = session.get(Chat, 1)
        assert chat is not None
        assert "-100777" in (chat.disabled_reason or "")


def test_bad_request_fails_the_row_with_the_reason_and_the_chat_goes_on(telegram: FakeTelegram) -> None:
    _seed_alerts({1: 2})
    telegram.fail("sendMessage", Fault.bad_request("Bad Request: chat not found"))

    report = deliver_pending()

    assert (report.sent, report.failed) == (1, 1)
    failed, sent = _rows()
    assert (failed.status, sent.status) == ("failed", "sent")
    assert "chat not found" in (failed.last_error or "").lower()
    assert deliver_pending().sent == 0  # a failed row is never retried


@pytest.mark.parametrize(
    "fault",
    [Fault.slow(SEND_TIMEOUT_S + 0.5), Fault.drop(), Fault.server_error()],
    ids=["read-timeout", "closed-before-answer", "5xx"],
)
def test_ambiguous_errors_make_the_row_uncertain_and_it_is_never_resent(
    telegram: FakeTelegram, fault: Fault
) -> None:
    _seed_alerts({1: 1})
    telegram.fail("sendMessage", fault)

    report = deliver_pending()

    assert report.uncertain == 1
    (row,) = _rows()
    assert row.status == "uncertain"
    assert row.last_error
    assert deliver_pending().sent == 0
    assert len(telegram.called("sendMessage")) == 1


def test_uncertain_alerts_are_listed_and_settled_from_the_command_line(telegram: FakeTelegram) -> None:
    first, second = _seed_alerts({1: 2})
    telegram.fail("sendMessage", Fault.drop(), times=2)
    assert deliver_pending().uncertain == 2
    runner = CliRunner()

    listed = runner.invoke(app, ["uncertain"])
    assert listed.exit_code == 0, listed.output
    assert f"\n│ {first} " in listed.output
    assert f"\n│ {second} " in listed.output

    assert runner.invoke(app, ["uncertain", "--arrived", str(first)]).exit_code == 0
    resend = runner.invoke(app, ["uncertain", "--resend", str(second)])
    assert resend.exit_code == 0, resend.output
    assert "is now pending" in resend.output
    assert deliver_pending().sent == 1  # only the one that never arrived
    assert {row.id: row.status for row in _rows()} == {first: "sent", second: "sent"}
    assert len(telegram.called("sendMessage")) == 3
    assert "no uncertain messages" in runner.invoke(app, ["uncertain"]).output

    again = runner.invoke(app, ["uncertain", "--resend", str(first)])
    assert again.exit_code != 0
    assert isinstance(again.exception, NotUncertainError)


def test_a_message_that_fails_after_its_first_part_is_uncertain(telegram: FakeTelegram) -> None:
    with transaction() as session:
        add_chats(session, 1)
        (post,) = add_posts(session, 1)
        # 100 cross-posts: the alert lists every link and needs more than one part.
        copies = add_posts(session, 100, source="forum", start=10_000)
        session.execute(update(Post).where(col(Post.id).in_(copies)).values(duplicate_of_id=post))
        queue(session, 1, [post])
    telegram.fail("sendMessage", Fault.bad_request("Bad Request: oops"), skip=1)

    assert deliver_pending().uncertain == 1
    (row,) = _rows()
    assert row.status == "uncertain"
    assert "1 of " in (row.last_error or "")


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_connection_refused_is_retried_with_backoff_then_given_up(
    telegram: FakeTelegram, monkeypatch: pytest.MonkeyPatch
) -> None:
    _seed_alerts({1: 1})
    configure(
        monkeypatch, telegram_base_url=f"http://127.0.0.1:{_closed_port()}/bot", notify_max_attempts="2"
    )

    assert deliver_pending().rescheduled == 1
    (row,) = _rows()
    assert (row.status, row.attempts) == ("pending", 1)
    assert "ConnectError" in (row.last_error or "")
    assert row.not_before is not None
    assert row.not_before > datetime.now(UTC)

    with transaction() as session:  # due again
        session.execute(update(Notification).values(not_before=datetime.now(UTC) - timedelta(seconds=1)))
    assert deliver_pending().failed == 1
    (row,) = _rows()
    assert (row.status, row.attempts) == ("failed", 2)
    assert "gave up after 2 attempts" in (row.last_error or "")


def test_a_refused_token_gives_the_rows_back_and_says_so(
    telegram: FakeTelegram, monkeypatch: pytest.MonkeyPatch
) -> None:
    _seed_alerts({1: 2})
    configure(monkeypatch, telegram_token="999:WRONG")
    with pytest.raises(TelegramTokenError, match="refused"):
        deliver_pending()
    assert [(row.status, row.attempts) for row in _rows()] == [("pending", 0), ("pending", 0)]


def test_an_expired_lease_becomes_uncertain_and_is_not_resent(telegram: FakeTelegram) -> None:
    (row_id,) = _seed_alerts({1: 1})
    with transaction() as session:
        session.execute(
            update(Notification)
            .where(col(Notification.id) == row_id)
            .values(
                status="sending",
                lease_owner="dead",
                lease_expires_at=datetime.now(UTC) - timedelta(seconds=1),
            )
        )
    report = deliver_pending()
    assert (report.expired, report.sent) == (1, 0)
    (row,) = _rows()
    assert row.status == "uncertain"
    assert "lease expired" in (row.last_error or "")
    assert telegram.sent() == []


def test_a_lease_too_short_for_one_send_is_refused(
    telegram: FakeTelegram, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure(monkeypatch, notify_lease_s="3")
    with pytest.raises(ConfigError, match="LAWSCREEN_NOTIFY_LEASE_S"):
        deliver_pending()


WAITING_ON_A_LOCK = """
    SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()
"""


def test_a_crash_between_send_and_commit_ends_uncertain(telegram: FakeTelegram, database: str) -> None:
    """A real `lawscreen notify` is killed after Telegram took the message, before it recorded so."""
    (row_id,) = _seed_alerts({1: 1})
    telegram.fail("sendMessage", Fault.slow(0.7))  # answered in time, but late enough to intervene
    env = {
        "LAWSCREEN_DATABASE_URL": database,
        "LAWSCREEN_TELEGRAM_TOKEN": telegram.token,
        "LAWSCREEN_TELEGRAM_BASE_URL": telegram.base_url,
        "LAWSCREEN_TELEGRAM_CHAT_IDS": "1",
        "LAWSCREEN_NOTIFY_SEND_TIMEOUT_S": "1",
        "LAWSCREEN_NOTIFY_LEASE_S": "6.5",
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": str(REPO_ROOT),
    }
    relay = subprocess.Popen(
        [sys.executable, "-m", "lawscreen", "notify"], env=env, cwd=Path.cwd(), stdout=subprocess.DEVNULL
    )
    try:
        telegram.wait_for(lambda: len(telegram.sent()) == 1, timeout=30)
        with psycopg.connect(database) as lock:
            # Hold the row while the relay learns the message was delivered: it cannot record it.
            lock.execute("SELECT 1 FROM notifications WHERE id = %s FOR UPDATE", [row_id])
            with psycopg.connect(database, autocommit=True) as watch:
                telegram.wait_for(lambda: watch.execute(WAITING_ON_A_LOCK).fetchone() == (1,))
            relay.send_signal(signal.SIGKILL)
            relay.wait()
            lock.rollback()
    finally:
        if relay.poll() is None:
            relay.kill()
            relay.wait()
    (row,) = _rows()
    assert row.status == "sending"
    assert row.lease_expires_at is not None
    time.sleep(max(0.0, (row.lease_expires_at - datetime.now(UTC)).total_seconds() + 0.2))

    report = deliver_pending()

    assert (report.expired, report.sent) == (1, 0)
    (row,) = _rows()
    assert row.status == "uncertain"
    assert len(telegram.sent()) == 1  # delivered once, never again


def test_without_a_token_the_console_prints_the_same_messages_and_marks_them_sent(
    database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = get_settings()
    assert served_chat_ids(settings) == [CONSOLE_CHAT_ID]
    with transaction() as session:
        sync_chats(session, served_chat_ids(settings))
        queue(session, CONSOLE_CHAT_ID, add_posts(session, 1))

    report = deliver_pending()

    assert (report.transport, report.sent) == ("console", 1)
    assert [row.status for row in _rows()] == ["sent"]
    out = capsys.readouterr().out
    assert "问题 0" in out
    assert "✅ 法律咨询" in out
    assert "<b>" not in out  # rendered, not raw HTML


def test_lawscreen_notify_and_digest_commands(database: str, tmp_path: Path) -> None:
    with transaction() as session:
        sync_chats(session, [CONSOLE_CHAT_ID])
        posts = add_posts(session, 3)
        queue(session, CONSOLE_CHAT_ID, posts[:1])
        queue(session, CONSOLE_CHAT_ID, posts[1:], kind=NotificationKind.DIGEST_ITEM, score=0.7)
    env = {"LAWSCREEN_DATABASE_URL": database, "COLUMNS": "200"}

    notified = run_cli("notify", env=env, cwd=tmp_path)
    assert notified.returncode == 0, notified.stderr
    assert "console: 1 sent" in notified.stdout

    digest = run_cli("digest", "--chat", str(CONSOLE_CHAT_ID), env=env, cwd=tmp_path)
    assert digest.returncode == 0, digest.stderr
    assert "2 posts, 0 more not shown" in digest.stdout
    assert "法律咨询摘要" in digest.stdout

    unknown = run_cli("digest", "--chat", "42", env=env, cwd=tmp_path)
    assert unknown.returncode == 1
    assert "chat 42 is not served" in unknown.stderr


@pytest.mark.parametrize(
    ("error", "action"),
    [
        (RetryAfter(7), Action.RETRY),
        (Forbidden("Forbidden: bot was blocked by the user"), Action.DISABLE_CHAT),
        (ChatMigrated(-100), Action.DISABLE_CHAT),
        (BadRequest("Bad Request: chat not found"), Action.FAILED),
        (InvalidToken("Unauthorized"), Action.UNAUTHORIZED),
        (PartlyDeliveredError(1, 2), Action.UNCERTAIN),
        (NetworkError("Bad Gateway"), Action.UNCERTAIN),
    ],
)
def test_each_telegram_error_has_its_outcome(error: Exception, action: Action) -> None:
    assert classify(error).action == action


@pytest.mark.parametrize(
    ("cause", "wrapper", "action"),
    [
        (httpx.ConnectError("refused"), NetworkError, Action.RETRY),  # never left
        (httpx.ConnectTimeout("slow connect"), TimedOut, Action.RETRY),
        (httpx.PoolTimeout("no free connection"), TimedOut, Action.RETRY),
        (httpx.ReadTimeout("no answer"), TimedOut, Action.UNCERTAIN),  # may have been delivered
        (httpx.WriteTimeout("half sent"), TimedOut, Action.UNCERTAIN),
        (httpx.RemoteProtocolError("closed"), NetworkError, Action.UNCERTAIN),
        (httpx.ReadError("reset"), NetworkError, Action.UNCERTAIN),
    ],
)
def test_connection_errors_are_retried_only_when_nothing_was_sent(
    cause: Exception, wrapper: type[NetworkError], action: Action
) -> None:
    error = wrapper(str(cause))
    error.__cause__ = cause  # as python-telegram-bot's HTTPXRequest raises it: ``raise ... from``
    assert classify(error).action == action


def test_a_timeout_without_a_cause_may_have_arrived() -> None:
    assert classify(TimedOut()).action == Action.UNCERTAIN
