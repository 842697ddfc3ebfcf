"""Attachments and inline images on send and batch: the MIME tree, the limits, and content stored once."""

import base64
import hashlib
import re

import psycopg2
import pytest
from conftest import make_key, run_jobs

from emailsvc import create_app

# A real (tiny) PDF and PNG: the bytes that arrive must be these.
PDF = b"%PDF-1.4\n1 0 obj<</Type/Catalog>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n" + bytes(range(256))
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)


def b64(data):
    return base64.b64encode(data).decode()


def invoice(**changes):
    return {
        "to": "alice@example.com",
        "subject": "Your invoice",
        "body": "Your invoice is attached.",
        "html": '<p>Thanks!</p><img src="cid:logo@shop">',
        "attachments": [
            {"filename": "invoice.pdf", "content": b64(PDF)},
            {"filename": "logo.png", "content": b64(PNG), "content_id": "logo@shop"},
        ],
        **changes,
    }


def sql(database, query, *args):
    with psycopg2.connect(database) as conn, conn.cursor() as cur:
        cur.execute(query, args)
        return cur.fetchall()


def test_a_pdf_and_an_inline_png_arrive_as_the_right_mime_tree_with_the_same_bytes(client, auth, app, smtp):
    log = client.post("/email/send", json=invoice(), headers=auth).get_json()
    assert log["attachments"] == [
        {"filename": "invoice.pdf", "content_type": "application/pdf", "size": len(PDF), "content_id": None},
        {"filename": "logo.png", "content_type": "image/png", "size": len(PNG), "content_id": "logo@shop"},
    ]
    run_jobs(app)
    [(_, _, message)] = smtp.received
    tree = [(part.get_content_type(), part.get_filename()) for part in message.walk()]
    assert tree == [
        ("multipart/mixed", None),
        ("multipart/alternative", None),
        ("text/plain", None),
        ("multipart/related", None),
        ("text/html", None),
        ("image/png", "logo.png"),
        ("application/pdf", "invoice.pdf"),
    ]
    parts = {part.get_content_type(): part for part in message.walk()}
    assert (
        parts["application/pdf"].get_content() == PDF
        and parts["application/pdf"].get_content_disposition() == "attachment"
    )
    assert parts["image/png"].get_content() == PNG and parts["image/png"]["Content-ID"] == "<logo@shop>"
    assert parts["image/png"].get_content_disposition() == "inline"
    stored = client.get(f"/email/logs/{log['id']}", headers=auth).get_json()
    assert stored["status"] == "SENT" and stored["attachments"] == log["attachments"]
    listed = client.get("/email/logs", headers=auth).get_json()["items"][0]
    assert listed["attachments"] == log["attachments"] and PDF.hex() not in str(listed)


def test_content_is_stored_once_per_project_and_never_shared_across_projects(client, auth, app, database):
    other = {"X-API-Key": make_key(app, project="other")}
    for headers in (auth, auth, other):
        assert client.post("/email/send", json=invoice(), headers=headers).status_code == 201
    batch = {"messages": [invoice(to=f"user{n}@example.com") for n in range(3)]}
    assert client.post("/email/batch", json=batch, headers=auth).status_code == 201
    contents = sql(database, "SELECT project_id, encode(sha256, 'hex'), length(content) FROM attachment_contents")
    assert len(contents) == 4  # two files in each of two projects
    assert {(sha, size) for _, sha, size in contents} == {
        (hashlib.sha256(PDF).hexdigest(), len(PDF)), (hashlib.sha256(PNG).hexdigest(), len(PNG))}  # fmt: skip
    assert sql(database, "SELECT count(*) FROM email_attachments") == [(12,)]
    assert '"content":' not in sql(database, "SELECT attachments::text FROM emails LIMIT 1")[0][0]


def test_a_non_ascii_filename_is_rfc_2231_encoded(client, auth, app, smtp):
    body = invoice(attachments=[{"filename": "résumé 2026.pdf", "content": b64(PDF)}], html=None)
    assert client.post("/email/send", json=body, headers=auth).status_code == 201
    run_jobs(app)
    [(_, _, message)] = smtp.received
    [attachment] = list(message.iter_attachments())
    assert attachment.get_filename() == "résumé 2026.pdf" and attachment.get_content() == PDF
    assert "filename*=utf-8''r%C3%A9sum%C3%A9%202026.pdf" in smtp.raw[0].decode()


def encoded_word(text):
    return f"=?utf-8?b?{b64(text.encode())}?="


@pytest.mark.parametrize(
    "attachment, field",
    [
        ({"filename": "a.pdf", "content": "not base64!"}, "content"),
        ({"filename": "a.pdf", "content": b64(PDF)[:-1]}, "content"),
        ({"filename": "a.pdf", "content": "QUJD\nREVG"}, "content"),
        ({"filename": "../../etc/passwd", "content": b64(PDF)}, "filename"),
        ({"filename": "C:\\Windows\\a.pdf", "content": b64(PDF)}, "filename"),
        ({"filename": "a\r\nContent-Type: text/html.pdf", "content": b64(PDF)}, "filename"),
        ({"filename": "a\u2028b.pdf", "content": b64(PDF)}, "filename"),
        ({"filename": encoded_word("a\r\nBcc: x@evil.example.pdf"), "content": b64(PDF)}, "filename"),
        ({"filename": encoded_word("../a.pdf"), "content": b64(PDF)}, "filename"),
        ({"filename": "utf-8''..%2F..%2Fa.pdf", "content": b64(PDF)}, "filename"),
        ({"filename": "utf-8''a%0D%0Ab.pdf", "content": b64(PDF)}, "filename"),
        ({"filename": "é" * 128 + ".pdf", "content": b64(PDF)}, "filename"),
        ({"filename": "", "content": b64(PDF)}, "filename"),
        ({"filename": "setup.exe", "content": b64(PDF)}, "filename"),
        ({"filename": "SETUP.EXE. ", "content": b64(PDF)}, "filename"),
        ({"filename": "invoice.pdf.js", "content": b64(PDF)}, "filename"),
        ({"filename": "run.PS1", "content": b64(PDF)}, "filename"),
        ({"filename": encoded_word("run.bat"), "content": b64(PDF)}, "filename"),
        ({"filename": "utf-8''run%2Evbs", "content": b64(PDF)}, "filename"),
        ({"filename": "a.pdf", "content": b64(PDF), "content_type": "pdf"}, "content_type"),
        ({"filename": "a.pdf", "content": b64(PDF), "content_type": "text/html\r\nX: y"}, "content_type"),
        ({"filename": "a.png", "content": b64(PNG), "content_id": "<logo>"}, "content_id"),
        ({"filename": "a.png", "content": b64(PNG), "content_id": "a b"}, "content_id"),
        ({"filename": "a.pdf"}, "content"),
        ({"content": b64(PDF)}, "filename"),
    ],
)
def test_every_attachment_limit_is_a_422_naming_the_attachment(client, auth, database, attachment, field):
    body = invoice(attachments=[{"filename": "ok.pdf", "content": b64(PDF)}, attachment])
    response = client.post("/email/send", json=body, headers=auth)
    assert response.status_code == 422
    assert field in response.get_json()["error"]["details"]["attachments"]["1"]
    assert sql(database, "SELECT count(*) FROM emails") == [(0,)]


def test_at_most_20_attachments_and_a_message_within_max_message_bytes(settings, database):
    app = create_app({**settings, "MAX_MESSAGE_BYTES": str(200 * 1024)})
    client, auth = app.test_client(), {"X-API-Key": make_key(app)}
    many = [{"filename": f"f{n}.pdf", "content": b64(PDF)} for n in range(21)]
    refused = client.post("/email/send", json=invoice(attachments=many), headers=auth)
    assert refused.status_code == 422 and "attachments" in refused.get_json()["error"]["details"]
    assert client.post("/email/send", json=invoice(attachments=many[:20]), headers=auth).status_code == 201
    big = [{"filename": "big.bin", "content": b64(b"\x00" * 150 * 1024)}]
    too_big = client.post("/email/send", json=invoice(attachments=big), headers=auth)
    assert too_big.status_code == 422 and "MAX_MESSAGE_BYTES" in str(too_big.get_json()["error"]["details"])
    batch = client.post("/email/batch", json={"messages": [invoice(), invoice(attachments=big)]}, headers=auth)
    assert batch.status_code == 422 and list(batch.get_json()["error"]["details"]["messages"]) == ["1"]
    assert sql(database, "SELECT count(*) FROM emails") == [(1,)]


def test_a_dry_run_with_attachments_shows_the_message_as_sent(client, auth, app, smtp):
    preview = client.post("/email/send?dry_run=true", json=invoice(), headers=auth).get_json()
    assert client.post("/email/send", json=invoice(), headers=auth).status_code == 201
    run_jobs(app)

    def normalised(text):
        text = re.sub(r"^(Date|Message-ID): .*\r\n", "", text, flags=re.MULTILINE)
        for n, boundary in enumerate(re.findall(r'boundary="([^"]+)"', text)):
            text = text.replace(boundary, f"B{n}")
        return text

    assert normalised(smtp.raw[0].decode()) == normalised(preview["mime"])
    assert b64(PNG)[:76] in preview["mime"]  # base64 lines are 76 characters
