"""The real processes together: gunicorn, worker.py and the development SMTP sink, over HTTP."""

import email
from email import policy

from conftest import PYTHON, answers, free_port, http, listens, make_key, wait_for


def test_send_over_http_lands_in_the_sink_and_reads_back_sent(app, processes, tmp_path):
    key = make_key(app)
    api, smtp_port, mail_dir = free_port(), free_port(), tmp_path / "mail"
    processes.env.update(SMTP_PORT=str(smtp_port), WORKER_PROCESSES="2")
    processes.start(PYTHON, "-m", "emailsvc.devsmtp", "--port", str(smtp_port), "--dir", str(mail_dir), name="sink")
    processes.start(PYTHON, "-m", "gunicorn", "-c", "gunicorn.conf.py", "--bind", f"127.0.0.1:{api}",
                    "wsgi:app", name="web")  # fmt: skip
    processes.start(PYTHON, "worker.py", name="worker")
    base, auth = f"http://127.0.0.1:{api}", {"Authorization": f"Bearer {key}"}
    wait_for(lambda: answers(base + "/readyz"), message="the API to be ready")
    wait_for(lambda: listens(smtp_port), message="the sink to listen")

    status, headers, log = http("POST", base + "/email/send", {"to": "Bob <bob@example.com>",
                                "subject": "Ça marche", "body": "Hello", "html": "<p>Hello</p>"}, auth)  # fmt: skip
    assert status == 201 and log["status"] == "PENDING"
    assert headers["X-Request-ID"]

    sent = wait_for(lambda: _sent(base, log["id"], auth), message="the log to read SENT")
    assert sent["attempts"] == 1 and sent["sent_at"]
    [eml] = wait_for(lambda: list(mail_dir.glob("*.eml")), message="a .eml in the sink directory")
    msg = email.message_from_bytes(eml.read_bytes(), policy=policy.default)
    assert msg["Message-ID"] == log["message_id"]
    assert msg["Subject"] == "Ça marche" and msg.get_content_type() == "multipart/alternative"
    assert "stored as" in sent["events"][-1]["detail"]


def _sent(base, email_id, auth):
    status, _, body = http("GET", f"{base}/email/logs/{email_id}", headers=auth)
    return body if status == 200 and body["status"] == "SENT" else None
