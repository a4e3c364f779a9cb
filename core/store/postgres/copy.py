"""A SQLite database moved into PostgreSQL in one step (``python -m bots migrate-to-postgres``).

What moves is one snapshot. The SQLite file is opened read-only and read in one read transaction, so a bot
still running keeps writing (in WAL mode a reader holds no writer up), but what it writes after the copy began
is not moved. The file must be at this code's migrations, no older (the bot migrates it when it starts) and no
newer. The target is checked first (it must hold no Threadline data: nothing is written to one that does),
then brought to the same migrations (core/store/postgres/migrations.py ``apply``), and then every table both
schemas have is copied with ``COPY ... FROM STDIN``, in one transaction: all of it, or nothing.

- Tables come from the two catalogues, so a later migration's table moves without an edit here. Not moved:
  SQLite's FTS5 tables with their shadow tables (PostgreSQL derives its own search data), sqlite-utils'
  record of migrations, and tables that only SQLite has (named in the report). A table only PostgreSQL has
  is one its triggers fill. Tables go in the order their foreign keys need, rows in SQLite's rowid order.
- Columns go by name. A PostgreSQL ``rowid`` column (GENERATED ALWAYS: COPY writes it as given) takes
  SQLite's hidden rowid; identity keys (messages.id, chunks.id, notices.id) keep their values, and every
  identity's sequence is then set past the largest value copied, or past SQLite's AUTOINCREMENT high-water
  mark where that is larger (m013: a deleted message's id is never handed out again).
- Triggers fire as rows go in (a column one fills, search data one derives), except an INSERT trigger whose
  function writes into another table being copied (m011's ``runs_spent``, into ``budget_spent``): that table
  comes from SQLite as it is, so the trigger is off for the copy and on again before the commit.
- Values: SQLite keeps any value in any column. One that PostgreSQL's column cannot take as it is gets
  converted where that loses nothing (a number in a text column, text in a bytea column, 3.0 in a bigint
  column); a row that still cannot go in stops the copy with the table and the row's key.

Afterwards each table's row count is compared on both sides, inside the transaction, before it commits.
"""

from __future__ import annotations

import logging
import re
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from sqlite_utils import Database

from core.errors import ConfigError, ThreadlineError
from core.store.migrations import MIGRATIONS as SQLITE_MIGRATIONS
from core.store.postgres.migrate import MIGRATIONS_TABLE
from core.store.postgres.migrations import MIGRATIONS, apply
from core.store.postgres.url import DatabaseUnreachable, PostgresUrl, first_line, reason, shorten

__all__ = ["CopyFailed", "CopyReport", "Target", "copy_to_postgres"]

_log = logging.getLogger(__name__)

BATCH_ROWS = 2000  # rows read from SQLite at a time
_SQLITE_RECORD = "_sqlite_migrations"


class CopyFailed(ThreadlineError):
    """The database could not be moved; nothing was written to PostgreSQL (at most its empty schema)."""


@dataclass(frozen=True)
class CopyReport:
    source: Path
    target: str  # where, without the password
    tables: tuple[tuple[str, int], ...]  # (table, rows), in the order copied
    seconds: float
    not_moved: tuple[str, ...]  # SQLite tables outside Threadline's schema

    @property
    def rows(self) -> int:
        return sum(rows for _, rows in self.tables)


class Target(PostgresUrl):
    """The database moved into: a PostgreSQL URL, read (core/store/postgres/url.py)."""

    def connect(self) -> psycopg.Connection[Any]:
        """An autocommit connection; CopyFailed, in one line without the password, when there is none."""
        try:
            return super().connect()
        except DatabaseUnreachable as exc:
            raise CopyFailed(str(exc)) from None


def copy_to_postgres(source: Path, url: str) -> CopyReport:
    """Move the SQLite database at ``source`` into the empty PostgreSQL database at ``url``. Blocking.

    :raises ConfigError: no database at ``source``, or ``url`` is not a PostgreSQL URL.
    :raises CopyFailed: anything else that stopped it (the message says what to do); nothing was written.
    """
    if not source.is_file():
        raise ConfigError(f"There is no database at {source}. Name the bot's SQLite file, or set THREADLINE_DB.")
    target = Target.parse(url)
    started = time.monotonic()
    with _snapshot(source) as lite:
        _check_sqlite_migrations(lite, source)
        sqlite_tables = _sqlite_tables(lite)
        with closing(target.connect()) as pg:
            try:
                copied = _move(lite, pg, source, target, sqlite_tables)
            except psycopg.Error as exc:
                _log.info("moving %s to PostgreSQL failed", source, exc_info=True)
                raise CopyFailed(
                    f"PostgreSQL ({target.display}) failed: {target.redact(reason(exc))}. Nothing was moved."
                ) from None
            seconds = time.monotonic() - started
            _analyze(pg, [table for table, _ in copied])
    pg_tables = {table for table, _ in copied}
    return CopyReport(source, target.display, tuple(copied), seconds, tuple(sorted(set(sqlite_tables) - pg_tables)))


# -- the SQLite side ---------------------------------------------------------------------------------------


@contextmanager
def _snapshot(source: Path) -> Iterator[sqlite3.Connection]:
    """``source`` read-only, inside one read transaction: every read sees the same committed state."""
    try:
        lite = sqlite3.connect(f"{source.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None)
    except sqlite3.Error as exc:
        raise CopyFailed(f"The database at {source} could not be opened ({exc}).") from None
    try:
        lite.execute("PRAGMA busy_timeout=30000")
        lite.execute("BEGIN")
        lite.execute("SELECT count(*) FROM sqlite_master").fetchone()  # the snapshot starts at the first read
        yield lite
    except sqlite3.DatabaseError as exc:
        _log.info("reading %s failed", source, exc_info=True)
        raise CopyFailed(f"The database at {source} could not be read ({exc}). Nothing was moved.") from None
    finally:
        lite.close()


def _check_sqlite_migrations(lite: sqlite3.Connection, source: Path) -> None:
    """CopyFailed unless the file's migrations are exactly this code's."""
    code = [migration.name for migration in SQLITE_MIGRATIONS.pending(Database(memory=True))]
    recorded = lite.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", [_SQLITE_RECORD])
    if recorded.fetchone() is None:
        raise CopyFailed(f"{source} is not a Threadline database (it has no record of migrations).")
    applied = [
        row[0]
        for row in lite.execute(
            f"SELECT name FROM {_SQLITE_RECORD} WHERE migration_set = ? ORDER BY rowid", [SQLITE_MIGRATIONS.name]
        )
    ]
    if newer := [name for name in applied if name not in code]:
        raise CopyFailed(
            f"The database at {source} was migrated by a newer Threadline (it has {newer[-1]}, which this one "
            "does not know). Run this command from that version."
        )
    if missing := [name for name in code if name not in applied]:
        raise CopyFailed(
            f"The database at {source} is older than this Threadline (it lacks {missing[0]}). Start the bot "
            "once on it (it migrates itself), stop it, and run this again."
        )


def _sqlite_tables(lite: sqlite3.Connection) -> list[str]:
    """The file's own tables: not SQLite's, not sqlite-utils' record, not FTS5 tables and their shadows."""
    objects = lite.execute("SELECT name, sql FROM sqlite_master WHERE type = 'table'").fetchall()
    virtual = [name for name, text in objects if (text or "").upper().startswith("CREATE VIRTUAL")]

    def moved(name: str) -> bool:
        fts = any(name == v or name.startswith(f"{v}_") for v in virtual)
        return not (fts or name.startswith("sqlite_") or name == _SQLITE_RECORD)

    return [name for name, _ in objects if moved(name)]


def _sqlite_columns(lite: sqlite3.Connection, table: str) -> list[str]:
    return [row[1] for row in lite.execute(f"PRAGMA table_info({_quote(table)})")]


def _has_rowid(lite: sqlite3.Connection, table: str) -> bool:
    try:
        lite.execute(f"SELECT rowid FROM {_quote(table)} LIMIT 0")
    except sqlite3.OperationalError:
        return False  # WITHOUT ROWID
    return True


def _high_water(lite: sqlite3.Connection) -> dict[str, int]:
    """SQLite's AUTOINCREMENT marks: the largest rowid each such table ever handed out."""
    if lite.execute("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_sequence'").fetchone() is None:
        return {}
    return {name: int(seq) for name, seq in lite.execute("SELECT name, seq FROM sqlite_sequence")}


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


# -- the PostgreSQL side -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Column:
    name: str
    type: str  # format_type's spelling
    identity: bool


@dataclass(frozen=True)
class _Table:
    name: str
    columns: list[_Column]  # those a row is written to (not generated ones)
    key: list[str]  # the primary key's columns; empty: none


def _pg_tables(pg: psycopg.Connection[Any]) -> dict[str, _Table]:
    """The current schema's tables, from pg_catalog."""
    found: dict[str, _Table] = {}
    for oid, name in pg.execute(
        "SELECT c.oid, c.relname FROM pg_class c WHERE c.relnamespace = current_schema()::regnamespace"
        " AND c.relkind IN ('r', 'p') AND NOT c.relispartition ORDER BY c.relname"
    ).fetchall():
        columns = [
            _Column(column, kind, identity != "")
            for column, kind, identity in pg.execute(
                "SELECT attname, format_type(atttypid, atttypmod), attidentity FROM pg_attribute"
                " WHERE attrelid = %s AND attnum > 0 AND NOT attisdropped AND attgenerated = '' ORDER BY attnum",
                [oid],
            ).fetchall()
        ]
        key = [
            row[0]
            for row in pg.execute(
                "SELECT a.attname FROM pg_index i CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k (attnum, n)"
                " JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum"
                " WHERE i.indrelid = %s AND i.indisprimary ORDER BY k.n",
                [oid],
            ).fetchall()
        ]
        found[name] = _Table(name, columns, key)
    return found


def _dependency_order(pg: psycopg.Connection[Any], tables: Sequence[str]) -> list[str]:
    """``tables`` with each after the tables its foreign keys reference (alphabetical among equals)."""
    needs: dict[str, set[str]] = {table: set() for table in tables}
    for child, parent in pg.execute(
        "SELECT c.relname, p.relname FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid"
        " JOIN pg_class p ON p.oid = k.confrelid WHERE k.contype = 'f'"
        " AND k.connamespace = current_schema()::regnamespace"
    ).fetchall():
        if child in needs and parent in needs and child != parent:
            needs[child].add(parent)
    order: list[str] = []
    while needs:
        ready = sorted(table for table, parents in needs.items() if not parents - set(order))
        if not ready:
            raise CopyFailed(f"The foreign keys of {', '.join(sorted(needs))} form a cycle: no order to copy them in.")
        order.extend(ready)
        for table in ready:
            del needs[table]
    return order


def _triggers_to_hold(pg: psycopg.Connection[Any], copied: set[str]) -> list[tuple[str, str]]:
    """(table, trigger) of the INSERT triggers whose function writes into another table being copied."""
    held = []
    for table, trigger, body in pg.execute(
        "SELECT c.relname, t.tgname, p.prosrc FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid"
        " JOIN pg_proc p ON p.oid = t.tgfoid WHERE NOT t.tgisinternal AND t.tgenabled <> 'D'"
        " AND (t.tgtype & 4) <> 0 AND c.relnamespace = current_schema()::regnamespace ORDER BY 1, 2"
    ).fetchall():
        if table not in copied:
            continue
        written = {
            match.group(1).strip('"')
            for match in re.finditer(r"\b(?:insert\s+into|update|delete\s+from|merge\s+into)\s+(\"?\w+\"?)", body, re.I)
        }
        if written & (copied - {table}):
            held.append((table, trigger))
    return held


def _holding_data(pg: psycopg.Connection[Any], tables: Sequence[str]) -> list[str]:
    """Those of ``tables`` that exist in the target and have a row."""
    existing = {
        row[0]
        for row in pg.execute(
            "SELECT relname FROM pg_class WHERE relnamespace = current_schema()::regnamespace AND relkind IN ('r', 'p')"
        ).fetchall()
    }
    full = []
    for table in sorted(set(tables) & existing):
        row = pg.execute(sql.SQL("SELECT EXISTS (SELECT 1 FROM {})").format(sql.Identifier(table))).fetchone()
        if row and row[0]:
            full.append(table)
    return full


def _refuse_if_full(pg: psycopg.Connection[Any], tables: Sequence[str], target: Target) -> None:
    if full := _holding_data(pg, tables):
        listed = ", ".join(full[:6]) + (", ..." if len(full) > 6 else "")
        raise CopyFailed(
            f"The PostgreSQL database ({target.display}) already holds Threadline data ({listed}); nothing was "
            "written. Move into a new, empty database."
        )


def _analyze(pg: psycopg.Connection[Any], tables: Sequence[str]) -> None:
    """Fresh planner statistics for the tables just filled (autovacuum would come to it later)."""
    try:
        for table in tables:
            pg.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(table)))
    except psycopg.Error:
        _log.info("ANALYZE after the move failed; autovacuum will do it", exc_info=True)


# -- the move ------------------------------------------------------------------------------------------------


def _move(
    lite: sqlite3.Connection, pg: psycopg.Connection[Any], source: Path, target: Target, sqlite_tables: list[str]
) -> list[tuple[str, int]]:
    unknown = [name for name in MIGRATIONS.applied(pg) if name not in MIGRATIONS.names]
    if unknown:
        raise CopyFailed(
            f"The PostgreSQL database ({target.display}) was migrated by a newer Threadline (it has {unknown[-1]})."
            " Run this command from that version."
        )
    _refuse_if_full(pg, sqlite_tables, target)
    apply(pg)
    schema = _pg_tables(pg)
    moved = [table for table in sqlite_tables if table in schema and table != MIGRATIONS_TABLE]
    order = _dependency_order(pg, moved)
    plans = {table: _plan(lite, schema[table]) for table in order}
    held = _triggers_to_hold(pg, set(order))
    high_water = _high_water(lite)
    copied: list[tuple[str, int]] = []
    with pg.transaction():
        # Nothing else writes these tables until the commit (reads go on); a bot that started on the target
        # since the check above is caught here.
        pg.execute(sql.SQL("LOCK TABLE {} IN EXCLUSIVE MODE").format(sql.SQL(", ").join(map(sql.Identifier, order))))
        _refuse_if_full(pg, order, target)
        for table, trigger in held:
            pg.execute(
                sql.SQL("ALTER TABLE {} DISABLE TRIGGER {}").format(sql.Identifier(table), sql.Identifier(trigger))
            )
        for table in order:
            copied.append((table, _copy_table(lite, pg, plans[table], source)))
        for table, trigger in held:
            pg.execute(
                sql.SQL("ALTER TABLE {} ENABLE TRIGGER {}").format(sql.Identifier(table), sql.Identifier(trigger))
            )
        for table in order:
            _move_sequences(pg, schema[table], high_water.get(table))
        _verify(lite, pg, copied)
    return copied


def _switch(pg: psycopg.Connection[Any], triggers: Sequence[tuple[str, str]], how: str) -> None:
    for table, trigger in triggers:
        statement = sql.SQL("ALTER TABLE {} " + how + " TRIGGER {}")
        pg.execute(statement.format(sql.Identifier(table), sql.Identifier(trigger)))


@dataclass(frozen=True)
class _Plan:
    table: _Table
    select: str  # SQLite's
    copy: sql.Composed  # PostgreSQL's
    fixes: tuple[tuple[int, Callable[[Any], Any], tuple[type, ...]], ...]  # (column, converter, types left as is)
    ordered: bool  # by rowid


def _plan(lite: sqlite3.Connection, table: _Table) -> _Plan:
    """How ``table``'s rows go: the columns read, the COPY, the conversions."""
    theirs = _sqlite_columns(lite, table.name)
    ordered = _has_rowid(lite, table.name)
    names = {column.name for column in table.columns}
    if lost := [column for column in theirs if column not in names]:
        raise CopyFailed(
            f"SQLite's {table.name} has columns PostgreSQL's schema lacks ({', '.join(lost)}): nothing was moved."
        )
    read: list[str] = []
    written: list[_Column] = []
    for column in table.columns:
        if column.name in theirs:
            read.append(_quote(column.name))
        elif column.name == "rowid" and ordered:
            read.append("rowid")  # SQLite's hidden one
        else:
            continue  # PostgreSQL's own: its default, identity or trigger fills it
        written.append(column)
    order = " ORDER BY rowid" if ordered else ""
    select = f"SELECT {', '.join(read)} FROM {_quote(table.name)}{order}"
    copy = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(table.name), sql.SQL(", ").join(sql.Identifier(column.name) for column in written)
    )
    fixes = tuple((i, *_CONVERTERS[column.type]) for i, column in enumerate(written) if column.type in _CONVERTERS)
    return _Plan(table, select, copy, fixes, ordered)


def _copy_table(lite: sqlite3.Connection, pg: psycopg.Connection[Any], plan: _Plan, source: Path) -> int:
    """COPY the table's rows in; how many. CopyFailed naming the row PostgreSQL (or a conversion) refused."""
    table = plan.table.name
    position = 0
    try:
        rows = lite.execute(plan.select)
        with pg.cursor() as cursor, cursor.copy(plan.copy) as copy:
            while batch := rows.fetchmany(BATCH_ROWS):
                for row in batch:
                    position += 1
                    copy.write_row(_fixed(row, plan.fixes) if plan.fixes else row)
    except _Unfit as exc:
        key = _row_key(lite, plan, position)
        raise CopyFailed(
            f"{table} row {key} cannot go into PostgreSQL: {exc}. Nothing was moved; fix or delete that row in "
            f"{source} and run this again."
        ) from None
    except psycopg.Error as exc:
        found = re.search(r"COPY [^,]+, line (\d+)", getattr(exc.diag, "context", None) or "")
        where = f"row {_row_key(lite, plan, int(found.group(1)))}" if found else "a row"
        _log.info("PostgreSQL refused a row of %s", table, exc_info=True)
        detail = exc.diag.message_detail
        reason = (exc.diag.message_primary or first_line(exc)) + (f" ({shorten(detail)})" if detail else "")
        raise CopyFailed(
            f"PostgreSQL refused {table} {where}: {reason}. Nothing was moved; fix or delete that row in {source}"
            " and run this again."
        ) from None
    return position


def _fixed(row: tuple[Any, ...], fixes: Sequence[tuple[int, Callable[[Any], Any], tuple[type, ...]]]) -> Sequence[Any]:
    values: list[Any] | None = None
    for i, convert, fine in fixes:
        value = row[i]
        if value is None or type(value) in fine:
            continue
        if values is None:
            values = list(row)
        values[i] = convert(value)
    return row if values is None else values


def _row_key(lite: sqlite3.Connection, plan: _Plan, position: int) -> str:
    """The key of the ``position``-th row (1-based) the copy read, as ``id='x'`` or ``rowid=5``."""
    columns = [column for column in plan.table.key if column != "rowid"] if plan.ordered else plan.table.key
    shown = columns or (["rowid"] if plan.ordered else [])
    if not shown:
        return f"number {position}"
    order = " ORDER BY rowid" if plan.ordered else ""
    row = lite.execute(
        f"SELECT {', '.join(c if c == 'rowid' else _quote(c) for c in shown)} FROM {_quote(plan.table.name)}{order}"
        " LIMIT 1 OFFSET ?",
        [position - 1],
    ).fetchone()
    if row is None:
        return f"number {position}"
    return ", ".join(f"{column}={shorten(repr(value))}" for column, value in zip(shown, row, strict=True))


def _move_sequences(pg: psycopg.Connection[Any], table: _Table, high_water: int | None) -> None:
    """Each identity of ``table`` hands out numbers past every value copied (and SQLite's mark)."""
    for column in table.columns:
        if not column.identity:
            continue
        pg.execute(
            sql.SQL(
                "SELECT setval(pg_get_serial_sequence(%s, %s), GREATEST(COALESCE(MAX({column}), 0), %s) + 1, false)"
                " FROM {table}"
            ).format(column=sql.Identifier(column.name), table=sql.Identifier(table.name)),
            [sql.Identifier(table.name).as_string(pg), column.name, high_water or 0],
        )


def _verify(lite: sqlite3.Connection, pg: psycopg.Connection[Any], copied: Sequence[tuple[str, int]]) -> None:
    """CopyFailed (and so a rollback) unless every table has as many rows on both sides."""
    for table, _ in copied:
        (theirs,) = lite.execute(f"SELECT count(*) FROM {_quote(table)}").fetchone()
        row = pg.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))).fetchone()
        ours = row[0] if row else None
        if ours != theirs:
            raise CopyFailed(
                f"{table} has {theirs} rows in SQLite but {ours} in PostgreSQL after the copy; nothing was moved."
            )


# -- values ------------------------------------------------------------------------------------------------------


class _Unfit(Exception):
    """A value that PostgreSQL's column cannot take, even converted."""


def _to_text(value: Any) -> str:
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise _Unfit("a text column holds bytes that are not UTF-8 text") from None
    return str(value)  # a number: its digits, as SQLite's CAST writes them


def _to_integer(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        return value  # PostgreSQL reads it as a number, or refuses the row
    raise _Unfit(f"an integer column holds {_kind(value)}")


def _to_real(value: Any) -> Any:
    if isinstance(value, str):
        return value
    raise _Unfit(f"a real-number column holds {_kind(value)}")


def _to_bytes(value: Any) -> bytes:
    if isinstance(value, str):
        return value.encode("utf-8")
    raise _Unfit(f"a binary column holds {_kind(value)}")


def _to_boolean(value: Any) -> Any:
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        return value
    raise _Unfit(f"a boolean column holds {_kind(value)}")


def _kind(value: Any) -> str:
    if isinstance(value, bytes):
        return f"{len(value)} bytes"
    return f"{type(value).__name__} {shorten(repr(value))}"


# PostgreSQL's type -> (converter, the Python types it takes as they are)
_CONVERTERS: dict[str, tuple[Callable[[Any], Any], tuple[type, ...]]] = {
    "text": (_to_text, (str,)),
    "bigint": (_to_integer, (int,)),
    "integer": (_to_integer, (int,)),
    "smallint": (_to_integer, (int,)),
    "double precision": (_to_real, (float, int)),
    "real": (_to_real, (float, int)),
    "bytea": (_to_bytes, (bytes,)),
    "boolean": (_to_boolean, (bool,)),
}
