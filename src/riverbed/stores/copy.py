"""Copy a whole riverbed database to another, on any backend but memory
(``riverbed db copy``), and describe one (``riverbed db check``).

Every table of the layout is copied row by row, as it is stored: models, versions and their
artifacts, version numbers (so a deleted version's number is never given again), aliases and
their history, predictions (labelled or awaiting a label), metric history, drift alarms, the
arms of canary splits, checkpoints, tokens, the cache, training jobs with their kept data,
and webhook subscriptions with their delivery log.
The learn log goes through the stores' own reading and writing (``learns_after``,
``add_learns``), since the SQLite file keeps batches of learns in a layout of its own
(``learn_blocks``). A live model is its checkpoint plus the learns after it, so a server on the
copy loads the same state.

Both databases are opened as a server opens them, writer lock included: a database that a
server (or any riverbed process) holds is refused, and none can start on either while the
copy runs. Refused before anything is written: the in-memory store, a source and target that
are the same database, a source that holds no riverbed database, and a target that is not
empty unless ``replace`` is given (which deletes what the target held first, in the same
transaction as nothing else: a copy that fails after it leaves a partial target, to be
copied again).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sqlite3
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from typing import Any

from riverbed.stores import _postgres, _sqlite_path, backend_name
from riverbed.stores.base import Store

__all__ = ["TABLES", "CopyRefused", "Description", "copy_database", "describe"]

# The tables copied row by row, parents before the rows that refer to them.
TABLES = (
    "models",
    "versions",
    "version_numbers",
    "aliases",
    "alias_history",
    "predictions",
    "metric_points",
    "drift_alarms",
    "canary_arms",
    "checkpoints",
    "tokens",
    "cache",
    "cache_items",
    "jobs",
    "job_data",
    "webhooks",
    "webhook_deliveries",
)
_PAGE = 1000  # rows read, and written in one write, at a time
_IN_FLIGHT = 8  # writes submitted and not yet committed, at most


class CopyRefused(ValueError):
    """A copy that cannot be done (the message says why); nothing was changed."""


@dataclasses.dataclass
class Description:
    """What ``riverbed db check`` reports of a database."""

    backend: str  # sqlite or postgresql
    where: str  # the file, or the URL without its password
    schema: int | None  # the layout number it is stamped with; None: no riverbed database
    reads: int  # the newest layout this riverbed reads
    served_by: str | None  # why a writer could not open it now (a server holds it), or None
    counts: dict[str, int]  # rows of each table, and learns


def describe(database: str) -> Description:
    """Read, changing nothing, a database's layout number, whether a process holds it and
    how many rows each table has. A file that does not exist, or a PostgreSQL database out of
    reach, raises CopyRefused."""
    if backend_name(database) == "memory":
        raise CopyRefused("the in-memory store lives in its process: there is nothing to check")
    with _reader(database, must_exist=True) as reader:
        return Description(
            backend=backend_name(database),
            where=reader.where,
            schema=reader.schema(),
            reads=reader.reads,
            served_by=reader.held(),
            counts=reader.counts() if reader.schema() is not None else {},
        )


def copy_database(
    source: str,
    target: str,
    *,
    replace: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, int]:
    """Copy every record of ``source`` into ``target`` and return how many of each kind
    (the tables' rows, and ``learns``). ``progress(done, total)`` is called as rows land.
    Raises CopyRefused (or DatabaseInUse, NewerDatabase, Unavailable from opening a store)
    before anything is written."""
    for database in (source, target):
        if backend_name(database) == "memory":
            raise CopyRefused(
                f"{database} is the in-memory store, which lives in its process: copy from "
                "and to an SQLite file or a PostgreSQL database"
            )
    with _reader(source, must_exist=True) as reader:
        if reader.schema() is None:
            raise CopyRefused(f"{reader.where} holds no riverbed database: nothing to copy")
        source_identity = reader.identity()
    with _reader(target, must_exist=False) as reader:
        if reader.exists() and reader.identity() == source_identity:
            raise CopyRefused(f"{source} and {target} are the same database: copy to another one")
    from riverbed.stores import open_store

    src = open_store(source)  # the writer lock: no server on it while the copy reads it
    try:
        dst = open_store(target)
        try:
            return _copy(src, dst, source, target, replace=replace, progress=progress)
        finally:
            dst.close()
    finally:
        src.close()


def _copy(
    src: Store,
    dst: Store,
    source: str,
    target: str,
    *,
    replace: bool,
    progress: Callable[[int, int], None] | None,
) -> dict[str, int]:
    src.token_store()  # an SQLite file creates its tokens table on first use
    dst.token_store()
    with _reader(source, must_exist=True) as reader, _reader(target, must_exist=True) as there:
        counts = reader.counts()
        held = there.counts()
        if any(held.values()) and not replace:
            kinds = ", ".join(f"{n} {kind}" for kind, n in held.items() if n)
            raise CopyRefused(
                f"{there.where} is not empty ({kinds}): copy into an empty database, or "
                "pass --replace to delete what it holds first"
            )
        writes = _Writes(dst)
        if any(held.values()):
            writes.submit(there.clear_op())
            writes.drain()
        total, done = sum(counts.values()), 0
        if progress is not None:
            progress(0, total)
        columns_there = {table: there.columns(table) for table in TABLES}
        for table in TABLES:
            columns = [c for c in reader.columns(table) if c in columns_there[table]]
            if not columns:
                continue
            for rows in reader.rows(table, columns):
                writes.submit(there.insert_op(table, columns, rows))
                done += len(rows)
                if progress is not None:
                    progress(done, total)
        writes.drain()  # the predictions are there before the learns that label them
        for model in reader.learn_models():
            batch = []
            for record in src.learns_after(model, 0):
                batch.append(record)
                if len(batch) == _PAGE:
                    writes.add(dst.add_learns(batch))
                    done, batch = done + len(batch), []
                    if progress is not None:
                        progress(done, total)
            if batch:
                writes.add(dst.add_learns(batch))
                done += len(batch)
                if progress is not None:
                    progress(done, total)
        writes.drain()
    return counts


class _Writes:
    """Writes to the target, a few in flight at a time; the first failure is raised."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.pending: list[Future[Any]] = []

    def submit(self, op: Callable[[Any], Any]) -> None:
        self.add(self.store._submit(op))  # type: ignore[attr-defined]

    def add(self, future: Future[Any]) -> None:
        self.pending.append(future)
        if len(self.pending) > _IN_FLIGHT:
            self.pending.pop(0).result()

    def drain(self) -> None:
        while self.pending:
            self.pending.pop(0).result()


@contextlib.contextmanager
def _reader(database: str, *, must_exist: bool) -> Iterator[_Reader]:
    reader: _Reader
    if _postgres(database):
        reader = _PostgresReader(database)
    else:
        path = _sqlite_path(database)
        assert path is not None
        if must_exist and not os.path.isfile(path):
            raise CopyRefused(f"there is no database file at {path}")
        reader = _SQLiteReader(path)
    try:
        yield reader
    finally:
        reader.close()


class _Reader:
    """Reads of one database, beside (never through) the store opened on it."""

    where: str
    reads: int

    def exists(self) -> bool:
        return True

    def identity(self) -> Any:
        """What is the same for two names of one database, and differs between databases."""
        raise NotImplementedError

    def schema(self) -> int | None:
        raise NotImplementedError

    def held(self) -> str | None:
        raise NotImplementedError

    def tables(self) -> set[str]:
        raise NotImplementedError

    def columns(self, table: str) -> dict[str, str]:
        raise NotImplementedError

    def count(self, sql: str) -> int:
        raise NotImplementedError

    def learn_count(self) -> int:
        return self.count("SELECT COUNT(*) FROM learns")

    def learn_models(self) -> list[str]:
        raise NotImplementedError

    def rows(self, table: str, columns: list[str]) -> Iterator[list[tuple[Any, ...]]]:
        raise NotImplementedError

    def insert_op(
        self, table: str, columns: list[str], rows: list[tuple[Any, ...]]
    ) -> Callable[[Any], Any]:
        raise NotImplementedError

    def clear_op(self) -> Callable[[Any], Any]:
        raise NotImplementedError

    def counts(self) -> dict[str, int]:
        present = self.tables()
        counts = {t: self.count(f"SELECT COUNT(*) FROM {t}") for t in TABLES if t in present}
        counts["learns"] = self.learn_count()
        return counts

    def close(self) -> None:
        return None


def _quoted(columns: list[str]) -> str:
    return ", ".join(f'"{c}"' for c in columns)


def _order(table: str, key: str) -> str:
    # the alias history is read back in the order it was written
    return f" ORDER BY {key}" if table == "alias_history" else ""


class _SQLiteReader(_Reader):
    def __init__(self, path: str) -> None:
        from riverbed.stores.sqlite.schema import SCHEMA_VERSION

        self.path = path
        self.where = path
        self.reads = SCHEMA_VERSION
        self._exists = os.path.isfile(path)
        self.conn: sqlite3.Connection | None = None
        if self._exists:
            import pathlib

            uri = f"{pathlib.Path(path).absolute().as_uri()}?mode=ro"
            self.conn = sqlite3.connect(uri, uri=True, check_same_thread=False)

    def _conn(self) -> sqlite3.Connection:
        assert self.conn is not None
        return self.conn

    def exists(self) -> bool:
        return self._exists

    def identity(self) -> Any:
        stat = os.stat(self.path)
        return ("sqlite", stat.st_dev, stat.st_ino)

    def schema(self) -> int | None:
        if not self.tables() & {"models", "learns"}:
            return None
        return int(self._conn().execute("PRAGMA user_version").fetchone()[0])

    def held(self) -> str | None:
        from riverbed.stores.sqlite.lock import DatabaseInUse, DatabaseLock

        try:
            DatabaseLock(self.path).release()
        except DatabaseInUse as exc:
            return str(exc)
        return None

    def tables(self) -> set[str]:
        rows = self._conn().execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        return {row[0] for row in rows}

    def columns(self, table: str) -> dict[str, str]:
        return {row[1]: row[2] for row in self._conn().execute(f"PRAGMA table_info({table})")}

    def count(self, sql: str) -> int:
        return int(self._conn().execute(sql).fetchone()[0])

    def learn_count(self) -> int:
        blocks = 0
        if "learn_blocks" in self.tables():
            blocks = self.count("SELECT COALESCE(SUM(last - first + 1), 0) FROM learn_blocks")
        return self.count("SELECT COUNT(*) FROM learns") + blocks

    def learn_models(self) -> list[str]:
        sql = "SELECT model FROM learns"
        if "learn_blocks" in self.tables():
            sql += " UNION SELECT model FROM learn_blocks"
        return sorted(row[0] for row in self._conn().execute(sql))

    def rows(self, table: str, columns: list[str]) -> Iterator[list[tuple[Any, ...]]]:
        cursor = self._conn().execute(
            f"SELECT {_quoted(columns)} FROM {table}{_order(table, 'rowid')}"
        )
        while rows := cursor.fetchmany(_PAGE):
            yield rows

    def insert_op(
        self, table: str, columns: list[str], rows: list[tuple[Any, ...]]
    ) -> Callable[[Any], Any]:
        marks = ", ".join("?" for _ in columns)
        sql = f"INSERT INTO {table} ({_quoted(columns)}) VALUES ({marks})"
        return lambda conn: conn.executemany(sql, rows)

    def clear_op(self) -> Callable[[Any], Any]:
        tables = [*reversed(TABLES), "learns", "learn_blocks"]

        def op(conn: sqlite3.Connection) -> None:
            for table in tables:
                conn.execute(f"DELETE FROM {table}")

        return op

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()


class _PostgresReader(_Reader):
    def __init__(self, url: str) -> None:
        import psycopg

        from riverbed.stores.postgres.schema import SCHEMA_VERSION
        from riverbed.stores.postgres.writer import connect, redact, store_error

        self.url = url
        self.where = f"the PostgreSQL database {redact(url)}"
        self.reads = SCHEMA_VERSION
        self._kinds: dict[str, dict[str, str]] = {}
        try:
            self.conn = connect(url)
        except psycopg.Error as exc:
            raise CopyRefused(str(store_error(exc))) from None

    def identity(self) -> Any:
        # one database of one running cluster, whatever host name or address reached it
        row = self.conn.execute(
            "SELECT d.oid, current_database(), pg_postmaster_start_time()"
            " FROM pg_database d WHERE d.datname = current_database()"
        ).fetchone()
        return ("postgresql", *row) if row else None

    def schema(self) -> int | None:
        from riverbed.stores.postgres.schema import schema_version

        return schema_version(self.conn)

    def held(self) -> str | None:
        from riverbed.stores.postgres.store import _lock_key
        from riverbed.stores.postgres.writer import take_writer_lock
        from riverbed.stores.sqlite.lock import DatabaseInUse

        key = _lock_key(self.conn)
        try:
            take_writer_lock(self.conn, key, self.url)
        except DatabaseInUse as exc:
            return str(exc)
        self.conn.execute("SELECT pg_advisory_unlock(%s)", (key,))
        return None

    def tables(self) -> set[str]:
        rows = self.conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
        )
        return {row[0] for row in rows}

    def columns(self, table: str) -> dict[str, str]:
        rows = self.conn.execute(
            "SELECT column_name, data_type FROM information_schema.columns"
            " WHERE table_schema = current_schema() AND table_name = %s"
            " ORDER BY ordinal_position",
            (table,),
        )
        # alias_history's n numbers the moves in the database that holds them
        return {name: kind for name, kind in rows if not (table == "alias_history" and name == "n")}

    def count(self, sql: str) -> int:
        row = self.conn.execute(sql).fetchone()
        return int(row[0]) if row else 0

    def learn_models(self) -> list[str]:
        return [row[0] for row in self.conn.execute("SELECT DISTINCT model FROM learns ORDER BY 1")]

    def rows(self, table: str, columns: list[str]) -> Iterator[list[tuple[Any, ...]]]:
        with self.conn.transaction(), self.conn.cursor(name=f"riverbed_copy_{table}") as cursor:
            cursor.execute(f"SELECT {_quoted(columns)} FROM {table}{_order(table, 'n')}")
            while rows := cursor.fetchmany(_PAGE):
                yield rows

    def insert_op(
        self, table: str, columns: list[str], rows: list[tuple[Any, ...]]
    ) -> Callable[[Any], Any]:
        if table not in self._kinds:
            self._kinds[table] = self.columns(table)
        kinds = self._kinds[table]
        convert = [_to_postgres(kinds[c]) for c in columns]
        values = [tuple(f(v) for f, v in zip(convert, row, strict=True)) for row in rows]
        marks = ", ".join("%s" for _ in columns)
        sql = f"INSERT INTO {table} ({_quoted(columns)}) VALUES ({marks})"

        def op(conn: Any) -> None:
            with conn.cursor() as cursor:
                cursor.executemany(sql, values)

        return op

    def clear_op(self) -> Callable[[Any], Any]:
        tables = ", ".join([*TABLES, "learns"])
        return lambda conn: conn.execute(f"TRUNCATE {tables}")

    def close(self) -> None:
        self.conn.close()


def _to_postgres(kind: str) -> Callable[[Any], Any]:
    """How a value read from either backend goes into a PostgreSQL column of ``kind``: the
    SQLite file keeps JSON as text or bytes and booleans as 0 and 1."""
    if kind == "bytea":
        return lambda v: v.encode() if isinstance(v, str) else v
    if kind == "text":
        return lambda v: v.decode() if isinstance(v, bytes) else v
    if kind == "boolean":
        return lambda v: None if v is None else bool(v)
    return lambda v: v
