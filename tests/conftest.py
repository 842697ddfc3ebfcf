"""Fixtures: the app on its own PostgreSQL database and Redis db number, and a real aiosmtpd server."""

import asyncio
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from email import message_from_bytes, policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psycopg2
import pytest
from aiosmtpd.controller import Controller
from redis import Redis

import emailsvc.auth
from emailsvc import create_app
from emailsvc.auth import hash_key, new_key
from emailsvc.db import init_db
from emailsvc.queries.api_keys import insert_api_key
from emailsvc.queries.projects import ensure_project
from emailsvc.rq_worker import LeanWorker
from emailsvc.services import get_services

TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/emailsvc_test")
TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
TABLES = "projects, api_keys, emails, email_events, suppressions, webhook_endpoints, attachment_contents"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def answers(url):
    """True when GET `url` answers 200 (for waiting on a server that is starting)."""
    try:
        return http("GET", url, timeout=2)[0] == 200
    except OSError:
        return False


def listens(port):
    """True when something accepts TCP connections on 127.0.0.1:`port`."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def wait_for(predicate, timeout=20.0, interval=0.05, message="condition"):
    """Poll `predicate` until it returns something truthy, or fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {message}")
        time.sleep(interval)


class SmtpRecorder:
    """An aiosmtpd handler that keeps what it accepts and answers as a test scripts it: any code to MAIL,
    to each recipient's RCPT and to DATA, and a connection dropped before DATA or after the message."""

    def __init__(self):
        self.reset()

    def reset(self):
        self.received = []  # (envelope from, envelope recipients, parsed message)
        self.raw = []  # the bytes of each kept message, as DATA carried them
        self.data_replies = deque()  # replies to DATA, in order; then `default_reply`
        self.default_reply = "250 2.0.0 Ok: queued"
        self.refused_recipients = {}  # address -> RCPT reply, every time
        self.rcpt_replies = {}  # address -> list of RCPT replies, one per RCPT, then 250
        self.mail_replies = deque()  # replies to MAIL FROM, in order; then 250
        # "rcpt": drop the connection at the next RCPT (before DATA); "after_data": keep the next message,
        # then drop the connection instead of answering. Each entry is used once, in order.
        self.drops = deque()
        self.rcpt_gate = None  # a threading.Event that holds every RCPT until it is set
        self.data_delays = deque()  # seconds to wait before answering DATA (after keeping the message), in order

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        if self.mail_replies:
            return self.mail_replies.popleft()
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        while self.rcpt_gate is not None and not self.rcpt_gate.is_set():
            await asyncio.sleep(0.01)
        if self.drops and self.drops[0] == "rcpt":
            self.drops.popleft()
            server.transport.abort()
            return "421 4.3.0 Gone"  # never arrives: the connection is closed
        if address in self.refused_recipients:
            return self.refused_recipients[address]
        if self.rcpt_replies.get(address):
            return self.rcpt_replies[address].pop(0)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        reply = self.data_replies.popleft() if self.data_replies else self.default_reply
        if reply.startswith("250"):
            message = message_from_bytes(envelope.original_content, policy=policy.default)
            self.received.append((envelope.mail_from, list(envelope.rcpt_tos), message))
            self.raw.append(envelope.original_content)
        if self.drops and self.drops[0] == "after_data":
            self.drops.popleft()
            server.transport.abort()  # the relay holds the message; its answer never arrives
        if self.data_delays:
            await asyncio.sleep(self.data_delays.popleft())
        return reply

    def copies_for(self, address):
        """How many copies of messages the relay holds for `address`."""
        return sum(address in rcpt_tos for _, rcpt_tos, _ in self.received)


@pytest.fixture(scope="session")
def smtp():
    handler = SmtpRecorder()
    handler.port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=handler.port)
    controller.start()
    yield handler
    controller.stop()


@pytest.fixture
def relay():
    """Start scripted relays for one test: `relay(**Controller options)` returns a started SmtpRecorder whose
    `restart(**options)` starts it again on the same port with other options (e.g. AUTH offered)."""
    controllers = []

    def start(port=None, handler=None, **options):
        handler = handler or SmtpRecorder()
        handler.port = port or free_port()
        controller = Controller(handler, hostname="127.0.0.1", port=handler.port, **options)
        controller.start()
        controllers.append(controller)

        def restart(**new_options):
            controller.stop()
            controllers.remove(controller)
            return start(handler.port, handler, **new_options)

        handler.restart = restart
        return handler

    yield start
    for controller in controllers:
        controller.stop()


@pytest.fixture(scope="session")
def database():
    init_db(TEST_DATABASE_URL)
    return TEST_DATABASE_URL


@pytest.fixture
def settings(database, smtp):
    """The settings the app under test runs with, as the environment would spell them."""
    return {
        "DATABASE_URL": database,
        "REDIS_URL": TEST_REDIS_URL,
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": str(smtp.port),
        "SMTP_TIMEOUT": "5",
        "EMAIL_RETRY_INTERVALS": "0",  # retries run at once, so a burst worker sees them all
        "WORKER_PROCESSES": "1",
        "WEBHOOK_ALLOW_PRIVATE": "true",  # the test receivers listen on 127.0.0.1
        "SECRET_KEY": "test-secret-key-of-the-operators-page-0123456789",  # the page (/ui/) is on
        "SESSION_COOKIE_SECURE": "false",  # the tests' servers speak plain HTTP
    }


@pytest.fixture(autouse=True)
def clean_state(database, smtp):
    conn = psycopg2.connect(database)
    with conn, conn.cursor() as cur:
        cur.execute(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE")
    conn.close()
    Redis.from_url(TEST_REDIS_URL).flushdb()
    smtp.reset()


@pytest.fixture
def app(settings):
    app = create_app(settings)
    yield app
    services = app.extensions["emailsvc"]
    services.mailers.close()
    # Closed now, not whenever the app is collected: a session lock a test left on a pooled connection
    # would otherwise hold into the tests after it.
    services.db.close()
    services.read_db.close()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


def make_key(app, scopes=("send", "read"), name="test", project="default"):
    """Create an API key in `project` (created if missing) directly in the database and return it."""
    key = new_key()
    with app.app_context(), get_services().db.cursor() as cur:
        insert_api_key(cur, ensure_project(cur, project)["id"], name, hash_key(key), key[:12], list(scopes))
    return key


@pytest.fixture
def look_ups(monkeypatch):
    """Count the API-key look-ups the database is asked for (the real query still runs)."""
    calls, real = [], emailsvc.auth.find_active_api_key
    monkeypatch.setattr(
        emailsvc.auth, "find_active_api_key", lambda cur, digest: calls.append(digest) or real(cur, digest)
    )
    return calls


def revoke(app, key):
    """Revoke `key` as an operator does: `flask api-keys revoke ID`."""
    with app.app_context(), get_services().db.cursor() as cur:
        cur.execute("SELECT id FROM api_keys WHERE key_prefix = %s", (key[:12],))
        key_id = cur.fetchone()["id"]
    result = app.test_cli_runner().invoke(args=["api-keys", "revoke", str(key_id)])
    assert result.exit_code == 0, result.output


@pytest.fixture
def auth(app):
    """Headers carrying a valid key with both scopes."""
    return {"Authorization": f"Bearer {make_key(app)}"}


class BurstWorker(LeanWorker):
    """The product's worker without its command channel: a burst in a test takes no remote commands,
    and closing the channel can wait a second for its thread."""

    def subscribe(self):
        pass


VALID_SEND = {"to": "alice@example.com", "subject": "Hello", "body": "Hi Alice"}


def send_ok(client, auth, **changes):
    """POST /email/send with a valid body changed by `changes`; assert it is accepted and return the id."""
    response = client.post("/email/send", json={**VALID_SEND, **changes}, headers=auth)
    assert response.status_code == 201, response.get_json()
    return response.get_json()["id"]


def log_of(client, auth, email_id):
    """GET /email/logs/<id>: the log with its events."""
    return client.get(f"/email/logs/{email_id}", headers=auth).get_json()


def run_jobs(app):
    """Run the queued jobs, retries included, with the real job code, then return."""
    with app.app_context():
        services = get_services()
        BurstWorker([services.email_queue], connection=services.redis).work(burst=True, with_scheduler=True)


class WebhookReceiver:
    """A real HTTP server that keeps every POST it gets and answers as a test scripts it."""

    def __init__(self):
        self.requests = []  # (headers as a dict with lower-case names, raw body)
        self.replies = deque()  # statuses to answer, in order; "hang" answers only at the end of the test
        self.default_status = 200
        self.released = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
                reply = receiver.replies.popleft() if receiver.replies else receiver.default_status
                if reply == "hang":
                    receiver.released.wait(60)
                    reply = 200
                self.send_response(reply)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks"

    def payloads(self):
        return [json.loads(body) for _, body in self.requests]


@pytest.fixture
def receiver():
    """A webhook receiver listening on a free port for the length of one test."""
    receiver = WebhookReceiver()
    thread = threading.Thread(target=receiver.server.serve_forever, daemon=True)
    thread.start()
    yield receiver
    receiver.released.set()
    receiver.server.shutdown()
    receiver.server.server_close()


def run_webhooks(app):
    """Dispatch the due webhook deliveries and run them with the real job code until none is due."""
    from emailsvc.notify import dispatch_due

    with app.app_context():
        while dispatch_due():
            BurstWorker([get_services().webhook_queue], connection=get_services().redis).work(burst=True)


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PYTHON = sys.executable


class Processes:
    """Real processes started for a test (gunicorn, worker.py, the sink), stopped when it ends."""

    def __init__(self, env):
        self.env = {**os.environ, **env}
        self.procs = []

    def start(self, *args, name):
        log = open(os.path.join(self.env["TEST_LOG_DIR"], f"{name}.log"), "ab")
        proc = subprocess.Popen(args, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        self.procs.append(proc)
        return proc

    def stop_all(self):
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture
def processes(settings, tmp_path):
    """Start real service processes with the test settings; they are stopped after the test."""
    # Metrics files of their own: never those of `make run` or of another test's processes.
    started = Processes(
        {**settings, "TEST_LOG_DIR": str(tmp_path), "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics")}
    )
    yield started
    started.stop_all()


def http(method, url, body=None, headers=None, timeout=10):
    """Make one HTTP request; return (status, headers, parsed JSON body or None)."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, head, raw = response.status, response.headers, response.read()
    except urllib.error.HTTPError as exc:
        status, head, raw = exc.code, exc.headers, exc.read()
    return status, head, (json.loads(raw) if raw else None)
