"""Fixtures of the fault tests: throwaway PostgreSQL and Redis servers they may stop, an SMTP server
they may stop or hold mid-message, and the real worker and API as subprocesses they may kill."""

import asyncio
import glob
import os
import shutil
import signal
import subprocess
import tempfile
import threading

import psycopg2
import psycopg2.extras
import pytest
from aiosmtpd.controller import Controller
from conftest import PYTHON, ROOT, SmtpRecorder, free_port, http, make_key, wait_for
from redis import Redis
from redis.exceptions import RedisError

from emailsvc import create_app
from emailsvc.db import init_db

MEASURED = {}  # what the fault tests measured, printed at the end of the run


def pytest_terminal_summary(terminalreporter):
    if MEASURED:
        terminalreporter.section("fault tests measured")
        for name, value in MEASURED.items():
            terminalreporter.write_line(f"{name}: {value}")


def _as_postgres(args):
    # initdb and postgres refuse to run as root; run them as the postgres system user then.
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else args


def _pg_bin(name):
    found = shutil.which(name) or (sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}")) or [None])[-1]
    if found is None:
        pytest.skip(f"PostgreSQL server binaries ({name}) are not installed")
    return found


class PostgresServer:
    """A PostgreSQL cluster in a temporary directory, on a free port, started and stopped at will."""

    def __init__(self, root):
        self.dir, self.port = os.path.join(root, "pg"), free_port()
        os.mkdir(self.dir)
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres")
        subprocess.run(_as_postgres([_pg_bin("initdb"), "-D", self.dir, "-U", "postgres", "--auth=trust"]),
                       check=True, capture_output=True)  # fmt: skip

    def url(self, dbname="emailsvc"):
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def start(self):
        # Durability settings off: these servers hold test data only, and fsync would slow every test.
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.dir} -c fsync=off -c full_page_writes=off"
        pg_ctl = [_pg_bin("pg_ctl"), "-D", self.dir, "-l", os.path.join(self.dir, "server.log"), "-w", "-o", options]
        subprocess.run(_as_postgres([*pg_ctl, "start"]), check=True, capture_output=True)

    def stop(self, mode="fast"):
        subprocess.run(_as_postgres([_pg_bin("pg_ctl"), "-D", self.dir, "-m", mode, "-w", "stop"]), capture_output=True)

    def running(self):
        try:
            psycopg2.connect(self.url("postgres"), connect_timeout=2).close()
            return True
        except psycopg2.OperationalError:
            return False


class RedisServer:
    """A redis-server without persistence on a free port: a restart starts it empty."""

    def __init__(self, root):
        if shutil.which("redis-server") is None:
            pytest.skip("redis-server is not installed")
        self.dir, self.port, self.proc = root, free_port(), None
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self):
        args = ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port), "--save", "", "--appendonly", "no",
                "--dir", self.dir]  # fmt: skip
        with open(os.path.join(self.dir, "redis.log"), "ab") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        wait_for(self.running, message="redis-server to answer")

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)

    def running(self):
        try:
            return Redis.from_url(self.url, socket_timeout=1).ping()
        except RedisError:
            return False


class FaultySmtp(SmtpRecorder):
    """The test SMTP server, with a pause after accepting a message (the window a crash duplicates
    in) and a gate that holds a message until the test opens it."""

    def reset(self):
        super().reset()
        self.pause = 0.0
        self.gate = None  # a threading.Event to hold each DATA until it is set
        self.in_data = threading.Event()
        self.held = 0  # messages in DATA now, waiting for the gate

    async def handle_DATA(self, server, session, envelope):
        self.in_data.set()
        self.held += 1
        while self.gate is not None and not self.gate.is_set():
            await asyncio.sleep(0.01)
        self.held -= 1
        reply = await super().handle_DATA(server, session, envelope)
        await asyncio.sleep(self.pause)
        return reply


class SmtpServer:
    """aiosmtpd on a fixed free port that the test can stop and start again."""

    def __init__(self):
        self.handler, self.port, self.controller = FaultySmtp(), free_port(), None

    def start(self):
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def stop(self):
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    def message_ids(self):
        return [msg["Message-ID"] for _, _, msg in self.handler.received]


class Fault:
    """One fault test's world: settings for the throwaway servers, and the processes it started."""

    def __init__(self, pg, redis, smtp, log_dir):
        self.pg, self.redis, self.smtp, self.log_dir = pg, redis, smtp, log_dir
        self.settings = {
            "DATABASE_URL": pg.url(),
            "REDIS_URL": redis.url,
            "SMTP_HOST": "127.0.0.1",
            "SMTP_PORT": str(smtp.port),
            "SMTP_TIMEOUT": "5",
            "EMAIL_RETRY_INTERVALS": "1,3,6",
            "WORKER_PROCESSES": "2",
            "RECONCILE_INTERVAL": "1",
            "RECONCILE_GRACE": "2",
            # Faults are the subject here, not rate limits: a batch of 300 must not meet a 429.
            "RATELIMIT_DEFAULT": "100000 per minute",
            "RATELIMIT_SEND": "100000 per minute",
        }
        self.procs = []
        self.app = create_app(self.settings)
        self.key = make_key(self.app)
        self.auth = {"Authorization": f"Bearer {self.key}"}

    def start(self, *args, name, **env):
        log = open(os.path.join(self.log_dir, f"{name}.log"), "ab")
        # A session of its own, so a test can kill the process with everything it forked.
        metrics = {"PROMETHEUS_MULTIPROC_DIR": os.path.join(self.log_dir, "metrics")}  # never make run's
        proc = subprocess.Popen(args, cwd=ROOT, env={**os.environ, **self.settings, **metrics, **env}, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
        proc.log_path = log.name
        self.procs.append(proc)
        return proc

    def start_worker(self, **env):
        return self.start(PYTHON, "worker.py", name="worker", **env)

    def start_api(self, workers=2):
        port = free_port()
        self.start(PYTHON, "-m", "gunicorn", "-c", "gunicorn.conf.py", "--bind", f"127.0.0.1:{port}", "wsgi:app",
                   name="web", WEB_CONCURRENCY=str(workers))  # fmt: skip
        base = f"http://127.0.0.1:{port}"
        wait_for(lambda: _status(base + "/healthz") == 200, timeout=30, message="the API to answer")
        return base

    def log_of(self, proc):
        with open(proc.log_path, errors="replace") as log:
            return log.read()

    def post(self, body=None, headers=None):
        """POST /email/send through the app in this process (fast), returning (status, JSON body)."""
        body = body or {"to": "alice@example.com", "subject": "Hello", "body": "Hi Alice"}
        response = self.app.test_client().post("/email/send", json=body, headers={**self.auth, **(headers or {})})
        return response.status_code, response.get_json()

    def query(self, sql, params=()):
        with psycopg2.connect(self.pg.url(), cursor_factory=psycopg2.extras.RealDictCursor) as conn:
            with conn.cursor() as cur:
                cur.execute(sql, params)
                rows = cur.fetchall()
        conn.close()
        return rows

    def wait_until_settled(self, timeout):
        """Wait until every row is SENT or FAILED; on timeout, fail naming the rows left and their jobs."""
        try:
            wait_for(lambda: set(self.statuses()) <= {"SENT", "FAILED"}, timeout=timeout, message="settled")
        except AssertionError:
            redis = Redis.from_url(self.redis.url)
            left = [
                f"{r['id']} {r['status']} attempts={r['attempts']} updated={r['updated_at']:%H:%M:%S.%f} "
                f"job={redis.hget('rq:job:' + r['id'], 'status')}"
                for r in self.query("SELECT id::text, status, attempts, updated_at FROM emails "
                                    "WHERE status NOT IN ('SENT', 'FAILED') ORDER BY updated_at")
            ]  # fmt: skip
            raise AssertionError(f"rows not SENT or FAILED after {timeout} s: {left}") from None

    def statuses(self):
        return {r["status"]: r["n"] for r in self.query("SELECT status, count(*) AS n FROM emails GROUP BY status")}

    def stop_all(self):
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def _status(url):
    try:
        return http("GET", url, timeout=2)[0]
    except OSError:
        return None


@pytest.fixture(scope="session")
def servers():
    root = tempfile.mkdtemp(prefix="emailsvc-faults-")
    os.chmod(root, 0o755)  # the postgres user must reach its cluster directory inside
    pg, redis = PostgresServer(root), RedisServer(root)
    pg.start()
    redis.start()
    init_db(pg.url())
    yield pg, redis
    redis.stop()
    pg.stop("immediate")
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def fault(servers, tmp_path):
    pg, redis = servers
    if not pg.running():  # a failed test may have left it stopped
        pg.start()
    if not redis.running():
        redis.start()
    conn = psycopg2.connect(pg.url())
    with conn, conn.cursor() as cur:
        cur.execute("TRUNCATE api_keys, emails, email_events, idempotency_keys RESTART IDENTITY CASCADE")
    conn.close()
    Redis.from_url(redis.url).flushall()
    smtp = SmtpServer()
    smtp.start()
    world = Fault(pg, redis, smtp, str(tmp_path))
    yield world
    world.stop_all()
    smtp.stop()
