"""The ledger: what was pulled, where each change went, and where to resume.

One small module per job, each answering questions about its rows:

    database     the engine (SQLite, or PostgreSQL for several workers)
    schema       the tables;  migrations: create or upgrade them
    cursors      one bookmark per stream
    runs         one row per sync run
    changes      stage changes, stored once, with their delivery rows and the bookmark
    states       the last status seen per CRM record (snapshot mode)
    queue        the delivery queue: pending, settled, what a lead sent before
    requests     upload requests and Google's verdict on them
    warnings     field warnings Google attached to accepted requests
    channels     each lead's GA4 channel
    costs        Google Ads cost per campaign and day, and each click's campaign
    rates        the org's currency conversion rates (CurrencyType, DatedConversionRate)
    reporting    the rows a report period reads
    stats        counts for monitoring (the metrics file)
"""

from __future__ import annotations

from connector.ledger.changes import Changes
from connector.ledger.channels import ChannelCache, LeadChannel
from connector.ledger.costs import AdsCosts
from connector.ledger.cursors import Cursors
from connector.ledger.database import Database, open_database, state_errors
from connector.ledger.migrations import migrate
from connector.ledger.queue import DeliveryQueue, SentBefore
from connector.ledger.rates import CurrencyRate, CurrencyRates
from connector.ledger.reporting import PeriodRows, ReportReads
from connector.ledger.requests import PROCESSING, UploadRequests
from connector.ledger.runs import Runs
from connector.ledger.states import RecordStates
from connector.ledger.warnings import FieldWarnings

__all__ = ["PROCESSING", "CurrencyRate", "LeadChannel", "Ledger", "PeriodRows", "SentBefore"]


class Ledger:
    """The state store, one attribute per job."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.cursors = Cursors(db)
        self.runs = Runs(db)
        self.changes = Changes(db)
        self.states = RecordStates(db)
        self.queue = DeliveryQueue(db)
        self.requests = UploadRequests(db)
        self.warnings = FieldWarnings(db)
        self.channels = ChannelCache(db)
        self.reporting = ReportReads(db)
        self.rates = CurrencyRates(db)
        self.costs = AdsCosts(db)

    @classmethod
    def open(cls, url: str, *, readonly: bool = False) -> Ledger:
        """Open (and, unless read-only, create or migrate) the store at `url`.

        A store that cannot be opened (server down, a corrupt file, a path that cannot hold
        one) is a StateStoreError naming CONNECTOR_STATE_URL, whichever command opens it.
        """
        with state_errors(url):
            db = open_database(url, readonly=readonly)
            if not readonly:
                migrate(db)
        return cls(db)

    @property
    def readonly(self) -> bool:
        return self.db.readonly
