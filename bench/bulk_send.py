"""Send N invoices in one bulk batch end to end and print how fast, cold and with PDFs ahead.

    .venv/bin/python bench/bulk_send.py [-n 1000] [--render-sample 500]

Starts the system the way `make run` does (real Redis, the worker pool, gunicorn) with the
bench's SMTP server as the mail server, seeds N demo invoices, and sends them in one batch
through the bulk page's requests (load by conditions, select all matching, send). Prints:

- the time the queueing click (the send request) took;
- invoices per second with a cold PDF cache (every send renders its PDF);
- `ratio: X`: the cold batch's total time divided by the time one process takes to render
  the same N PDFs one after another (the floor of the work on one core; measured on
  --render-sample invoices, half just before the batch and half just after, and scaled to
  N when N is larger: this machine's speed drifts by a tenth within half an hour, and the
  two halves show by how much);
- invoices per second for N more invoices whose PDFs were rendered ahead (as after issuing).
"""

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis  # noqa: E402
import sqlalchemy as sa  # noqa: E402

from bench.sink import Sink  # noqa: E402
from bench.system import Client, System, bulk_send, free_port  # noqa: E402

FINAL = ("sent", "failed", "unknown", "cancelled")


def give_every_buyer_an_address(system: System) -> None:
    """Demo retail buyers may have no email, and a bulk batch leaves those out: give them one."""
    with system.engine.begin() as conn:
        conn.execute(sa.text(
            "UPDATE invoice SET buyer_email = 'buyer' || id || '@bench.example.com' "
            "WHERE buyer_email IS NULL OR buyer_email = ''"
        ))  # fmt: skip


def wait_done(system: System, batch_id: int, count: int) -> float:
    """Seconds from now until every delivery of the batch has ended."""
    query = sa.text("SELECT status, COUNT(*) FROM delivery WHERE batch_id = :b GROUP BY status")
    started = time.perf_counter()
    with system.engine.connect() as conn:
        total = conn.execute(sa.text("SELECT total FROM batch WHERE id = :b"), {"b": batch_id})
        total = total.scalar()
    if total != count:
        raise SystemExit(f"the batch holds {total} invoices, not {count}")
    while True:
        with system.engine.connect() as conn:
            counts = dict(conn.execute(query, {"b": batch_id}).all())
        if sum(counts.get(s, 0) for s in FINAL) >= count:
            return time.perf_counter() - started
        if time.perf_counter() - started > 7200:
            raise SystemExit(f"not done after two hours: {counts}")
        time.sleep(0.1)  # a count is a millisecond's read; 0.5 s added 7% to a warm batch


def render_floor(system: System, count: int, sample: int, skip: int = 0) -> tuple[float, int]:
    """Seconds one process takes to render `count` invoices' PDFs one after another.

    Measured on `sample` of them (after the first `skip`), scaled to `count`. Rendering here
    stores nothing: the batch's PDF cache stays cold.
    """
    import os

    os.environ.update(DATABASE_URL=str(system.engine.url), SECRET_KEY="bench",
                      PORTAL_INSTANCE=str(system.folder))  # fmt: skip
    from portal import create_app
    from portal.extensions import db
    from portal.models import Invoice
    from portal.rendering.service import render_pdf

    app = create_app({"SQLALCHEMY_DATABASE_URI": str(system.engine.url)})
    measured = min(count - skip, sample)
    with app.app_context(), app.test_request_context():
        query = sa.select(Invoice).order_by(Invoice.id).offset(skip).limit(measured)
        invoices = db.session.scalars(query).all()
        render_pdf(invoices[0])  # warm up the fonts and templates
        started = time.perf_counter()
        for invoice in invoices:
            render_pdf(invoice)
        elapsed = time.perf_counter() - started
    return elapsed * count / measured, measured


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=1000)
    parser.add_argument("--render-sample", type=int, default=500)
    options = parser.parse_args()
    n = options.n
    sink = Sink(free_port()).start()
    redis_port = free_port()
    try:
        with System(n, sink.port, {"REDIS_PORT": str(redis_port)}) as system:
            client = Client(system.url)
            give_every_buyer_an_address(system)
            half = max(1, options.render_sample // 2)
            before, measured = render_floor(system, n, half)
            batch_id, click = bulk_send(system, client)
            cold = wait_done(system, batch_id, n)
            after, more = render_floor(system, n, half, skip=min(measured, n - 1))
            floor, measured = (
                (before * measured + after * more) / (measured + more),
                measured + more,
            )
            # N more invoices, issued with Redis there: their PDFs are rendered ahead.
            env = dict(system.env, REDIS_URL=system.redis_url)
            system.env, saved = env, system.env
            system.flask("demo", "seed", "--invoices", str(n), "--no-history")
            system.env = saved
            queue = redis.Redis.from_url(system.redis_url)
            while queue.llen("rq:queue:portal-low"):
                time.sleep(0.5)
            time.sleep(2)
            give_every_buyer_an_address(system)
            warm_batch, warm_click = bulk_send(system, client)
            warm = wait_done(system, warm_batch, n)
            sent = sum(1 for got in sink.received() if got.answered)
    finally:
        sink.stop()
    scaled = "" if measured == n else f" (measured on {measured}, scaled to {n})"
    print(f"invoices per batch: {n}; messages received: {sent}")
    print(f"queueing click (cold batch): {click:.2f} s; (warm batch): {warm_click:.2f} s")
    print(f"cold PDF cache: {cold:.1f} s, {n / cold:.1f} invoices/s")
    print(f"rendering the same {n} PDFs one after another in one process: {floor:.1f} s{scaled}; "
          f"{before:.1f} s measured before the batch, {after:.1f} s after")  # fmt: skip
    print(f"PDFs rendered ahead: {warm:.1f} s, {n / warm:.1f} invoices/s")
    print(f"ratio: {cold / floor:.2f}")


if __name__ == "__main__":
    main()
