"""Conversion actions resolved from the names a mapping gives, once per run.

A mapping may name a conversion action instead of giving its id; uploads need
the id. `ConversionActions.resolve` looks every unknown name up with one
`GoogleAdsService.Search` (API-NOTES §1) and caches the answer for the run.
Names go into GAQL as escaped string literals: a quote in a name must never
end the literal and change the query.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from google.ads.googleads.errors import GoogleAdsException
from google.api_core import exceptions as gexc

from connector.core import Delivery, Outcome, Status
from connector.destinations.google_ads.ads_api import (
    ads_client,
    call_ads_api,
    describe,
    error_code,
    stops_destination,
)
from connector.destinations.google_ads.eligibility import send_problem
from connector.destinations.google_ads.errors import destination_error
from connector.errors import ConnectorError, DestinationError
from connector.retry import RetryableError
from connector.settings import GoogleAdsSettings

NAMES_PER_QUERY = 100  # an IN list far below Google's FILTER_HAS_TOO_MANY_VALUES
_SELECT = (
    "SELECT conversion_action.resource_name, conversion_action.id, conversion_action.name, "
    "conversion_action.type, conversion_action.status FROM conversion_action"
)


@dataclass(frozen=True)
class ConversionActionInfo:
    id: str
    name: str
    resource_name: str
    type: str
    status: str


def gaql_string(value: str) -> str:
    """`value` as a GAQL string literal: backslashes and quotes escaped."""
    if "\n" in value or "\r" in value:
        raise ValueError("GAQL strings cannot contain line breaks")
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


class ConversionActions:
    """Conversion actions of one customer by name, each name looked up at most once."""

    def __init__(
        self,
        search_service: Any,
        customer_id: str,
        *,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        self._service = search_service
        self._customer_id = customer_id
        self._sleep = sleep
        self._found: dict[str, ConversionActionInfo] = {}
        self._missing: set[str] = set()

    def resolve(self, names: Iterable[str]) -> dict[str, ConversionActionInfo]:
        """The actions among `names` that exist (removed ones do not count)."""
        wanted = set(names)
        unknown = sorted(wanted - self._found.keys() - self._missing)
        for start in range(0, len(unknown), NAMES_PER_QUERY):
            chunk = unknown[start : start + NAMES_PER_QUERY]
            self._found.update(self._search(chunk))
            self._missing.update(name for name in chunk if name not in self._found)
        return {name: self._found[name] for name in wanted if name in self._found}

    def by_ids(self, ids: Iterable[str]) -> dict[str, ConversionActionInfo]:
        """The actions with these numeric ids, removed ones included (a check names them)."""
        wanted = sorted({int(i) for i in ids})  # int(): only digits can reach the query
        found: dict[str, ConversionActionInfo] = {}
        for start in range(0, len(wanted), NAMES_PER_QUERY):
            listed = ", ".join(str(i) for i in wanted[start : start + NAMES_PER_QUERY])
            rows = self._run(f"{_SELECT} WHERE conversion_action.id IN ({listed})")
            found.update((str(r.conversion_action.id), _info(r.conversion_action)) for r in rows)
        return found

    def listed(self) -> list[ConversionActionInfo]:
        """Every action of the customer but removed ones, by name: what `init` offers."""
        query = (
            f"{_SELECT} WHERE conversion_action.status != 'REMOVED' ORDER BY conversion_action.name"
        )
        return [_info(row.conversion_action) for row in self._run(query)]

    def _search(self, names: list[str]) -> dict[str, ConversionActionInfo]:
        rows = self._run(
            f"{_SELECT} "
            f"WHERE conversion_action.name IN ({', '.join(gaql_string(n) for n in names)}) "
            "AND conversion_action.status != 'REMOVED'"
        )
        return {row.conversion_action.name: _info(row.conversion_action) for row in rows}

    def _run(self, query: str) -> list[Any]:
        return call_ads_api(
            lambda: list(
                self._service.search(customer_id=self._customer_id, query=query, retry=None)
            ),
            sleep=self._sleep,
        )


def _info(action: Any) -> ConversionActionInfo:
    return ConversionActionInfo(
        id=str(action.id),
        name=action.name,
        resource_name=action.resource_name,
        type=action.type_.name,
        status=action.status.name,
    )


def list_actions(settings: GoogleAdsSettings) -> list[ConversionActionInfo]:
    """The operating account's conversion actions (read only). A failure is one error saying
    what to fix: DestinationError when Google refused (access, customer id), else
    ConnectorError (unreachable after retries)."""
    service = ads_client(settings).get_service("GoogleAdsService")
    try:
        return ConversionActions(service, settings.operating_account_id).listed()
    except GoogleAdsException as exc:
        codes = sorted(error_code(e)[1] for e in exc.failure.errors)
        known = destination_error(set(codes))
        raise known or DestinationError(_unlisted(exc), code=codes[0] if codes else "") from None
    except (RetryableError, gexc.GoogleAPICallError) as exc:
        raise ConnectorError(_unlisted(exc)) from None
    finally:
        service.transport.close()


def _unlisted(exc: Exception) -> str:
    return (
        f"Google Ads conversion actions could not be listed: {describe(exc)}; check the "
        "customer id and that the credentials can access it"
    )


class ActionIds:
    """Numeric conversion action ids for the mapping's targets, on either upload path.

    Ids are taken as given; names are looked up once per run through the Google
    Ads API with the OAuth credentials alone (no developer token since 2026).
    """

    def __init__(
        self,
        settings: GoogleAdsSettings,
        search_service: Callable[[], Any],
        *,
        sleep: Callable[[float], None] | None = None,
        reported: set[str] | None = None,
    ) -> None:
        self._settings = settings
        self._search_service = search_service
        self._sleep = sleep
        self._actions: ConversionActions | None = None
        # Destination-wide errors this run already logged (shared with the destination).
        self._reported = reported if reported is not None else set()

    def ids(self, targets: Iterable[str]) -> tuple[dict[str, str], str | None]:
        """(id by target for those known, why the names could not be looked up or None)."""
        wanted = set(targets)
        by_id = {t: t for t in wanted if t.isdigit()}
        names = wanted - by_id.keys()
        if not names:
            return by_id, None
        try:
            found = self._resolver().resolve(names)
        except (RetryableError, GoogleAdsException, gexc.GoogleAPICallError) as exc:
            if (stop := stops_destination(exc, self._reported)) is not None:
                return by_id, str(stop)
            return by_id, f"conversion action lookup failed: {describe(exc)}"
        return by_id | {name: info.id for name, info in found.items()}, None

    def _resolver(self) -> ConversionActions:
        if self._actions is None:
            customer = self._settings.operating_account_id
            self._actions = ConversionActions(self._search_service(), customer, sleep=self._sleep)
        return self._actions


def sendable(
    batch: Sequence[Delivery], action_ids: ActionIds, now: datetime
) -> tuple[list[Outcome], list[tuple[Delivery, str]]]:
    """Outcomes for the rows that cannot go now, and the rest with their action ids."""
    ids, lookup_error = action_ids.ids(d.target for d in batch)
    outcomes, valid = [], []
    for d in batch:
        if problem := send_problem(d, now):
            outcomes.append(Outcome(d.id, Status.REJECTED, reason=problem))
        elif d.target not in ids and lookup_error:
            outcomes.append(Outcome(d.id, Status.PENDING, error=lookup_error))
        elif d.target not in ids:
            outcomes.append(Outcome(d.id, Status.REJECTED, reason="unknown_conversion_action"))
        else:
            valid.append((d, ids[d.target]))
    return outcomes, valid
