"""`lawscreen bot`: the long-polling bot. Commands, feedback buttons, and a JobQueue running the
relay and the digest schedules.

Only chats on ``LAWSCREEN_TELEGRAM_CHAT_IDS`` are served. Commands pass ``filters.Chat(...,
allow_empty=False)``, so an empty allow-list serves nobody. Callback queries, which those filters
do not cover, are checked against the same ids; from anyone else they are ignored without an
answer: nothing is stored and nothing is sent. Allow-lists are numeric chat ids, never usernames,
which their owners can change.

The JobQueue runs two repeating jobs: the relay, and a digest check that sends each chat's digest
when one of its times has passed. Digest times live in the database (``chats.digest_times``), so
/digest_time takes effect at the next check, and a window missed while the bot was down is sent
when it is back.

Only one process may long-poll a token: a second gets ``Conflict``, and then stops with a message.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from telegram import BotCommand, Update
from telegram.error import Conflict
from telegram.ext import (
    Application,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    ExtBot,
    JobQueue,
    filters,
)

from lawscreen.errors import ChatNotServedError
from lawscreen.notify._tx import in_transaction
from lawscreen.notify.chats import set_digest_schedule, set_paused, start_chat, sync_chats
from lawscreen.notify.digest import send_digests_with
from lawscreen.notify.feedback import record_feedback
from lawscreen.notify.relay import relay
from lawscreen.notify.render import (
    FEEDBACK_DATA,
    LEGAL_BUTTON,
    NOT_LEGAL_BUTTON,
    escape,
    parse_feedback,
    render_text,
)
from lawscreen.notify.stats import stats_text
from lawscreen.notify.transport import TelegramSender, bot_kwargs, http_request
from lawscreen.retraining import start_retrain
from lawscreen.settings import DIGEST_TIME, Settings

log = logging.getLogger(__name__)

App = Application[
    ExtBot[None],
    ContextTypes.DEFAULT_TYPE,
    dict[Any, Any],
    dict[Any, Any],
    dict[Any, Any],
    JobQueue[ContextTypes.DEFAULT_TYPE],
]

POLL_TIMEOUT = timedelta(seconds=30)  # how long one getUpdates waits for news
UPDATES = [Update.MESSAGE, Update.CALLBACK_QUERY]  # all the bot reads
MAX_DIGEST_TIMES = 6
COMMANDS = [
    BotCommand("start", "说明"),
    BotCommand("digest", "立即发送摘要"),
    BotCommand("stats", "反馈精确率与计数"),
    BotCommand("retrain", "请求用新的标注重新训练"),
    BotCommand("pause", "暂停通知"),
    BotCommand("resume", "恢复通知"),
    BotCommand("digest_time", "查看或设置摘要时间"),
]
HELP = "\n".join(
    [
        "⚖️ <b>lawscreen</b> 会把论坛上像是法律咨询的帖子发给你。",
        "",
        "· 分数很高的帖子立即提醒，其余的汇总进每天定时的摘要。",
        f"· 每条帖子下有 [{LEGAL_BUTTON}] [{NOT_LEGAL_BUTTON}] 两个按钮：点一下就是一条训练标注。"
        "改主意再点另一个即可，只保留最后一次。",
        "· 摘要末尾的“请帮忙标注”是模型最拿不准的几条，最值得你判断。",
        "",
        "/digest 立即发送摘要",
        "/digest_time 查看摘要时间；/digest_time 08:30 20:00 Asia/Shanghai 设置；"
        "/digest_time off 只在 /digest 时发送",
        "/pause 暂停通知（期间的结果会在恢复后并入下一份摘要）；/resume 恢复",
        "/stats 近 7 天、30 天的精确率与计数",
        "/retrain 请求用新的标注重新训练",
    ]
)


def build_application(settings: Settings) -> App:
    """The bot, its handlers and jobs; ``run_polling`` (or a test) drives it."""
    service = BotService(settings)
    kwargs = bot_kwargs(settings)
    builder = (
        Application.builder()
        .token(kwargs["token"])
        .request(http_request(settings))
        .get_updates_request(http_request(settings, pool=1))
        .post_init(service.on_start)
    )
    if "base_url" in kwargs:
        builder = builder.base_url(kwargs["base_url"])
    application: App = builder.build()
    allowed = filters.Chat(chat_id=settings.telegram_chat_ids, allow_empty=False)
    for command in COMMANDS:  # each handled by the service's method of the same name
        handler = getattr(service, command.command)
        application.add_handler(CommandHandler(command.command, handler, filters=allowed))
    application.add_handler(CallbackQueryHandler(service.feedback, pattern=FEEDBACK_DATA))
    application.add_error_handler(service.on_error)
    jobs = application.job_queue
    assert jobs is not None  # the [job-queue] extra is a dependency
    jobs.run_repeating(service.relay_job, interval=settings.notify_relay_interval_s, first=0, name="relay")
    jobs.run_repeating(service.digest_job, interval=settings.notify_digest_check_s, first=0, name="digests")
    return application


def run_bot(settings: Settings) -> None:
    """Poll until interrupted (SIGINT, SIGTERM)."""
    build_application(settings).run_polling(allowed_updates=UPDATES, timeout=POLL_TIMEOUT)


class BotService:
    """The handlers and jobs, sharing the settings and the allow-list."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.allowed = frozenset(settings.telegram_chat_ids)

    async def on_start(self, application: App) -> None:
        changes = await in_transaction(sync_chats, self.allowed)
        log.info("serving chats %s (%s)", sorted(self.allowed), changes)
        if not self.allowed:
            log.warning("LAWSCREEN_TELEGRAM_CHAT_IDS is empty: the bot serves nobody")
        await application.bot.set_my_commands(COMMANDS)

    # --- commands (only allowed chats reach these: see the filters) ---

    async def start(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        chat = _chat_id(update)
        title = update.effective_chat.effective_name if update.effective_chat else None
        await in_transaction(start_chat, chat, title)
        await self._reply(context, chat, HELP)

    async def digest(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        chat = _chat_id(update)
        try:
            report = await send_digests_with(
                TelegramSender(context.bot), self.settings, datetime.now(UTC), chat
            )
        except ChatNotServedError:
            await self._reply(context, chat, "本聊天的通知已暂停或停用：发送 /resume（或 /start）后再试。")
            return
        if all(digest.empty for digest in report.digests):
            await self._reply(context, chat, "暂无新内容。")

    async def stats(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        chat = _chat_id(update)
        await self._reply(context, chat, await in_transaction(stats_text, chat, datetime.now(UTC)))

    async def retrain(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        chat = _chat_id(update)
        user = update.effective_user
        who = (
            f"telegram user {user.id} (@{user.username}) in chat {chat}" if user else f"telegram chat {chat}"
        )
        # Starting the flow is a blocking call to the Prefect API: off the event loop.
        started = await asyncio.to_thread(start_retrain, who)
        if started.created:
            text = f"已记录重新训练请求 #{started.request_id}（标注快照 {started.label_revision}）"
        else:
            text = f"同一标注快照已有请求 #{started.request_id}，不再重复"
        if started.flow_run_id:
            text += f"：训练任务 {started.flow_run_id}。"
        else:
            text += "：暂时无法启动训练任务，下一次定时检查会启动它。"
        await self._reply(context, chat, text)

    async def pause(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        chat = _chat_id(update)
        await in_transaction(set_paused, chat, True)
        await self._reply(context, chat, "已暂停。期间的结果照常记录，/resume 后并入下一份摘要。")

    async def resume(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        chat = _chat_id(update)
        folded = await in_transaction(set_paused, chat, False)
        held = f"暂停期间的 {folded} 条提醒将出现在下一份摘要中。" if folded else ""
        await self._reply(context, chat, "已恢复。" + held)

    async def digest_time(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        chat = _chat_id(update)
        try:
            times, timezone = parse_schedule(context.args or [])
        except ValueError as exc:
            await self._reply(context, chat, escape(str(exc)))
            return
        saved = await in_transaction(set_digest_schedule, chat, times, timezone)
        shown = "、".join(saved.digest_times) or "不定时（只在 /digest 时发送）"
        await self._reply(context, chat, f"摘要时间：{shown}（{escape(saved.timezone)}）")

    # --- buttons ---

    async def feedback(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        query = update.callback_query
        assert query is not None  # the handler's type
        message = query.message
        if message is None or message.chat.id not in self.allowed:
            return  # not served: no label, no answer, nothing about the post
        post_id, is_legal = parse_feedback(query.data)
        user = query.from_user
        result = await in_transaction(
            record_feedback,
            chat_id=message.chat.id,
            post_id=post_id,
            is_legal=is_legal,
            user_id=user.id,
            annotator=user.username or user.full_name,
        )
        if result is None:
            await query.answer("这条帖子没有发到本聊天，未记录。")
            return
        if result.changed:  # a repeated press would be "message is not modified"
            await TelegramSender(context.bot).edit(message.chat.id, message.message_id, result.message)
        await query.answer(f"已记录：{LEGAL_BUTTON if is_legal else NOT_LEGAL_BUTTON}")

    # --- jobs ---

    async def relay_job(self, context: ContextTypes.DEFAULT_TYPE) -> None:
        await relay(TelegramSender(context.bot), self.settings)

    async def digest_job(self, context: ContextTypes.DEFAULT_TYPE) -> None:
        await send_digests_with(TelegramSender(context.bot), self.settings, datetime.now(UTC))

    async def on_error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        if isinstance(context.error, Conflict):
            log.error("another process is polling this bot token; stopping. Run one `lawscreen bot` only.")
            context.application.stop_running()
            return
        log.error("while handling %r", update, exc_info=context.error)

    async def _reply(self, context: ContextTypes.DEFAULT_TYPE, chat_id: int, text: str) -> None:
        await TelegramSender(context.bot).send(chat_id, render_text(text))


def parse_schedule(args: Sequence[str]) -> tuple[list[str] | None, str | None]:
    """/digest_time's arguments: times (HH:MM, or "off" for none) and a timezone; None keeps the current."""
    times: list[str] | None = None
    timezone = None
    for arg in args:
        if arg.lower() == "off":
            times = []
        elif DIGEST_TIME.fullmatch(arg):
            times = [*(times or []), arg]
        else:
            try:
                ZoneInfo(arg)
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError(
                    f"看不懂“{arg}”：时间写成 08:30 这样，时区写成 Asia/Shanghai 这样。"
                ) from None
            timezone = arg
    if times is not None and len(set(times)) > MAX_DIGEST_TIMES:
        raise ValueError(f"每天最多 {MAX_DIGEST_TIMES} 个摘要时间。")
    return times, timezone


def _chat_id(update: Update) -> int:
    assert update.effective_chat is not None  # commands come from a chat
    return update.effective_chat.id
