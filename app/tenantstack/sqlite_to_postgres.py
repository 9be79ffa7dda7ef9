"""Copy a tenant's SQLite database into its (already migrated) PostgreSQL database: every table, every row, at once.

Run by `./invoke tenant-migrate-db` as `manage.py copy_sqlite_to_postgres` in a one-off container of the tenant's
image with DATABASE=postgres (so Django's connection is the tenant's PostgreSQL database, made by the same migrations
just before) and the tenant's volume mounted (the SQLite file at Config.sqlite_path); the tenant's services are
stopped, so the SQLite file does not change meanwhile. Django's dumpdata/loaddata would build a model instance per
row and take minutes for 100k results; here each table is read with the sqlite3 module and written with COPY.

One PostgreSQL transaction holds it all: the tables (made by step b's migrate, which also added content types and
permissions through post_migrate) are truncated, filled table by table in foreign-key order (Django's constraints
are DEFERRABLE INITIALLY DEFERRED anyway, so a cycle is checked at commit), every table's rows counted on both sides,
every sequence moved past the copied ids; any difference or error rolls it all back and the tenant stays on SQLite.
django_migrations is copied like every table: both sides were migrated by the same image, which is checked first.
"""
import datetime as dt
import sqlite3
import time
from collections.abc import Callable

import psycopg
from psycopg import sql

# SQLite keeps what PostgreSQL types strictly as plain values (Django's SQLite backend): booleans as 0/1, durations
# as integer microseconds. Text (timestamps in UTC, JSON, UUIDs as 32 hex digits, decimals) is parsed by COPY itself.
CONVERT = {
    "boolean": bool,
    "interval": lambda v: dt.timedelta(microseconds=v) if isinstance(v, int) else v,
    "bytea": lambda v: bytes(v) if isinstance(v, (bytes, memoryview)) else str(v).encode(),
}
SHOWN = 5  # differing migrations named in the error line
PROGRESS_ROWS = 50_000  # a line per this many rows of a large table, besides one per table


class CopyError(Exception):
    """What stopped the copy, in one line (the transaction is rolled back)."""


def _q(name: str) -> str:
    """An SQLite identifier, quoted (table names come from sqlite_master)."""
    return '"' + name.replace('"', '""') + '"'


def sqlite_tables(src: sqlite3.Connection) -> list[str]:
    # sqlite_sequence and the like are SQLite's own
    return [r[0] for r in src.execute("SELECT name FROM sqlite_master WHERE type = 'table' "
                                      "AND substr(name, 1, 7) != 'sqlite_' ORDER BY name")]


def sqlite_columns(src: sqlite3.Connection, table: str) -> list[str]:
    return [r[1] for r in src.execute(f"PRAGMA table_info({_q(table)})")]


def postgres_tables(cur) -> list[str]:
    cur.execute("SELECT tablename FROM pg_catalog.pg_tables WHERE schemaname = current_schema() ORDER BY tablename")
    return [r[0] for r in cur.fetchall()]


def postgres_columns(cur, table: str) -> dict[str, str]:
    """column -> data type (information_schema's name: boolean, interval, bytea, ...)."""
    cur.execute("SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_schema = current_schema() AND table_name = %s ORDER BY ordinal_position", (table,))
    return dict(cur.fetchall())


def dependency_order(cur, tables: list[str]) -> list[str]:
    """Referenced tables before the tables referring to them; tables of a cycle last (checked at commit)."""
    cur.execute("SELECT c.conrelid::regclass::text, c.confrelid::regclass::text FROM pg_catalog.pg_constraint c "
                "JOIN pg_catalog.pg_namespace n ON n.oid = c.connamespace "
                "WHERE c.contype = 'f' AND n.nspname = current_schema()")
    needs = {t: set() for t in tables}
    for referring, referred in cur.fetchall():
        child, parent = referring.strip('"'), referred.strip('"')
        if child in needs and parent in needs and child != parent:
            needs[child].add(parent)
    ordered = []
    while needs:
        ready = sorted(t for t, parents in needs.items() if not parents)
        if not ready:  # a cycle: deferred constraints are checked at commit, so any order does
            ready = sorted(needs)
        for t in ready:
            del needs[t]
            ordered.append(t)
        for parents in needs.values():
            parents.difference_update(ready)
    return ordered


def _migrations(rows) -> set[tuple[str, str]]:
    return {(app, name) for app, name in rows}


def check_same_schema(src: sqlite3.Connection, cur, tables: list[str]) -> None:
    """Both databases must have the same tables, columns and applied migrations: the copy maps them one to one."""
    pg_tables = postgres_tables(cur)
    only_sqlite = sorted(set(tables) - set(pg_tables))
    only_pg = sorted(set(pg_tables) - set(tables))
    if only_sqlite or only_pg:
        raise CopyError(f"the databases' tables differ (only in SQLite: {', '.join(only_sqlite) or 'none'}; only in "
                        f"PostgreSQL: {', '.join(only_pg) or 'none'}): run the project's migrations on SQLite first "
                        "(restart the tenant), or remove tables no migration makes")
    for table in tables:
        a, b = set(sqlite_columns(src, table)), set(postgres_columns(cur, table))
        if a != b:
            raise CopyError(f"table {table}: columns differ (only in SQLite: {', '.join(sorted(a - b)) or 'none'}; "
                            f"only in PostgreSQL: {', '.join(sorted(b - a)) or 'none'})")
    if "django_migrations" in tables:
        cur.execute("SELECT app, name FROM django_migrations")
        pg = _migrations(cur.fetchall())
        lite = _migrations(src.execute("SELECT app, name FROM django_migrations"))
        if pg != lite:
            differ = sorted(f"{a}.{n}" for a, n in pg ^ lite)
            shown = ", ".join(differ[:SHOWN]) + (" ..." if len(differ) > SHOWN else "")
            raise CopyError(f"the applied migrations differ ({shown}): start the tenant on SQLite with its current "
                            "image first, so both are migrated alike")


def copy_table(src: sqlite3.Connection, cur, table: str, log: Callable[[str], None]) -> int:
    types = postgres_columns(cur, table)
    columns = list(types)
    converters = [CONVERT.get(types[c]) for c in columns]
    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, columns)))
    rows = 0
    with cur.copy(statement) as copy:
        for row in src.execute(f"SELECT {', '.join(map(_q, columns))} FROM {_q(table)}"):
            copy.write_row([v if f is None or v is None else f(v) for f, v in zip(converters, row, strict=True)])
            rows += 1
            if rows % PROGRESS_ROWS == 0:
                log(f"copy: table {table}: {rows} rows so far")
    return rows


def reset_sequences(cur) -> int:
    """Every sequence owned by a column (serial or identity) moved to the column's maximum: new rows insert."""
    cur.execute("SELECT table_name, column_name, pg_catalog.pg_get_serial_sequence(quote_ident(table_name), "
                "column_name) FROM information_schema.columns WHERE table_schema = current_schema() "
                "AND pg_catalog.pg_get_serial_sequence(quote_ident(table_name), column_name) IS NOT NULL")
    found = cur.fetchall()
    for table, column, sequence in found:
        # An empty table: next value 1 (is_called false); otherwise max + 1.
        cur.execute(sql.SQL("SELECT pg_catalog.setval(%s, COALESCE(max({c}), 1), max({c}) IS NOT NULL) FROM {t}")
                    .format(c=sql.Identifier(column), t=sql.Identifier(table)), (sequence,))
    return len(found)


def copy_all(src: sqlite3.Connection, pg, log: Callable[[str], None] = print) -> dict[str, int]:
    """Copy every table of `src` into `pg` (a psycopg connection inside the caller's transaction); table -> rows.

    Raises CopyError (one line) when the schemas or the counts differ; the caller rolls back."""
    t0 = time.monotonic()
    cur = pg.cursor()
    # This transaction only: no statement time-out (the role's is meant for the app's queries, not a bulk COPY), and
    # SQLite's UTC timestamps (Django stores them naive, in UTC) read as UTC.
    cur.execute("SET LOCAL statement_timeout = 0")
    cur.execute("SET LOCAL TIME ZONE 'UTC'")
    cur.execute("SET CONSTRAINTS ALL DEFERRED")
    src.execute("BEGIN")  # one read snapshot of the SQLite file for every table and count
    tables = sqlite_tables(src)
    check_same_schema(src, cur, tables)
    order = dependency_order(cur, tables)
    cur.execute(sql.SQL("TRUNCATE {} RESTART IDENTITY").format(sql.SQL(", ").join(map(sql.Identifier, order))))
    copied = {}
    for number, table in enumerate(order, 1):
        started = time.monotonic()
        try:
            copied[table] = copy_table(src, cur, table, log)
        except psycopg.Error as exc:  # a value PostgreSQL's type refuses (a NUL in text, a malformed timestamp)
            said = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise CopyError(f"table {table}: PostgreSQL refused a row: {said}: nothing was committed") from None
        log(f"copy: table {table}: {copied[table]} rows ({number} of {len(order)}, "
            f"{time.monotonic() - started:.1f}s)")
    for table in order:
        in_sqlite = src.execute(f"SELECT count(*) FROM {_q(table)}").fetchone()[0]
        cur.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table)))
        in_pg = cur.fetchone()[0]
        if not in_sqlite == in_pg == copied[table]:
            raise CopyError(f"table {table}: {in_sqlite} rows in SQLite, {in_pg} in PostgreSQL after copying "
                            f"{copied[table]}: nothing was committed")
    sequences = reset_sequences(cur)
    cur.execute("SET CONSTRAINTS ALL IMMEDIATE")  # the foreign keys checked now, inside the transaction: one line
    src.execute("COMMIT")
    log(f"copy: {sum(copied.values())} rows in {len(copied)} tables copied, every count equal; {sequences} sequences "
        f"reset; {time.monotonic() - t0:.1f}s")
    return copied
