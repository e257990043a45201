"""The Redis connection and the RQ queue, one connection pool per app."""

from collections.abc import Callable

import redis
from flask import current_app
from rq import Queue, Retry
from rq.job import Job


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


def get_queue() -> Queue:
    """Return the app's RQ queue (RQ_QUEUE) on the app's Redis."""
    return Queue(current_app.config["RQ_QUEUE"], connection=get_redis())


def enqueue(
    func: str | Callable,
    *args,
    job_id: str | None = None,
    retry: Retry | None = None,
    **kwargs,
) -> Job:
    """Put a call of func (a function or its dotted path) on the app's queue.

    Call only after the transaction that made the rows the job needs has committed. Other
    keywords follow Queue.enqueue: RQ's options (job_timeout, failure_ttl, unique, ...) are
    taken by RQ, the rest go to the job function.
    """
    return get_queue().enqueue(func, *args, job_id=job_id, retry=retry, **kwargs)
