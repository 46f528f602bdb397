"""The pieces the SQL backends share: statements as data, transaction bodies as plans,
and the dialect that renders one SQL text for each database.

A *plan* is a generator that yields `Op`s (a statement with its arguments, or a marker)
and receives each statement's result, then returns the method's answer. It does no I/O:
the backend's runner drives it, all of it in one database thread hop on SQLite (the
standard `sqlite3` module), statement by statement on asyncpg. So each transaction and
each decision is written once, in `plans.py`, for every SQL database.

SQL text is written once with PostgreSQL's numbered parameters (`$1`) and `{fragment}`
fields for what only some databases have (row locks); `Dialect.sql` renders it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")

ONE = "one"  # the first row, or None
ALL = "all"  # every row
RUN = "run"  # the number of rows changed
MANY = "many"  # the statement once per argument tuple; no result
BEGIN_KIND = "begin"
WRITE_KIND = "write"


@dataclass(frozen=True, slots=True)
class Op:
    kind: str
    sql: str = ""
    args: tuple = ()


BEGIN = Op(BEGIN_KIND)
"""Start a write transaction (SQLite: BEGIN IMMEDIATE, the file's write lock up front).
It commits when the plan returns and rolls back when the plan raises. The runner
answers True when the plan's reads before it already held the write lock (SQLite runs
a batch of plans in one transaction: see sqlite.py), so that they need not be re-read;
anything else means they must be."""

WRITE = Op(WRITE_KIND)
"""The next statement is a write standing alone (atomic without a transaction); answered
as BEGIN."""

Plan = Generator[Op, Any, T]


def one(sql: str, *args: object) -> Op:
    return Op(ONE, sql, args)


def all_rows(sql: str, *args: object) -> Op:
    return Op(ALL, sql, args)


def run(sql: str, *args: object) -> Op:
    return Op(RUN, sql, args)


def many(sql: str, rows: list[tuple]) -> Op:
    return Op(MANY, sql, tuple(rows))


_PARAMETER = re.compile(r"\$(\d+)")


@dataclass(frozen=True)
class Dialect:
    """What differs between the SQL databases, and nothing else.

    - `parameter`: how the database writes parameter n (`?n` in SQLite).
    - `fragments`: text for the `{names}` in the shared SQL (row locks, types).
    - `row_locks`: the database locks rows (PostgreSQL); SQLite's BEGIN IMMEDIATE locks
      the whole file instead, so lock statements are skipped.
    - `writable_ctes`: several changes can go in one statement (WITH ... UPDATE),
      one round trip instead of several where the driver waits for each.
    - `locks`: statements taking a transaction-scoped lock by name ("migrations",
      "admins", "revocations"), for databases where concurrent writers need them.
    - `notify`: a statement telling listeners that revocations were recorded ($1: the
      channel), or None.
    - `list_param`: how a list of text is passed for the `{in_list}` fragment.
    - `storable`: whether the database can hold this text (PostgreSQL has no NUL).
    - `escape`: free text made storable (a counter key, a user agent).
    """

    name: str
    parameter: str
    fragments: Mapping[str, str]
    row_locks: bool
    writable_ctes: bool
    locks: Mapping[str, str]
    notify: str | None
    list_param: Callable[[list[str]], object]
    storable: Callable[[str], bool]
    escape: Callable[[str], str]
    _cache: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    def sql(self, template: str) -> str:
        """The template rendered for this database (cached: statements are constants)."""
        text = self._cache.get(template)
        if text is None:
            formatted = template.format_map(self.fragments)
            text = _PARAMETER.sub(self.parameter, formatted)
            self._cache[template] = text
        return text


@dataclass
class Ctx:
    """What a plan needs besides its arguments: the dialect and the storage's settings."""

    dialect: Dialect
    revocation_ttl: int
    reuse_window: int
    channel: str = ""  # the notification channel (PostgreSQL)

    def q(self, template: str) -> str:
        return self.dialect.sql(template)
