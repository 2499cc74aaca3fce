"""GA4 analytics: what GA4 itself reports, read through the Data API.

It reads from GA4; it is not a destination. One small module per job:

    client      GA4Data: the Data API client for the property (retries, paging)
    reconcile   delivered (ledger) against reported (GA4) event counts per name and day
    channels    each lead's acquisition channel from its website generate_lead hit
    terminal    the reconciliation as a table on the terminal
"""

from __future__ import annotations

from connector.analytics.channels import leads_to_look_up, lookup_channels
from connector.analytics.client import DataApiError, GA4Data
from connector.analytics.reconcile import (
    Difference,
    Reconciliation,
    event_names,
    reconcile,
    window,
)
from connector.analytics.terminal import print_reconciliation

__all__ = [
    "DataApiError",
    "Difference",
    "GA4Data",
    "Reconciliation",
    "event_names",
    "leads_to_look_up",
    "lookup_channels",
    "print_reconciliation",
    "reconcile",
    "window",
]
