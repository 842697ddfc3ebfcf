"""GET /healthz and GET /readyz."""

from emailsvc import create_app
from emailsvc.auth import new_key


def test_healthz_needs_no_key(client):
    assert client.get("/healthz").status_code == 200


def test_readyz_is_200_when_both_backends_answer(client):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.get_json()["checks"] == {"database": True, "redis": True}


def test_readyz_is_503_naming_what_is_down(settings):
    app = create_app({**settings, "REDIS_URL": "redis://127.0.0.1:1/0"})
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    error = response.get_json()["error"]
    assert error["code"] == "service_unavailable" and error["details"] == {"database": True, "redis": False}
    assert response.headers["Retry-After"]


def test_healthz_answers_with_a_key_even_when_the_database_is_down(settings):
    app = create_app({**settings, "DATABASE_URL": "postgresql://postgres@127.0.0.1:1/none"})
    client = app.test_client()
    headers = {"Authorization": f"Bearer {new_key()}"}  # well-formed, so it is looked up
    assert client.get("/healthz", headers=headers).status_code == 200
    response = client.get("/email/logs/x", headers=headers)
    assert response.status_code == 503 and response.get_json()["error"]["code"] == "service_unavailable"
