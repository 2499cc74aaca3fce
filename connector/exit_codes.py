"""The exit codes of every `connector` command, in one place (README: "Exit codes").

A scheduler can act on them: 3 and 4 mean "run again later, nothing to fix";
2 and 5 mean "a person must fix something first"; 7 means the run did its job
but some rows' data needs fixing (`connector failures` lists them).
"""

from __future__ import annotations

OK = 0
INTERNAL = 1  # a bug: the traceback is logged at DEBUG
CONFIG = 2  # a setting or the mapping is wrong: the message names it
UNAVAILABLE = 3  # Salesforce, a destination or the state store is unavailable: try later
STOPPED_EARLY = 4  # stopped (API budget, SIGTERM) with work left: the next run goes on
DESTINATION_NEEDS_FIX = 5  # a destination refused the credentials, permission or account
STORE_BUSY = 6  # another run holds the state store (SQLite): it named itself
ROWS_REJECTED = 7  # done, but some rows were rejected or ran out of attempts
