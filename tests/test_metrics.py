"""GET /metrics: who may read it, what it counts, that counts add up across real processes, and no unbounded label."""

import hashlib
import hmac
import json
import time
import urllib.request
from datetime import UTC, datetime, timedelta

import pytest
from conftest import PYTHON, TEST_REDIS_URL, answers, free_port, http, make_key, run_jobs, run_webhooks, wait_for
from conftest import send_ok as send
from prometheus_client.parser import text_string_to_metric_families
from redis import Redis

from emailsvc.metrics import REGISTRY, reply_labels
from emailsvc.reconciler import reconcile

TOKEN = "scrape-token-0123456789abcdef"
RELAY_SECRET = "relay-secret"


@pytest.fixture
def settings(settings):
    return {**settings, "METRICS_TOKEN": TOKEN, "WEBHOOK_SECRET": RELAY_SECRET,
            "RATELIMIT_UNKNOWN_KEYS": "3 per minute"}  # fmt: skip


@pytest.fixture
def operator(app):
    return {"Authorization": f"Bearer {make_key(app, scopes=('operator',), name='prometheus')}"}


def parse(text):
    """Return {(sample name, frozenset of labels): value} of a Prometheus text body."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def scrape(client, headers):
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.mimetype == "text/plain"
    return parse(response.get_data(as_text=True))


def value(samples, name, **labels):
    return samples.get((name, frozenset(labels.items())), 0.0)


def grown(before, after, name, **labels):
    return value(after, name, **labels) - value(before, name, **labels)


def project(samples, name):
    """The `project` label (an id) of the project called `name`, from emailsvc_project_info."""
    [found] = [dict(labels)["project"] for metric, labels in samples
               if metric == "emailsvc_project_info" and dict(labels)["name"] == name]  # fmt: skip
    return found


def test_an_operator_key_or_the_token_reads_it_and_project_keys_may_not(client, app, auth, operator):
    assert client.get("/metrics").status_code == 401
    response = client.get("/metrics", headers=auth)
    assert response.status_code == 403 and response.get_json()["error"]["code"] == "forbidden"
    reader = {"Authorization": f"Bearer {make_key(app, scopes=('read',))}"}
    assert client.get("/metrics", headers=reader).status_code == 403
    assert client.get("/metrics", headers=operator).status_code == 200
    assert client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    assert client.get("/metrics", headers={"X-API-Key": TOKEN}).status_code == 200
    # The operator key reads no project's mail.
    assert client.get("/email/logs", headers=operator).status_code == 403


def test_guessing_the_token_is_limited_like_guessing_keys(client):
    wrong = {"Authorization": f"Bearer {TOKEN[:-1]}x"}
    assert [client.get("/metrics", headers=wrong).status_code for _ in range(3)] == [401, 401, 401]
    refused = client.get("/metrics", headers=wrong)
    assert refused.status_code == 429 and refused.headers["Retry-After"]
    assert client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 429  # that address


def test_without_a_token_setting_only_an_operator_key_reads_it(settings, operator):
    from emailsvc import create_app

    client = create_app({**settings, "METRICS_TOKEN": ""}).test_client()
    assert client.get("/metrics", headers={"Authorization": "Bearer "}).status_code == 401
    assert client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 401
    assert client.get("/metrics", headers=operator).status_code == 200


def test_the_log_totals_per_project_and_what_waits(client, app, auth, operator):
    other = {"Authorization": f"Bearer {make_key(app, project='shop')}"}
    for _ in range(3):
        send(client, auth)
    send(client, other)
    send(client, auth, send_at=(datetime.now(UTC) + timedelta(hours=1)).isoformat())
    before = scrape(client, operator)
    default, shop = project(before, "default"), project(before, "shop")
    assert value(before, "emailsvc_messages_accepted_total", project=default) == 4
    assert value(before, "emailsvc_messages_accepted_total", project=shop) == 1
    assert value(before, "emailsvc_messages_waiting", project=default, status="PENDING") == 3
    assert value(before, "emailsvc_messages_waiting", project=default, status="SCHEDULED") == 1
    assert value(before, "emailsvc_queue_depth", queue="email") == 4
    assert value(before, "emailsvc_queue_depth", queue="scheduled") == 1
    assert value(before, "emailsvc_queue_oldest_job_age_seconds", queue="email") >= 0
    assert value(before, "emailsvc_backend_up", backend="postgresql") == 1
    run_jobs(app)
    after = scrape(client, operator)
    assert value(after, "emailsvc_messages_sent_total", project=default) == 3
    assert value(after, "emailsvc_messages_sent_total", project=shop) == 1
    assert value(after, "emailsvc_messages_waiting", project=default, status="PENDING") == 0
    assert value(after, "emailsvc_queue_depth", queue="email") == 0


def test_attempts_by_outcome_and_reply_class_and_requests_by_route(client, app, auth, operator, smtp):
    before = scrape(client, operator)
    smtp.refused_recipients["nobody@example.com"] = "550 5.1.1 <nobody@example.com>: no such user"
    send(client, auth)
    send(client, auth, to="nobody@example.com")
    smtp.data_replies.append("451 4.7.1 try later")
    send(client, auth)
    run_jobs(app)
    client.get("/nowhere/alice@example.com", headers=auth)
    after = scrape(client, operator)

    def grew(name, **labels):
        return grown(before, after, name, **labels)

    assert grew("emailsvc_send_attempts_total", outcome="sent", reply_class="2", enhanced_status="2.0") == 2
    assert grew("emailsvc_send_attempts_total", outcome="failed", reply_class="5", enhanced_status="5.1") == 1
    assert grew("emailsvc_send_attempts_total", outcome="deferred", reply_class="4", enhanced_status="4.7") == 1
    assert grew("emailsvc_smtp_send_duration_seconds_count", outcome="sent") == 2
    requests = "emailsvc_http_request_duration_seconds_count"
    assert grew(requests, route="/email/send", method="POST", status="201") == 3
    assert grew(requests, route="unmatched", method="GET", status="404") == 1
    assert value(after, "emailsvc_messages_failed_total", project=project(after, "default")) == 1


def test_no_label_holds_an_address_a_path_or_an_id(client, app, auth, operator, smtp):
    email_id = send(client, auth, to="Alice <alice.secret@example.com>")
    smtp.refused_recipients["bob.secret@example.com"] = "550 5.1.1 <bob.secret@example.com> unknown"
    send(client, auth, to="bob.secret@example.com")
    run_jobs(app)
    client.get("/email/logs?to=alice.secret@example.com", headers=auth)
    client.delete("/suppressions/bob.secret@example.com", headers=auth)
    client.get(f"/email/logs/{email_id}", headers=auth)
    client.open("/alice.secret@example.com", method="BREW", headers=auth)
    text = client.get("/metrics", headers=operator).get_data(as_text=True)
    assert "secret" not in text and email_id not in text and "BREW" not in text
    assert 'route="/suppressions/<path:address>"' in text and 'route="/email/logs/<email_id>"' in text
    assert 'method="other"' in text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            assert all("@" not in label for label in sample.labels.values()), sample


def test_every_counted_metric_has_labels_so_none_is_counted_before_its_process_chose_files():
    for family in REGISTRY.collect():
        assert family.name.startswith("emailsvc_")
    assert all(metric._labelnames for metric in REGISTRY._collector_to_names)


@pytest.mark.parametrize(
    "code, enhanced, labels",
    [(250, "2.0.0", ("2", "2.0")), (550, "5.1.1", ("5", "5.1")), (451, None, ("4", "none")),
     (None, None, ("none", "none")), (-1, None, ("none", "none")), (554, "5.99.1", ("5", "none"))],
)  # fmt: skip
def test_reply_labels_are_a_class_and_a_known_subject(code, enhanced, labels):
    assert reply_labels(code, enhanced) == labels


def test_webhook_outcomes_bounces_and_the_reconcilers_recoveries(client, app, auth, operator, receiver):
    before = scrape(client, operator)
    endpoint = {"url": receiver.url, "events": ["email.sent"]}
    assert client.post("/webhooks", json=endpoint, headers=auth).status_code == 201
    email_id = send(client, auth)
    run_jobs(app)
    run_webhooks(app)
    raw = json.dumps({"id": email_id, "event": "bounced", "detail": "550 5.1.1 no such user"}).encode()
    t = int(time.time())
    sig = hmac.new(RELAY_SECRET.encode(), f"{t}.".encode() + raw, hashlib.sha256).hexdigest()
    headers = {"Content-Type": "application/json", "X-Webhook-Signature": f"t={t},v1={sig}"}
    assert client.post("/email/webhooks/delivery", data=raw, headers=headers).get_json()["outcome"] == "applied"
    lost = send(client, auth, to="carol@example.com")
    Redis.from_url(TEST_REDIS_URL).flushdb()  # its job is gone
    with app.app_context():
        assert reconcile(0)["requeued"] == 1
    after = scrape(client, operator)
    assert grown(before, after, "emailsvc_webhook_deliveries_total", outcome="delivered") == 1
    assert grown(before, after, "emailsvc_messages_bounced_total", project=project(after, "default")) == 1
    assert grown(before, after, "emailsvc_reconciler_recoveries_total", kind="requeued") == 1
    assert lost


def test_a_backend_that_is_down_is_left_out_and_said_so(settings, operator):
    from emailsvc import create_app

    client = create_app({**settings, "REDIS_URL": "redis://127.0.0.1:1/0"}).test_client()
    samples = scrape(client, operator)
    assert value(samples, "emailsvc_backend_up", backend="redis") == 0
    assert value(samples, "emailsvc_backend_up", backend="postgresql") == 1
    assert not any(name == "emailsvc_queue_depth" for name, _ in samples)


def _scrape_http(base):
    request = urllib.request.Request(base + "/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return parse(response.read().decode())


def test_counts_add_up_across_gunicorn_workers_and_worker_processes(app, processes, tmp_path, smtp):
    key = make_key(app)
    port, metrics_dir = free_port(), tmp_path / "metrics"
    processes.env.update(METRICS_TOKEN=TOKEN, WORKER_PROCESSES="2", SMTP_CONCURRENCY="2", WEB_CONCURRENCY="2")
    # Each gunicorn worker exits after 3 requests: the sends are answered by several processes, some gone.
    processes.start(PYTHON, "-m", "gunicorn", "-c", "gunicorn.conf.py", "--bind", f"127.0.0.1:{port}",
                    "--max-requests", "3", "wsgi:app", name="web")  # fmt: skip
    processes.start(PYTHON, "worker.py", name="worker")
    base, auth = f"http://127.0.0.1:{port}", {"Authorization": f"Bearer {key}"}
    wait_for(lambda: answers(base + "/healthz"), message="the API to answer")
    sends = 12
    for n in range(sends):
        body = {"to": f"r{n}@example.com", "subject": "Hi", "body": "x"}
        assert http("POST", base + "/email/send", body, auth)[0] == 201
    wait_for(lambda: len(smtp.received) == sends, timeout=30, message="every message to reach the relay")

    def settled():
        samples = _scrape_http(base)
        return samples if value(samples, "emailsvc_send_attempts_total", outcome="sent", reply_class="2",
                                enhanced_status="2.0") == sends else None  # fmt: skip

    samples = wait_for(settled, timeout=30, message="the attempts to be counted")
    requests = "emailsvc_http_request_duration_seconds_count"
    assert value(samples, requests, route="/email/send", method="POST", status="201") == sends
    assert value(samples, "emailsvc_smtp_send_duration_seconds_count", outcome="sent") == sends
    assert value(samples, "emailsvc_messages_sent_total", project=project(samples, "default")) == sends
    web_files = {path.name.split("_")[-1] for path in metrics_dir.glob("*_web-*.db")}
    worker_files = {path.name.split("_")[-1] for path in metrics_dir.glob("*_worker-*.db")}
    assert len(web_files) >= sends // 3 and len(worker_files) >= 1  # processes that answered, exited ones included
