"""The leads no channel can claim, and why: what tracking ops would fix.

A lead has one reason per signal tried, so the reasons overlap: they are shown
as sets (how many leads have each reason, and each combination of reasons),
never as parts that add up. A lead with no signal at all (no click id, no UTM
fields, no GA client id, no LeadSource) is counted apart: it was never tracked,
while the others carried something the report could not use.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from connector.report.attribution import Attribution
from connector.report.currency import Valuation
from connector.report.load import Lead

# The reasons that mean a signal is absent altogether (not present but unusable).
ABSENT = frozenset({"no_click_id", "no_utm", "no_ga_client_id", "no_lead_source"})
_FUNNEL = ("lead", "mql", "sql", "opportunity", "won")


@dataclass(frozen=True)
class UnattributedLead:
    lead_id: str
    first_seen: datetime
    furthest_stage: str
    won_value: float | None  # in the report's currency; None: not won, or no value
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class ReasonSets:
    leads: int  # unattributed leads
    by_reason: dict[str, int]  # leads having each reason (overlapping)
    combinations: dict[tuple[str, ...], int]  # leads having exactly these reasons
    without_any_signal: int  # leads whose every reason is an absent signal

    @property
    def with_some_signal(self) -> int:
        return self.leads - self.without_any_signal


def unattributed_leads(
    leads: Sequence[Lead], attributions: Mapping[str, Attribution], values: Valuation
) -> list[UnattributedLead]:
    """Each unattributed lead, furthest in the funnel first (a won deal is worth fixing first)."""
    found = [
        UnattributedLead(
            lead.lead_id,
            lead.first_seen,
            furthest_stage(lead),
            values.value(lead.lead_id),
            attributions[lead.lead_id].reasons,
        )
        for lead in leads
        if not attributions[lead.lead_id].attributed
    ]
    rank = {stage: i for i, stage in enumerate(_FUNNEL)}
    return sorted(found, key=lambda u: (-rank[u.furthest_stage], u.first_seen, u.lead_id))


def reason_sets(leads: Sequence[Lead], attributions: Mapping[str, Attribution]) -> ReasonSets:
    reasons = [attributions[lead.lead_id].reasons for lead in leads]
    unplaced = [r for r, lead in zip(reasons, leads, strict=True)
                if not attributions[lead.lead_id].attributed]  # fmt: skip
    by_reason = Counter(reason for r in unplaced for reason in r)
    combinations = Counter(tuple(r) for r in unplaced)
    return ReasonSets(
        leads=len(unplaced),
        by_reason=dict(by_reason.most_common()),
        combinations=dict(combinations.most_common()),
        without_any_signal=sum(1 for r in unplaced if r and set(r) <= ABSENT),
    )


def furthest_stage(lead: Lead) -> str:
    rank = {stage: i for i, stage in enumerate(_FUNNEL)}
    reached = [rank[s] for s in lead.stages if s in rank]
    return _FUNNEL[max(reached, default=0)]
