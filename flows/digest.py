"""The digest flow: each chat gets its digest when one of its digest times has come."""

from __future__ import annotations

from datetime import UTC, datetime

from prefect import flow, task

from lawscreen.notify import DigestReport, send_digests


@task(retries=2, retry_delay_seconds=30)
def send_digests_due(now: datetime) -> DigestReport:
    # A window already sent is never sent again, so a retry after a half-finished run is safe.
    return send_digests(now)


@flow(name="digest")
def send_due_digests() -> DigestReport:
    return send_digests_due(datetime.now(UTC))
