"""The Redis connection and the RQ queue, one connection pool per app."""

import redis
from flask import current_app
from rq import Queue


def get_redis() -> redis.Redis:
    """Return the app's Redis client (REDIS_URL), made once per app and URL."""
    url = current_app.config.get("REDIS_URL")
    if not url:
        raise RuntimeError("REDIS_URL is not set: start the embedded Redis with `make run`")
    cached = current_app.extensions.get("portal_redis")
    if cached is None or cached[0] != url:
        client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=10)
        cached = current_app.extensions["portal_redis"] = (url, client)
    return cached[1]


def get_queue() -> Queue:
    return Queue(current_app.config["RQ_QUEUE"], connection=get_redis())
