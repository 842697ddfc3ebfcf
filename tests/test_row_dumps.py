"""The log's rows are dumped exactly as marshmallow dumps them (emailsvc/row_dumps.py), whatever they hold."""

import base64
from datetime import UTC, datetime, timedelta

from conftest import run_jobs
from marshmallow import Schema

from emailsvc.log_pages import read_message
from emailsvc.row_dumps import RowSchema
from emailsvc.schemas import BatchLogSchema, LogPaginationSchema, LogWithEventsSchema
from emailsvc.services import get_services

PDF = base64.b64encode(b"%PDF-1.4 a receipt").decode()


def marshmallows(schema, obj, monkeypatch):
    """What marshmallow alone makes of `obj`, nested schemas included."""
    with monkeypatch.context() as patched:
        patched.setattr(RowSchema, "dump", Schema.dump)
        return schema.dump(obj)


def test_every_kind_of_log_row_dumps_as_marshmallow_dumps_it(client, auth, app, smtp, monkeypatch):
    smtp.refused_recipients["gone@example.com"] = "550 5.1.1 No such user"
    later = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    bodies = [
        {"to": "a@example.com", "subject": "plain", "body": "b"},
        {"to": ["Bé <b@example.com>", "gone@example.com"], "cc": ["c@example.com"], "bcc": ["d@example.com"],
         "reply_to": "r@example.com", "subject": "Ünïcode", "body": "b", "html": "<p>b</p>",
         "metadata": {"order": "42", "note": "ß"},
         "attachments": [{"filename": "receipt.pdf", "content": PDF}]},
        {"to": "e@example.com", "subject": "later", "body": "b", "send_at": later},
    ]  # fmt: skip
    answers = [client.post("/email/send", json=body, headers=auth) for body in bodies]
    assert [a.status_code for a in answers] == [201] * 3, [(a.status_code, a.get_json().get("error")) for a in answers]
    ids = [a.get_json()["id"] for a in answers]
    run_jobs(app)
    schema = LogWithEventsSchema()
    assert schema._make_plan()  # rows take the short way
    with app.app_context():
        rows = [read_message(get_services(), 1, email_id) for email_id in ids]
    assert {row["status"] for row in rows} >= {"SENT", "SCHEDULED"} and any(row["recipients"] for row in rows)
    for row in rows:
        assert schema.dump(row) == marshmallows(schema, row, monkeypatch)
    batch = {"data": rows}
    assert BatchLogSchema().dump(batch) == marshmallows(BatchLogSchema(), batch, monkeypatch)


def test_a_row_without_some_field_is_dumped_as_marshmallow_dumps_it(monkeypatch):
    cursor_mode = {"limit": 10, "next_cursor": None}  # no page or total: left out, not null
    assert LogPaginationSchema().dump(cursor_mode) == marshmallows(LogPaginationSchema(), cursor_mode, monkeypatch)
    assert LogPaginationSchema().dump(cursor_mode) == cursor_mode
