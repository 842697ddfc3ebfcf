"""The operator's page through Flask's test client: sign-in, sessions, CSRF, scoping, headers and HTML errors.

What a browser must show (the preview's sandbox, the forms) is in test_ui_browser.py.
"""

import base64
import re
from email.message import EmailMessage

import pytest
from conftest import make_key, run_jobs, send_ok

from emailsvc import create_app
from emailsvc.queries.api_keys import revoke_api_key
from emailsvc.services import get_services

TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf(client, path="/ui/sign-in"):
    """The CSRF token a page of the session holds in its forms."""
    return TOKEN.search(client.get(path).get_data(as_text=True)).group(1)


def sign_in(client, key, next_path=""):
    return client.post("/ui/sign-in", data={"key": key, "csrf_token": csrf(client), "next": next_path})


@pytest.fixture
def key(app):
    return make_key(app)


@pytest.fixture
def signed_in(app, key):
    browser = app.test_client()
    assert sign_in(browser, key).status_code == 302
    return browser


def test_signed_out_pages_lead_to_sign_in_and_back(app, client, key):
    response = client.get("/ui/log?status=SENT")
    assert response.status_code == 302 and response.location == "/ui/sign-in?next=/ui/log?status%3DSENT"
    response = sign_in(client, key, "/ui/log?status=SENT")
    assert response.status_code == 302 and response.location == "/ui/log?status=SENT"
    assert client.get("/ui/log").status_code == 200


def test_sign_in_never_sends_you_to_another_site(client, key):
    for target in ("//evil.example/", "https://evil.example/", "/\\evil.example", "/email/logs"):
        assert sign_in(client, key, target).location == "/ui/"


def test_the_cookie_is_signed_httponly_strict_and_holds_no_key(client, key):
    response = sign_in(client, key)
    [cookie] = [c for c in response.headers.getlist("Set-Cookie") if c.startswith("emailsvc_ui=")]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/ui" in cookie
    assert key not in cookie and key[4:20] not in cookie


def test_a_wrong_or_send_only_key_is_refused_and_guesses_count_as_unknown_keys(app, client):
    assert sign_in(client, "esk_" + "x" * 43).status_code == 401
    send_only = make_key(app, scopes=("send",))
    response = sign_in(client, send_only)
    assert response.status_code == 403 and "read" in response.get_data(as_text=True)
    assert client.get("/ui/log").status_code == 302


def test_a_post_without_the_sessions_token_is_refused(signed_in, app, key):
    with app.app_context(), get_services().db.cursor() as cur:
        cur.execute("INSERT INTO suppressions (project_id, address, reason) SELECT id, 'x@example.com', 'manual' "
                    "FROM projects")  # fmt: skip
    for form in ({"address": "x@example.com"}, {"address": "x@example.com", "csrf_token": "forged"}):
        response = signed_in.post("/ui/suppressions/remove", data=form)
        assert response.status_code == 403 and response.mimetype == "text/html"
        assert "expired" in response.get_data(as_text=True)
    assert "x@example.com" in signed_in.get("/ui/suppressions").get_data(as_text=True)
    # and a sign-in form posted from elsewhere (no session, no token) is refused too
    assert app.test_client().post("/ui/sign-in", data={"key": key}).status_code == 403


def test_a_revoked_key_is_signed_out_at_its_next_request(signed_in, app):
    assert signed_in.get("/ui/log").status_code == 200
    with app.app_context(), get_services().db.cursor() as cur:
        cur.execute("SELECT id FROM api_keys")
        revoke_api_key(cur, cur.fetchone()["id"])
    assert signed_in.get("/ui/log").status_code == 302


def test_another_projects_message_is_not_found_on_the_page(app, signed_in, auth):
    email_id = send_ok(app.test_client(), auth)
    other = app.test_client()
    sign_in(other, make_key(app, project="other"))
    for path in (f"/ui/log/{email_id}", f"/ui/log/{email_id}/preview", "/ui/log/not-a-uuid"):
        response = other.get(path)
        assert response.status_code == 404 and response.mimetype == "text/html"
        assert "No email with this id" in response.get_data(as_text=True)
    assert email_id not in other.get("/ui/log").get_data(as_text=True)
    assert email_id in signed_in.get("/ui/log").get_data(as_text=True)


def test_every_page_carries_strict_headers_and_the_preview_its_own(app, signed_in, auth, smtp):
    email_id = send_ok(app.test_client(), auth, html="<p>Hi</p><script>alert(1)</script>")
    run_jobs(app)
    for path in ("/ui/log", f"/ui/log/{email_id}", "/ui/webhooks", "/ui/suppressions", "/ui/nowhere"):
        response = signed_in.get(path)
        csp = response.headers["Content-Security-Policy"]
        assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp and "script-src" not in csp, path
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Referrer-Policy"] == "no-referrer" and response.headers["Cache-Control"] == "no-store"
    preview = signed_in.get(f"/ui/log/{email_id}/preview")
    assert preview.get_data(as_text=True) == "<p>Hi</p><script>alert(1)</script>"
    assert preview.headers["Content-Security-Policy"].startswith("sandbox; default-src 'none'; img-src data: cid:")
    assert preview.headers["X-Frame-Options"] == "SAMEORIGIN"


def test_the_text_body_and_subject_are_escaped(app, signed_in, auth):
    email_id = send_ok(app.test_client(), auth, subject="<b>bold</b>", body="<script>x()</script>")
    page = signed_in.get(f"/ui/log/{email_id}").get_data(as_text=True)
    assert "<script>x()" not in page and "&lt;script&gt;x()&lt;/script&gt;" in page
    assert "<b>bold</b>" not in page


def test_the_log_filters_and_pages_like_the_api(app, signed_in, auth):
    client = app.test_client()
    ids = [send_ok(client, auth, to=f"user{n}@example.com", subject=f"Number {n}") for n in range(30)]
    page = signed_in.get("/ui/log?status=&to=user7%40example.com&from=").get_data(as_text=True)
    assert ids[7] in page and ids[8] not in page
    first = signed_in.get("/ui/log").get_data(as_text=True)
    assert ids[29] in first and ids[0] not in first
    [older] = re.findall(r'href="(/ui/log\?cursor=[^"]+)"', first)
    assert ids[0] in signed_in.get(older.replace("&amp;", "&")).get_data(as_text=True)
    bad = signed_in.get("/ui/log?to=not-an-address&created_after=yesterday")
    assert bad.status_code == 400 and "created_after" in bad.get_data(as_text=True)


def test_queues_are_for_an_operator_key_only(app, signed_in, auth):
    send_ok(app.test_client(), auth)  # a job on the queue `email` of the app's own Redis
    response = signed_in.get("/ui/queues/")
    assert response.status_code == 403 and "operator key" in response.get_data(as_text=True)
    assert app.test_client().get("/ui/queues/").status_code == 302
    operator = app.test_client()
    sign_in(operator, make_key(app, scopes=("operator",)))
    page = operator.get("/ui/queues/")
    assert page.status_code == 200 and "email" in operator.get("/ui/queues/0/data/queues.json").get_data(as_text=True)
    assert "'unsafe-inline'" in page.headers["Content-Security-Policy"]
    assert operator.get("/ui/log").status_code == 403  # an operator key reads no project's mail


def test_without_secret_key_the_page_is_off_and_the_api_keeps_json_errors(settings, client):
    app = create_app({**settings, "SECRET_KEY": ""})
    assert app.test_client().get("/ui/sign-in").status_code == 404
    response = client.get("/email/logs/nope", headers={"Authorization": "Bearer esk_" + "x" * 43})
    assert response.status_code == 401 and response.is_json


def test_dev_mail_lists_and_shows_the_sinks_files_only(settings, tmp_path, key):
    (tmp_path / "20261203T101500-abcd1234.eml").write_bytes(
        b"X-Envelope-From: a@example.com\r\nFrom: a@example.com\r\nTo: b@example.com\r\n"
        b"Subject: =?utf-8?q?Caf=C3=A9?=\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>Hello</p>\r\n"
    )
    (tmp_path / "secret.txt").write_text("not mail")
    (tmp_path / "link.eml").symlink_to(tmp_path / "secret.txt")  # the sink writes files, never links
    app = create_app({**settings, "DEV_MAIL_DIR": str(tmp_path)})
    browser = app.test_client()
    sign_in(browser, key)
    listing = browser.get("/ui/dev/mail").get_data(as_text=True)
    assert "Café" in listing and "secret.txt" not in listing and "link.eml" not in listing
    assert browser.get("/ui/dev/mail/20261203T101500-abcd1234.eml/preview").get_data(as_text=True) == "<p>Hello</p>\r\n"
    for name in ("secret.txt", "..%2Fsecret.txt", "%2Fetc%2Fpasswd", "nope.eml", "link.eml"):
        assert browser.get(f"/ui/dev/mail/{name}").status_code == 404
    off = create_app(settings)  # no DEV_MAIL_DIR
    other = off.test_client()
    sign_in(other, key)
    assert other.get("/ui/dev/mail").status_code == 404


def test_a_database_outage_is_an_html_page_not_a_traceback(settings):
    down = create_app({**settings, "DATABASE_URL": "postgresql://postgres@127.0.0.1:1/none"}).test_client()
    response = sign_in(down, "esk_" + "x" * 43)
    assert response.status_code == 503 and response.mimetype == "text/html"
    assert "database is unavailable" in response.get_data(as_text=True) and response.headers["Retry-After"]


def test_a_logged_message_and_a_caught_one_show_their_attachments_and_bodies_alike(settings, tmp_path, key):
    pdf = b"%PDF-1.4\n"
    caught = EmailMessage()
    caught["From"], caught["To"], caught["Subject"] = "a@example.com", "b@example.com", "Invoice"
    caught.set_content("Attached.")
    caught.add_attachment(pdf, "application", "pdf", filename="invoice.pdf")
    (tmp_path / "20261203T101500-abcd1234.eml").write_bytes(caught.as_bytes())
    app = create_app({**settings, "DEV_MAIL_DIR": str(tmp_path)})
    browser = app.test_client()
    sign_in(browser, key)
    attachment = {"filename": "invoice.pdf", "content": base64.b64encode(pdf).decode()}
    email_id = send_ok(browser, {"Authorization": f"Bearer {key}"}, body="Attached.", attachments=[attachment])
    pages = [browser.get(path).get_data(as_text=True)
             for path in (f"/ui/log/{email_id}", "/ui/dev/mail/20261203T101500-abcd1234.eml")]  # fmt: skip
    for page in pages:
        assert "<li>invoice.pdf (application/pdf, 9 bytes)</li>" in page
        assert re.search(r'<pre class="text-body">Attached.\s*</pre>', page)
        assert '<iframe class="preview" sandbox src="' in page
