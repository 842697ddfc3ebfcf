"""The worker killed outright mid-batch, and stopped with SIGTERM mid-send."""

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
        f"{BATCH} messages, killed with {sent_at_kill} SENT and {in_flight} in flight; after a new worker "
        f"started, those in flight were SENT in {resent_in:.1f} s and all {BATCH} in {settled_in:.1f} s; "
        f"{duplicates} sent twice"
    )


def _all_sent(fault, ids):
    rows = fault.query("SELECT status FROM emails WHERE id = ANY(%s::uuid[])", (ids,))
    return all(r["status"] == "SENT" for r in rows)


def _mid_batch(statuses):
    return statuses.get("SENT", 0) >= BATCH // 3 and statuses.get("SENDING", 0) > 0


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
