"""PostgreSQL access: one connection pool per process, and the cursors callers run their SQL on."""

import os
import re
import threading
from contextlib import contextmanager
from pathlib import Path

import psycopg2
import psycopg2.extensions
import psycopg2.extras
import psycopg2.pool

from .errors import ServiceUnavailable

psycopg2.extras.register_uuid()  # uuid.UUID in and out, process-wide

SCHEMA = Path(__file__).resolve().parent.parent / "schema.sql"
# A request must fail fast with a 503 rather than hang when PostgreSQL is gone.
CONNECT_OPTIONS = {
    "connect_timeout": 3,
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 3,
    "keepalives_count": 3,
    # No JIT: its compile time (tens to hundreds of ms) dwarfs the short queries of an API, and the
    # planner turns it on for cheap queries whose worst case it cannot rule out. Server-side
    # keepalives too: a client host that vanishes loses its session, and so the sending locks it
    # held (see queries/emails.py), within about 25 s instead of the kernel's 2 hours.
    "options": "-c statement_timeout=15000 -c jit=off"
    " -c tcp_keepalives_idle=10 -c tcp_keepalives_interval=5 -c tcp_keepalives_count=3",
    # So operators can tell our sessions apart in pg_stat_activity, unless the URL names them.
    "fallback_application_name": "emailsvc",
}


class DictCursor(psycopg2.extensions.cursor):
    """Rows as plain dicts keyed by column name, each made in one call from psycopg2's tuple.

    psycopg2's RealDictCursor stores every column through a Python-level __setitem__: the ~30 columns of the
    log row a send reads back were ~65 of its ~2,500 Python calls.
    """

    def fetchone(self):
        row = super().fetchone()
        return None if row is None else dict(zip([column[0] for column in self.description], row, strict=True))

    def fetchmany(self, size=None):
        return self._dicts(super().fetchmany(self.arraysize if size is None else size))

    def fetchall(self):
        return self._dicts(super().fetchall())

    def __iter__(self):
        return iter(self.fetchall())

    def _dicts(self, rows):
        names = [column[0] for column in self.description] if rows else ()
        return [dict(zip(names, row, strict=True)) for row in rows]


class Connection(psycopg2.extensions.connection):
    """A psycopg2 connection that remembers the statements prepared on its session (see Prepared)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.prepared = set()


class Prepared:
    """A statement PostgreSQL parses and plans once per session instead of on every execution.

    For the statements every message runs: the accept path's insert (a dozen CTEs, whose parsing and
    planning cost PostgreSQL more CPU than running them), the sending claim and its outcome (planning took
    about a third of their server time; docs/performance.md). `sql` takes psycopg2's %(name)s parameters;
    `types` gives each one's SQL type, which PREPARE needs where a parameter is used as two types
    (`%(id)s::text` beside `id = %(id)s`). A session prepares it on its first use (once, one round trip).
    """

    def __init__(self, name, sql, **types):
        self.name, self.sql, self.order = name, sql, list(types)
        body = re.sub(r"%\((\w+)\)s", lambda m: f"${self.order.index(m.group(1)) + 1}", sql).replace("%%", "%")
        self.prepare = f"PREPARE {name} ({', '.join(types.values())}) AS {body}"
        self.execute_sql = f"EXECUTE {name} ({', '.join(f'%({n})s' for n in self.order)})"

    def execute(self, cur, params):
        """Run the statement on `cur` with `params` (a dict); its results are read from `cur` as usual."""
        prepared = getattr(cur.connection, "prepared", None)
        if prepared is None:  # a connection not from a Database pool: plain SQL
            cur.execute(self.sql, params)
            return
        if self.name not in prepared:
            cur.execute(self.prepare)
            prepared.add(self.name)
        cur.execute(self.execute_sql, params)


class DatabaseUnavailable(ServiceUnavailable):
    """PostgreSQL cannot be reached or dropped the connection."""

    message = "The database is unavailable."


class Database:
    """A lazily created pool for one database URL; a process that forks gets a pool of its own."""

    def __init__(self, url, max_connections=8):
        self.url = url
        self.max_connections = max_connections
        self._pool = None
        self._pid = None
        self._lock = threading.Lock()

    def _get_pool(self):
        # Connections must never be shared across a fork (gunicorn and RQ workers fork).
        if self._pid != os.getpid():
            with self._lock:
                if self._pid != os.getpid():
                    pool = psycopg2.pool.ThreadedConnectionPool(
                        0, self.max_connections, self.url, connection_factory=Connection, **CONNECT_OPTIONS
                    )
                    # psycopg2 closes every returned connection beyond `minconn`, so with 0 each query
                    # would pay a new connection. Raised after construction, it keeps them all for reuse
                    # without opening any up front (a server that is down then fails a request, not the pool).
                    pool.minconn = self.max_connections
                    self._pool, self._pid = pool, os.getpid()
        return self._pool

    @contextmanager
    def cursor(self):
        """Yield a dict cursor in autocommit mode: each statement is its own transaction, one round trip."""
        pool = self._get_pool()
        try:
            conn = pool.getconn()
        except psycopg2.OperationalError as exc:
            raise DatabaseUnavailable() from exc
        except psycopg2.pool.PoolError as exc:
            raise DatabaseUnavailable("The database connection pool is exhausted.") from exc
        broken = False
        try:
            conn.autocommit = True
            with conn.cursor(cursor_factory=DictCursor) as cur:
                yield cur
        except (psycopg2.OperationalError, psycopg2.InterfaceError) as exc:
            broken = True
            raise DatabaseUnavailable() from exc
        finally:
            # A connection that failed is discarded, so the pool heals once the server is back.
            pool.putconn(conn, close=broken or bool(conn.closed))

    @contextmanager
    def transaction(self):
        """Yield a dict cursor inside BEGIN … COMMIT, rolled back if the block raises."""
        with self.cursor() as cur:
            cur.execute("BEGIN")
            try:
                yield cur
            except BaseException:
                if not cur.connection.closed:
                    cur.execute("ROLLBACK")
                raise
            cur.execute("COMMIT")

    def close(self):
        """Close every pooled connection, and with them any session lock they hold; the next cursor opens anew."""
        with self._lock:
            pool, pid, self._pool, self._pid = self._pool, self._pid, None, None
        if pool is not None and pid == os.getpid():  # never a parent's connections, inherited by a fork
            pool.closeall()

    def ping(self):
        """Return True when the database answers."""
        try:
            with self.cursor() as cur:
                cur.execute("SELECT 1")
            return True
        except DatabaseUnavailable:
            return False


def create_database(url):
    """Create the database named in `url` if it does not exist yet."""
    params = psycopg2.extensions.parse_dsn(url)
    name = params.pop("dbname")
    conn = psycopg2.connect(**{**params, "dbname": "postgres"}, connect_timeout=5)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if cur.fetchone() is None:
                cur.execute(f'CREATE DATABASE "{name}"')  # a name cannot be a query parameter
    finally:
        conn.close()


def init_db(url):
    """Create the database if missing and apply schema.sql (safe to run again)."""
    create_database(url)
    conn = psycopg2.connect(url, connect_timeout=5)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(SCHEMA.read_text())
    finally:
        conn.close()
