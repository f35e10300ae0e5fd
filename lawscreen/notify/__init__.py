"""Notifications: the outbox rows the classifier writes, and their delivery to Telegram.

What the orchestration calls (see docs/notifications.md):

- ``deliver_pending()``: send due alerts and digests once (``lawscreen notify``, the hourly flow);
- ``send_digests(now, chat_id=None)``: compose and send the digests that are due, or one chat's now;
- ``sync_chats(session, allowed_ids)``: make ``chats`` match the allow-list (``served_chat_ids``);

``enqueue_hits`` (in ``outbox``) is how the classification stage writes the outbox rows.
"""

from lawscreen.notify.chats import served_chat_ids, sync_chats
from lawscreen.notify.digest import DigestReport, send_digests
from lawscreen.notify.relay import RelayReport, deliver_pending

__all__ = [
    "DigestReport",
    "RelayReport",
    "deliver_pending",
    "send_digests",
    "served_chat_ids",
    "sync_chats",
]
