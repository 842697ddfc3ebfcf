"""What every benchmark needs: the servers' URLs, processes it starts and always stops, and wrk."""

import logging
import os
import re
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PYTHON = sys.executable
VENV_BIN = os.path.dirname(PYTHON)


def base_urls():
    """Return (PostgreSQL base URL, Redis base URL) from bin/services, starting servers if needed."""
    out = subprocess.run([os.path.join(ROOT, "bin", "services")], check=True, capture_output=True, text=True).stdout
    found = dict(re.findall(r"export (\w+)=(\S+)", out))
    return found["EMAILSVC_PG"], found["EMAILSVC_REDIS"]


# Every limit a benchmark's key meets, raised far above what one box can send, so that no row measures a
# 429 (RATELIMIT_PROJECT empty: no project limit, whatever .env says).
RAISED_LIMITS = {
    "RATELIMIT_DEFAULT": "100000000 per minute",
    "RATELIMIT_SEND": "100000000 per minute",
    "RATELIMIT_MESSAGES": "100000000 per minute",
    "RATELIMIT_PROJECT": "",
}


def app_with_key(root, db, redis_db, scopes=("send",), **settings):
    """Import emailsvc from the checkout `root`, apply its schema to database `db`, empty the messages and Redis
    db `redis_db`, and return (an app with every limit raised and `settings` on top, a new key of the default
    project with `scopes`): what an in-process benchmark measures through the test client."""
    sys.path.insert(0, root)
    from emailsvc import create_app
    from emailsvc.auth import hash_key, new_key
    from emailsvc.db import init_db
    from emailsvc.queries.api_keys import insert_api_key
    from emailsvc.queries.projects import ensure_project
    from emailsvc.services import get_services

    pg, rd = base_urls()
    config = {"DATABASE_URL": f"{pg}/{db}", "REDIS_URL": f"{rd}/{redis_db}", **RAISED_LIMITS, **settings}
    init_db(config["DATABASE_URL"])
    app = create_app(config)
    key = new_key()
    with app.app_context():
        services = get_services()
        services.redis.flushdb()
        with services.db.cursor() as cur:
            cur.execute("TRUNCATE emails, email_events CASCADE")
            project_id = ensure_project(cur, "default")["id"]
            insert_api_key(cur, project_id, "bench", hash_key(key), key[:12], list(scopes))
    return app, key


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.05)


def answers(url):
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def listens(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def log_to_file(log_dir):
    """Send this process's log lines (the in-process app's requests and jobs) to bench.log in `log_dir`, not the
    terminal: emailsvc logs to stderr only where nothing else was set up (emailsvc/logging_config.py)."""
    handler = logging.FileHandler(os.path.join(log_dir, "bench.log"))
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)


def run_to_end(args, env, name, log_dir):
    """Run a process to its end, its output in `name`.log in `log_dir`; raise if it fails."""
    with open(os.path.join(log_dir, f"{name}.log"), "ab") as log:
        subprocess.run(args, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, check=True)


@contextmanager
def started(args, env, name, log_dir):
    """Run a process in its own process group for the duration of the block; stop it and its children."""
    log = open(os.path.join(log_dir, f"{name}.log"), "ab")
    proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        log.close()


def gunicorn(app_path, port, env, name, log_dir, extra=()):
    """Start gunicorn with the project's own gunicorn.conf.py, as production runs it (request log lines included)."""
    args = [os.path.join(VENV_BIN, "gunicorn"), "-c", "gunicorn.conf.py", "--bind", f"127.0.0.1:{port}", *extra]
    args.append(app_path)
    # Metrics files of its own: instances started side by side must not clear each other's.
    env = {**env, "PROMETHEUS_MULTIPROC_DIR": os.path.join(log_dir, f"metrics-{name}")}
    return started(args, env, name, log_dir)


def smtp_sink(port, log_dir):
    """Start postfix's smtp-sink, a C SMTP server fast enough not to be what is measured."""
    binary = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"
    user = ["-u", "nobody"] if os.geteuid() == 0 else []
    return started([binary, *user, f"127.0.0.1:{port}", "1024"], os.environ.copy(), "smtp-sink", log_dir)


def wrk(url, connections, seconds, env):
    """Run wrk with bench/send.lua; return (requests/s, p50 ms, p99 ms, count of non-2xx answers and of requests
    unanswered after 10 s, wrk's timeout, raised from 2 s so that a slow batch is measured, not dropped)."""
    out = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{seconds}s",
            "--timeout",
            "10s",
            "--latency",
            "-s",
            os.path.join(ROOT, "bench", "send.lua"),
            url,
        ],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    latency = {p: _ms(v) for p, v in re.findall(r"^\s+(50|99)%\s+([\d.]+\w+)", out, re.M)}
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    timeouts = re.search(r"Socket errors: .*timeout (\d+)", out)
    return rate, latency["50"], latency["99"], sum(int(m.group(1)) for m in (bad, timeouts) if m)


def _ms(text):
    value, unit = re.match(r"([\d.]+)(\w+)", text).groups()
    return float(value) * {"us": 0.001, "ms": 1, "s": 1000, "m": 60000}[unit]


def rss_mb(pid):
    """Resident memory of one process, in MiB."""
    with open(f"/proc/{pid}/status") as status:
        kb = int(re.search(r"VmRSS:\s+(\d+)", status.read()).group(1))
    return kb / 1024


def children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


def relay(port, delay_ms, log_dir):
    """Start bench/relay.py: an SMTP server that answers each DATA after `delay_ms` and counts messages."""
    args = [PYTHON, os.path.join(ROOT, "bench", "relay.py"), str(port), "--delay-ms", str(delay_ms)]
    return started(args, os.environ.copy(), f"relay-{delay_ms:g}ms", log_dir)


def relay_stats(port):
    """bench/relay.py's counts: {"messages", "recipients", "first", "last", "connections"} (times in seconds)."""
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
        code, text = smtp.docmd("XSTATS")
        if code != 250:
            raise RuntimeError(f"relay answered XSTATS with {code} {text!r}")
        smtp.docmd("QUIT")
    return {key: float(value) for key, value in (item.split("=") for item in text.decode().split())}


def relay_reset(port):
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
        smtp.docmd("XRESET")


def descendants(pid):
    """Every process below `pid`, children first."""
    found = []
    for child in children(pid):
        found += [child, *descendants(child)]
    return found


def tree_rss_mb(pid):
    """Resident memory of a process and all its descendants, in MiB, and how many processes that is."""
    pids = [pid, *descendants(pid)]
    total = 0.0
    for p in pids:
        try:
            total += rss_mb(p)
        except OSError:  # exited meanwhile
            pass
    return total, len(pids)


def cpu_seconds(pid):
    """utime + stime of one process so far, in seconds (from /proc/<pid>/stat)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load_average():
    return "load average {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
