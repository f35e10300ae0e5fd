"""Digests: ranked and capped, never repeating a post, idempotent per window, with posts to label."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import update
from sqlmodel import col, select

from lawscreen.database import transaction
from lawscreen.errors import ChatNotServedError, NotUncertainError
from lawscreen.models import Chat, LabelOrigin, Notification, NotificationKind, Post
from lawscreen.notify import deliver_pending, send_digests
from lawscreen.notify.chats import set_digest_schedule, set_paused
from lawscreen.notify.digest import latest_window
from lawscreen.repo import notifications
from lawscreen.repo.labels import NewLabel, upsert_labels
from tests.fake_telegram import (
    FakeTelegram,
    Fault,
    add_chats,
    add_model,
    add_posts,
    add_predictions,
    configure,
    queue,
    telegram_fixture,  # noqa: F401 - registers the telegram fixture
)

SHANGHAI = ZoneInfo("Asia/Shanghai")
# Simulated times, later than anything the database's own clock stamps during the test.
MORNING = datetime(2030, 3, 4, 9, 5, tzinfo=SHANGHAI)  # just after the 09:00 digest
EVENING = datetime(2030, 3, 4, 18, 1, tzinfo=SHANGHAI)


@pytest.fixture(autouse=True)
def _only_chat_one(telegram: FakeTelegram, monkeypatch: pytest.MonkeyPatch) -> None:
    """Serve chat 1 only, so no other chat's (empty) digests show up in the reports."""
    configure(monkeypatch, telegram_chat_ids="1")


def _digest_rows(chat_id: int = 1) -> list[Notification]:
    with transaction() as session:
        return list(
            session.scalars(
                select(Notification)
                .where(
                    col(Notification.chat_id) == chat_id, col(Notification.kind) == NotificationKind.DIGEST
                )
                .order_by(col(Notification.id))
            ).all()
        )


def _rows(chat_id: int = 1) -> dict[int | None, Notification]:
    with transaction() as session:
        rows = session.scalars(select(Notification).where(col(Notification.chat_id) == chat_id)).all()
        return {row.post_id: row for row in rows if row.post_id is not None}


def test_latest_window_is_the_last_digest_time_passed_in_the_chats_timezone() -> None:
    times = ["09:00", "18:00"]
    assert latest_window(MORNING, times, SHANGHAI) == datetime(2030, 3, 4, 9, 0, tzinfo=SHANGHAI)
    early = datetime(2030, 3, 4, 8, 0, tzinfo=SHANGHAI)
    assert latest_window(early, times, SHANGHAI) == datetime(2030, 3, 3, 18, 0, tzinfo=SHANGHAI)
    berlin = ZoneInfo("Europe/Berlin")  # 09:05 in Shanghai is 02:05 in Berlin
    assert latest_window(MORNING, times, berlin) == datetime(2030, 3, 3, 18, 0, tzinfo=berlin)
    assert latest_window(MORNING, [], SHANGHAI) is None


def test_a_digest_ranks_caps_asks_and_never_repeats(
    telegram: FakeTelegram, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure(monkeypatch, notify_label_requests="2")
    with transaction() as session:
        add_chats(session, 1, digest_limit=2)
        model = add_model(session, threshold=0.5)
        hits = add_posts(session, 3)
        for post, score in zip(hits, [0.7, 0.9, 0.8], strict=True):
            queue(session, 1, [post], kind=NotificationKind.DIGEST_ITEM, score=score)
        near, nearer, far, labeled, copy, alerted = add_posts(session, 6, start=100)
        add_predictions(
            session, model, {near: 0.53, nearer: 0.49, far: 0.95, labeled: 0.5, copy: 0.5, alerted: 0.5}
        )
        upsert_labels(session, [NewLabel(labeled, True, LabelOrigin.IMPORT)])  # its label is known
        session.execute(update(Post).where(col(Post.id) == copy).values(duplicate_of_id=far))  # a cross-post
        queue(session, 1, [alerted])  # already sent to the chat as an alert

    report = send_digests(MORNING)

    (digest,) = report.digests
    assert (digest.chat_id, digest.items, digest.more, digest.label_requests) == (1, 2, 1, 2)
    assert digest.key == "at 2030-03-04T09:00+08:00"
    assert report.relay is not None
    assert report.relay.sent == 1  # the digest only; the pending alert waits for the relay
    (message,) = telegram.sent(chat_id=1)
    text = message.params["text"]
    assert text.index("问题 1") < text.index("问题 2") < text.index("另有 1 条") < text.index("请帮忙标注")
    assert text.index("请帮忙标注") < text.index("问题 101") < text.index("问题 100")  # 0.49, then 0.53
    assert "问题 0" not in text  # cut: over the cap
    buttons = message.params["reply_markup"]["inline_keyboard"]
    assert [row[0]["callback_data"] for row in buttons] == [
        f"fb:{hits[1]}:1",
        f"fb:{hits[2]}:1",
        f"fb:{nearer}:1",
        f"fb:{near}:1",
    ]
    rows = _rows()
    (digest_row,) = _digest_rows()
    assert digest_row.status == "sent"
    assert digest_row.telegram_message_id is not None
    assert {post: (rows[post].status, rows[post].digest_id) for post in hits} == {
        hits[0]: ("cancelled", digest_row.id),
        hits[1]: ("sent", digest_row.id),
        hits[2]: ("sent", digest_row.id),
    }
    assert [rows[post].kind for post in (near, nearer)] == ["label_request", "label_request"]

    # The same window again: nothing composed, nothing sent.
    assert send_digests(MORNING).digests == []
    assert send_digests(MORNING + timedelta(hours=2)).digests == []
    # The next window holds only what is new, and asks about posts not asked before.
    with transaction() as session:
        (new,) = add_posts(session, 1, start=200)
        queue(session, 1, [new], kind=NotificationKind.DIGEST_ITEM, score=0.6)
        (another,) = add_posts(session, 1, start=300)
        add_predictions(session, model, {another: 0.45})
    (evening,) = send_digests(EVENING).digests
    assert (evening.items, evening.more, evening.label_requests) == (1, 0, 2)
    text = telegram.sent(chat_id=1)[-1].params["text"]
    assert all(f"<b>问题 {n}</b>" in text for n in (200, 300, 102))
    assert all(f"<b>问题 {n}</b>" not in text for n in (0, 1, 2, 100, 101, 103, 104, 105))


def test_an_empty_window_is_marked_done_and_nothing_is_sent(telegram: FakeTelegram) -> None:
    with transaction() as session:
        add_chats(session, 1)
    (digest,) = send_digests(MORNING).digests
    assert digest.empty
    assert telegram.sent() == []
    (row,) = _digest_rows()
    assert (row.status, row.last_error) == ("cancelled", "nothing to send")
    assert send_digests(MORNING).digests == []


def test_a_chat_added_after_the_window_waits_for_its_next_digest_time(telegram: FakeTelegram) -> None:
    with transaction() as session:
        add_chats(session, 1)
        session.execute(update(Chat).values(created_at=MORNING - timedelta(minutes=1)))
    assert send_digests(MORNING).digests == []
    assert [digest.chat_id for digest in send_digests(EVENING).digests] == [1]


def test_two_runs_of_one_window_at_once_send_one_digest(
    telegram: FakeTelegram, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure(monkeypatch, telegram_chat_ids="1,2")
    with transaction() as session:
        add_chats(session, 1, 2)
        for chat in (1, 2):
            queue(session, chat, add_posts(session, 2, start=chat * 10), kind=NotificationKind.DIGEST_ITEM)
    barrier = threading.Barrier(3)
    composed = []

    def run() -> None:
        barrier.wait()
        composed.extend(send_digests(MORNING).digests)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(digest.chat_id for digest in composed) == [1, 2]
    assert len(telegram.sent(chat_id=1)) == len(telegram.sent(chat_id=2)) == 1


def test_a_digest_asked_for_is_sent_now_and_the_schedule_still_holds(telegram: FakeTelegram) -> None:
    with transaction() as session:
        add_chats(session, 1)
        posts = add_posts(session, 2)
        queue(session, 1, posts[:1], kind=NotificationKind.DIGEST_ITEM)
    asked = MORNING - timedelta(hours=2)

    (digest,) = send_digests(asked, chat_id=1).digests
    assert (digest.key, digest.items) == ("now 2030-03-03T23:05:00+00:00", 1)
    assert send_digests(asked, chat_id=1).digests == []  # a double tap: same second, one digest
    (nothing,) = send_digests(asked + timedelta(seconds=1), chat_id=1).digests
    assert nothing.empty

    with transaction() as session:
        queue(session, 1, posts[1:], kind=NotificationKind.DIGEST_ITEM)
    (scheduled,) = send_digests(MORNING).digests
    assert scheduled.items == 1
    assert len(telegram.sent(chat_id=1)) == 2


def test_a_digest_for_a_chat_not_served_is_refused(telegram: FakeTelegram) -> None:
    with transaction() as session:
        add_chats(session, 1)
    with pytest.raises(ChatNotServedError, match="chat 42 is not served"):
        send_digests(MORNING, chat_id=42)
    with transaction() as session:
        set_paused(session, 1, True)
    with pytest.raises(ChatNotServedError):
        send_digests(MORNING, chat_id=1)


def test_a_paused_chat_gets_nothing_and_its_alerts_join_the_next_digest_on_resume(
    telegram: FakeTelegram,
) -> None:
    with transaction() as session:
        add_chats(session, 1, paused=True)
        alerts = queue(session, 1, add_posts(session, 2))
    assert deliver_pending().sent == 0
    assert send_digests(MORNING).digests == []
    assert telegram.sent() == []

    with transaction() as session:
        assert set_paused(session, 1, False) == 2
    assert deliver_pending().sent == 0  # no burst of stale alerts...
    (digest,) = send_digests(MORNING).digests  # ...they are in the digest
    assert digest.items == 2
    assert {row.id for row in _rows().values()} == set(alerts)
    assert len(telegram.sent()) == 1


def test_digest_times_and_timezone_can_change(telegram: FakeTelegram) -> None:
    with transaction() as session:
        add_chats(session, 1)
        chat = set_digest_schedule(session, 1, ["07:30"], "Europe/Berlin")
        assert (chat.digest_times, chat.timezone) == (["07:30"], "Europe/Berlin")
        assert set_digest_schedule(session, 1, None, None).digest_times == ["07:30"]
    # 09:05 in Shanghai is 02:05 in Berlin: the latest Berlin 07:30 was yesterday's.
    (digest,) = send_digests(MORNING).digests
    assert digest.key == "at 2030-03-03T07:30+01:00"
    with transaction() as session:
        set_digest_schedule(session, 1, [], None)  # only on request from now on
    assert send_digests(MORNING + timedelta(days=2)).digests == []


def test_an_uncertain_digest_settled_as_not_arrived_is_sent_again_with_its_items(
    telegram: FakeTelegram,
) -> None:
    with transaction() as session:
        add_chats(session, 1)
        posts = add_posts(session, 2)
        queue(session, 1, posts, kind=NotificationKind.DIGEST_ITEM)
    telegram.fail("sendMessage", Fault.drop())  # the connection closes before the answer
    send_digests(MORNING)
    (digest,) = _digest_rows()
    assert digest.status == "uncertain"
    assert {row.status for row in _rows().values()} == {"uncertain"}

    with transaction() as session:
        (listed,) = notifications.uncertain(session)  # the digest, not its items
        assert listed.id is not None
        assert listed.id == digest.id
        notifications.settle_uncertain(session, listed.id, arrived=False)
    assert deliver_pending().sent == 1
    (resent,) = _digest_rows()
    assert resent.status == "sent"
    assert {row.status for row in _rows().values()} == {"sent"}
    assert len(telegram.called("sendMessage")) == 2
    assert all(f"问题 {n}" in str(telegram.sent(chat_id=1)[-1].params["text"]) for n in (0, 1))

    item = next(iter(_rows().values()))
    assert item.id is not None
    with transaction() as session, pytest.raises(NotUncertainError, match="is sent"):
        notifications.settle_uncertain(session, item.id, arrived=True)
