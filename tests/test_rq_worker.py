"""The sending process's RQ worker: it skips redundant Redis writes, never its registration."""

import logging
import threading
import time

from conftest import TEST_REDIS_URL, BurstWorker, wait_for
from redis import Redis
from rq import Queue, SimpleWorker
from rq.exceptions import StopRequested
from rq.executions import Execution
from rq.job import JobStatus
from rq.suspension import resume, suspend

from emailsvc.rq_worker import LeanWorker, ThreadWorker
from emailsvc.services import get_services

VALID = {"to": "alice@example.com", "subject": "Hello", "body": "Hi Alice"}


def test_a_worker_busy_with_jobs_stays_registered_longer_than_it_may_wait_for_one(client, auth, app, smtp):
    for _ in range(3):
        assert client.post("/email/send", json=VALID, headers=auth).status_code == 201
    seen = []

    class Probe(BurstWorker):
        def execute_job(self, job, queue):
            super().execute_job(job, queue)
            # What rq-dashboard and RQ's cleanup see while the worker goes back to wait on the queue.
            seen.append((self.connection.ttl(self.key), self.connection.hget(self.key, "state")))

    with app.app_context():
        services = get_services()
        worker = Probe([services.email_queue], connection=services.redis)
        worker.work(burst=True)
    assert len(seen) == 3 and len(smtp.received) == 3
    assert all(ttl > worker.dequeue_timeout and state == b"idle" for ttl, state in seen)


def test_a_job_that_arrives_as_a_loop_is_told_to_stop_goes_back_to_the_front_of_the_queue(client, auth, app):
    with app.app_context():
        services = get_services()
        queue = services.email_queue
        loop = ThreadWorker([queue], connection=services.redis)
        outcome = []

        def wait_for_a_job():
            try:
                outcome.append(loop.dequeue_job_and_maintain_ttl(30))
            except StopRequested as exc:
                outcome.append(exc)

        waiting = threading.Thread(target=wait_for_a_job)
        waiting.start()
        wait_for(lambda: any(b"blmove" in c.get("cmd", "").encode() for c in services.redis.client_list()),
                 message="the loop to wait on the queue")  # fmt: skip
        loop.request_warm_stop()  # told to stop, and (as in the moment before the wake-up) still waiting
        email_id = client.post("/email/send", json=VALID, headers=auth).get_json()["id"]
        waiting.join(timeout=30)
        assert outcome and isinstance(outcome[0], StopRequested)  # it did not take the message
        assert queue.get_job_ids() == [email_id]  # which waits, first in line, for the next worker
        assert services.redis.llen(queue.intermediate_queue_key) == 0


def _redis_after_one_job(app, worker_class):
    """Run the one queued job with a stale execution of it left by a killed worker; return what Redis keeps."""
    with app.app_context():
        services = get_services()
        redis, queue = services.redis, services.email_queue
        [job] = queue.get_jobs()
        with redis.pipeline() as pipe:  # the execution a worker killed mid-job leaves behind
            stale = Execution.create(job, 300, pipeline=pipe, worker_name="killed")
            pipe.execute()
        worker = worker_class([queue], connection=redis)
        worker.subscribe = lambda: None  # no command channel in a burst
        worker.work(burst=True)
        keys = {key.decode().replace(worker.name, "WORKER").replace(job.id, "JOB") for key in redis.keys("rq:*")}
        counts = redis.hmget(worker.key, "successful_job_count", "failed_job_count")
        stale_left = redis.sismember(stale.worker_executions_key, stale.composite_key)
        return keys, counts, stale_left, float(redis.hget(worker.key, "total_working_time"))


def test_a_finished_job_leaves_redis_as_rqs_own_worker_leaves_it(client, auth, app, smtp):
    # LeanWorker finishes a job in one script of its own (FINISH_JOB); RQ's SimpleWorker is the reference.
    # Run on another RQ version, this tells whether the script still writes what RQ writes.
    results = []
    for worker_class in (SimpleWorker, LeanWorker):
        assert client.post("/email/send", json=VALID, headers=auth).status_code == 201
        results.append(_redis_after_one_job(app, worker_class))
        Redis.from_url(TEST_REDIS_URL).flushdb()
    (rq_keys, rq_counts, rq_stale, rq_time), (keys, counts, stale, working_time) = results
    assert keys == rq_keys and not any("JOB" in key for key in keys)  # the job, its executions: all gone
    assert counts == rq_counts == [b"1", None] and not stale and not rq_stale
    assert working_time > 0 and rq_time > 0
    assert len(smtp.received) == 2


def test_rq_suspend_during_a_job_stops_the_worker_before_the_next(client, auth, app, smtp):
    # The suspension check rides with the idle state written after each job: it must still see `rq suspend`.
    for _ in range(2):
        assert client.post("/email/send", json=VALID, headers=auth).status_code == 201

    class SuspendedMidJob(BurstWorker):
        def perform_job(self, job, queue, execution):
            suspend(self.connection)  # as `rq suspend` from an operator's shell, while the job runs
            return super().perform_job(job, queue, execution)

    with app.app_context():
        services = get_services()
        SuspendedMidJob([services.email_queue], connection=services.redis).work(burst=True)
        assert len(smtp.received) == 1 and services.email_queue.count == 1  # the second waits
        resume(services.redis)
        BurstWorker([services.email_queue], connection=services.redis).work(burst=True)
    assert len(smtp.received) == 2


def test_a_job_that_went_well_leaves_one_info_line_its_outcome(client, auth, app, smtp, caplog):
    # RQ's own lines about the job (taken, OK, result discarded, completed) are written at DEBUG; on another
    # RQ version whose texts changed they would come back at INFO, and this fails.
    email_id = client.post("/email/send", json=VALID, headers=auth).get_json()["id"]
    caplog.set_level(logging.DEBUG)
    with app.app_context():
        services = get_services()
        BurstWorker([services.email_queue], connection=services.redis).work(burst=True, logging_level="DEBUG")
    about_it = [r for r in caplog.records if email_id in r.getMessage()]
    assert [(r.name, r.getMessage()) for r in about_it if r.levelno >= logging.INFO] == [
        ("emailsvc.jobs", f"email {email_id} attempt 1: sent (250)")
    ]
    rq_lines = [r.getMessage() for r in about_it if r.name == "rq.worker" and r.levelno == logging.DEBUG]
    assert sum("Job OK" in m or "discarded" in m or "Successfully completed" in m for m in rq_lines) == 3
    assert len(smtp.received) == 1


def take_too_long():
    for _ in range(600):  # short sleeps: an exception raised in a thread lands between two
        time.sleep(0.05)


def test_a_thread_worker_stops_a_job_past_its_timeout(app):
    with app.app_context():
        redis = get_services().redis
        queue = Queue("timeouts", connection=redis)
        job = queue.enqueue("test_rq_worker.take_too_long", job_timeout=1)
        worker = ThreadWorker([queue], connection=redis)
        worker.subscribe = lambda: None
        started = time.monotonic()
        loop = threading.Thread(target=worker.work, kwargs={"burst": True})
        loop.start()
        loop.join(timeout=20)
        assert not loop.is_alive() and time.monotonic() - started < 10  # not the 30 s the job wanted
        assert job.get_status(refresh=True) == JobStatus.FAILED
        assert "JobTimeoutException: Task exceeded maximum timeout value (1 seconds)" in job.latest_result().exc_string
