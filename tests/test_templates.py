"""Templates: create, version, preview, send by name, delete; per project; checked at accept."""

import pytest
from conftest import VALID_SEND, log_of, make_key, run_jobs

WELCOME = {"name": "welcome", "subject": "Welcome, {{ name }}", "body": "Hello {{ name }} from {{ shop }}",
           "html": "<p>Hello {{ name }}</p>"}  # fmt: skip


def create(client, auth, **changes):
    response = client.post("/templates", json={**WELCOME, **changes}, headers=auth)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def send(client, auth, **body):
    return client.post("/email/send", json={"to": "alice@example.com", **body}, headers=auth)


def test_create_version_read_and_list(client, auth):
    made = create(client, auth)
    assert made["version"] == 1 and made["variables"] == ["name", "shop"] and made["created_at"]
    assert client.post("/templates", json=WELCOME, headers=auth).get_json()["error"]["code"] == "template_exists"
    response = client.put("/templates/welcome", json={"subject": "Hi {{ name }}", "body": "v2"}, headers=auth)
    assert response.status_code == 200 and response.get_json()["version"] == 2
    assert response.get_json()["variables"] == ["name"]
    assert client.get("/templates/welcome", headers=auth).get_json()["subject"] == "Hi {{ name }}"
    assert client.get("/templates/welcome/versions/1", headers=auth).get_json()["subject"] == "Welcome, {{ name }}"
    assert client.get("/templates/welcome/versions/3", headers=auth).status_code == 404
    assert client.get("/templates/welcome/versions/99999999999", headers=auth).status_code == 404
    for odd in ("we%00lcome", "x" * 300, "Welcome"):  # no template can have these names: unknown, never a 500
        assert client.get(f"/templates/{odd}", headers=auth).status_code == 404
        assert client.put(f"/templates/{odd}", json={"subject": "s", "body": "b"}, headers=auth).status_code == 404
        assert client.delete(f"/templates/{odd}", headers=auth).status_code == 404
    create(client, auth, name="receipt")
    listed = client.get("/templates?limit=1", headers=auth).get_json()
    assert [t["name"] for t in listed["items"]] == ["receipt"]
    rest = client.get(f"/templates?limit=1&cursor={listed['pagination']['next_cursor']}", headers=auth).get_json()
    assert [(t["name"], t["version"]) for t in rest["items"]] == [("welcome", 2)]
    assert rest["pagination"]["next_cursor"] is None


@pytest.mark.parametrize(
    "body, field",
    [
        ({**WELCOME, "name": "Bad Name"}, "name"),
        ({**WELCOME, "name": "x" * 65}, "name"),
        ({"name": "a", "subject": "s"}, "body"),
        ({**WELCOME, "subject": "Hi {{ name "}, "subject"),
        ({**WELCOME, "html": "<p>\n{% for x in y %}</p>"}, "html"),
        ({**WELCOME, "subject": "a\r\nBcc: x@evil.test"}, "subject"),
    ],
)
def test_invalid_templates_are_422_naming_the_field(client, auth, body, field):
    response = client.post("/templates", json=body, headers=auth)
    assert response.status_code == 422
    assert field in response.get_json()["error"]["details"]


def test_a_syntax_error_names_the_line(client, auth):
    response = client.post("/templates", json={**WELCOME, "body": "one\ntwo {{ x"}, headers=auth)
    assert response.get_json()["error"]["details"]["body"][0].startswith("Line 2: ")


def test_render_previews_and_records_nothing(client, auth):
    create(client, auth)
    client.put("/templates/welcome", json={"subject": "v2 {{ name }}", "body": "b"}, headers=auth)
    variables = {"name": "<script>x</script>", "shop": "Acme"}
    response = client.post("/templates/welcome/render", json={"variables": variables, "version": 1}, headers=auth)
    assert response.get_json() == {
        "subject": "Welcome, <script>x</script>",
        "body": "Hello <script>x</script> from Acme",
        "html": "<p>Hello &lt;script&gt;x&lt;/script&gt;</p>",
    }
    assert client.get("/email/logs", headers=auth).get_json()["items"] == []
    missing = client.post("/templates/welcome/render", json={"variables": {}, "version": 1}, headers=auth)
    assert missing.status_code == 422 and set(missing.get_json()["error"]["details"]["variables"]) == {"name", "shop"}


def test_send_by_name_latest_and_pinned(app, client, auth, smtp):
    create(client, auth)
    client.put("/templates/welcome", json={"subject": "v2 {{ name }}", "html": "<b>{{ name }}</b>"}, headers=auth)
    latest = send(client, auth, template="welcome", variables={"name": "Al"})
    assert latest.status_code == 201, latest.get_json()
    assert latest.get_json()["template"] == {"name": "welcome", "version": 2}
    assert latest.get_json()["subject"] == "v2 Al" and latest.get_json()["html"] == "<b>Al</b>"
    pinned = send(client, auth, template="welcome", template_version=1, variables={"name": "Bo", "shop": "Acme"})
    assert pinned.get_json()["template"] == {"name": "welcome", "version": 1}
    # Editing the template afterwards never changes mail already accepted.
    client.put("/templates/welcome", json={"subject": "v3", "body": "changed"}, headers=auth)
    run_jobs(app)
    assert sorted(m["Subject"] for _, _, m in smtp.received) == ["Welcome, Bo", "v2 Al"]
    assert log_of(client, auth, pinned.get_json()["id"])["body"] == "Hello Bo from Acme"


@pytest.mark.parametrize(
    "body, detail",
    [
        ({"template": "welcome", "variables": {"name": "Al"}}, ("variables", "shop")),
        ({"template": "welcome", "variables": {"name": "a\r\nBcc: x@evil.test", "shop": "s"}}, ("subject", None)),
        ({"template": "welcome", "variables": {"name": "a\u2028b", "shop": "s"}}, ("subject", None)),
        ({"template": "nope", "variables": {}}, ("template", None)),
        ({"template": "welcome", "template_version": 7, "variables": {"name": "a", "shop": "s"}}, ("template", None)),
        ({"template": "welcome", "subject": "x", "variables": {"name": "a", "shop": "s"}}, ("template", None)),
        ({"template": "welcome", "variables": {"name": "x" * 70000, "shop": "s"}}, ("variables", None)),
        ({"template": "welcome", "variables": ["not", "an", "object"]}, ("variables", None)),
        ({"subject": "x", "body": "y", "variables": {"a": "b"}}, ("template", None)),
    ],
)
def test_a_send_that_cannot_render_is_422_at_accept(client, auth, smtp, body, detail):
    create(client, auth)
    response = send(client, auth, **body)
    assert response.status_code == 422, response.get_json()
    details = response.get_json()["error"]["details"]
    field, name = detail
    assert field in details and (name is None or name in details[field])
    assert client.get("/email/logs", headers=auth).get_json()["items"] == []


def test_a_sandbox_escape_is_refused_at_accept(client, auth):
    create(client, auth, name="evil", subject="x", body="{{ ''.__class__.__mro__ }}{{ range(10**9)|list }}")
    response = send(client, auth, template="evil")
    assert response.status_code == 422 and "template" in response.get_json()["error"]["details"]


def test_delete_stops_new_sends_and_keeps_accepted_mail(app, client, auth, smtp):
    create(client, auth)
    accepted = send(client, auth, template="welcome", variables={"name": "Al", "shop": "s"}).get_json()["id"]
    assert client.delete("/templates/welcome", headers=auth).status_code == 204
    assert client.get("/templates/welcome", headers=auth).status_code == 404
    assert client.delete("/templates/welcome", headers=auth).status_code == 404
    assert send(client, auth, template="welcome", variables={"name": "Al", "shop": "s"}).status_code == 422
    run_jobs(app)
    assert log_of(client, auth, accepted)["status"] == "SENT"
    # The name can be used again; its versions continue, so a LOG's name and version name one text.
    assert create(client, auth)["version"] == 2


def test_templates_are_per_project_and_scoped(app, client, auth):
    create(client, auth)
    other = {"Authorization": f"Bearer {make_key(app, project='other')}"}
    assert client.get("/templates/welcome", headers=other).status_code == 404
    assert client.put("/templates/welcome", json={"subject": "s", "body": "b"}, headers=other).status_code == 404
    assert client.delete("/templates/welcome", headers=other).status_code == 404
    assert send(client, other, template="welcome", variables={"name": "a", "shop": "s"}).status_code == 422
    assert create(client, other)["version"] == 1  # the same name in another project is another template
    reader = {"Authorization": f"Bearer {make_key(app, scopes=('read',))}"}
    assert client.get("/templates/welcome", headers=reader).status_code == 200
    assert client.post("/templates", json={**WELCOME, "name": "x"}, headers=reader).status_code == 403
    assert client.post("/templates/welcome/render", json={}, headers=reader).status_code == 403


def test_a_plain_send_still_needs_subject_and_body(client, auth):
    response = send(client, auth, body="x")
    assert response.get_json()["error"]["details"] == {"subject": ["Missing data for required field."]}
    assert send(client, auth, **{k: v for k, v in VALID_SEND.items() if k != "to"}).status_code == 201
