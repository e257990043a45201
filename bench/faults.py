"""Send invoices while things break, and count at the receiving SMTP server what happened.

    .venv/bin/python bench/faults.py [-n 300] [--quick] [--only NAME ...]

Starts the system the way `make run` does (embedded Redis, the worker pool, gunicorn), with
the bench's own SMTP server as the mail server. For each fault it sends N invoices through
the HTTP endpoint in one burst, injects the fault once a third of them arrived, and waits
until every delivery has ended, with no manual step. Then it counts, per invoice, how many
times the server received it, and compares that with the state the portal shows:

- lost: never received, and not shown failed or unknown with a reason;
- duplicated: received more than once;
- false state: a state that contradicts the server (sent but never received, failed but
  received and answered, or still in flight when the run ended), or a tax verdict that
  contradicts the T-VAN sandbox's ledger.

The invoices' data goes to the T-VAN sandbox with each send; its ledger counts, per invoice,
how often it arrived and was accepted: "tax once" is what it should be, "tax twice+" a
duplicate, "tax lost" an invoice never accepted that the portal does not show rejected.

Unknown is never false: the data went out and no answer came. --quick shortens the faults
(a 10 s mail outage, a 6 s silent server) and the retry intervals, for the test suite.
"""

import argparse
import sqlite3
import sys
import threading
import time
import traceback
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.sink import Sink  # noqa: E402
from bench.system import Client, System, bulk_send, free_port  # noqa: E402

FINAL = {"sent", "failed", "unknown"}


def kill_workers(system: System, sink: Sink, options) -> str:
    import os
    import signal

    pids = system.worker_pids()
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    return f"SIGKILLed workers {pids}"


def kill_redis(system: System, sink: Sink, options) -> str:
    import os
    import signal

    pid = system.child("redis-server")
    os.kill(pid, signal.SIGKILL)
    return f"SIGKILLed redis-server {pid}"


def refuse_mail(system: System, sink: Sink, options) -> str:
    sink.stop()
    threading.Timer(options.outage, sink.start).start()
    return f"mail server refusing connections for {options.outage:.0f} s"


def silent_mail(system: System, sink: Sink, options) -> str:
    sink.handler.mode = "silent"

    def speak():
        sink.handler.mode = "normal"

    threading.Timer(options.silence, speak).start()
    return f"mail server taking the data and never answering for {options.silence:.0f} s"


def sandbox_down(system: System, sink: Sink, options) -> str:
    system.sandbox("/_control", {"down": True})
    threading.Timer(options.outage, system.sandbox, args=("/_control", {"down": False})).start()
    return f"T-VAN sandbox down (503) for {options.outage:.0f} s"


def sandbox_loses(system: System, sink: Sink, options) -> str:
    lost = max(2, options.n // 10)
    system.sandbox("/_control", {"lose_receipts": lost, "lose_notices": lost})
    return f"T-VAN sandbox losing the next {lost} receipts (999) and {lost} notices (204)"


def lock_database(system: System, sink: Sink, options) -> str:
    def hold():
        other = sqlite3.connect(system.folder / "portal.db", isolation_level=None, timeout=30)
        other.execute("BEGIN IMMEDIATE")
        time.sleep(options.lock)
        other.execute("ROLLBACK")
        other.close()

    threading.Thread(target=hold, daemon=True).start()
    return f"database write-locked by another process for {options.lock:.0f} s"


def mail_busy(system: System, sink: Sink, options) -> str:
    sink.handler.mode = "busy"

    def calm():
        sink.handler.mode = "normal"

    threading.Timer(options.outage, calm).start()
    return f"mail server answering 421 (slow down) for {options.outage:.0f} s"


def pause_resume(system: System, sink: Sink, options) -> str:
    client = options.client
    client.post(f"/bulk/batches/{options.batch_id}/pause", {})
    time.sleep(options.pause)
    client.post(f"/bulk/batches/{options.batch_id}/resume", {})
    return f"paused for {options.pause:.0f} s, then resumed"


# A batch of the bulk page's, with a fault in the middle.
BULK_FAULTS = {
    "bulk: workers killed": kill_workers,
    "bulk: redis killed": kill_redis,
    "bulk: pause, resume": pause_resume,
    "bulk: mail 421": mail_busy,
}

FAULTS = {
    "none": None,
    "workers killed": kill_workers,
    "redis killed": kill_redis,
    "mail refusing": refuse_mail,
    "mail silent": silent_mail,
    "database locked": lock_database,
    "sandbox down": sandbox_down,
    "sandbox loses": sandbox_loses,
}


def run_fault(name, inject, system: System, sink: Sink, client: Client, ids: list[int], options):
    """Send one batch, inject the fault a third of the way, wait until it all ended."""
    addresses = {invoice_id: f"inv{invoice_id}@bench.example.com" for invoice_id in ids}
    before = sink.count()
    started = time.monotonic()
    note = ""

    def third_arrived() -> None:
        deadline = time.monotonic() + 300
        while sink.count() - before < len(ids) // 3 and time.monotonic() < deadline:
            time.sleep(0.05)

    if name.startswith("bulk:"):
        # The bulk page's batch, to the buyers' own addresses.
        options.client = client
        options.batch_id, _click = bulk_send(system, client, ids)
        third_arrived()
        note = inject(system, sink, options)
        refused = 0
    else:

        def send(invoice_id: int) -> int:
            return client.post(f"/invoices/{invoice_id}/send",
                               {"to": addresses[invoice_id], "method": "email"})  # fmt: skip

        with ThreadPoolExecutor(8) as pool:
            answers = pool.map(send, ids)
            if inject:
                third_arrived()
                note = inject(system, sink, options)
            answers = list(answers)
        refused = sum(1 for status in answers if status != 200)
    deadline = time.monotonic() + options.settle
    while time.monotonic() < deadline:
        states = system.deliveries(ids)
        verdicts = system.tax_results(ids)
        if (
            len(states) == len(ids) - refused
            and all(row["status"] in FINAL for row in states.values())
            and len(verdicts) == len(ids) - refused
            and "pending" not in verdicts.values()
        ):
            break
        time.sleep(0.5)
    elapsed = time.monotonic() - started
    row = count(name, note, ids, addresses, system, sink, refused, elapsed,
                by_file=name.startswith("bulk:"))  # fmt: skip
    row.update(count_tax(ids, system))
    return row


def count_tax(ids: list[int], system: System) -> dict:
    """At the sandbox's ledger: each invoice of the batch accepted once, none twice."""
    identities = system.identities(ids)
    arrived = Counter()
    accepted = Counter()
    for tax_code, form, series, number, verdict, times in system.sandbox("/_ledger")["invoices"]:
        key = (tax_code, form, series, number)
        arrived[key] += times
        if verdict == "accepted":
            accepted[key] += times
    verdicts = system.tax_results(ids)
    row = Counter()
    wrong = []
    for invoice_id in ids:
        key = identities[invoice_id]
        # Lost: the authority never accepted it and the portal does not say it was rejected.
        lost = accepted[key] == 0 and verdicts.get(invoice_id) != "rejected"
        false = (verdicts.get(invoice_id) == "accepted") != (accepted[key] == 1)
        row["tax once"] += accepted[key] == 1
        row["tax twice+"] += arrived[key] > 1
        row["tax lost"] += lost
        row["false states"] += false
        if lost or false or arrived[key] > 1:
            wrong.append(invoice_id)
    for state in system.tax_states(wrong):
        print(f"  tax of invoice {state.pop('invoice_id')}: {state}", flush=True)
    return row


def count(name, note, ids, addresses, system: System, sink: Sink, refused, elapsed,
          by_file: bool = False) -> dict:  # fmt: skip
    """Per invoice: what the server received (by address, or by the PDF's name), and its state."""
    by_address: dict[str, list] = {}
    if by_file:
        # Buyers share addresses in a batch: count by the attached PDF's name instead.
        identities = system.identities(ids)
        addresses = {i: f"{form}{series}_{number:08d}.pdf"
                     for i, (_tax, form, series, number) in identities.items()}  # fmt: skip
    for got in sink.received():
        for to in got.files if by_file else got.rcpt_tos:
            by_address.setdefault(to, []).append(got)
    states = system.deliveries(ids)
    shown = system.invoice_statuses(ids)
    row = Counter()
    for invoice_id in ids:
        got = by_address.get(addresses[invoice_id], [])
        delivery = states.get(invoice_id)
        status = delivery["status"] if delivery else "not sent"
        row["received once" if len(got) == 1 else "never" if not got else "twice+"] += 1
        row[status] += 1
        reason = bool(delivery and delivery["error_kind"])
        if not got and not (status in ("failed", "unknown") and reason):
            row["lost"] += 1
        if len(got) > 1:
            row["duplicated"] += 1
        answered = any(g.answered for g in got)
        false = (
            (status == "sent" and not answered)
            or (status == "failed" and answered)
            or status not in FINAL
            or (delivery and shown.get(invoice_id) != status)  # the list says otherwise
        )
        row["false states"] += bool(false)
    row["refused by the web"] = refused
    return {"fault": name, "note": note, "seconds": elapsed, **row}


COLUMNS = ["received once", "twice+", "never", "sent", "failed", "unknown", "lost",
           "duplicated", "tax once", "tax twice+", "tax lost", "false states", "seconds"]  # fmt: skip


def print_table(rows: list[dict], n: int, bulk: int = 0) -> None:
    batches = f"; batches of {bulk} for the bulk page's faults" if bulk else ""
    print(f"\n{n} invoices per fault{batches}, counted at the receiving SMTP server, the "
          "T-VAN sandbox's ledger and the database")  # fmt: skip
    print(f"{'fault':22}" + "".join(f"{c:>14}" for c in COLUMNS))
    for row in rows:
        cells = [f"{row.get(c, 0):14.0f}" if c == "seconds" else f"{row.get(c, 0):14d}"
                 for c in COLUMNS]  # fmt: skip
        print(f"{row['fault']:22}" + "".join(cells))
    for row in rows:
        if row["note"]:
            print(f"  {row['fault']}: {row['note']}")
    total = {key: sum(row.get(key, 0) for row in rows) for key in COLUMNS}
    lost = total["lost"] + total["tax lost"]
    twice = total["duplicated"] + total["tax twice+"]
    print(f"lost: {lost} duplicated: {twice} false states: {total['false states']}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=300, help="invoices sent per fault")
    parser.add_argument(
        "--bulk",
        type=int,
        default=0,
        metavar="N",
        help="also run the bulk page's faults, with batches of N invoices",
    )
    parser.add_argument("--quick", action="store_true", help="short faults, for the suite")
    parser.add_argument(
        "--only", nargs="*", choices=[*FAULTS, *BULK_FAULTS], help="run these faults only"
    )
    parser.add_argument("--keep", action="store_true", help="keep the instance folder")
    options = parser.parse_args(argv)
    every = {**FAULTS, **(BULK_FAULTS if options.bulk else {})}
    faults = {name: every[name] for name in (options.only or every)}
    sizes = {name: (options.bulk or options.n) if name.startswith("bulk:") else options.n
             for name in faults}  # fmt: skip
    env = {"TVAN_PORT": str(free_port())}
    options.outage, options.silence, options.lock, options.settle = 60, 20, 10, 900
    options.pause = 10
    if options.quick:
        options.outage, options.silence, options.settle, options.pause = 10, 6, 240, 3
        env.update(SEND_RETRY_INTERVALS="2,4,8,16", SMTP_TIMEOUT="4", QUEUED_STALE_AFTER="5",
                   RECONCILE_EVERY="1", TAX_RETRY_INTERVALS="2,4,8,16", TAX_LOOKUP_AFTER="3",
                   TAX_LOOKUP_EVERY="3", TVAN_TIMEOUT="5", THROTTLE_SECONDS="3")  # fmt: skip
    sink = Sink(free_port()).start()
    sink.handler.silent_for = float(env.get("SMTP_TIMEOUT", 30)) + 10
    rows = []
    try:
        # Some demo buyers have no address: seed enough for the bulk batches to be full.
        seeded = sum(sizes.values()) + sum(v for k, v in sizes.items() if k.startswith("bulk:"))
        with System(seeded, sink.port, env, keep=options.keep) as system:
            try:
                rows = run_faults(faults, sizes, system, sink, options)
            except Exception:
                # The launcher's log after the traceback: why a part did not answer.
                traceback.print_exc()
                print(f"the launcher's log, to the end:\n{system.log_text()}", file=sys.stderr)
                return 2
    finally:
        sink.stop()
    print_table(rows, options.n, options.bulk)
    keys = ("lost", "duplicated", "tax lost", "tax twice+", "false states")
    bad = sum(row.get(key, 0) for row in rows for key in keys)
    return 1 if bad else 0


def run_faults(faults: dict, sizes: dict, system: System, sink: Sink, options) -> list[dict]:
    """Each fault in turn, on invoices of its own; a row of counts for each."""
    rows = []
    client = Client(system.url)
    ids = system.invoice_ids()
    # A bulk batch takes invoices whose buyer has an address (retail buyers may not);
    # the other faults send to addresses of their own, so take the rest.
    emails = system.buyer_emails(ids)
    needed = sum(size for name, size in sizes.items() if name.startswith("bulk:"))
    for_bulk = [i for i in ids if emails.get(i)][-needed:] if needed else []
    taken = set(for_bulk)
    pools = {"bulk": for_bulk, "plain": [i for i in ids if i not in taken]}
    start = {"plain": 0, "bulk": 0}
    for name, inject in faults.items():
        key = "bulk" if name.startswith("bulk:") else "plain"
        batch = pools[key][start[key] : start[key] + sizes[name]]
        start[key] += sizes[name]
        rows.append(run_fault(name, inject, system, sink, client, batch, options))
        print(f"{name}: done in {rows[-1]['seconds']:.0f} s", flush=True)
        sink.handler.mode = "normal"
        sink.start()
    return rows


if __name__ == "__main__":
    sys.exit(main())
