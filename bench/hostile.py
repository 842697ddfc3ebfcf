"""The CPU one hostile POST /email/send or batch costs, refused or accepted, in-process (issue 10: at most
~50 ms a message).

    python bench/hostile.py [--db NAME] [--redis N] [--repeats N] [--root DIR]

Each body is sent through Flask's test client with a valid key (authentication, JSON parsing,
validation, and for the accepted ones the insert and the enqueue), and timed with the process's
CPU clock, best of `--repeats`; beside it, the CPU json.loads alone would take for the same bytes (the
body is refused before it when it holds more values than its messages can need), and the CPU a
message (a batch's divided by its messages). MAX_CONTENT_LENGTH is raised to 16 MiB (the wave 2
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
TARGET_MS = 50  # a message's CPU, refused or accepted (issue 10)
# A text of commas, colons, brackets, escaped quotes and backslashes: what the JSON value count looks at.
PUNCTUATED = 'He said: "a, b", [c], {d: e}; C:\\dir\\, ' * (5 * MiB // 40)


def bodies():
    """(label, path, body, expected status, messages): the large refusals first, then the most expensive
    accepted messages."""
    name = " ".join(["=?utf-8?q?=C3=A9=C3=A9?="] * 5)  # 50 addresses of 144 characters: 8 KiB, the most allowed
    worst_accepted = {
        "to": [f"{name} <to{i}@example.com>" for i in range(50)],
        "subject": (WORD * 60)[:998],
        "body": "x" * (6 * MiB),
        # 16 KiB together, of which 8 KiB encoded words: the most allowed of each
        "headers": {f"X-H{i:02d}": (WORD * 60)[:320] if i < 25 else "v" * 320 for i in range(50)},
        "metadata": {f"k{i}": "v" * 500 for i in range(20)},
    }
    full = {**worst_accepted, "body": "Hi, there: [x]" * 10, "subject": "Hi", "to": [f"r{i}@example.com" for i in
            range(50)], "headers": {f"X-H{i}": "v" * 300 for i in range(50)}}  # fmt: skip
    send = "/email/send"
    return [
        ("10 MiB list of addresses in `to`", send, {**VALID, "to": [ADDRESS] * (10 * MiB // 40)}, 422, 1),
        ("10 MiB list of zeros in `bcc`", send, {**VALID, "bcc": [0] * (10 * MiB // 3)}, 413, 1),
        ("10 MiB single address string", send, {**VALID, "to": "x" * (10 * MiB) + "@example.com"}, 422, 1),
        ("16 MiB object of 1.1M unknown fields", send, {**VALID, **{f"f{i:07d}": 0 for i in range(1_100_000)}}, 413, 1),
        (
            "16 MiB `headers` of 900k names",
            send,
            {**VALID, "headers": {f"X-{i:07d}": "" for i in range(900_000)}},
            413,
            1,
        ),
        ("16 MiB list of empty objects in `to`", send, {**VALID, "to": [{}] * (16 * MiB // 4 - 100)}, 413, 1),
        (
            "16 MiB `variables` of empty lists",
            send,
            {**VALID, "variables": {"x": [[]] * (16 * MiB // 4 - 100)}},
            413,
            1,
        ),
        (
            "16 KiB of encoded words in `headers`",
            send,
            {**VALID, "headers": {f"X-H{i:02d}": (WORD * 60)[:320] for i in range(50)}},
            422,
            1,
        ),  # fmt: skip
        ("accepted: 8 KiB encoded names, 8+8 KiB encoded+plain headers, 6 MiB body", send, worst_accepted, 201, 1),
        ("accepted: the same with a 2-byte body", send, {**worst_accepted, "body": "Hi"}, 201, 1),
        ("accepted: a plain 6 MiB body", send, {**VALID, "body": "x" * (6 * MiB)}, 201, 1),
        ("accepted: 5 MiB text of commas, quotes, backslashes", send, {**VALID, "body": PUNCTUATED}, 201, 1),
        ("accepted: a batch of 500 full messages", "/email/batch", {"messages": [full] * 500}, 201, 500),
        ("accepted: a plain message", send, VALID, 201, 1),
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
    print(f"{'body':<72} {'bytes':>10} {'status':>6} {'request CPU':>12} {'json.loads':>11} {'a message':>10}"
          f" (target {TARGET_MS} ms)")  # fmt: skip
    for label, path, body, expected, messages in bodies():
        data = json.dumps(body).encode()
        request_cpu, parse_cpu = [], []
        for _ in range(args.repeats):
            started = time.process_time()
            response = client.post(path, data=data, headers=headers)
            request_cpu.append(time.process_time() - started)
            assert response.status_code == expected, (label, response.status_code, response.get_data()[:300])
            started = time.process_time()
            json.loads(data)
            parse_cpu.append(time.process_time() - started)
        request, parse = min(request_cpu) * 1000, min(parse_cpu) * 1000
        print(f"{label:<72} {len(data):>10,} {response.status_code:>6} {request:>9.1f} ms {parse:>8.1f} ms"
              f" {request / messages:>7.1f} ms")  # fmt: skip
    with app.app_context():
        get_services().redis.flushdb()


if __name__ == "__main__":
    main()
