"""The run summary: counts a person reads at a glance and a script reads as JSON."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from connector import exit_codes
from connector.core import Outcome, Status


@dataclass
class DestinationTally:
    delivered: int = 0
    pending: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    rejected: Counter[str] = field(default_factory=Counter)
    dead: int = 0  # attempts exhausted: `connector failures` lists them
    unknown: int = 0  # may or may not have arrived (GA4, resending switched off)
    # Events Google accepted with a field warning, by "REASON field" (Data Manager).
    warnings: Counter[str] = field(default_factory=Counter)

    def add(self, status: str, reason: str | None) -> None:
        if status == Status.DELIVERED:
            self.delivered += 1
        elif status == Status.PENDING:
            self.pending += 1
        elif status == Status.SKIPPED:
            self.skipped[reason or "unspecified"] += 1
        elif status == Status.REJECTED:
            self.rejected[reason or "unspecified"] += 1
        elif status == Status.DEAD:
            self.dead += 1
        elif status == Status.UNKNOWN:
            self.unknown += 1

    def add_outcomes(self, outcomes: list[Outcome]) -> None:
        for outcome in outcomes:
            self.add(outcome.status, outcome.reason)
            if outcome.warnings:  # mostly none: Counter.update costs a call even for nothing
                self.warnings.update(outcome.warnings)

    def as_dict(self) -> dict[str, Any]:
        return {
            "delivered": self.delivered,
            "pending": self.pending,
            "skipped": dict(self.skipped.most_common()),
            "rejected": dict(self.rejected.most_common()),
            "dead": self.dead,
            "unknown": self.unknown,
            "field_warnings": dict(self.warnings.most_common()),
        }


@dataclass
class RunSummary:
    dry_run: bool
    since: str
    pulled: int = 0
    new: int = 0
    unmapped: Counter[str] = field(default_factory=Counter)
    row_problems: Counter[str] = field(default_factory=Counter)
    destinations: dict[str, DestinationTally] = field(default_factory=dict)
    cursor: str | None = None
    api_usage: str | None = None
    source_calls: int = 0
    payloads_file: str | None = None
    error: str | None = None
    stopped: str | None = None  # pulling stopped early (the Salesforce API budget), cursor kept
    measurability: dict[str, Any] | None = None  # share of leads attributable to a channel
    # Google's verdict on earlier uploads, checked this run (Data Manager request status).
    request_status: dict[str, dict[str, Any]] = field(default_factory=dict)
    # A destination stopped for this run, with what to fix (credentials, permission, ...).
    destination_errors: dict[str, str] = field(default_factory=dict)
    # Rows a stopped worker had in flight, sent again: deduplicated (Google Ads) or not (GA4).
    resent_after_stop: Counter[str] = field(default_factory=Counter)
    may_be_duplicated: Counter[str] = field(default_factory=Counter)
    retries: int = 0  # transient failures retried this run, on every API
    # Wall seconds per phase ("pull LeadHistory", "deliver ga4"): where a slow run spent it.
    seconds: dict[str, float] = field(default_factory=dict)
    rows: list[dict[str, Any]] | None = None  # a dry run's per-row outcomes (`dry_run.outcomes`)

    def tally(self, destination: str) -> DestinationTally:
        # Asked for every skipped target of a pull: a new tally only for a new destination.
        if (tally := self.destinations.get(destination)) is None:
            tally = self.destinations[destination] = DestinationTally()
        return tally

    @property
    def status(self) -> str:
        """failed, needs_fix (a destination), partial (work left for the next run), or ok."""
        if self.error:
            return "failed"
        if self.destination_errors:
            return "needs_fix"
        if self.stopped or any(t.pending for t in self.destinations.values()):
            return "partial"
        return "ok"

    @property
    def exit_code(self) -> int:
        """The command's exit code for this run (the table in README, `exit_codes`)."""
        if self.destination_errors:
            return exit_codes.DESTINATION_NEEDS_FIX
        if any(t.pending for t in self.destinations.values()):
            return exit_codes.UNAVAILABLE
        if self.stopped:
            return exit_codes.STOPPED_EARLY
        if any(t.rejected or t.dead for t in self.destinations.values()):
            return exit_codes.ROWS_REJECTED
        return exit_codes.OK

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "dry_run": self.dry_run,
            "since": self.since,
            "pulled": self.pulled,
            "new": self.new,
            "already_recorded": self.pulled - self.new,
            "unmapped_statuses": dict(self.unmapped.most_common()),
            "row_problems": dict(self.row_problems.most_common()),
            "destinations": {name: t.as_dict() for name, t in sorted(self.destinations.items())},
            "cursor": self.cursor,
            "salesforce_api_usage": self.api_usage,
            "salesforce_query_calls": self.source_calls,
            "stopped": self.stopped,
            "payloads_file": self.payloads_file,
            "measurability": self.measurability,
            "request_status": self.request_status,
            "destination_errors": self.destination_errors,
            "resent_after_stop": dict(self.resent_after_stop),
            "may_be_duplicated": dict(self.may_be_duplicated),
            "retries": self.retries,
            "seconds": {phase: round(took, 3) for phase, took in self.seconds.items()},
            "error": self.error,
            **({"rows": self.rows} if self.rows is not None else {}),
        }
