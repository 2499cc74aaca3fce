"""GA4 lead events, on either upload path, with one set of rules.

events                the rules every event meets, and the event built from a delivery
measurement_protocol  `/mp/collect` with an api_secret (the default path)
datamanager           Data Manager `IngestEvents` to the property, with OAuth
"""

from __future__ import annotations

from connector.destinations.ga4.events import BACKDATE_SAFE, event_problem
from connector.destinations.ga4.measurement_protocol import GA4Destination

__all__ = ["BACKDATE_SAFE", "GA4Destination", "event_problem"]
