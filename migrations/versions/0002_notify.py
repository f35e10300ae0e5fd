"""notifications: label_request kind

Revision ID: 0002_notify
Revises: 0001
Create Date: 2026-11-23 10:00:00.000000

A digest's "please label" posts become outbox rows of their own kind, so a post is asked about at
most once per chat (unique chat and post) and feedback on them never counts as alert precision.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002_notify"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CONSTRAINT = "ck_notifications_kind_valid"


def upgrade() -> None:
    op.drop_constraint(op.f(CONSTRAINT), "notifications", type_="check")
    op.create_check_constraint(
        op.f(CONSTRAINT), "notifications", "kind IN ('alert', 'digest_item', 'digest', 'label_request')"
    )


def downgrade() -> None:
    # The old schema knows no label requests: they become plain digest items of their digest.
    op.execute("UPDATE notifications SET kind = 'digest_item' WHERE kind = 'label_request'")
    op.drop_constraint(op.f(CONSTRAINT), "notifications", type_="check")
    op.create_check_constraint(
        op.f(CONSTRAINT), "notifications", "kind IN ('alert', 'digest_item', 'digest')"
    )
