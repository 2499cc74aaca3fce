"""Google Ads deliveries for the destination tests: a lead's won deal, restated, retracted."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

from connector.core import Delivery, StageChange

EMAIL_HASH = hashlib.sha256(b"jane.doe@example.com").hexdigest()
NOW = datetime.now(UTC).replace(microsecond=0)


def won(
    n: int,
    *,
    target: str,
    value: float | None = 1000.0,
    at: datetime | None = None,
    restatement: bool = False,
    **attributes: Any,
) -> Delivery:
    """Lead `n`'s deal won two days ago (or `at`), with a click id, hashed email and consent."""
    changed_at = at or NOW - timedelta(days=2)
    attrs: dict[str, Any] = {
        "gclid": f"Cj0KCQiA-lead{n:04d}-abcdEFGH",
        "email_sha256": EMAIL_HASH,
        "consent_ad_user_data": True,
        "consent_ad_personalization": True,
        **attributes,
    }
    change = StageChange(
        lead_id=f"00Q{n:012d}",
        crm_status="Closed Won",
        stage="won",
        changed_at=changed_at,
        source_record_id=f"006{n:012d}",
        lead_created_at=changed_at - timedelta(days=10),
        attributes={k: v for k, v in attrs.items() if v is not None},
        restatement=restatement,
    )
    return Delivery(n, "google_ads", target, value, "EUR" if value is not None else None, 0, change)


def restated(n: int, value: float, *, target: str, delivery_id: int | None = None) -> Delivery:
    """The won deal of lead `n` with a new amount: the same transaction id, an adjustment."""
    d = won(n, target=target, value=value, at=NOW - timedelta(hours=1), restatement=True)
    return Delivery(delivery_id or 100 + n, d.destination, d.target, value, "EUR", 0, d.change)


def retracted(n: int, *, target: str, delivery_id: int | None = None) -> Delivery:
    """Lead `n`'s won deal reopened: a retraction of its won conversion, no value."""
    change = StageChange(
        lead_id=f"00Q{n:012d}",
        crm_status="Negotiation",
        stage="opportunity",
        changed_at=NOW - timedelta(minutes=30),
        source_record_id=f"006{n:012d}",
        lead_created_at=NOW - timedelta(days=20),
        attributes={"gclid": f"Cj0KCQiA-lead{n:04d}-abcdEFGH"},
        retracts=f"00Q{n:012d}:won",
    )
    return Delivery(delivery_id or 200 + n, "google_ads", target, None, None, 0, change)
