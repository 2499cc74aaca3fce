"""One stream's cursor: where a pull reads from, and how far its bookmark may move.

One object per stream, as dlt's `Incremental`, that knows:

- its stream, and the stored bookmark it resumes from (`initial`; None before
  the first run, which makes the pull a backfill);
- where a backfill starts (`start`: the `start_date` setting, else
  `backfill_days` before the run);
- the overlap window (`overlap`): a run reads again from the bookmark less this,
  because Salesforce can show a row written in the second of the last read only
  after that read (API-NOTES §5). The ledger stores a change once, so a row read
  twice is recorded once;
- the run start it is capped at (`end`), as the Singer SDK caps a bookmark at the
  sync's start: a row stamped later may still be committing;
- the position reached so far: rows arrive in replication-key order (REST pages by
  their ORDER BY, a Bulk API 2.0 job's rows sorted by its reader), so the position
  follows each row.

`bookmark` is the value the stored bookmark may move to with the rows read so
far; the ledger moves it in the transaction that stores those rows, never back.
Rows out of order are refused (the Singer SDK's rule): a bookmark past a row not
yet read would skip it for good.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta

from connector.errors import SourceError
from connector.settings import SalesforceSettings
from connector.source.streams import Stream


@dataclass
class Cursor:
    stream: Stream
    initial: datetime | None  # the stored bookmark; None: no run recorded this stream yet
    start: datetime  # where a backfill reads from
    overlap: timedelta
    end: datetime  # the run's start: the bookmark never passes it
    position: datetime | None = field(default=None, init=False)  # read up to here, safely

    @classmethod
    def resume(
        cls,
        stream: Stream,
        bookmark: datetime | None,
        settings: SalesforceSettings,
        run_start: datetime,
    ) -> Cursor:
        """The cursor of `stream` from its stored bookmark, per the Salesforce settings."""
        if settings.start_date is not None:
            start = datetime.combine(settings.start_date, time(), tzinfo=UTC)
        else:
            start = run_start - timedelta(days=settings.backfill_days)
        return cls(stream, bookmark, start, timedelta(seconds=settings.overlap_seconds), run_start)

    @property
    def backfill(self) -> bool:
        """No bookmark yet: the first run reads from the backfill start."""
        return self.initial is None

    @property
    def since(self) -> datetime:
        """Where to read from: the bookmark less the overlap window, or the backfill start."""
        return self.start if self.initial is None else self.initial - self.overlap

    @property
    def bookmark(self) -> datetime:
        """The value the bookmark may move to with the rows read so far (`since` before any),
        never past the run start: what is later is read again next time."""
        return min(self.position or self.since, self.end)

    def advance(self, at: datetime) -> None:
        """A row with replication-key value `at` was read, and every row before it too."""
        if self.position is not None and at < self.position:
            raise SourceError(
                f"{self.stream.name}: rows arrived out of {self.stream.replication_key} order "
                f"({at.isoformat()} after {self.position.isoformat()}); the cursor was kept",
                retryable=False,
            )
        self.position = at
