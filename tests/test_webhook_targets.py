"""Where webhooks may connect: non-public and IPv4-wrapping addresses refused at registration and at
every attempt, one look-up per attempt, and the connection pinned to the address that was checked."""

import http.server
import ipaddress
import socket
import ssl
import subprocess
import threading

import pytest
from conftest import make_key, run_jobs, run_webhooks

from emailsvc import create_app, webhook_targets
from emailsvc.notify import post
from emailsvc.webhook_targets import non_public

PUBLIC = "93.184.215.14"  # any globally routable address; no test ever connects to it
# Every form of "not a public receiver", each as a resolver could answer it.
NON_PUBLIC = [
    ("127.0.0.1", "loopback"),
    ("::1", "loopback"),
    ("::ffff:127.0.0.1", "IPv4-mapped"),
    ("::ffff:8.8.8.8", "IPv4-mapped"),  # wrapped is refused whatever is inside: it never appears on the wire
    ("::127.0.0.1", "IPv4-compatible"),
    ("64:ff9b::7f00:1", "wraps the IPv4 address 127.0.0.1"),
    ("64:ff9b::a9fe:a9fe", "wraps the IPv4 address 169.254.169.254"),
    ("64:ff9b:1::a00:1", "local-use NAT64"),
    ("2002:7f00:1::", "wraps the IPv4 address 127.0.0.1"),
    ("2002:a00:1::1", "wraps the IPv4 address 10.0.0.1"),
    ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "Teredo"),
    ("10.1.2.3", "private"),
    ("172.16.0.1", "private"),
    ("192.168.1.1", "private"),
    ("100.64.0.1", "not globally routable"),
    ("169.254.169.254", "link-local"),
    ("fe80::1", "link-local"),
    ("fc00::1", "private"),
    ("224.0.0.1", "multicast"),
    ("ff02::1", "multicast"),
    ("0.0.0.0", "unspecified"),
    ("::", "unspecified"),
    ("240.0.0.1", ""),  # reserved (Python calls it private too)
]


@pytest.mark.parametrize(("address", "reason"), NON_PUBLIC)
def test_non_public_addresses_are_named_with_their_reason(address, reason):
    assert reason in non_public(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", [PUBLIC, "2606:4700::1111", "64:ff9b::808:808", "2002:808:808::1"])
def test_public_addresses_pass_and_so_do_nat64_and_6to4_of_public_ones(address):
    assert non_public(ipaddress.ip_address(address)) is None


@pytest.fixture
def answers(monkeypatch):
    """The resolver answers with the queued lists, one a call (the last one repeats); calls are counted.

    DNS cannot be made to answer these forms, or to change its answer between two look-ups, on a test
    machine, so this is the one fake here."""
    state = {"queue": [], "calls": 0}

    def resolve(host, port):
        state["calls"] += 1
        return state["queue"].pop(0) if len(state["queue"]) > 1 else state["queue"][0]

    monkeypatch.setattr(webhook_targets, "resolve", resolve)
    return state


def strict_client(settings):
    app = create_app({**settings, "WEBHOOK_ALLOW_PRIVATE": "false"})
    return app, app.test_client(), {"X-API-Key": make_key(app)}


@pytest.mark.parametrize(("address", "reason"), NON_PUBLIC)
def test_registration_refuses_a_name_resolving_to_a_non_public_address(settings, answers, address, reason):
    answers["queue"] = [[PUBLIC, address]]  # one bad answer among good ones is enough
    _, client, auth = strict_client(settings)
    response = client.post("/webhooks", json={"url": "https://hooks.example/in"}, headers=auth)
    assert response.status_code == 422
    message = response.get_json()["error"]["details"]["url"][0]
    assert f"resolves to the non-public address {address}" in message and reason in message


@pytest.mark.parametrize(
    ("url", "reason"),
    [("http://[::ffff:7f00:1]/h", "IPv4-mapped"), ("http://[::7f00:1]/h", "IPv4-compatible"),
     ("http://[64:ff9b::7f00:1]/h", "127.0.0.1"), ("http://[2002:7f00:1::]/h", "127.0.0.1"),
     ("http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/h", "Teredo"), ("http://10.9.8.7/h", "private"),
     ("http://169.254.169.254/latest/meta-data/", "link-local"), ("http://[fe80::1]/h", "link-local"),
     ("http://224.0.0.1/h", "multicast"), ("http://0.0.0.0:8000/h", "unspecified"),
     ("http://2130706433/h", "loopback"),  # 127.0.0.1 as one number: the resolver reads it so
     ("http://localhost./h", "localhost name"), ("http://api.localhost/h", "localhost name"),
     ("http://no-such-host.invalid/h", "does not resolve")],
)  # fmt: skip
def test_registration_refuses_literal_non_public_and_unresolvable_hosts(settings, url, reason):
    _, client, auth = strict_client(settings)
    response = client.post("/webhooks", json={"url": url}, headers=auth)
    assert response.status_code == 422 and response.get_json()["error"]["code"] == "validation_error"
    assert reason in response.get_json()["error"]["details"]["url"][0]


@pytest.mark.parametrize(("address", "reason"), NON_PUBLIC)
def test_every_attempt_refuses_a_non_public_answer_without_connecting(receiver, answers, address, reason):
    answers["queue"] = [[address]]
    port = receiver.server.server_address[1]
    attempt = post(f"http://hooks.example:{port}/hooks", {}, b"{}", timeout=2)
    assert not attempt["ok"] and attempt["status_code"] is None
    assert attempt["error"].startswith("refused to connect:") and reason in attempt["error"]
    assert receiver.requests == []


@pytest.mark.parametrize("host", ["localhost.", "no-such-host.invalid"])
def test_every_attempt_refuses_localhost_names_and_names_that_do_not_resolve(receiver, host):
    attempt = post(f"http://{host}:{receiver.server.server_address[1]}/hooks", {}, b"{}", timeout=2)
    assert not attempt["ok"] and attempt["error"].startswith("refused to connect:")
    assert receiver.requests == []


def test_an_endpoint_that_became_non_public_gets_failed_attempts_saying_why(settings, receiver):
    lenient = create_app(settings)  # WEBHOOK_ALLOW_PRIVATE=true, as in development
    auth = {"X-API-Key": make_key(lenient)}
    endpoint = lenient.test_client().post("/webhooks", json={"url": receiver.url}, headers=auth).get_json()
    app, client, _ = strict_client({**settings, "WEBHOOK_RETRY_INTERVALS": "0"})
    assert client.post("/email/send", json={"to": "a@example.com", "subject": "s", "body": "b"},
                       headers=auth).status_code == 201  # fmt: skip
    run_jobs(app)
    run_webhooks(app)
    [delivery] = client.get(f"/webhooks/{endpoint['id']}/deliveries", headers=auth).get_json()["items"]
    assert delivery["status"] == "failed" and len(delivery["attempts"]) == 2
    for attempt in delivery["attempts"]:
        assert attempt["status_code"] is None
        assert "refused to connect: 127.0.0.1 resolves to the non-public address 127.0.0.1" in attempt["error"]
    assert receiver.requests == []


def test_a_changed_second_answer_is_never_contacted(receiver, answers, monkeypatch):
    # DNS rebinding: public when checked, loopback when connecting. The attempt looks up once and
    # connects to what it checked; that public host is "down" here (no test reaches the internet).
    answers["queue"] = [[PUBLIC], ["127.0.0.1"]]
    port, tried, connect = receiver.server.server_address[1], [], socket.create_connection

    def public_hosts_are_down(address, *args, **kwargs):
        tried.append(address)
        if ipaddress.ip_address(address[0]).is_loopback:
            return connect(address, *args, **kwargs)
        raise ConnectionRefusedError(111, "Connection refused")

    monkeypatch.setattr(socket, "create_connection", public_hosts_are_down)
    attempt = post(f"http://rebind.example:{port}/hooks", {}, b"{}", timeout=2)
    assert not attempt["ok"] and "ConnectionRefused" in attempt["error"]
    assert tried == [(PUBLIC, port)] and answers["calls"] == 1
    assert receiver.requests == []


def test_development_targets_are_pinned_too(receiver, answers):
    # With WEBHOOK_ALLOW_PRIVATE the answer is not vetted, but the connection still goes where it said.
    answers["queue"] = [["127.0.0.2"], ["127.0.0.1"]]  # nothing listens on 127.0.0.2
    attempt = post(f"http://rebind.example:{receiver.server.server_address[1]}/hooks", {}, b"{}", 2, True)
    assert "ConnectionRefused" in attempt["error"] and answers["calls"] == 1
    assert receiver.requests == []


def test_the_host_header_keeps_the_name(receiver, answers):
    answers["queue"] = [["127.0.0.1"]]
    port = receiver.server.server_address[1]
    attempt = post(f"http://hooks.example:{port}/hooks?x=1", {"webhook-id": "msg_1"}, b"{}", 2, True)
    assert attempt["ok"], attempt
    [(headers, body)] = receiver.requests
    assert headers["host"] == f"hooks.example:{port}" and headers["webhook-id"] == "msg_1" and body == b"{}"


@pytest.fixture(scope="module")
def tls_receiver(tmp_path_factory):
    """An HTTPS receiver on 127.0.0.1 whose certificate (from a test CA) names only hooks.example."""
    d = tmp_path_factory.mktemp("tls")

    def openssl(*args):
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
            "-subj", "/CN=emailsvc test CA", "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign")  # fmt: skip
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "host.key", "-out", "host.csr",
            "-subj", "/CN=hooks.example")  # fmt: skip
    (d / "ext").write_text("subjectAltName=DNS:hooks.example\n")
    openssl("x509", "-req", "-in", "host.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", "host.pem", "-days", "2", "-extfile", "ext")  # fmt: skip
    seen, sni = [], []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            seen.append((self.headers["Host"], sni[-1]))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(d / "host.pem", d / "host.key")
    context.sni_callback = lambda sock, name, ctx: sni.append(name)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield {"port": server.server_address[1], "ca": str(d / "ca.pem"), "seen": seen}
    server.shutdown()
    server.server_close()


def test_tls_checks_the_certificate_against_the_name_not_the_address(tls_receiver, answers, monkeypatch):
    monkeypatch.setenv("SSL_CERT_FILE", tls_receiver["ca"])  # trust the test CA, as a real one is trusted
    answers["queue"] = [["127.0.0.1"]]
    port = tls_receiver["port"]
    assert post(f"https://hooks.example:{port}/in", {}, b"{}", 2, True)["status_code"] == 204
    assert tls_receiver["seen"][-1] == (f"hooks.example:{port}", "hooks.example")  # Host header and SNI
    wrong = post(f"https://other.example:{port}/in", {}, b"{}", 2, True)  # same address, another name
    assert not wrong["ok"] and "certificate verify failed" in wrong["error"]
    assert len(tls_receiver["seen"]) == 1
