"""`flask demo seed`: a seller, series, customers and realistic issued invoices."""

import itertools
import multiprocessing
import os
import random
import secrets
import time as clock
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import click
from flask import Flask, current_app
from flask.cli import AppGroup

from portal.database import after_commit, write
from portal.demo import data
from portal.demo import history as demo_history
from portal.einvoice.document import Document, Line, Party
from portal.extensions import db
from portal.importing.service import LOOKUP_ALPHABET, store_document
from portal.issuing.service import (
    Signer,
    ensure_demo_signer,
    seller_party,
    sign_document,
    signing_moment,
)
from portal.models import Customer, Invoice, InvoiceSeries, Seller, User

demo_cli = AppGroup("demo", help="Demo data.")
BATCH = 500
THIS_MONTH = 20  # demo invoices dated this month, at least
DEMO_USERS = (("admin", "admin", "Quản trị viên"), ("ketoan", "sender", "Kế toán Lan"))
LOGINS_FILE = "demo-logins.txt"


def _today() -> date:
    return datetime.now(ZoneInfo(current_app.config["PORTAL_TIMEZONE"])).date()


def ensure_basics(
    rng: random.Random, today: date
) -> tuple[Seller, list[InvoiceSeries], list[Customer]]:
    """The seller profile, two series of this year, customers and the demo users."""
    seller = db.session.scalar(db.select(Seller).limit(1))
    if seller is None:
        seller = Seller(**data.SELLER)
        db.session.add(seller)
    year = f"{today.year % 100:02d}"
    series = []
    for form, code in ((1, f"K{year}TAA"), (2, f"K{year}TBB")):
        row = db.session.scalar(db.select(InvoiceSeries).filter_by(form=form, series=code))
        if row is None:
            row = InvoiceSeries(form=form, series=code, next_number=1)
            db.session.add(row)
        series.append(row)
    customers = db.session.scalars(db.select(Customer).order_by(Customer.id)).all()
    if not customers:
        customers = [_customer(rng, index) for index in range(50)]
        db.session.add_all(customers)
    db.session.flush()
    return seller, series, customers


def ensure_demo_users() -> list[str]:
    """Make the demo accounts that are missing, each with a password of its own.

    The passwords are made per instance (never admin/admin) and kept, readable by the owner
    only, in instance/demo-logins.txt, which `make run` prints at every start.
    """
    made = []
    with write():
        for username, role, name in DEMO_USERS:
            if db.session.scalar(db.select(User).filter_by(username=username)) is None:
                password = secrets.token_urlsafe(9)
                user = User(username=username, role=role, name=name)
                user.set_password(password)
                db.session.add(user)
                made.append(f"{username} / {password} ({role})")
    if made:
        path = Path(current_app.instance_path) / LOGINS_FILE
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "a") as out:
            out.write("".join(line + "\n" for line in made))
        path.chmod(0o600)
    return made


def _customer(rng: random.Random, index: int) -> Customer:
    person = f"{rng.choice(data.SURNAMES)} {rng.choice(data.MIDDLE)} {rng.choice(data.GIVEN)}"
    address = f"{rng.randint(1, 300)} {rng.choice(data.STREETS)}, {rng.choice(data.CITIES)}"
    if index % 5 == 4:  # a retail buyer: no tax code, often no email
        return Customer(name=rng.choice(data.RETAIL), contact_name=person, address=address,
                        email="" if index % 10 == 9 else f"khach{index}@example.com")  # fmt: skip
    name = f"{rng.choice(data.COMPANY_KINDS)} {data.COMPANY_NAMES[index % len(data.COMPANY_NAMES)]}"
    email = "" if index % 7 == 6 else f"ketoan{index}@example.com"
    return Customer(
        code=f"KH{index + 1:04d}", name=name, tax_code=f"03{rng.randint(10**7, 10**8 - 1)}",
        address=address, email=email, contact_name=person, phone=f"09{rng.randint(10**7, 10**8 - 1)}",
    )  # fmt: skip


def _document(rng: random.Random, issued_on: date, buyer: Party, seller: Party) -> Document:
    foreign = rng.random() < 0.03
    lines = []
    for position in range(1, rng.randint(1, 6) + 1):
        name, unit, price, rate = rng.choice(data.GOODS)
        quantity = Decimal(rng.choice([1, 1, 2, 3, 5, 10, 12, 20]))
        unit_price = Decimal(price)
        if foreign:
            unit_price = (unit_price / Decimal(25_400)).quantize(Decimal("0.01"))
        lines.append(Line(position=position, name=name, unit=unit, quantity=quantity,
                          unit_price=unit_price, vat_rate="0%" if foreign else rate))  # fmt: skip
    return Document(
        form=1, series="", number=0, issued_on=issued_on, seller=seller, buyer=buyer,
        lines=lines, currency="USD" if foreign else "VND",
        exchange_rate=Decimal("25400") if foreign else None,
        payment_method=rng.choice(["TM/CK", "CK", "TM"]),
        lookup_code="".join(rng.choice(LOOKUP_ALPHABET) for _ in range(10)),
    )  # fmt: skip


def _plan(rng, dates, series, buyers, seller) -> Iterator[tuple[Document, datetime]]:
    """Draw each invoice in issue-date order and give it the next number of its series."""
    for issued_on in dates:
        chosen = series[0] if rng.random() < 0.8 else series[1]
        doc = _document(rng, issued_on, rng.choice(buyers), seller)
        doc.form, doc.series, doc.number = chosen[1], chosen[2], chosen[3]
        chosen[3] += 1
        doc.data_id = f"data-{doc.series}-{doc.number}"
        yield doc, signing_moment(doc)


# The signer of a signing process, set once by its initializer.
_worker_signer: Signer | None = None


def _start_worker(signer: Signer) -> None:
    global _worker_signer
    _worker_signer = signer


def _sign_item(item: tuple[Document, datetime]) -> tuple[Document, bytes]:
    """Sign one planned invoice in a signing process; the totals travel back on the document."""
    doc, signing_time = item
    return doc, sign_document(doc, _worker_signer, signing_time)


@contextmanager
def _signing(signer: Signer, workers: int):
    """Yield `submit(items)`, which starts signing a batch and returns a function for the result.

    With workers, the next batch is signed in other processes while this one stores the
    last; the signing code is the same `sign_document` that `issue_invoice` runs.
    """
    if workers <= 0:
        yield lambda items: lambda: [(d, sign_document(d, signer, t)) for d, t in items]
        return
    # forkserver: no fork of a process that may hold threads or open database connections.
    # Preload this module rather than __main__, which may be any script (even one that
    # would start seeding again on import).
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__])
    pool = context.Pool(workers, initializer=_start_worker, initargs=(signer,))
    try:
        yield lambda items: pool.map_async(_sign_item, items, chunksize=25).get
        pool.close()
    finally:
        pool.terminate()
        pool.join()


def _store(signed: list[tuple[Document, bytes]], expected: dict[int, int], after: dict[int, int]):
    """Store one signed batch and move the series' counters past it, in one transaction."""
    from portal.rendering.service import render_ahead

    with write():
        rows = {row.id: row for row in db.session.scalars(db.select(InvoiceSeries))}
        for series_id, number in expected.items():
            if rows[series_id].next_number != number:
                # Someone issued an invoice meanwhile: these numbers are no longer free.
                raise click.ClickException(
                    f"series {rows[series_id].label} moved on while seeding; stopped without gaps"
                )
        with db.session.no_autoflush:
            invoices = [store_document(doc, xml, "demo", flush=False) for doc, xml in signed]
        for series_id, number in after.items():
            rows[series_id].next_number = number
        db.session.flush()
        ids = [invoice.id for invoice in invoices]
        after_commit(lambda: render_ahead(ids))
    db.session.expunge_all()


def default_workers(count: int) -> int:
    """Sign in other processes only when there is enough to sign to repay their start."""
    cores = os.cpu_count() or 1
    return cores if count >= 2000 and cores > 1 else 0


def seed(
    count: int, seed_value: int, days: int = 90, workers: int | None = None, history: bool = True
) -> int:
    """Issue `count` demo invoices spread over the last `days` days; return how many.

    With `history`, this month's invoices also get sends (some went, one failed, one the
    buyer received): what a newcomer should see. Benchmarks go without, since they count
    every send themselves.
    """
    rng = random.Random(seed_value)  # noqa: S311  (repeatable demo data, not secrets)
    today = _today()
    with write():
        seller, series_rows, customers = ensure_basics(rng, today)
        signer = ensure_demo_signer(seller)
        # Plain values: the ORM rows expire at every batch commit.
        seller_data = seller_party(seller)
        buyers = [
            Party(name=c.name, tax_code=c.tax_code, address=c.address, email=c.email,
                  phone=c.phone, person=c.contact_name, code=c.code)
            for c in customers
        ]  # fmt: skip
        series = [[s.id, s.form, s.series, s.next_number] for s in series_rows]
        # Numbers follow dates: new invoices come after those already issued.
        latest = db.session.scalar(db.select(db.func.max(Invoice.issued_on)))
    start = min(today, max(today - timedelta(days=days), date(today.year, 1, 1), latest or today))
    span = (today - start).days
    # This month gets its share and never fewer than THIS_MONTH: the list opens on this
    # month, and its tabs should all have something to show.
    month = max(start, today.replace(day=1))
    here = min(count, max(THIS_MONTH, count * ((today - month).days + 1) // (span + 1)))
    dates = sorted(
        [start + timedelta(days=rng.randint(0, span)) for _ in range(count - here)]
        + [month + timedelta(days=rng.randint(0, (today - month).days)) for _ in range(here)]
    )
    plan = _plan(rng, dates, series, buyers, seller_data)
    workers = default_workers(count) if workers is None else workers
    with _signing(signer, workers) as submit:
        pending = None
        while True:
            before = {row[0]: row[3] for row in series}
            items = list(itertools.islice(plan, BATCH))
            after = {row[0]: row[3] for row in series}
            # Sign this batch while the previous one is stored.
            current = (submit(items), before, after) if items else None
            if pending:
                result, expected, moved = pending
                _store(result(), expected, moved)
            if current is None:
                break
            pending = current
    with write():
        # After the invoices: the history of this month's sends and the sample files to import.
        if history:
            demo_history.record_history(today)
        demo_history.write_samples(db.session.scalar(db.select(Seller).limit(1)), signer, today)
    return count


@demo_cli.command("seed")
@click.option("--invoices", "count", default=200, show_default=True)
@click.option(
    "--seed", "seed_value", default=2026, show_default=True, help="same seed, same invoices"
)
@click.option("--if-empty", is_flag=True, help="do nothing when invoices exist")
@click.option(
    "--workers", type=int, default=None, help="signing processes [default: one per core from 2000]"
)
@click.option(
    "--history/--no-history",
    default=True,
    show_default=True,
    help="give this month's invoices a sending history (benchmarks go without)",
)
def seed_command(count: int, seed_value: int, if_empty: bool, workers: int | None, history: bool):
    """Create a seller, series, customers, demo users and issued invoices."""
    if if_empty and db.session.scalar(db.select(Invoice.id).limit(1)) is not None:
        click.echo("Invoices exist; demo data not loaded again.")
        return
    created = ensure_demo_users()
    started = clock.perf_counter()
    done = seed(count, seed_value, workers=workers, history=history)
    elapsed = clock.perf_counter() - started
    click.echo(
        f"Issued {done} demo invoices in {elapsed:.1f} s ({done / max(elapsed, 1e-9):.0f}/s)."
    )
    if created:
        click.echo("Demo logins: " + ", ".join(created) + ".")


def init_app(app: Flask) -> None:
    app.cli.add_command(demo_cli)
