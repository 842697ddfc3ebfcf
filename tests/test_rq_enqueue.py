"""Delivery jobs are queued exactly as RQ's own enqueue queues them (emailsvc/rq_enqueue.py): an RQ upgrade
that changes what a job holds in Redis fails here, not in production."""

from rq import Queue, Retry
from rq.job import Job

from emailsvc.jobs import DELIVER, delivery_jobs, enqueue_deliveries
from emailsvc.services import get_services

TIMES = ("created_at", "enqueued_at")


def fields(redis, job_id):
    return {k: v for k, v in redis.hgetall(Job.key_for(job_id)).items() if k.decode() not in TIMES}


def test_a_delivery_job_holds_in_redis_what_rqs_enqueue_writes(app):
    with app.app_context():
        services, jobs = get_services(), delivery_jobs()
        redis = services.redis
        rq_queue = Queue("rq-own", connection=redis)  # RQ's enqueue into a queue of its own, same options
        with redis.pipeline() as pipe:
            pipe.multi()
            rq_queue.enqueue(DELIVER, "101", job_id="101", pipeline=pipe, **jobs.options)
            pipe.execute()
        rq_fields = fields(redis, "101")
        redis.delete(Job.key_for("101"))
        enqueue_deliveries([(101, None)])
        ours = fields(redis, "101")

        assert ours.pop(b"origin") == b"email" and rq_fields.pop(b"origin") == b"rq-own"
        assert ours == rq_fields
        assert set(redis.hgetall(Job.key_for("101"))) == {k.encode() for k in TIMES} | set(rq_fields) | {b"origin"}
        assert services.email_queue.get_job_ids() == ["101"]
        assert redis.sismember("rq:queues", services.email_queue.key)
        job = Job.fetch("101", connection=redis)
        assert (job.func_name, job.args, job.kwargs, job.get_status()) == (DELIVER, ("101",), {}, "queued")
        assert job.retries_left == 3 and job.retry_intervals == jobs.options["retry"].intervals
        assert job.enqueued_at is not None and job.created_at is not None


def test_jobs_queued_together_keep_their_order_and_at_front_goes_before_the_backlog(app):
    with app.app_context():
        queue = get_services().email_queue
        enqueue_deliveries([(1, None), (2, None), (3, None)])
        enqueue_deliveries([(9, None)], at_front=True)
        assert queue.get_job_ids() == ["9", "1", "2", "3"]


def test_retry_and_ttls_come_from_the_settings(app):
    with app.app_context():
        options = delivery_jobs().options
        assert isinstance(options["retry"], Retry) and options["retry"].max == 3
        assert options["retry"].intervals == app.config["EMAIL_RETRY_INTERVALS"]
        assert options["result_ttl"] == 0
