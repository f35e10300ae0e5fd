"""The bot end to end: python-telegram-bot long-polls the fake server, which serves it commands and
button presses; its JobQueue runs the relay. Also feedback's rules, one press at a time.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from sqlmodel import col, select

from lawscreen.database import transaction
from lawscreen.models import Chat, Label, Notification, NotificationKind, RetrainRequest
from lawscreen.notify import ratelimit
from lawscreen.notify.bot import parse_schedule
from lawscreen.notify.digest import compose
from lawscreen.notify.feedback import record_feedback
from lawscreen.repo.labels import latest_revision
from lawscreen.retraining import request_retrain
from tests.conftest import REPO_ROOT, run_cli
from tests.fake_telegram import (
    FakeTelegram,
    Fault,
    add_chats,
    add_model,
    add_posts,
    configure,
    queue,
    run_bot,
    telegram_fixture,  # noqa: F401 - registers the telegram fixture
)

STRANGER = 99  # a chat not on the allow-list


async def _reply(fake: FakeTelegram, chat_id: int, text: str) -> str:
    """Send a command; the text of the bot's next message to the chat."""
    before = len(fake.sent(chat_id))
    fake.command(chat_id, text)
    await asyncio.to_thread(fake.wait_for, lambda: len(fake.sent(chat_id)) > before)
    return str(fake.sent(chat_id)[-1].params["text"])


def _labels() -> list[tuple[int, bool, str, int | None, int | None]]:
    with transaction() as session:
        rows = session.scalars(select(Label).order_by(col(Label.id))).all()
        return [(label.post_id, label.is_legal, label.origin, label.chat_id, label.user_id) for label in rows]


@pytest.fixture
def bot(telegram: FakeTelegram, monkeypatch: pytest.MonkeyPatch) -> FakeTelegram:
    """Chat 1 served with scheduled digests off; the relay job runs often; a production model."""
    configure(monkeypatch, notify_relay_interval_s="0.3", notify_digest_check_s="3600")
    # Replies to one chat would wait 1.2 s each under the real limits (tested in test_notify_relay).
    monkeypatch.setattr(
        ratelimit, "LIMITER", ratelimit.RateLimiter(per_chat_interval=0.01, global_interval=0.01)
    )
    with transaction() as session:
        add_chats(session, 1, digest_times=[])
        add_model(session)
    return telegram


def test_alerts_buttons_and_strangers(bot: FakeTelegram) -> None:
    with transaction() as session:
        (post,) = add_posts(session, 1)
        queue(session, 1, [post])

    async def script() -> None:
        # The JobQueue's relay delivers the alert.
        await asyncio.to_thread(bot.wait_for, lambda: len(bot.sent(1)) == 1)
        message_id = 1
        assert bot.messages[(1, message_id)]["reply_markup"]["inline_keyboard"][0][0]["callback_data"] == (
            f"fb:{post}:1"
        )

        bot.press(1, message_id, f"fb:{post}:1")
        await asyncio.to_thread(bot.wait_for, lambda: len(bot.called("answerCallbackQuery")) == 1)
        assert "已标记：✅ 法律咨询" in bot.messages[(1, message_id)]["text"]
        assert _labels() == [(post, True, "feedback", 1, 1000)]

        bot.press(1, message_id, f"fb:{post}:1")  # the same again: nothing changes
        bot.press(1, message_id, f"fb:{post}:0")  # a change of mind: the latest wins
        await asyncio.to_thread(bot.wait_for, lambda: len(bot.called("answerCallbackQuery")) == 3)
        assert "已标记：❌ 不是" in bot.messages[(1, message_id)]["text"]
        assert len([call for call in bot.called("editMessageText") if call.delivered]) == 2
        assert _labels() == [(post, False, "feedback", 1, 1000)]

        # Someone else's chat: ignored. No label, no answer, no edit, nothing sent.
        calls = len(bot.calls)
        bot.press(STRANGER, message_id, f"fb:{post}:1")
        bot.command(STRANGER, "/start")
        bot.command(STRANGER, "/stats")
        stats = await _reply(bot, 1, "/stats")  # handled after the stranger's updates
        assert {call.method for call in bot.calls[calls:]} == {"getUpdates", "sendMessage"}
        assert bot.sent(STRANGER) == []
        assert _labels() == [(post, False, "feedback", 1, 1000)]
        assert "有反馈 1 条，其中法律咨询 0 条，精确率 0%" in stats
        assert "m1" in stats

    run_bot(bot, script)
    assert bot.called("setMyCommands")


def test_commands(bot: FakeTelegram) -> None:
    with transaction() as session:
        queue(session, 1, add_posts(session, 2), kind=NotificationKind.DIGEST_ITEM, score=0.8)

    async def script() -> None:
        assert "/digest_time" in await _reply(bot, 1, "/start")

        digest = await _reply(bot, 1, "/digest")
        assert "法律咨询摘要" in digest
        assert "新结果 2 条" in digest
        # A button in a digest marks its entry in that message.
        message = bot.sent(1)[-1]
        first = message.params["reply_markup"]["inline_keyboard"][0][0]["callback_data"]
        (message_id,) = [key[1] for key, stored in bot.messages.items() if stored["text"] == digest]
        bot.press(1, message_id, first)
        await asyncio.to_thread(bot.wait_for, lambda: len(bot.called("answerCallbackQuery")) == 1)
        assert "<b>1.</b> ✅" in bot.messages[(1, message_id)]["text"]
        assert "<b>2.</b> ⬜" in bot.messages[(1, message_id)]["text"]
        assert await _reply(bot, 1, "/digest") == "暂无新内容。"

        assert (await _reply(bot, 1, "/pause")).startswith("已暂停")
        assert (await _reply(bot, 1, "/digest")).startswith("本聊天的通知已暂停")
        assert await _reply(bot, 1, "/resume") == "已恢复。"

        shown = await _reply(bot, 1, "/digest_time 20:00 08:30 Europe/Berlin")
        assert shown == "摘要时间：08:30、20:00（Europe/Berlin）"
        assert "看不懂“25:00”" in await _reply(bot, 1, "/digest_time 25:00")
        assert await _reply(bot, 1, "/digest_time") == shown

        # No Prefect server here: the request is recorded and waits for the next retrain check.
        first = await _reply(bot, 1, "/retrain")
        assert first.startswith("已记录重新训练请求 #1")
        assert "下一次定时检查会启动它" in first
        assert (await _reply(bot, 1, "/retrain")).startswith("同一标注快照已有请求 #1")

    run_bot(bot, script)
    with transaction() as session:
        chat = session.get(Chat, 1)
        assert chat is not None
        assert (chat.paused, chat.digest_times, chat.timezone) == (False, ["08:30", "20:00"], "Europe/Berlin")
        (request,) = session.scalars(select(RetrainRequest)).all()
        assert request.requested_by == "telegram user 1000 (@lawyer) in chat 1"


def test_start_brings_back_a_chat_that_had_blocked_the_bot(bot: FakeTelegram) -> None:
    with transaction() as session:
        chat = session.get(Chat, 1)
        assert chat is not None
        chat.enabled, chat.disabled_reason = False, "Forbidden: bot was blocked by the user"

    async def script() -> None:
        await _reply(bot, 1, "/start")

    run_bot(bot, script)
    with transaction() as session:
        chat = session.get(Chat, 1)
        assert chat is not None
        assert (chat.enabled, chat.disabled_reason) == (True, None)


def test_an_empty_allow_list_serves_nobody(bot: FakeTelegram, monkeypatch: pytest.MonkeyPatch) -> None:
    configure(monkeypatch, telegram_chat_ids="")

    async def script() -> None:
        bot.command(1, "/start")
        bot.press(1, 1, "fb:1:1")
        await asyncio.to_thread(bot.wait_for, lambda: len(bot.called("getUpdates")) >= 3)  # read both

    run_bot(bot, script)
    assert bot.sent() == []
    assert bot.called("answerCallbackQuery") == []


def test_feedback_only_for_posts_sent_to_the_chat_and_a_press_proves_delivery(database: str) -> None:
    with transaction() as session:
        add_chats(session, 1, 2)
        sent, other, unsure = add_posts(session, 3)
        (sent_row,) = queue(session, 1, [sent])
        queue(session, 2, [other])
        (unsure_row,) = queue(session, 1, [unsure])
        for row_id, status in ((sent_row, "sent"), (unsure_row, "uncertain")):
            row = session.get(Notification, row_id)
            assert row is not None
            row.status = status
    with transaction() as session:
        forged = record_feedback(session, chat_id=1, post_id=other, is_legal=True, user_id=5, annotator="x")
        assert forged is None  # post `other` went to chat 2 only
        assert record_feedback(session, chat_id=1, post_id=sent, is_legal=True, user_id=5, annotator="x")
        result = record_feedback(session, chat_id=1, post_id=unsure, is_legal=False, user_id=5, annotator="x")
        assert result is not None
        assert result.changed
        assert "已标记：❌ 不是" in result.message.text
    with transaction() as session:
        unsure_now = session.get(Notification, unsure_row)
        assert unsure_now is not None
        assert unsure_now.status == "sent"  # the lawyer pressed its button: it arrived
    assert [(post, legal) for post, legal, *_ in _labels()] == [(sent, True), (unsure, False)]


def test_feedback_on_a_post_cut_from_a_digest_is_refused(database: str) -> None:
    with transaction() as session:
        add_chats(session, 1, digest_limit=1)
        shown, cut = add_posts(session, 2)
        queue(session, 1, [shown], kind=NotificationKind.DIGEST_ITEM, score=0.9)
        queue(session, 1, [cut], kind=NotificationKind.DIGEST_ITEM, score=0.6)
        digest = compose(session, 1, "now test", label_requests=0)
        assert digest is not None
        assert digest.more == 1
        row = session.get(Notification, digest.digest_id)
        assert row is not None
        row.status = "sent"
    with transaction() as session:
        assert (
            record_feedback(session, chat_id=1, post_id=cut, is_legal=True, user_id=5, annotator=None) is None
        )
        assert record_feedback(session, chat_id=1, post_id=shown, is_legal=True, user_id=5, annotator=None)


def test_retrain_requests_are_one_per_label_snapshot(database: str) -> None:
    with transaction() as session:
        first, created = request_retrain(session, "a")
        again, created_again = request_retrain(session, "b")
        assert (created, created_again) == (True, False)
        assert first.id == again.id
        assert first.label_revision == latest_revision(session)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ([], (None, None)),
        (["08:30", "20:00"], (["08:30", "20:00"], None)),
        (["Asia/Tokyo"], (None, "Asia/Tokyo")),
        (["off"], ([], None)),
    ],
)
def test_digest_time_arguments(args: list[str], expected: tuple[list[str] | None, str | None]) -> None:
    assert parse_schedule(args) == expected


@pytest.mark.parametrize(
    "args", [["8:30"], ["Mars/Olympus"], ["01:00", "02:00", "03:00", "04:00", "05:00", "06:00", "07:00"]]
)
def test_digest_time_rejects_nonsense(args: list[str]) -> None:
    with pytest.raises(ValueError, match=r"看不懂|最多"):
        parse_schedule(args)


def _bot_env(fake: FakeTelegram, database: str) -> dict[str, str]:
    return {
        "LAWSCREEN_DATABASE_URL": database,
        "LAWSCREEN_TELEGRAM_TOKEN": fake.token,
        "LAWSCREEN_TELEGRAM_BASE_URL": fake.base_url,
        "LAWSCREEN_TELEGRAM_CHAT_IDS": "1",
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": str(REPO_ROOT),
    }


def test_lawscreen_bot_serves_until_interrupted(bot: FakeTelegram, database: str, tmp_path: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "lawscreen", "bot"],
        env=_bot_env(bot, database),
        cwd=tmp_path,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        bot.command(1, "/start")
        bot.wait_for(lambda: len(bot.sent(1)) == 1, timeout=30)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, stderr
    assert bot.token not in stderr  # httpx's request log, which shows URLs, is kept quiet


def test_lawscreen_bot_stops_when_another_process_polls_the_token(
    bot: FakeTelegram, database: str, tmp_path: Path
) -> None:
    bot.fail("getUpdates", Fault("error", 409, "Conflict: terminated by other getUpdates request"))
    done = subprocess.run(
        [sys.executable, "-m", "lawscreen", "bot"],
        env=_bot_env(bot, database),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0
    assert "another process is polling this bot token" in done.stderr


def test_lawscreen_bot_needs_a_token(database: str, tmp_path: Path) -> None:
    done = run_cli("bot", env={"LAWSCREEN_DATABASE_URL": database}, cwd=tmp_path)
    assert done.returncode == 1
    assert "LAWSCREEN_TELEGRAM_TOKEN is not set" in done.stderr
