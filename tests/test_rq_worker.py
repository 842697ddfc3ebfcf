"""The sending process's RQ worker: it skips redundant Redis writes, never its registration."""

from conftest import BurstWorker

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
