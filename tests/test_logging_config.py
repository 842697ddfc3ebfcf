"""LOG_FORMAT=json: every line of the API and of every worker process is one JSON object with the fields an
aggregator needs, and no line holds a recipient address, a body or a key."""

import json
import logging

from conftest import PYTHON, answers, free_port, http, make_key, wait_for

from emailsvc.logging_config import formatter

REQUEST_FIELDS = {"request_id", "project", "key_id", "route", "status", "duration_ms"}
DELIVERY_FIELDS = {"email_id", "attempt", "outcome", "smtp_code"}


def test_a_record_becomes_one_json_object_with_its_extra_fields():
    record = logging.LogRecord("emailsvc.jobs", logging.INFO, __file__, 1, "email %s sent", ("x",), None)
    record.request_id, record.outcome = "-", "sent"
    line = formatter("json").format(record)
    assert "\n" not in line
    expected = {"level": "INFO", "logger": "emailsvc.jobs", "message": "email x sent", "request_id": "-",
                "outcome": "sent"}  # fmt: skip
    assert json.loads(line) == {"time": json.loads(line)["time"], "pid": record.process, **expected}


def test_the_api_and_the_worker_log_json_lines_without_addresses_bodies_or_keys(app, processes, tmp_path, smtp):
    key = make_key(app)
    port = free_port()
    processes.env.update(LOG_FORMAT="json", WORKER_PROCESSES="1", SMTP_CONCURRENCY="2")
    web = processes.start(PYTHON, "-m", "gunicorn", "-c", "gunicorn.conf.py", "--bind", f"127.0.0.1:{port}",
                          "wsgi:app", name="web")  # fmt: skip
    worker = processes.start(PYTHON, "worker.py", name="worker")
    base, auth = f"http://127.0.0.1:{port}", {"Authorization": f"Bearer {key}"}
    wait_for(lambda: answers(base + "/healthz"), message="the API to answer")
    # Greylisted once, with the address in the reply, as Postfix says it.
    smtp.rcpt_replies["alice.hidden@example.com"] = ["450 4.2.0 <alice.hidden@example.com>: greylisted"]
    body = {"to": "Alice Hidden <alice.hidden@example.com>", "subject": "Private", "body": "BODY-MARKER text",
            "html": "<p>HTML-MARKER</p>"}  # fmt: skip
    status, _, log = http("POST", base + "/email/send", body, auth)
    assert status == 201
    http("GET", base + "/email/logs?to=alice.hidden@example.com", headers=auth)
    http("DELETE", base + "/suppressions/alice.hidden@example.com", headers=auth)
    http("GET", base + "/nowhere/alice.hidden@example.com", headers=auth)

    def sent():
        return http("GET", f"{base}/email/logs/{log['id']}", headers=auth)[2]["status"] == "SENT"

    wait_for(sent, timeout=30, message="the message to be sent after a retry")
    processes.stop_all()  # every line written

    lines = [line for name in ("web", "worker") for line in (tmp_path / f"{name}.log").read_text().splitlines()]
    records = [json.loads(line) for line in lines if line.strip()]  # each line is one JSON object
    text = "\n".join(lines)
    for secret in ("hidden@example.com", "Hidden", "BODY-MARKER", "HTML-MARKER", key):
        assert secret not in text
    requests = [r for r in records if r["logger"] == "emailsvc.request"]
    assert all(REQUEST_FIELDS <= set(r) for r in requests)
    sent = [r for r in requests if r["route"] == "/email/send"]
    assert sent[0]["status"] == 201 and sent[0]["project"] and sent[0]["key_id"] and sent[0]["duration_ms"] > 0
    assert {r["route"] for r in requests} >= {"/suppressions/<path:address>", "/email/logs", "unmatched"}
    attempts = [r for r in records if r.get("email_id") == log["id"]]
    assert all(DELIVERY_FIELDS <= set(r) for r in attempts)
    assert [(r["attempt"], r["outcome"], r["smtp_code"]) for r in attempts] == [(1, "deferred", 450), (2, "sent", 250)]
    assert web.returncode == 0 and worker.returncode == 0
    assert any(r["logger"].startswith("gunicorn") for r in records)  # gunicorn's own lines too
    assert any(r["logger"].startswith("rq.") for r in records)  # and RQ's
