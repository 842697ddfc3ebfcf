"""`make bench-logs`: GET /email/logs latency of a project of 10,000 rows and of one of ROWS rows, side by side.

Fills two databases of its own with rows spread over 90 days: the baseline holds one project of
10,000 rows alone; the shared one holds a big project of ROWS rows beside --small-projects projects of
10,000 rows each, as one emailsvc serving several applications would. Starts one gunicorn (the
project's gunicorn.conf.py) on each, then times every kind of request over HTTP for three projects —
the one alone, a small one beside the big one, and the big one — alternating between them so all see
the same machine load, and prints p50/p95 and the ratios to the one alone as a Markdown table. It
stops what it started and drops its databases unless --keep.
"""

import argparse
import http.client
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import psycopg2
import psycopg2.extras

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from emailsvc.auth import hash_key, new_key  # noqa: E402
from emailsvc.cursors import encode_cursor  # noqa: E402
from emailsvc.db import SCHEMA, create_database  # noqa: E402
from emailsvc.queries.api_keys import insert_api_key  # noqa: E402
from emailsvc.queries.log_counts import fill_log_counts  # noqa: E402
from emailsvc.queries.projects import ensure_project  # noqa: E402

SMALL_ROWS = 10_000
RATIO_TARGET = 2.0
DEEP_TARGET_MS = 100.0
RESULTS = ROOT / "bench" / "results"


def connect(url):
    conn = psycopg2.connect(url)
    conn.autocommit = True
    return conn


def on_server(url, sql):
    """Run one statement on the server of `url`, outside its database (to create or drop it)."""
    conn = connect(psycopg2.extensions.make_dsn(url, dbname="postgres"))
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
            return cur.fetchone() if cur.description else None
    finally:
        conn.close()


def database_name(url):
    return psycopg2.extensions.parse_dsn(url)["dbname"]


def fill_database(url, projects):
    """Create the database afresh with `projects` ({name: rows}) of log rows, the biggest first; indexes are
    built after the load, as a restore does, and the recipients' table as schema.sql's upgrade does."""
    on_server(url, f'DROP DATABASE IF EXISTS "{database_name(url)}"')
    create_database(url)
    conn = connect(url)
    with conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
        cur.execute(SCHEMA.read_text())
        cur.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'emails' AND indexname <> 'emails_pkey'")
        for row in cur.fetchall():
            cur.execute(f'DROP INDEX "{row["indexname"]}"')
        cur.execute("DROP TRIGGER emails_fill_recipients ON emails; DROP TABLE email_recipient_addresses")
        for name, rows in projects.items():
            project_id = ensure_project(cur, name)["id"]
            cur.execute((ROOT / "bench" / "fill_emails.sql").read_text(), {"rows": rows, "project_id": project_id})
        cur.execute("SET maintenance_work_mem = '256MB'")
        cur.execute(SCHEMA.read_text())
        for table in ("emails", "email_recipient_addresses"):  # what autovacuum does to tables whose rows are settled
            cur.execute(f"VACUUM ANALYZE {table}")
    conn.close()


def project_id(url, name):
    conn = connect(url)
    with conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
        found = ensure_project(cur, name)["id"]
    conn.close()
    return found


def settle_counts(url, project):
    """Fill the project's email_log_counts as its first requests after a deployment would; return (seconds, calls)."""
    conn, calls, started = connect(url), 0, time.perf_counter()
    with conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
        while fill_log_counts(cur, project):
            calls += 1
    conn.close()
    return time.perf_counter() - started, calls


def create_key(url, project):
    conn = connect(url)
    key = new_key()
    with conn.cursor() as cur:
        insert_api_key(cur, project, "bench", hash_key(key), key[:12], ["read"])
    conn.close()
    return key


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_api(url, redis_url, log_path):
    """Start gunicorn with the project's settings on a free port; return (process, port)."""
    port = free_port()
    env = {**os.environ, "DATABASE_URL": url, "REDIS_URL": redis_url, "GUNICORN_BIND": f"127.0.0.1:{port}",
           "RATELIMIT_DEFAULT": "1000000 per minute",
           "PROMETHEUS_MULTIPROC_DIR": str(log_path.with_suffix(".metrics"))}  # each instance its own  # fmt: skip
    env.pop("DATABASE_READ_URL", None)
    gunicorn = Path(sys.executable).parent / "gunicorn"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([str(gunicorn), "-c", "gunicorn.conf.py", "wsgi:app"], cwd=ROOT, env=env,
                                stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if request(port, "/healthz")[1] == 200:
                return proc, port
        except OSError:
            time.sleep(0.1)
    proc.terminate()
    raise SystemExit(f"gunicorn did not answer on port {port}; see {log_path}")


def stop_api(proc):
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def request(port, path, key=None):
    """GET `path`; return (milliseconds, status, parsed body)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    started = time.perf_counter()
    conn.request("GET", path, headers={"Authorization": f"Bearer {key}"} if key else {})
    response = conn.getresponse()
    body = response.read()
    elapsed = (time.perf_counter() - started) * 1000
    conn.close()
    return elapsed, response.status, json.loads(body)


def latest_zone(now):
    """The fixed-offset zone where the most of today has passed, so today's counts cover a nearly full day."""
    hours = max(range(-12, 15), key=lambda h: (now + timedelta(hours=h)).time())
    return f"Etc/GMT{-hours:+d}" if hours else "UTC"


def cases(url, project, rows, zone):
    """The requests to time against a project of `rows` rows: (name, path, target)."""
    deep = int(rows * 0.9)
    conn = connect(url)
    with conn.cursor() as cur:  # the cursor a client walking newest first would hold at 90% depth
        cur.execute(
            """SELECT created_at, id FROM emails WHERE project_id = %s
               ORDER BY created_at DESC, id DESC OFFSET %s LIMIT 1""",
            [project, deep - 1],
        )
        cursor = encode_cursor(*cur.fetchone())
    conn.close()
    both = "to=audit@example.com&status=FAILED"  # two filters of 5% each: 1 row in 400 matches both
    rare = "to=audit@example.com&status=COMPLAINED"  # 5% and 0.2% (the rare side): 1 in 10,000
    rare_to = "to=user0@mail0.example&status=DELIVERED"  # 25 messages at 5M rows (none at 10k) and 53%
    from_and_status = "status=FAILED&from=shop@example.com"  # 5% and 20%, both columns of the log
    three = f"{both}&from=shop@example.com"  # every message to audit@ is from shop@: 1 in 400, as `both`
    none = "to=audit@example.com&from=billing@example.com"  # 5% and 20%, and no message matches both
    combined = [
        ("to=audit@example.com&status=FAILED", both),
        ("to=audit@example.com&status=COMPLAINED", rare),
        ("to=user0@mail0.example&status=DELIVERED", rare_to),
        ("status=FAILED&from=shop@example.com", from_and_status),
        ("to, status and from", three),
        ("to=audit@example.com&from=billing@example.com (none)", none),
    ]
    return [
        ("offset page 1 (with exact total)", "/email/logs?page=1&limit=10", "ratio"),
        ("offset page at 90% depth", f"/email/logs?page={deep // 10 + 1}&limit=10", "ms"),
        ("cursor first page", "/email/logs?limit=10", "ratio"),
        ("cursor page at 90% depth", f"/email/logs?limit=10&cursor={cursor}", "ratio"),
        ("filtered status=FAILED, cursor", "/email/logs?limit=10&status=FAILED", "ratio"),
        ("filtered status=FAILED, offset page 1", "/email/logs?page=1&limit=10&status=FAILED", "ratio"),
        ("filtered to=audit@example.com, cursor", "/email/logs?limit=10&to=audit@example.com", "ratio"),
        ("filtered to=audit@example.com, offset page 1", "/email/logs?page=1&limit=10&to=audit@example.com", "ratio"),
        *(
            case
            for name, query in combined
            for case in (
                (f"filtered {name}, cursor", f"/email/logs?limit=10&{query}", "ratio"),
                (f"filtered {name}, offset page 1", f"/email/logs?page=1&limit=10&{query}", "ratio"),
            )
        ),
        (f"today's counts (tz={zone})", f"/email/logs?limit=1&tz={quote(zone)}", "ratio"),
    ]


def replaced_designs(url, project, rows):
    """Time, in SQL, what the original design ran per request: an exact count and a plain deep OFFSET."""
    conn = connect(url)
    timings = {}
    with conn.cursor() as cur:
        cur.execute("SET jit = off")  # as the service's connections run
        where = f"WHERE project_id = {int(project)}"
        for name, sql in (("count(*) of the whole log", f"SELECT count(*) FROM emails {where}"),
                          ("OFFSET to 90% depth", f"SELECT * FROM emails {where} ORDER BY created_at, id "
                                                  f"OFFSET {int(rows * 0.9)} LIMIT 10")):  # fmt: skip
            samples = []
            for _ in range(5):
                started = time.perf_counter()
                cur.execute(sql)
                cur.fetchall()
                samples.append((time.perf_counter() - started) * 1000)
            timings[name] = statistics.median(samples)
    conn.close()
    return ", ".join(f"{name} {ms:.0f} ms" for name, ms in timings.items())


def percentile(samples, p):
    return statistics.quantiles(samples, n=100, method="inclusive")[p - 1]


def measure(sides, repeats):
    """Time each case `repeats` times on every side, interleaved; return {name: [ms list of each side]}."""
    timings = {name: [[] for _ in sides] for name, _, _ in sides[0]["cases"]}
    for round_number in range(repeats + 3):  # the first three rounds warm up and are not kept
        for n, (name, _, _) in enumerate(sides[0]["cases"]):
            for side, kept in zip(sides, timings[name], strict=True):
                path = side["cases"][n][1]
                elapsed, status, body = request(side["port"], path, side["key"])
                if status != 200:
                    raise SystemExit(f"{path} answered {status}: {body}")
                if round_number >= 3:
                    kept.append(elapsed)
    return timings


def machine():
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    mem = next((line.split()[1] for line in open("/proc/meminfo") if line.startswith("MemTotal")), "0")
    gib = round(int(mem) / 1024 / 1024)
    return f"{cpu}, {os.cpu_count()} cores, {gib} GiB RAM, {platform.system()} {platform.release()}"


def report(timings, sides, extra):
    """One row per request: p50/p95 of each side, and each other side's p95 over the first's (the project alone)."""
    labels = [side["label"] for side in sides]
    lines = [
        "| request | " + " | ".join(f"{label} p50 | {label} p95" for label in labels) + " | "
        + " | ".join(f"p95 {label} / {labels[0]}" for label in labels[1:]) + " | target | met |",
        "|---|" + "---:|" * (3 * len(sides) - 1) + "---|---|",
    ]  # fmt: skip
    for name, _, target in sides[0]["cases"]:
        p50s = [percentile(samples, 50) for samples in timings[name]]
        p95s = [percentile(samples, 95) for samples in timings[name]]
        ratios = [p95 / p95s[0] for p95 in p95s[1:]]
        if target == "ratio":
            goal, met = f"≤ {RATIO_TARGET:g}×", all(ratio <= RATIO_TARGET for ratio in ratios)
        else:
            goal, met = f"≤ {DEEP_TARGET_MS:g} ms", all(p95 <= DEEP_TARGET_MS for p95 in p95s)
        cells = [f"{p50:.1f} ms | {p95:.1f} ms" for p50, p95 in zip(p50s, p95s, strict=True)]
        cells += [f"{ratio:.2f}×" for ratio in ratios]
        lines.append(f"| {name} | {' | '.join(cells)} | {goal} | {'yes' if met else 'NO'} |")
    return "\n".join(lines + [""] + [f"- {line}" for line in extra])


def size_label(rows):
    return f"{rows / 1e6:g}M" if rows >= 1e6 else f"{rows // 1000}k"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows of the big project")
    parser.add_argument("--small-projects", type=int, default=3, help="projects of 10,000 rows beside the big one")
    parser.add_argument("--repeats", type=int, default=100, help="timed requests per case and side")
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432", help="server URL, no database")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/14")
    parser.add_argument("--keep", action="store_true", help="keep the benchmark databases afterwards")
    parser.add_argument("--reuse", action="store_true", help="reuse kept databases instead of filling them again")
    parser.add_argument("--prefix", default="emailsvc_bench_logs", help="the databases' names before _small/_large")
    args = parser.parse_args()
    RESULTS.mkdir(exist_ok=True)
    alone_url, shared_url = f"{args.pg}/{args.prefix}_small", f"{args.pg}/{args.prefix}_large"
    databases = {
        alone_url: {"alone": SMALL_ROWS},
        shared_url: {"big": args.rows, **{f"small-{n}": SMALL_ROWS for n in range(1, args.small_projects + 1)}},
    }
    small, big = size_label(SMALL_ROWS), size_label(args.rows)
    sides = [
        {"label": f"{small} alone", "url": alone_url, "project": "alone", "rows": SMALL_ROWS},
        {"label": f"{small} beside {big}", "url": shared_url, "project": "small-1", "rows": SMALL_ROWS},
        {"label": big, "url": shared_url, "project": "big", "rows": args.rows},
    ]
    if not args.small_projects:
        del sides[1]
    extra, procs = [f"machine: {machine()}; PostgreSQL {server_version(alone_url)}"], []
    try:
        ports = {}
        for url, projects in databases.items():
            if not (args.reuse and row_count(url) == sum(projects.values())):
                started = time.perf_counter()
                fill_database(url, projects)
                shape = ", ".join(f"{name} {rows:,}" for name, rows in projects.items())
                extra.append(f"filled {database_name(url)} ({shape} rows) in {time.perf_counter() - started:.0f} s")
            for name, rows in projects.items():
                seconds, calls = settle_counts(url, project_id(url, name))
                extra.append(f"running counts of {name} ({rows:,} rows) filled in {seconds:.2f} s ({calls} fills)")
            proc, ports[url] = start_api(url, args.redis, RESULTS / f"gunicorn-{database_name(url)}.log")
            procs.append(proc)
        zone = latest_zone(datetime.now(UTC))
        for side in sides:
            side["project_id"] = project_id(side["url"], side["project"])
            side["key"], side["port"] = create_key(side["url"], side["project_id"]), ports[side["url"]]
            side["cases"] = cases(side["url"], side["project_id"], side["rows"], zone)
        load_before = os.getloadavg()[0]
        timings = measure(sides, args.repeats)
        today = request(sides[-1]["port"], f"/email/logs?limit=1&tz={quote(zone)}", sides[-1]["key"])[2]["today"]
        extra += [
            f"{args.repeats} timed requests per case and side, interleaved; load average {load_before:.2f} "
            f"before, {os.getloadavg()[0]:.2f} after",
            f"today's counts of the {big} project in {zone}: {today}",
            *(
                f"replaced by this design, {side['label']}: "
                f"{replaced_designs(side['url'], side['project_id'], side['rows'])}"
                for side in sides
            ),
        ]
    finally:
        for proc in procs:
            stop_api(proc)
        if not args.keep:
            for url in databases:
                drop_database(url)
    table = report(timings, sides, extra)
    out = RESULTS / f"logs-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.md"
    out.write_text(table + "\n")
    print(table)
    print(f"\n(saved in {out.relative_to(ROOT)})")


def server_version(url):
    return on_server(url, "SHOW server_version")[0].split()[0]


def row_count(url):
    try:
        conn = connect(url)
    except psycopg2.OperationalError:
        return None
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM emails")
            return cur.fetchone()[0]
    except psycopg2.Error:
        return None
    finally:
        conn.close()


def drop_database(url):
    on_server(url, f'DROP DATABASE IF EXISTS "{database_name(url)}"')


if __name__ == "__main__":
    main()
