"""Run the RQ workers that send invoices; the app is loaded once, before any job.

    python worker.py [--workers N] [--burst]

Workers do not fork per job (RQ's SimpleWorker): a fork costs about 10 ms a job and
throws away warm connections (PITFALLS.md). N workers are N processes. The first one also
runs the maintenance tasks (portal.runtime.maintenance) every RECONCILE_EVERY seconds.
"""

import argparse
import logging
import multiprocessing
import signal
import sys
import threading
from multiprocessing.connection import wait
from pathlib import Path

from dotenv import load_dotenv
from rq import SimpleWorker

log = logging.getLogger("worker")

# Maintenance the worker runs by default, by dotted path so a missing part only warns.
MAINTENANCE = ["portal.sending.service.reconcile"]


class AppWorker(SimpleWorker):
    """A non-forking worker that runs each job in a fresh app context of one app."""

    def __init__(self, *args, app, **kwargs):
        super().__init__(*args, **kwargs)
        self.app = app

    def execute_job(self, job, queue):
        # A context per job: `g` and the database session start clean, and the session is
        # removed when the job ends, whatever it left behind.
        with self.app.app_context():
            super().execute_job(job, queue)


def _check_fonts(app) -> None:
    """Refuse to start when the PDF fonts cannot draw Vietnamese (the worker renders PDFs)."""
    try:
        from portal.rendering.pdf import self_check
    except ImportError:
        return
    self_check(Path(app.config["PDF_FONT_DIR"]))


def _register_maintenance() -> None:
    from portal.runtime import maintenance

    for path in MAINTENANCE:
        try:
            maintenance.register(path)
        except (ImportError, AttributeError):
            log.warning("maintenance task %s is not available; skipped", path)


def run_worker(burst: bool, maintain: bool) -> None:
    """Build the app, push its context, and work the queue until stopped."""
    from portal import create_app
    from portal.runtime.queue import get_queue, get_redis

    app = create_app()
    _check_fonts(app)
    with app.app_context():
        if maintain and not burst:
            _register_maintenance()
            threading.Thread(target=_maintain_forever, args=(app,), daemon=True).start()
        worker = AppWorker([get_queue()], connection=get_redis(), app=app)
        worker.work(burst=burst, with_scheduler=True, logging_level="INFO")


def _maintain_forever(app) -> None:
    from portal.runtime import maintenance

    pause = threading.Event()
    while not pause.wait(app.config.get("RECONCILE_EVERY", 60)):
        # Its own app context: this thread must not share the job's database session.
        with app.app_context():
            for name, result in maintenance.run_all().items():
                if isinstance(result, dict) and any(result.values()):
                    log.info("%s: %s", name, result)


def main(argv: list[str] | None = None) -> int:
    load_dotenv()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--burst", action="store_true", help="stop when the queue is empty")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s worker %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    if args.workers <= 1:
        run_worker(args.burst, maintain=True)
        return 0
    # The parent only supervises: each child builds its own app after the fork, so nothing
    # (database engine, Redis pool) is shared across processes.
    processes = [
        multiprocessing.Process(target=run_worker, args=(args.burst, index == 0))
        for index in range(args.workers)
    ]
    for process in processes:
        process.start()

    def stop(_signum, _frame):
        # SIGTERM asks RQ for a warm shutdown: the job in hand finishes first. RQ ignores a
        # second signal within a second, so Ctrl-C reaching both parent and child is fine.
        for process in processes:
            if process.is_alive():
                process.terminate()

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, stop)
    running = list(processes)
    while running:
        for sentinel in wait([p.sentinel for p in running]):
            ended = next(p for p in running if p.sentinel == sentinel)
            running.remove(ended)
            if ended.exitcode:
                # One worker failed (fonts, Redis gone): stop the rest so a supervisor sees it.
                log.error("worker process %s exited with %s", ended.pid, ended.exitcode)
                stop(None, None)
    return max((abs(p.exitcode or 0) for p in processes), default=0)


if __name__ == "__main__":
    sys.exit(main())
