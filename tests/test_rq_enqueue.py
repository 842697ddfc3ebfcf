"""Delivery jobs are queued exactly as RQ's own enqueue queues them (emailsvc/rq_enqueue.py): an RQ upgrade
that changes what enqueueing leaves in Redis fails here, not in production."""

from datetime import UTC, datetime

from rq import Retry

from emailsvc.jobs import DELIVER, delivery_jobs, enqueue_deliveries
from emailsvc.services import get_services

TIMES = {b"created_at", b"enqueued_at"}


def redis_state(redis):
    """Every key with its type, expiry and contents (a job's times left out: they differ by construction)."""
    state = {}
    for key in sorted(redis.keys("*")):
        kind = redis.type(key)
        if kind == b"hash":
            value = {k: v for k, v in redis.hgetall(key).items() if k not in TIMES}
            value["times"] = TIMES <= set(redis.hkeys(key))
        elif kind == b"list":
            value = redis.lrange(key, 0, -1)
        elif kind == b"set":
            value = redis.smembers(key)
        elif kind == b"zset":
            value = redis.zrange(key, 0, -1, withscores=True)
        else:
            value = redis.get(key)
        state[key] = (kind, redis.ttl(key), value)
    return state


def test_jobs_queued_together_leave_in_redis_exactly_what_rqs_enqueue_leaves(app):
    with app.app_context():
        services, jobs = get_services(), delivery_jobs()
        redis, queue = services.redis, services.email_queue
        ids = ["101", "102", "103"]
        with redis.pipeline() as pipe:  # RQ's own enqueue, the same jobs and options, one transaction
            pipe.multi()
            for job_id in ids:
                queue.enqueue(DELIVER, job_id, job_id=job_id, pipeline=pipe, **jobs.options)
            pipe.execute()
        rqs = redis_state(redis)
        redis.flushdb()
        enqueue_deliveries([(int(job_id), None) for job_id in ids])
        ours = redis_state(redis)

        assert ours == rqs
        assert queue.get_job_ids() == ids
        job = queue.fetch_job("102")
        assert (job.func_name, job.args, job.kwargs, job.get_status()) == (DELIVER, ("102",), {}, "queued")
        assert job.retries_left == 3 and job.retry_intervals == jobs.options["retry"].intervals


def test_jobs_queued_beside_a_scheduled_one_leave_what_rqs_enqueue_and_enqueue_at_leave(app):
    with app.app_context():
        services, jobs = get_services(), delivery_jobs()
        redis, queue = services.redis, services.email_queue
        at = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
        with redis.pipeline() as pipe:
            pipe.multi()
            queue.enqueue(DELIVER, "201", job_id="201", pipeline=pipe, **jobs.options)
            queue.enqueue_at(at, DELIVER, "202", job_id="202", pipeline=pipe, **jobs.options)
            pipe.execute()
        rqs = redis_state(redis)
        redis.flushdb()
        enqueue_deliveries([(201, None), (202, at)])
        assert redis_state(redis) == rqs


def test_a_redis_that_forgot_its_scripts_still_takes_jobs(app):
    with app.app_context():
        enqueue_deliveries([(1, None)])
        get_services().redis.script_flush()  # as after a restart: the script is loaded again
        enqueue_deliveries([(2, None)])
        assert get_services().email_queue.get_job_ids() == ["1", "2"]


def test_at_front_goes_before_the_backlog_in_the_order_rq_would_put_it(app):
    with app.app_context():
        queue = get_services().email_queue
        enqueue_deliveries([(1, None), (2, None)])
        enqueue_deliveries([(8, None), (9, None)], at_front=True)  # RQ pushes each to the front in turn
        assert queue.get_job_ids() == ["9", "8", "1", "2"]


def test_retry_and_ttls_come_from_the_settings(app):
    with app.app_context():
        options = delivery_jobs().options
        assert isinstance(options["retry"], Retry) and options["retry"].max == 3
        assert options["retry"].intervals == app.config["EMAIL_RETRY_INTERVALS"]
        assert options["result_ttl"] == 0
