"""A sending process: several SMTP conversations in flight, a cap on connections, idle ones closed, a warm stop."""

import asyncio
import threading
from collections import Counter

import pytest
import rq
import rq.timeouts
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP
from conftest import SmtpRecorder, free_port, make_key, send_ok, wait_for

from emailsvc import create_app
from emailsvc.rq_worker import ThreadWorker
from emailsvc.sending import SendingProcess


class SlowRelay(SmtpRecorder):
    """Holds every DATA until the test opens the gate; counts the connections and the messages in DATA at once."""

    def reset(self):
        super().reset()
        self.gate = threading.Event()
        self.open_connections = self.most_connections = self.in_data = self.most_in_data = 0
        self.closed = Counter()  # "QUIT" or "dropped", per connection that ended

    def connected(self):
        self.open_connections += 1
        self.most_connections = max(self.most_connections, self.open_connections)

    def disconnected(self, said_quit):
        self.open_connections -= 1
        self.closed["QUIT" if said_quit else "dropped"] += 1

    async def handle_DATA(self, server, session, envelope):
        self.in_data += 1
        self.most_in_data = max(self.most_in_data, self.in_data)
        while not self.gate.is_set():
            await asyncio.sleep(0.01)
        self.in_data -= 1
        return await super().handle_DATA(server, session, envelope)

    async def handle_QUIT(self, server, session, envelope):
        session.said_quit = True
        return "221 Bye"


class CountingSMTP(SMTP):
    def connection_made(self, transport):
        super().connection_made(transport)
        self.event_handler.connected()

    def connection_lost(self, error):
        self.event_handler.disconnected(getattr(self.session, "said_quit", False))
        super().connection_lost(error)


class CountingController(Controller):
    def factory(self):
        return CountingSMTP(self.handler, **self.SMTP_kwargs)


@pytest.fixture
def relay():
    handler = SlowRelay()
    handler.port = free_port()
    controller = CountingController(handler, hostname="127.0.0.1", port=handler.port)
    controller.start()
    wait_for(lambda: handler.open_connections == 0, message="the controller's own start-up connection to end")
    handler.reset()
    yield handler
    handler.gate.set()
    controller.stop()


@pytest.fixture
def start_sending(settings, relay):
    """Start a sending process's loops in this process, with `changes` to the settings; stopped after the test."""
    started = []

    def start(**changes):
        # The relay holds messages for as long as a test needs, on a machine that may be slow.
        app = create_app({**settings, "SMTP_PORT": str(relay.port), "SMTP_TIMEOUT": "60", **changes})
        process = SendingProcess(app, app.extensions["emailsvc"], maintenance_interval=30)
        process.start()
        started.append(process)
        return app, process

    yield start
    relay.gate.set()
    for process in started:
        process.stop()
        process.wait()


def test_messages_are_in_flight_together_up_to_the_concurrency(start_sending, relay):
    app, _ = start_sending(SMTP_CONCURRENCY="4")
    client, auth = app.test_client(), {"Authorization": f"Bearer {make_key(app)}"}
    ids = [send_ok(client, auth) for _ in range(6)]
    wait_for(lambda: relay.in_data == 4, message="four messages held in DATA at once")
    relay.gate.set()
    wait_for(lambda: len(relay.received) == 6, message="all six delivered")
    assert relay.most_in_data == 4 and relay.most_connections == 4  # never more than SMTP_CONCURRENCY
    wait_for(lambda: all(_status(client, auth, i) == "SENT" for i in ids), message="all six SENT")


def test_smtp_max_connections_caps_the_connections_to_the_relay(start_sending, relay):
    app, _ = start_sending(SMTP_CONCURRENCY="4", SMTP_MAX_CONNECTIONS="2")
    client, auth = app.test_client(), {"Authorization": f"Bearer {make_key(app)}"}
    ids = [send_ok(client, auth) for _ in range(6)]
    wait_for(lambda: relay.in_data == 2, message="two messages held in DATA")
    relay.gate.set()
    wait_for(lambda: all(_status(client, auth, i) == "SENT" for i in ids), message="all six SENT")
    assert len(relay.received) == 6
    assert relay.most_connections == 2 and relay.most_in_data == 2


def test_an_idle_connection_is_closed_with_quit(start_sending, relay):
    relay.gate.set()
    app, _ = start_sending(SMTP_CONCURRENCY="2", SMTP_IDLE_TIMEOUT="0.3")
    client, auth = app.test_client(), {"Authorization": f"Bearer {make_key(app)}"}
    email_id = send_ok(client, auth)
    wait_for(lambda: _status(client, auth, email_id) == "SENT", message="the message SENT")
    wait_for(lambda: relay.open_connections == 0, message="the idle connection closed")
    assert relay.closed == {"QUIT": 1}
    send_ok(client, auth)  # the next message opens a new connection
    wait_for(lambda: len(relay.received) == 2, message="the second message delivered")


def test_a_warm_stop_finishes_the_message_in_hand_and_wakes_the_waiting_loops(start_sending, relay):
    app, process = start_sending(SMTP_CONCURRENCY="3")
    client, auth = app.test_client(), {"Authorization": f"Bearer {make_key(app)}"}
    email_id = send_ok(client, auth)
    wait_for(lambda: relay.in_data == 1, message="the message held in DATA")
    process.stop()  # as SIGTERM does; wait() then wakes the loops blocked on the queue (BLMOVE of minutes)
    status = []
    waiter = threading.Thread(target=lambda: status.append(process.wait()))
    waiter.start()
    wait_for(lambda: sum(thread.is_alive() for thread in process.threads) == 1, message="the idle loops gone")
    relay.gate.set()
    waiter.join(timeout=30)
    assert status == [0]
    assert _status(client, auth, email_id) == "SENT" and len(relay.received) == 1
    later = send_ok(client, auth)  # nothing takes a job after the stop
    assert _status(client, auth, later) == "PENDING"


def test_rq_is_the_version_whose_internals_the_thread_worker_relies_on():
    # ThreadWorker overrides RQ 3.0's private _install_signal_handlers, reads its _stop_requested, and
    # wraps dequeue_job_and_maintain_ttl; an upgrade must re-read them (and the warm stop test above).
    assert rq.__version__.startswith("3.0.")
    for name in ("_install_signal_handlers", "dequeue_job_and_maintain_ttl", "handle_warm_shutdown_request"):
        assert callable(getattr(rq.SimpleWorker, name))
    # The job timeout (emailsvc/job_timeouts.py) is built on RQ's death penalty interface.
    assert issubclass(ThreadWorker.death_penalty_class, rq.timeouts.BaseDeathPenalty)


def _status(client, auth, email_id):
    return client.get(f"/email/logs/{email_id}", headers=auth).get_json()["status"]
