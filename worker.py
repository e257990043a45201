"""Run the RQ workers that send invoices; the app is loaded once, before any job.

    python worker.py [--workers N] [--burst]

Workers do not fork per job (RQ's SimpleWorker): a fork costs about 10 ms a job and
throws away warm connections (PITFALLS.md). N workers are N processes. The first one also
runs the reconciler every RECONCILE_EVERY seconds.
"""

import argparse
import logging
import multiprocessing
import signal
import sys
import threading

from dotenv import load_dotenv

log = logging.getLogger("worker")


def run_worker(burst: bool, reconcile: bool) -> None:
    """Build the app, push its context, and work the queue until stopped."""
    from rq import SimpleWorker

    from portal import create_app
    from portal.runtime.queue import get_queue, get_redis

    app = create_app()
    # The worker renders the PDFs it attaches: refuse to start without every Vietnamese glyph.
    from pathlib import Path

    from portal.rendering.pdf import self_check

    self_check(Path(app.config["PDF_FONT_DIR"]))
    with app.app_context():
        if reconcile and not burst:
            threading.Thread(target=_reconcile_forever, args=(app,), daemon=True).start()
        worker = SimpleWorker([get_queue()], connection=get_redis())
        worker.work(burst=burst, with_scheduler=True, logging_level="INFO")


def _reconcile_forever(app) -> None:
    from portal.extensions import db
    from portal.sending.service import reconcile

    stop = threading.Event()
    while not stop.wait(app.config["RECONCILE_EVERY"]):
        with app.app_context():
            try:
                counts = reconcile()
                if any(counts.values()):
                    log.info("reconciled deliveries: %s", counts)
            except Exception:
                log.exception("reconcile failed; trying again later")
            finally:
                db.session.remove()


def main(argv: list[str] | None = None) -> int:
    load_dotenv()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--burst", action="store_true", help="stop when the queue is empty")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s worker %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    if args.workers <= 1:
        run_worker(args.burst, reconcile=True)
        return 0
    processes = [
        multiprocessing.Process(target=run_worker, args=(args.burst, index == 0), daemon=False)
        for index in range(args.workers)
    ]
    for process in processes:
        process.start()

    def stop(signum, _frame):
        for process in processes:
            if process.is_alive():
                process.terminate()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for process in processes:
        process.join()
    return max((p.exitcode or 0) for p in processes)


if __name__ == "__main__":
    sys.exit(main())
