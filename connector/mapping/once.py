"""A funnel stage counts once per lead, and once per opportunity for opportunity stages.

A lead that goes MQL -> SQL -> MQL reached MQL once: the second MQL change is recorded
(the journey stays complete) with `stage_already_reached` on every target, and is sent
nowhere. Google would take its transaction id for the same conversion again and GA4,
which has no dedup, would count it twice. The one exception: a deal won again after a
retraction took its win back counts again (a new life of the conversion).

The ledger answers what was recorded before (`Changes.reached`); this module decides.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import datetime

from connector.core import GOOGLE_ADS, Mapped, StageChange, Target

STAGE_ALREADY_REACHED = "stage_already_reached"

# (conversion id, change time, conversion it took back): a recorded milestone
Milestone = tuple[str, datetime, str | None]


def first_reached(batch: Sequence[Mapped], recorded: Iterable[Milestone]) -> list[Mapped]:
    """`batch` (in its order) with every re-entered stage's targets skipped.

    Decided in change-time order, against what was recorded and what came earlier in
    the batch; a change recorded before (an overlap re-read) is no re-entry of itself.
    """
    # conversion id -> [(time, took back)]: when it was reached, or retracted
    timeline: dict[str, list[tuple[datetime, bool]]] = {}
    for milestone in recorded:
        _add(timeline, milestone)
    decided = list(batch)
    for i in sorted(range(len(batch)), key=lambda i: batch[i].change.changed_at):
        change = batch[i].change
        if change.restatement:
            continue  # adjusts a conversion, reaches nothing
        if _reached_before(timeline.get(change.conversion_id, []), change.changed_at):
            decided[i] = _skipped(batch[i])
        _add(timeline, (change.conversion_id, change.changed_at, change.retracts))
    return decided


def _add(timeline: dict[str, list[tuple[datetime, bool]]], milestone: Milestone) -> None:
    conversion, at, retracts = milestone
    timeline.setdefault(conversion, []).append((at, False))
    if retracts:
        timeline.setdefault(retracts, []).append((at, True))


def _reached_before(events: list[tuple[datetime, bool]], at: datetime) -> bool:
    """Reached earlier, and not taken back since (a deal won again after a retraction)."""
    earlier = [event for event in events if event[0] < at]
    return bool(earlier) and not max(earlier)[1]


def _skipped(mapped: Mapped) -> Mapped:
    change = mapped.change
    targets = [t if _takes_back(change, t) else _skip(t) for t in mapped.targets]
    return Mapped(change=change, targets=targets)


def _takes_back(change: StageChange, target: Target) -> bool:
    # A won deal lost again still retracts its win: only the stage itself is not new.
    return change.retraction and target.destination == GOOGLE_ADS


def _skip(target: Target) -> Target:
    return replace(target, skip_reason=STAGE_ALREADY_REACHED)
