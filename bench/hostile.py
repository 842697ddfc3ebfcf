"""The CPU one hostile POST /email/send costs, refused or accepted, in-process (issue 10: at most ~50 ms).

    python bench/hostile.py [--db NAME] [--redis N] [--repeats N] [--root DIR]

Each body is sent through Flask's test client with a valid key (authentication, JSON parsing,
validation, and for the accepted ones the insert and the enqueue), and timed with the process's
CPU clock, best of `--repeats`; beside it, the CPU json.loads alone takes for the same bytes, which
no validation can avoid once a body is read. MAX_CONTENT_LENGTH is raised to 16 MiB (the wave 2
limit) so the largest bodies get past the 413. `make bench-hostile` runs it; it needs only
PostgreSQL and Redis (bin/services finds or starts them).
"""

import argparse
import json
import time

from harness import ROOT, app_with_key

ADDRESS = "someone.with.a.long.name@example.com"
MiB = 1024 * 1024
VALID = {"to": "reader@example.com", "subject": "Hello", "body": "Hi"}
WORD = "=?utf-8?q?=C3=A9?= "  # the densest encoded words: most parser work per character


def bodies():
    """(label, body, expected status): the large refusals first, then the most expensive accepted message."""
    name = " ".join(["=?utf-8?q?=C3=A9=C3=A9?="] * 5)  # 50 addresses of 144 characters: 8 KiB, the most allowed
    worst_accepted = {
        "to": [f"{name} <to{i}@example.com>" for i in range(50)],
        "subject": (WORD * 60)[:998],
        "body": "x" * (8 * MiB),
        "headers": {f"X-H{i}": (WORD * 60)[:320] for i in range(50)},  # 16 KiB together, the most allowed
        "metadata": {f"k{i}": "v" * 500 for i in range(20)},
    }
    return [
        ("10 MiB list of addresses in `to`", {**VALID, "to": [ADDRESS] * (10 * MiB // 40)}, 422),
        ("10 MiB list of zeros in `bcc`", {**VALID, "bcc": [0] * (10 * MiB // 3)}, 422),
        ("10 MiB single address string", {**VALID, "to": "x" * (10 * MiB) + "@example.com"}, 422),
        ("16 MiB object of 1.1M unknown fields", {**VALID, **{f"f{i:07d}": 0 for i in range(1_100_000)}}, 422),
        ("16 MiB `headers` of 900k names", {**VALID, "headers": {f"X-{i:07d}": "" for i in range(900_000)}}, 422),
        ("16 MiB list of empty objects in `to`", {**VALID, "to": [{}] * (16 * MiB // 4 - 100)}, 422),
        ("accepted: 8 KiB encoded names, 16 KiB encoded headers, 8 MiB body", worst_accepted, 201),
        ("accepted: the same with a 2-byte body", {**worst_accepted, "body": "Hi"}, 201),
        ("accepted: a plain 8 MiB body", {**VALID, "body": "x" * (8 * MiB)}, 201),
        ("accepted: a plain message", VALID, 201),
    ]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", default="emailsvc_bench")
    parser.add_argument("--redis", default="10")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--root", default=ROOT)
    args = parser.parse_args()
    app, key = app_with_key(args.root, args.db, args.redis, MAX_CONTENT_LENGTH=str(16 * MiB))
    from emailsvc.services import get_services

    client, headers = app.test_client(), {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    client.post("/email/send", json=VALID, headers=headers)  # connections opened outside the count
    print(f"{'body':<60} {'bytes':>10} {'status':>6} {'request CPU':>12} {'json.loads':>11} {'rest':>8}")
    for label, body, expected in bodies():
        data = json.dumps(body).encode()
        request_cpu, parse_cpu = [], []
        for _ in range(args.repeats):
            started = time.process_time()
            response = client.post("/email/send", data=data, headers=headers)
            request_cpu.append(time.process_time() - started)
            assert response.status_code == expected, (label, response.status_code, response.get_data()[:300])
            started = time.process_time()
            json.loads(data)
            parse_cpu.append(time.process_time() - started)
        request, parse = min(request_cpu) * 1000, min(parse_cpu) * 1000
        print(f"{label:<60} {len(data):>10,} {response.status_code:>6} {request:>9.1f} ms {parse:>8.1f} ms"
              f" {request - parse:>5.1f} ms")  # fmt: skip
    with app.app_context():
        get_services().redis.flushdb()


if __name__ == "__main__":
    main()
