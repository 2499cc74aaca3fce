"""Batched inserts and updates handed to the DB-API driver as plain values: what a sync records.

SQLAlchemy's executemany runs every row's parameters through its own Python layer
(parameter construction, then each column type's processor): measured at 20-50 µs a
row, most of what recording a first sync's hundreds of thousands of rows cost. Here
the statement is written once per table and columns, each value goes through its
column type's own bind processor only where the type has one (a datetime, a JSON
document), and the rows go to the driver as they are: one `executemany`, or
multi-row VALUES statements when the new rows' ids are wanted back.

Both backends take the same SQL: `ON CONFLICT DO NOTHING` and `RETURNING`
(SQLite 3.35+, PostgreSQL), `?` or `%s` placeholders by driver.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any

from sqlalchemy import Column, Connection, Dialect, Table

Value = Callable[[Any], Any]
# Under SQLite's 32,766 parameters a statement (the default since 3.32; RETURNING needs
# 3.35) and PostgreSQL's 65,535: a chunk of 2,000 changes is one statement.
VALUES_PER_STATEMENT = 30_000


def binder(dialect: Dialect, column: Column[Any]) -> Value:
    """The function that turns `column`'s Python values into the driver's form."""
    process = column.type.dialect_impl(dialect).bind_processor(dialect)
    return process if process is not None else _same


def _same(value: Any) -> Any:
    return value


def insert_rows(
    conn: Connection, table: Table, columns: Sequence[str], rows: list[tuple[Any, ...]]
) -> None:
    """INSERT `rows` (values of `columns`, in the driver's form) in one driver executemany."""
    if rows:
        conn.exec_driver_sql(_insert(conn.dialect, table, tuple(columns), 1, ""), rows)


def update_rows(
    conn: Connection,
    table: Table,
    columns: Sequence[str],
    keys: Sequence[str],
    rows: list[tuple[Any, ...]],
) -> None:
    """UPDATE `columns` of the row each `keys` match, per row tuple (the values of `columns`,
    then of `keys`, in the driver's form), in one driver executemany."""
    if rows:
        conn.exec_driver_sql(_update(conn.dialect, table, tuple(columns), tuple(keys)), rows)


def insert_returning(
    conn: Connection,
    table: Table,
    columns: Sequence[str],
    rows: list[tuple[Any, ...]],
    returning: Sequence[str],
) -> list[tuple[Any, ...]]:
    """INSERT ... ON CONFLICT DO NOTHING RETURNING `returning`: the rows that were new,
    as the driver returns them (duplicates return nothing; the order is not promised)."""
    per = max(1, VALUES_PER_STATEMENT // len(columns))
    tail = " ON CONFLICT DO NOTHING RETURNING " + ", ".join(_quoted(conn.dialect, returning))
    found: list[tuple[Any, ...]] = []
    for start in range(0, len(rows), per):
        part = rows[start : start + per]
        sql = _insert(conn.dialect, table, tuple(columns), len(part), tail)
        flat = tuple(value for row in part for value in row)
        found.extend(tuple(r) for r in conn.exec_driver_sql(sql, flat))
    return found


@lru_cache(maxsize=64)
def _insert(dialect: Dialect, table: Table, columns: tuple[str, ...], rows: int, tail: str) -> str:
    mark = _mark(dialect)
    group = "(" + ", ".join([mark] * len(columns)) + ")"
    names = ", ".join(_quoted(dialect, columns))
    into = dialect.identifier_preparer.format_table(table)
    return f"INSERT INTO {into} ({names}) VALUES " + ", ".join([group] * rows) + tail


@lru_cache(maxsize=16)
def _update(dialect: Dialect, table: Table, columns: tuple[str, ...], keys: tuple[str, ...]) -> str:
    mark = _mark(dialect)
    assign = ", ".join(f"{name} = {mark}" for name in _quoted(dialect, columns))
    where = " AND ".join(f"{name} = {mark}" for name in _quoted(dialect, keys))
    return f"UPDATE {dialect.identifier_preparer.format_table(table)} SET {assign} WHERE {where}"


def _mark(dialect: Dialect) -> str:
    return "?" if dialect.paramstyle == "qmark" else "%s"  # sqlite3; psycopg takes %s


def _quoted(dialect: Dialect, names: Sequence[str]) -> list[str]:
    return [dialect.identifier_preparer.quote(name) for name in names]
