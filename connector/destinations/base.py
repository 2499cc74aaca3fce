"""What the pipeline knows of a destination: its capabilities and its five calls.

A destination is recognised by what it declares, never by its class: the pipeline
hands it batches of `capabilities.batch_size`, asks it to plan each wave (an
adjustment may have to wait for the conversion it adjusts), commits the outcomes
of each request as the destination reports them, stores the request ids it
reports when it has request-status checks, and asks it to check them on the next
run.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from connector.core import Delivery, Outcome
from connector.ledger import Ledger


@dataclass(frozen=True)
class Capabilities:
    batch_size: int  # deliveries per deliver() call
    request_status: bool = False  # accepted requests are checked with Google on the next run
    validate_only: bool = True  # a dry run can ask the API to validate without ingesting
    # A resend is recognised as the same event (Google Ads: transaction / order id); GA4 has
    # no dedup, so what may have arrived is said out loud before it is sent again.
    deduplicates: bool = False
    # Events per request, where a request's size is free (Data Manager): ready rows past a
    # page's last whole request wait for the next page, so no request but the last is short.
    whole_requests: int | None = None


# Called with the outcomes of requests as they return (GA4: those that return within a
# short window, together): they are committed then, so a crash later in the batch cannot
# lose them.
Settle = Callable[[list[Outcome]], None]


@dataclass(frozen=True)
class Plan:
    """A wave of deliveries split into what may go now and what was settled without sending."""

    ready: list[Delivery]
    settled: list[Outcome]


class Destination(Protocol):
    name: str
    capabilities: Capabilities

    def plan(self, ledger: Ledger, wave: Sequence[Delivery]) -> Plan: ...

    def deliver(
        self,
        batch: Sequence[Delivery],
        *,
        validate_only: bool = False,
        settle: Settle | None = None,
    ) -> list[Outcome]:
        """Send `batch`; outcomes for all of it (those given to `settle` may be repeated).

        Raises DestinationError when the destination refuses the request as a whole for a
        reason only a fix can cure (credentials, permission, account, allowlist).
        """
        ...

    def payloads(self, batch: Sequence[Delivery]) -> list[dict[str, Any]]: ...

    def check_requests(self, ledger: Ledger) -> dict[str, Any] | None: ...

    def close(self) -> None: ...
