"""A burst of sends through the HTTP endpoint, worked by two real worker processes.

Counted at the receiving SMTP server: every invoice arrives exactly once and every delivery
ends sent, on SQLite and on PostgreSQL, also when the server refuses connections at first.
"""

import http.cookiejar
import threading
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

from portal.extensions import db
from portal.models import Delivery, Invoice
from portal.runtime.queue import get_redis
from portal.statuses import ACTIVE
from tests.conftest import PASSWORD, LiveServer
from tests.factories import make_invoice
from tests.helpers import add_mail_settings, start_worker, stop, wait_for, worker_env

BURST = 300


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def burst_app(request, redis_url, smtp_server):
    app = request.getfixturevalue("app" if request.param == "sqlite" else "postgres_app")
    app.config.update(REDIS_URL=redis_url, RQ_QUEUE=f"test-burst-{request.param}")
    with app.app_context():
        get_redis().flushdb()
        add_mail_settings(smtp_server.port)
        from portal.auth.views import create

        create("sender", PASSWORD, "sender")
        app.invoice_ids = [make_invoice(buyer_email=f"kh{n}@example.com").id for n in range(BURST)]
    return app


def http_client(base: str):
    """Log in over HTTP and return a function that POSTs a form with the session."""
    opener = urllib.request.build_opener(
        urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
    )
    form = urllib.parse.urlencode({"username": "sender", "password": PASSWORD}).encode()
    opener.open(base + "/login", form, timeout=30).read()

    def post(path: str, data: dict) -> int:
        request = urllib.request.Request(
            base + path, urllib.parse.urlencode(data).encode(), headers={"HX-Request": "true"}
        )
        with opener.open(request, timeout=60) as answer:
            answer.read()
            return answer.status

    return post


def send_burst(app, smtp_server) -> None:
    with LiveServer(app) as server:
        post = http_client(server.url)
        with ThreadPoolExecutor(8) as pool:
            statuses = list(
                pool.map(
                    lambda n: post(
                        f"/invoices/{app.invoice_ids[n]}/send",
                        {"to": f"kh{n}@example.com", "method": "email"},
                    ),  # fmt: skip
                    range(BURST),
                )
            )
    assert statuses == [200] * BURST


def settled(app) -> bool:
    with app.app_context():
        active = db.session.scalar(
            db.select(db.func.count()).select_from(Delivery).where(Delivery.status.in_(ACTIVE))
        )
        return active == 0


def check_each_sent_exactly_once(app, smtp_server) -> None:
    received = [message.rcpt_tos for message in smtp_server.messages]
    assert len(received) == BURST
    assert sorted(to for (to,) in received) == sorted(f"kh{n}@example.com" for n in range(BURST))
    with app.app_context():
        deliveries = db.session.scalars(db.select(Delivery)).all()
        assert len(deliveries) == BURST
        assert {d.status for d in deliveries} == {"sent"}
        ids = {message.message["Message-ID"] for message in smtp_server.messages}
        assert ids == {d.message_id for d in deliveries}  # each message is its delivery's
        statuses = db.session.execute(
            db.select(Invoice.send_status, db.func.count()).group_by(Invoice.send_status)
        ).all()
        assert statuses == [("sent", BURST)]


def test_a_burst_of_sends_arrives_exactly_once(burst_app, smtp_server):
    workers = start_worker(worker_env(burst_app), workers=2)
    try:
        send_burst(burst_app, smtp_server)
        wait_for(lambda: settled(burst_app), timeout=240, every=0.5)
    finally:
        stop(workers)
    check_each_sent_exactly_once(burst_app, smtp_server)


def test_a_burst_while_the_mail_server_refuses_at_first_arrives_exactly_once(
    burst_app, smtp_server
):
    smtp_server.stop()  # connections are refused for the first 10 seconds
    workers = start_worker(worker_env(burst_app, SEND_RETRY_INTERVALS="2,4,8,16"), workers=2)
    opens = threading.Timer(10, smtp_server.start)
    try:
        opens.start()
        send_burst(burst_app, smtp_server)
        wait_for(lambda: settled(burst_app), timeout=240, every=0.5)
    finally:
        opens.cancel()
        stop(workers)
    check_each_sent_exactly_once(burst_app, smtp_server)
    with burst_app.app_context():
        retried = db.session.scalar(
            db.select(db.func.count()).select_from(Delivery).where(Delivery.attempts > 1)
        )
    assert retried > 0  # the refusals were real, and retried


TAX_BURST = 120


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def tax_burst_app(request, redis_url, smtp_server, tvan):
    from portal.models import TaxSettings
    from portal.sending.secrets_box import encrypt
    from tests.factories import make_signed_invoice

    app = request.getfixturevalue("app" if request.param == "sqlite" else "postgres_app")
    app.config.update(REDIS_URL=redis_url, RQ_QUEUE=f"test-tax-burst-{request.param}")
    with app.app_context():
        get_redis().flushdb()
        add_mail_settings(smtp_server.port)
        db.session.add(TaxSettings(provider="sandbox", endpoint=tvan.url, username=tvan.user,
                                   password_encrypted=encrypt(tvan.password)))  # fmt: skip
        db.session.commit()
        from portal.auth.views import create

        create("sender", PASSWORD, "sender")
        app.invoice_ids = [make_signed_invoice().id for _ in range(TAX_BURST)]
    return app


def test_a_burst_of_sends_transfers_each_invoice_exactly_once(tax_burst_app, smtp_server, tvan):
    from portal.models import TaxSubmission

    app = tax_burst_app
    workers = start_worker(worker_env(app, TAX_LOOKUP_AFTER="2", TAX_LOOKUP_EVERY="2"), workers=2)

    def accepted() -> int:
        with app.app_context():
            return db.session.scalar(db.select(db.func.count()).select_from(TaxSubmission)
                                     .where(TaxSubmission.result == "accepted"))  # fmt: skip

    try:
        with LiveServer(app) as server:
            post = http_client(server.url)
            with ThreadPoolExecutor(8) as pool:
                statuses = list(pool.map(
                    lambda n: post(f"/invoices/{app.invoice_ids[n]}/send",
                                   {"to": f"kh{n}@example.com", "method": "email"}),
                    range(TAX_BURST),
                ))  # fmt: skip
        assert statuses == [200] * TAX_BURST
        wait_for(lambda: accepted() == TAX_BURST, timeout=240, every=0.5)
    finally:
        stop(workers)
    ledger = tvan.ledger()
    # Counted at the sandbox: every invoice arrived once and was accepted once.
    assert len(ledger["invoices"]) == TAX_BURST
    assert {tuple(row[4:]) for row in ledger["invoices"]} == {("accepted", 1)}
    assert ledger["submits"] == TAX_BURST
    assert len(smtp_server.messages) == TAX_BURST
    with app.app_context():
        statuses = db.session.execute(
            db.select(Invoice.tax_status, db.func.count()).group_by(Invoice.tax_status)
        ).all()
    assert statuses == [("tax_accepted", TAX_BURST)]
