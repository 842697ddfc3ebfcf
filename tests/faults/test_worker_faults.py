"""The worker killed outright mid-batch and stopped with SIGTERM mid-send, several messages in flight per process."""

import os
import signal
import threading
import time
from collections import Counter

import pytest
from conftest import wait_for

from .conftest import MEASURED

pytestmark = pytest.mark.slow
BATCH = 300


def test_kill_9_mid_batch_loses_nothing_and_duplicates_at_most_the_messages_in_flight(fault):
    # The relay pauses after accepting each message, before its reply: the window in which a crash
    # leaves a delivered message recorded as SENDING, the one case that is sent twice.
    fault.smtp.handler.pause = 0.02
    ids = [fault.post()[1]["id"] for _ in range(BATCH)]
    worker = fault.start_worker()
    wait_for(lambda: _mid_batch(fault.statuses()), timeout=60, message="a third of the batch sent, a message in hand")
    os.killpg(worker.pid, signal.SIGKILL)  # the supervisor, its sending processes and RQ's scheduler
    worker.wait()
    abandoned = [r["id"] for r in fault.query("SELECT id::text FROM emails WHERE status = 'SENDING'")]
    in_flight, sent_at_kill = len(abandoned), fault.statuses().get("SENT", 0)

    restarted = time.monotonic()
    fault.start_worker()
    wait_for(lambda: _all_sent(fault, abandoned), timeout=90, message="the messages in flight SENT")
    resent_in = time.monotonic() - restarted
    fault.wait_until_settled(timeout=90)
    settled_in = time.monotonic() - restarted

    rows = fault.query("SELECT id::text, status, message_id FROM emails")
    assert sorted(r["id"] for r in rows) == sorted(ids)
    assert all(r["status"] == "SENT" for r in rows)  # the relay accepted everything, so nothing may fail
    seen = Counter(fault.smtp.message_ids())
    assert set(seen) == {r["message_id"] for r in rows}  # none lost
    duplicates = sum(seen.values()) - len(seen)
    assert duplicates <= in_flight
    MEASURED["kill -9 mid-batch"] = (
        f"{BATCH} messages, 2 processes × SMTP_CONCURRENCY 16, killed with {sent_at_kill} SENT and {in_flight} in "
        f"flight; after a new worker started, those in flight were SENT in {resent_in:.1f} s and all {BATCH} in "
        f"{settled_in:.1f} s; {duplicates} sent twice"
    )


def _all_sent(fault, ids):
    rows = fault.query("SELECT status FROM emails WHERE id = ANY(%s::uuid[])", (ids,))
    return all(r["status"] == "SENT" for r in rows)


def _mid_batch(statuses):
    return statuses.get("SENT", 0) >= BATCH // 3 and statuses.get("SENDING", 0) > 0


def test_kill_9_with_several_messages_in_flight_per_process_sends_each_again_and_loses_nothing(fault):
    # The relay holds every DATA: the kill finds 2 processes × 4 conversations mid-message.
    fault.smtp.handler.gate = gate = threading.Event()
    ids = [fault.post()[1]["id"] for _ in range(20)]
    worker = fault.start_worker(SMTP_CONCURRENCY="4", SMTP_TIMEOUT="60")
    wait_for(lambda: fault.smtp.handler.held == 8, timeout=60, message="eight messages held in DATA at once")
    os.killpg(worker.pid, signal.SIGKILL)
    worker.wait()
    in_flight = sorted(r["id"] for r in fault.query("SELECT id::text FROM emails WHERE status = 'SENDING'"))
    assert len(in_flight) == 8
    gate.set()  # the relay now accepts what the killed worker had sent: those become duplicates

    fault.start_worker(SMTP_CONCURRENCY="4")
    fault.wait_until_settled(timeout=90)
    rows = fault.query("SELECT id::text, status, attempts, message_id FROM emails")
    assert sorted(r["id"] for r in rows) == sorted(ids) and all(r["status"] == "SENT" for r in rows)
    seen = Counter(fault.smtp.message_ids())
    assert set(seen) == {r["message_id"] for r in rows}  # none lost
    twice = sorted(str(r["id"]) for r in rows if seen[r["message_id"]] > 1)
    assert set(twice) <= set(in_flight) and all(count <= 2 for count in seen.values())
    assert {r["id"]: r["attempts"] for r in rows if r["id"] in in_flight} == dict.fromkeys(in_flight, 2)
    MEASURED["kill -9, several in flight per process"] = (
        f"2 processes × SMTP_CONCURRENCY 4: {len(in_flight)} in flight at the kill, each sent again; "
        f"{len(twice)} delivered twice, none lost"
    )


def test_sigterm_lets_the_message_in_hand_finish(fault):
    fault.smtp.handler.gate = gate = threading.Event()
    worker = fault.start_worker(WORKER_PROCESSES="1")
    email_id = fault.post()[1]["id"]
    wait_for(fault.smtp.handler.in_data.is_set, timeout=30, message="the message to reach DATA")
    asked = time.monotonic()
    worker.terminate()  # SIGTERM to the supervisor, as a process manager stops it
    wait_for(lambda: "warm shut down requested" in fault.log_of(worker), message="the sending process to get SIGTERM")
    gate.set()  # the relay answers only now, after the stop was requested
    assert worker.wait(timeout=30) == 0
    stopped_in = time.monotonic() - asked

    [row] = fault.query("SELECT status, attempts FROM emails WHERE id = %s", (email_id,))
    assert row == {"status": "SENT", "attempts": 1}
    assert fault.statuses() == {"SENT": 1}
    assert len(fault.smtp.handler.received) == 1
    MEASURED["SIGTERM mid-send"] = f"the message in hand ended SENT; worker exited 0, {stopped_in:.1f} s after SIGTERM"


def test_sigterm_finishes_every_message_in_flight_and_takes_no_other(fault):
    fault.smtp.handler.gate = gate = threading.Event()
    # 4 loops; 3 messages in flight and one loop waiting on the queue, which must stop too.
    worker = fault.start_worker(WORKER_PROCESSES="1", SMTP_CONCURRENCY="4", SMTP_TIMEOUT="60")
    in_flight = [fault.post()[1]["id"] for _ in range(3)]
    wait_for(lambda: fault.smtp.handler.held == 3, timeout=30, message="three messages held in DATA")
    asked = time.monotonic()
    worker.terminate()
    told = "warm shut down requested"  # by each of the 4 sending loops and by the webhook process
    wait_for(lambda: fault.log_of(worker).count(told) == 5, message="every loop told to stop")
    later = fault.post()[1]["id"]  # queued after the stop: no loop may take it
    gate.set()
    assert worker.wait(timeout=30) == 0
    stopped_in = time.monotonic() - asked

    rows = {r["id"]: r for r in fault.query("SELECT id::text, status, attempts FROM emails")}
    assert all(rows[i]["status"] == "SENT" and rows[i]["attempts"] == 1 for i in in_flight)
    assert rows[later]["status"] == "PENDING" and rows[later]["attempts"] == 0
    assert len(fault.smtp.handler.received) == 3
    MEASURED["SIGTERM, several in flight"] = (
        f"3 messages in flight ended SENT, 1 idle loop stopped, nothing new taken; "
        f"exited 0, {stopped_in:.1f} s after SIGTERM"
    )
