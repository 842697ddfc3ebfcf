"""Header injection: hostile addresses, subjects and headers are refused and never reach the SMTP server."""

import psycopg2
import pytest
from conftest import TEST_REDIS_URL, run_jobs
from psycopg2.extras import Json
from redis import Redis
from rq import Queue

from emailsvc.header_safety import UnsafeMessage, check_serialised

VALID = {"to": "alice@example.com", "subject": "Hello", "body": "Hi"}
INJECTED = "x@evil.test"


ATTEMPTS = [
    {"subject": f"hi\r\nBcc: {INJECTED}"},
    {"subject": f"hi\nBcc: {INJECTED}"},
    {"subject": f"hi\rBcc: {INJECTED}"},
    {"subject": "hi\x00there"},
    {"subject": f"hi\u2028Bcc: {INJECTED}"},
    {"subject": f"hi\x85Bcc: {INJECTED}"},
    {"to": f"alice@example.com\r\nBcc: {INJECTED}"},
    {"to": [f"Alice\r\nBcc: {INJECTED} <alice@example.com>"]},
    {"to": f"alice@example.com, {INJECTED}"},
    {"to": f"alice@example.com\x00{INJECTED}"},
    {"cc": [f"c@example.com\nBcc: {INJECTED}"]},
    {"bcc": [f"b@example.com\r\n{INJECTED}"]},
    {"from": f"shop@example.com\r\nBcc: {INJECTED}"},
    {"from": f'"Shop\r\nBcc: {INJECTED}" <shop@example.com>'},
    {"reply_to": f"help@example.com\nBcc: {INJECTED}"},
    {"headers": {"X-Tag": f"a\r\nBcc: {INJECTED}"}},
    {"headers": {"X-Tag": f"a\u2029Bcc: {INJECTED}"}},
    {"headers": {f"X-Tag: a\r\nBcc: {INJECTED}\r\nX-B": "v"}},
    {"headers": {"X-Tag\x00": "v"}},
    {"headers": {"Bcc": INJECTED}},
    {"headers": {"bcc": INJECTED}},
    {"headers": {"To": INJECTED}},
    {"headers": {"From": INJECTED}},
    {"headers": {"Sender": INJECTED}},
    {"headers": {"Return-Path": INJECTED}},
    {"headers": {"Content-Type": "text/html"}},
    {"headers": {"Content-Transfer-Encoding": "8bit"}},
    {"headers": {"MIME-Version": "2.0"}},
    {"headers": {"Message-ID": "<spoofed@example.com>"}},
    {"headers": {"DKIM-Signature": "v=1"}},
]


@pytest.mark.parametrize("changes", ATTEMPTS)
def test_injection_attempts_are_refused_and_nothing_is_recorded_or_queued(client, auth, database, changes):
    response = client.post("/email/send", json={**VALID, **changes}, headers=auth)
    assert response.status_code == 422
    assert response.get_json()["error"]["code"] == "validation_error"
    with psycopg2.connect(database) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM emails")
        assert cur.fetchone()[0] == 0
    assert Queue("email", connection=Redis.from_url(TEST_REDIS_URL)).count == 0


def test_no_injection_attempt_reaches_the_smtp_server(client, auth, app, smtp):
    for changes in ATTEMPTS:
        assert client.post("/email/send", json={**VALID, **changes}, headers=auth).status_code == 422
    run_jobs(app)
    assert smtp.received == []


def test_an_accepted_message_reaches_exactly_its_recipients_with_only_its_headers(client, auth, app, smtp):
    body = {**VALID, "to": ['"Doe, Jane" <jane@example.com>'], "bcc": ["hidden@example.com"],
            "subject": "Ünïcode: Bcc: not-a-header@evil.test",
            "headers": {"X-Campaign": "nov; Bcc: y@evil.test"}}  # fmt: skip
    assert client.post("/email/send", json=body, headers=auth).status_code == 201
    run_jobs(app)
    [(_, recipients, msg)] = smtp.received
    assert sorted(recipients) == ["hidden@example.com", "jane@example.com"]
    assert msg["Subject"] == body["subject"] and msg["X-Campaign"] == "nov; Bcc: y@evil.test"
    assert msg["Bcc"] is None and msg["To"] == '"Doe, Jane" <jane@example.com>'
    assert "evil.test" not in " ".join(str(msg[h]) for h in ("To", "Cc", "From", "Reply-To"))


# RFC 2047 encoded words as Python's email package decodes them when the builder sets a header (see
# emailsvc/header_safety.py): each decodes to a line break or another control character.
ENCODED = [
    "=?utf-8?q?Invoice=0D=0AX-Injected:_yes=0D=0A=0D=0AINJECTED_BODY?=",  # the issue's own
    "=?UTF-8?Q?Invoice=0AX-Injected:_yes?=",  # letter case of charset and encoding
    "=?utf-8?b?SW52b2ljZQ0KWC1JbmplY3RlZDogeWVz?=",  # base64 of Invoice\r\nX-Injected: yes
    "=?iso-8859-1?q?Invoice=0D=0AX-Injected:_yes?=",
    "=?iso-8859-1?q?Invoice=85X-Injected:_yes?=",  # 0x85 in Latin-1 is NEL
    "=?utf-16?b?//4KAA==?=",  # UTF-16 LE with BOM: a lone LF
    "=?utf-16-be?b?AA0ACg==?=",  # CRLF in UTF-16 BE
    "=?utf-8?q?Invoice?= =?iso-8859-1?b?DQo=?= X-Injected: yes",  # adjacent words, mixed charsets
    "Invoice=?utf-8?q?=0D=0A?=X-Injected: yes",  # glued to text: still decoded
    "=?utf-8?q?a=0D.=0D=0Ab?=",  # bare CR . CR LF: SMTP smuggling
    "=?utf-8?q?Invoice=C2=85X-Injected:_yes?=",  # NEL
    "=?utf-8?q?Invoice=E2=80=A8X-Injected:_yes?=",  # U+2028
    "=?utf-8?q?Invoice=E2=80=A9?=",  # U+2029
    "=?utf-8?q?Invoice=00?=",  # NUL
    "=?utf-8?q?Invoice=1B[2J?=",  # ESC: a control character, not a break
    "=?iso-8859-1?q?=93Invoice=94?=",  # 0x93/0x94 in Latin-1 are C1 controls (cp1252's quotes)
    "=?utf-8?q?Invoice=C2=9B2J?=",  # CSI, the C1 form of ESC [
    "=?utf-8*en?q?Invoice=0AX-Injected:_yes?=",  # RFC 2231 language tag
    "=?x-no-such-charset?q?Invoice=0AX-Injected:_yes?=",  # an unknown charset still decodes
    "=?utf-8?q?=3D=3Futf-8=3Fq=3F=3D0A=3F=3D?=",  # decodes to an encoded LF: nested
]
ENCODED_NAMES = [
    "=?utf-8?q?Eve=0D=0ABcc:_x@evil.test?=",
    "=?utf-8?b?RXZlDQpCY2M6IHhAZXZpbC50ZXN0?=",
    '"=?utf-8?q?Eve=0ABcc:_x@evil.test?="',  # quoted: decoded all the same
    "=?utf-8?q?Eve=C2=85?=",
    "=?utf-8?q?Eve=E2=80=A8?=",
    "=?iso-8859-1?q?Eve=85?=",
    "=?utf-8?q?=3D=3Futf-8=3Fq=3F=3D0D=3D0A=3F=3D?=",  # nested: decoded again when the message is built
]
FORMS = (
    [({"subject": value}, "subject") for value in ENCODED]
    + [({"headers": {"X-Campaign": value}}, "headers") for value in ENCODED]
    + [({"headers": {"X-Campaign": "=?utf-8?q?a=0D=0AFrom:_ceo@bank.example?="}}, "headers")]
    + [({field: f"{name} <{field}@example.com>"}, field) for field in ("from", "reply_to") for name in ENCODED_NAMES]
    + [({field: [f"{name} <{field}@example.com>"]}, field) for field in ("to", "cc", "bcc") for name in ENCODED_NAMES]
    # Not a break, but what the email package can decode and then not write: the worker would fail.
    + [({"subject": "=?utf-8?q?=FF?= é"}, "subject"), ({"headers": {"X-Tag": "=??q?=FF?= é"}}, "headers"),
       ({"to": "=?unknown-8bit?q?=FF?= é <a@example.com>"}, "to")]
)  # fmt: skip


@pytest.mark.parametrize(("changes", "field"), FORMS)
def test_encoded_words_that_decode_to_control_characters_are_422_naming_the_field(client, auth, changes, field):
    response = client.post("/email/send", json={**VALID, **changes}, headers=auth)
    assert response.status_code == 422, response.get_json()
    assert field in response.get_json()["error"]["details"]


BENIGN = [  # encoded words that decode to plain text: accepted, and sent with exactly the headers asked for
    {"subject": "=?utf-8?q?Caf=C3=A9?= =?iso-8859-1?b?6Q==?=", "headers": {"X-Campaign": "=?utf-16?b?//5OAG8AdgA=?="}},
    {"subject": "=?utf-8?b?SW52b2ljZQ==?= no. 7", "to": ["=?utf-8?q?Jos=C3=A9?= <jose@example.com>"],
     "from": "=?iso-8859-1?q?Caf=E9?= <shop@example.com>", "reply_to": "=?utf-8?q?Help?= <help@example.com>"},
]  # fmt: skip


@pytest.mark.parametrize("changes", BENIGN)
def test_encoded_words_that_decode_to_text_are_sent_with_exactly_the_headers_asked_for(
    client, auth, app, smtp, changes
):
    body = {**VALID, "body": "the real body", **changes}
    assert client.post("/email/send", json=body, headers=auth).status_code == 201
    run_jobs(app)
    [(_, _, msg)] = smtp.received
    expected = {"from", "to", "subject", "date", "message-id", "content-type", "content-transfer-encoding",
                "mime-version", *(["reply-to"] if "reply_to" in body else []),
                *map(str.lower, body.get("headers", {}))}  # fmt: skip
    assert sorted(name.lower() for name in msg.keys()) == sorted(expected)
    assert msg.get_content().strip() == "the real body"
    assert not any(c in str(value) for value in msg.values() for c in "\r\n\x00\x85\u2028\u2029")


UNCHECKED_ROWS = [  # what the API now refuses, written straight into a waiting row
    ("subject", "=?utf-8?q?Invoice=0D=0AX-Injected:_yes=0D=0A=0D=0AINJECTED_BODY?="),
    ("subject", "=?utf-8?q?a=0D.=0D=0Ab?="),
    ("subject", "=?utf-8?q?a=E2=80=A8X-Injected:_yes?="),
    ("headers", {"X-Campaign": "=?utf-8?q?a=0D=0AFrom:_ceo@bank.example?="}),
    ("to_addrs", ["=?utf-8?q?=0D=0ABcc:_x@evil.test?= <a@example.com>"]),
    ("reply_to", "=?utf-8?q?Eve=C2=85?= <help@example.com>"),
]


@pytest.mark.parametrize(("column", "value"), UNCHECKED_ROWS)
def test_a_row_that_would_add_a_header_is_never_handed_to_smtp_and_ends_failed(client, auth, app, smtp, database,
                                                                               column, value):  # fmt: skip
    email_id = client.post("/email/send", json=VALID, headers=auth).get_json()["id"]
    with psycopg2.connect(database) as conn, conn.cursor() as cur:
        cur.execute(f"UPDATE emails SET {column} = %s WHERE id = %s", (Json(value) if column == "headers" else value,
                                                                       email_id))  # fmt: skip
    run_jobs(app)
    assert smtp.received == []
    log = client.get(f"/email/logs/{email_id}", headers=auth).get_json()
    assert log["status"] == "FAILED" and log["attempts"] == 1
    assert "could not be built" in log["error_message"]


CRAFTED = [  # serialised messages a buggy folder could produce, against the headers that were built
    b"Subject: a\r\nX-Injected: yes\r\nTo: b@example.com\r\n\r\nbody\r\n",  # an extra header
    b"Subject: a\r\n\r\nINJECTED\r\nTo: b@example.com\r\n\r\nbody\r\n",  # an early blank line: body starts
    b"Subject: a\nX-Injected: yes\r\nTo: b@example.com\r\n\r\nbody\r\n",  # a bare LF
    b"Subject: a\r.\r\nTo: b@example.com\r\n\r\nbody\r\n",  # a bare CR
    b"Subject: a\r\nTo: b@example.com\r\nbody\r\n",  # no blank line at all
    b"Subject: a\x00\r\nTo: b@example.com\r\n\r\nbody\r\n",  # NUL
]


@pytest.mark.parametrize("data", CRAFTED)
def test_the_serialised_check_refuses_anything_but_the_headers_built(data):
    with pytest.raises(UnsafeMessage):
        check_serialised(data, ["Subject", "To"])


def test_the_serialised_check_passes_folded_headers():
    check_serialised(b"Subject: a long\r\n subject\r\nTo: b@example.com\r\n\r\nbody\r\n", ["Subject", "To"])
