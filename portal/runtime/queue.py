"""The Redis connection and the RQ queues, one connection pool per app.

Three queues, worked in this order: HIGH (the outbox reconciler, so that a backlog of
thousands of emails never delays it), DEFAULT (deliveries and tax submissions) and LOW
(PDFs rendered ahead). Their Redis names start with RQ_QUEUE.
"""

import logging
from collections.abc import Callable, Iterable

import redis
from flask import current_app
from rq import Queue, Retry
from rq.job import Job

log = logging.getLogger(__name__)

HIGH, DEFAULT, LOW = "high", "default", "low"
PRIORITIES = (HIGH, DEFAULT, LOW)


def get_redis() -> redis.Redis:
    """Return the app's Redis client (REDIS_URL); its connection pool is made once per app."""
    url = current_app.config.get("REDIS_URL")
    if not url:
        raise RuntimeError("REDIS_URL is not set: start the embedded Redis with `make run`")
    cached = current_app.extensions.get("portal_redis")
    # A test may point the same app at another server: a new URL gets a new pool.
    if cached is None or cached[0] != url:
        client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=10)
        cached = current_app.extensions["portal_redis"] = (url, client)
    return cached[1]


def queue_name(priority: str = DEFAULT, base: str | None = None) -> str:
    """The Redis name of a queue: RQ_QUEUE itself for DEFAULT, RQ_QUEUE-high and -low."""
    base = base or current_app.config["RQ_QUEUE"]
    return base if priority == DEFAULT else f"{base}-{priority}"


def get_queue(priority: str = DEFAULT) -> Queue:
    """Return one of the app's RQ queues on the app's Redis."""
    return Queue(queue_name(priority), connection=get_redis())


def enqueue(
    func: str | Callable,
    *args,
    job_id: str | None = None,
    retry: Retry | None = None,
    priority: str = DEFAULT,
    **kwargs,
) -> Job:
    """Put a call of func (a function or its dotted path) on one of the app's queues.

    Call only after the transaction that made the rows the job needs has committed (use
    portal.database.after_commit). Other keywords follow Queue.enqueue.
    """
    return get_queue(priority).enqueue(func, *args, job_id=job_id, retry=retry, **kwargs)


def enqueue_calls(
    priority: str,
    func: str,
    calls: Iterable[tuple],
    job_ids: Iterable[str] | None = None,
    **options,
) -> bool:
    """Enqueue many calls of func in one round trip; False (logged) when Redis is away.

    Nothing is lost then: the rows stay in the database and the outbox reconciler enqueues
    them once Redis is back. Without REDIS_URL (a script, a test) nothing is enqueued.
    """
    calls = list(calls)
    if not calls or not current_app.config.get("REDIS_URL"):
        return False
    ids = list(job_ids) if job_ids is not None else [None] * len(calls)
    options.setdefault("result_ttl", 0)
    options.setdefault("failure_ttl", 24 * 3600)
    try:
        queue = get_queue(priority)
        queue.enqueue_many(
            [
                Queue.prepare_data(func, args=args, job_id=job_id, **options)
                for args, job_id in zip(calls, ids, strict=True)
            ]
        )
    except redis.RedisError:
        log.warning(
            "could not enqueue %d call(s) of %s; they are picked up later", len(calls), func
        )
        return False
    return True
