"""Transfer N invoices to the T-VAN sandbox in batched messages and print the rate.

    .venv/bin/python bench/tax_bench.py [-n 1000]

Starts the system the way `make run` does (the sandbox included), seeds N demo invoices,
then asks for their transfer with one *Chuyển dữ liệu HĐ đến CQT* request (messages of one
taxpayer, at most 2 MB) and waits until the sandbox's 204s have judged every invoice.
Prints the request's time, messages and invoices per second from the request to the last
verdict, and the sandbox's ledger (every invoice accepted exactly once).
"""

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import sqlalchemy as sa  # noqa: E402

from bench.sink import Sink  # noqa: E402
from bench.system import Client, System, free_port  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=1000)
    options = parser.parse_args()
    sink = Sink(free_port()).start()
    try:
        # Answers come by polling (every reconciler run) and by push to the callback.
        # The sandbox answers its 204 at once: what is measured is the portal and the checks,
        # not the authority's own delay (minutes to hours in real life).
        env = {"TVAN_PORT": str(free_port()), "RECONCILE_EVERY": "1", "TVAN_NOTICE_DELAY": "0"}
        with System(options.n, sink.port, env) as system:
            client = Client(system.url)
            ids = system.invoice_ids()
            started = time.perf_counter()
            status = client.post("/tax/transfer", {"ids": ids, "next": "/"})
            asked = time.perf_counter() - started
            assert status in (200, 302), status
            query = sa.text("SELECT result, COUNT(*) FROM tax_submission GROUP BY result")
            while True:
                with system.engine.connect() as conn:
                    counts = dict(conn.execute(query).all())
                if sum(counts.values()) >= len(ids) and not counts.get("pending"):
                    break
                if time.perf_counter() - started > 900:
                    raise SystemExit(f"not settled after 15 minutes: {counts}")
                time.sleep(0.2)
            elapsed = time.perf_counter() - started
            with system.engine.connect() as conn:
                messages = conn.execute(sa.text("SELECT COUNT(*) FROM tax_message")).scalar()
            seen = system.sandbox("/_ledger")
    finally:
        sink.stop()
    twice = sum(1 for row in seen["invoices"] if row[-1] > 1)
    print(f"invoices: {len(ids)} in {messages} messages (at most 2 MB each)")
    print(f"the transfer request answered in {asked:.2f} s")
    print(f"all judged in {elapsed:.1f} s: {messages / elapsed:.1f} messages/s, "
          f"{len(ids) / elapsed:.0f} invoices/s")  # fmt: skip
    print(f"verdicts: {counts}; at the sandbox: {len(seen['invoices'])} invoices, "
          f"{seen['submits']} submits, {twice} arrived twice")  # fmt: skip


if __name__ == "__main__":
    main()
