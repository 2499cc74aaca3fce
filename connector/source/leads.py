"""The leads behind opportunities, held for one read of OpportunityFieldHistory.

A deal's stage changes are days or weeks apart, so a backfill read in time order
(REST pages, or a Bulk job) meets the same opportunity again far down the stream.
Looking its lead up again each time costs a Salesforce call per few hundred rows;
holding every lead ever looked up would grow with the org. This holds the most
recently used ones, as bare tuples of the fields the source reads (a few hundred
bytes each), and remembers opportunities without a lead as well.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Sequence
from typing import Any

CAPACITY = 32_768  # opportunities held: at most ~20 MB, whatever the org's size

Lead = dict[str, Any]


class LeadsByOpportunity:
    """opportunity id -> its lead's record (or None: it has none), least recently used
    dropped beyond `capacity`."""

    def __init__(self, fields: Sequence[str], capacity: int = CAPACITY) -> None:
        self._fields = tuple(fields)
        self._capacity = capacity
        self._held: OrderedDict[str, tuple[Any, ...] | None] = OrderedDict()

    def __contains__(self, opportunity_id: object) -> bool:
        return opportunity_id in self._held

    def take(self, opportunity_ids: Iterable[str]) -> dict[str, Lead]:
        """The held leads of these opportunities (those without one are left out)."""
        found: dict[str, Lead] = {}
        for opp in opportunity_ids:
            if opp not in self._held:
                continue
            self._held.move_to_end(opp)
            values = self._held[opp]
            if values is not None:
                found[opp] = dict(zip(self._fields, values, strict=True))
        return found

    def hold(self, opportunity_ids: Iterable[str], leads: dict[str, Lead]) -> None:
        """Remember what a lookup found for these opportunities, a missing lead too."""
        for opp in opportunity_ids:
            lead = leads.get(opp)
            self._held[opp] = None if lead is None else tuple(lead.get(f) for f in self._fields)
            self._held.move_to_end(opp)
        while len(self._held) > self._capacity:
            self._held.popitem(last=False)
