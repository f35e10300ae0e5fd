"""/stats: how precise the notifications have been, as measured by the lawyer's own feedback.

Precision over a window is, of the hits sent to this chat in it that got its feedback, the share
marked legal. Alerts and digest items are reported apart (alerts use a higher threshold) and
together. Posts asked about in the "please label" section are not hits and do not count.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlmodel import Session

from lawscreen.models import NotificationKind, NotificationStatus
from lawscreen.notify.render import escape
from lawscreen.repo import notifications as outbox
from lawscreen.repo.labels import count_since
from lawscreen.repo.notifications import FeedbackCounts
from lawscreen.repo.registry import production_model

WINDOWS_DAYS = (7, 30)
KIND_NAMES: dict[str, str] = {NotificationKind.ALERT: "即时提醒", NotificationKind.DIGEST_ITEM: "摘要条目"}


def stats_text(session: Session, chat_id: int, now: datetime) -> str:
    lines = ["📊 <b>统计</b>"]
    for days in WINDOWS_DAYS:
        counts = outbox.feedback_counts(session, chat_id, now - timedelta(days=days))
        total = FeedbackCounts(
            notified=sum(c.notified for c in counts.values()),
            with_feedback=sum(c.with_feedback for c in counts.values()),
            legal=sum(c.legal for c in counts.values()),
        )
        lines.append(f"\n<b>近 {days} 天</b>：发送 {total.notified} 条，{_precision(total)}")
        lines += [
            f"· {KIND_NAMES[kind]}：发送 {c.notified} 条，{_precision(c)}" for kind, c in counts.items()
        ]
    outbox_counts = outbox.outbox_counts(session, chat_id)
    waiting = sum(n for (_, status), n in outbox_counts.items() if status == NotificationStatus.PENDING)
    uncertain = sum(n for (_, status), n in outbox_counts.items() if status == NotificationStatus.UNCERTAIN)
    lines.append(f"\n待发送 {waiting} 条；送达不确定 {uncertain} 条")
    model = production_model(session)
    if model is None:
        lines.append("生产模型：暂无")
    else:
        promoted = model.promoted_at.date().isoformat() if model.promoted_at else "—"
        lines.append(
            f"生产模型：{escape(model.version)}（阈值 {model.threshold:.3f}，上线于 {promoted}），"
            f"此后新增标注 {count_since(session, model.label_revision)} 条"
        )
    return "\n".join(lines)


def _precision(counts: FeedbackCounts) -> str:
    if not counts.with_feedback:
        return "尚无反馈"
    share = counts.legal / counts.with_feedback
    return f"有反馈 {counts.with_feedback} 条，其中法律咨询 {counts.legal} 条，精确率 {share:.0%}"
