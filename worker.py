"""Run the RQ workers that send invoices and keep them running.

    python worker.py [--workers N] [--burst]

A small supervisor (RQ's WorkerPool) forks N worker processes and replaces any that dies,
SIGKILL included, within about a second. Each worker builds the app once and runs jobs
without forking (RQ's SimpleWorker): a fork per job costs about 10 ms and throws away warm
connections, the kept SMTP connection among them. Workers take the high queue (the outbox
reconciler) first, then the default one (emails, tax submissions), then the low one (PDFs
rendered ahead). The supervisor itself loads no app: it only enqueues the reconciler every
RECONCILE_EVERY seconds, and at once when a worker died, so that its claim is resolved.
RQ's scheduler is not used: when to try again is kept on the outbox rows.
"""

import argparse
import logging
import os
import signal
import sys
import time
from multiprocessing import get_context

from dotenv import load_dotenv
from redis import Redis, RedisError
from rq import SimpleWorker
from rq.worker_pool import WorkerPool

log = logging.getLogger("worker")


class AppWorker(SimpleWorker):
    """A non-forking worker that runs each job in a fresh app context of one app."""

    def __init__(self, *args, **kwargs):
        from portal import create_app

        super().__init__(*args, **kwargs)
        self.app = create_app()
        with self.app.app_context():
            from portal.rendering.pdf import warm_up

            warm_up()

    def execute_job(self, job, queue):
        # A context per job: `g` and the database session start clean, and the session is
        # removed when the job ends, whatever it left behind.
        with self.app.app_context():
            super().execute_job(job, queue)

    def teardown(self):
        from portal.sending.service import connections

        connections.close()
        super().teardown()

    def request_force_stop(self, signum, frame):
        # RQ stops cold (mid-job) on a second signal more than a second after the first.
        # Stopping the system signals in several steps, so a second signal is normal: the
        # email in hand is finished all the same (SMTP_TIMEOUT bounds it), and SIGKILL after
        # the supervisor's timeout is the cold stop.
        self.log.info("Worker %s: asked again to stop; finishing the job in hand", self.name)


def _stop_before_starting(_signum, _frame):
    raise SystemExit(0)


def _run_worker(name: str, queues: list[str], redis_url: str, burst: bool) -> None:
    """The body of one worker process (after the fork)."""
    # The fork inherited the pool's handlers, which would signal the other workers: until
    # RQ installs its own, a stop request just ends this process (it holds nothing yet).
    signal.signal(signal.SIGINT, _stop_before_starting)
    signal.signal(signal.SIGTERM, _stop_before_starting)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s worker %(message)s", force=True)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    connection = Redis.from_url(redis_url, socket_connect_timeout=2, socket_timeout=30)
    worker = AppWorker(queues, name=name, connection=connection)
    worker.work(burst=burst, with_scheduler=False, logging_level="INFO")


class Pool(WorkerPool):
    """RQ's worker pool with our worker, and the reconciler enqueued on a timer."""

    def __init__(self, *args, redis_url: str, base_queue: str, reconcile_every: float, **kw):
        super().__init__(*args, **kw)
        self.redis_url = redis_url
        self.base_queue = base_queue
        self.reconcile_every = reconcile_every
        self._next_reconcile = 0.0
        self._started: dict[str, float] = {}
        # A worker that dies soon after starting (Redis away, say) is replaced after a pause
        # that doubles up to 30 s, not every second.
        self._backoff = 1.0
        self._respawn_at = 0.0

    def start_worker(self, *args, **kwargs):
        super().start_worker(*args, **kwargs)
        for name in self.worker_dict:
            self._started.setdefault(name, time.monotonic())

    def get_worker_process(self, name, burst, _sleep=0, logging_level="INFO"):
        return get_context("fork").Process(
            target=_run_worker,
            args=(name, self._queue_names, self.redis_url, burst),
            name=f"portal worker {name[:8]}",
        )

    def handle_dead_worker(self, worker_data):
        super().handle_dead_worker(worker_data)
        lived = time.monotonic() - self._started.pop(worker_data.name, time.monotonic())
        if self.status != self.Status.STOPPED and not self._burst:
            self._backoff = 1.0 if lived > 60 else min(self._backoff * 2, 30.0)
            self._respawn_at = time.monotonic() + (0 if lived > 60 else self._backoff)
            log.warning("worker %s (pid %s) died after %.0f s; replacing it", worker_data.name[:8],
                        worker_data.pid, lived)  # fmt: skip
            self._next_reconcile = 0.0  # resolve what it held, now

    def check_workers(self, respawn: bool = True) -> None:
        super().check_workers(respawn and time.monotonic() >= self._respawn_at)
        if self._burst or self.status == self.Status.STOPPED:
            return
        if time.monotonic() >= self._next_reconcile:
            from portal.outbox.schedule import schedule_reconcile

            try:
                schedule_reconcile(self.connection, f"{self.base_queue}-high")
            except RedisError as error:
                log.warning("cannot reach Redis to schedule the reconciler: %s", error)
            self._next_reconcile = time.monotonic() + self.reconcile_every


def _check_fonts() -> None:
    """Refuse to start when the PDF fonts cannot draw Vietnamese (workers render PDFs)."""
    from portal.config import ROOT
    from portal.rendering.pdf import self_check

    self_check(ROOT / "static" / "fonts")


def main(argv: list[str] | None = None) -> int:
    load_dotenv()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--burst", action="store_true", help="stop when the queues are empty")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s worker %(message)s")
    redis_url = os.environ.get("REDIS_URL")
    if not redis_url:
        log.error("REDIS_URL is not set")
        return 2
    # The font check imports the PDF stack: do it in a child, so the supervisor stays small.
    check = get_context("fork").Process(target=_check_fonts)
    check.start()
    check.join()
    if check.exitcode:
        log.error("the PDF fonts fail their self-check; not starting")
        return 1
    base = os.environ.get("RQ_QUEUE", "portal")
    pool = Pool(
        # The order of portal.runtime.queue.PRIORITIES: high, default, low.
        [f"{base}-high", base, f"{base}-low"],
        connection=Redis.from_url(redis_url, socket_connect_timeout=2, socket_timeout=5),
        num_workers=args.workers,
        redis_url=redis_url,
        base_queue=base,
        reconcile_every=float(os.environ.get("RECONCILE_EVERY", "5")),
    )
    pool.start(burst=args.burst)
    return 0


if __name__ == "__main__":
    sys.exit(main())
