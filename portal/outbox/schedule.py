"""Enqueue the outbox reconciler; light enough for the worker pool, which loads no app."""

from redis import Redis
from rq import Queue
from rq.job import Job

RECONCILE = "portal.outbox.service.reconcile"
RECONCILE_JOB_ID = "outbox-reconcile"


def schedule_reconcile(connection: Redis, high_queue: str) -> bool:
    """Enqueue one reconcile job on the high queue unless one is already waiting there."""
    state = connection.hget(Job.key_for(RECONCILE_JOB_ID), "status")
    if state in (b"queued", b"scheduled", b"deferred"):
        return False
    Queue(high_queue, connection=connection).enqueue(
        RECONCILE, job_id=RECONCILE_JOB_ID, result_ttl=0, failure_ttl=3600, job_timeout=120
    )
    return True
