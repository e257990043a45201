"""`flask demo seed`: realistic, verifiable, deterministic demo invoices."""

import re
from decimal import Decimal
from pathlib import Path

from portal.einvoice.signing import verify_xml
from portal.einvoice.words import amount_in_words
from portal.einvoice.xml import parse_xml
from portal.extensions import db
from portal.models import Customer, Delivery, Invoice, InvoiceSeries, ReceiptEvent, Seller, User
from tests.conftest import make_app


def seeded_xml(app, seed, *options):
    result = app.test_cli_runner().invoke(
        args=["demo", "seed", "--invoices", "30", "--seed", str(seed), *options]
    )
    assert result.exit_code == 0, result.output
    with app.app_context():
        xml = {(i.series, i.number): i.xml for i in db.session.scalars(db.select(Invoice))}
        db.engine.dispose()
    return xml


def test_seed_issues_verifiable_invoices_with_gapless_numbers(app):
    result = app.test_cli_runner().invoke(args=["demo", "seed", "--invoices", "60"])
    assert result.exit_code == 0 and "Issued 60" in result.output
    # Passwords made for this instance, printed and kept for the owner's eyes only.
    logins = dict(re.findall(r"(admin|ketoan) / (\S+) \(", result.output))
    assert set(logins) == {"admin", "ketoan"} and not {"admin", "ketoan"} & set(logins.values())
    kept = Path(app.instance_path) / "demo-logins.txt"
    assert kept.stat().st_mode & 0o777 == 0o600
    assert all(f"{u} / {p} (" in kept.read_text() for u, p in logins.items())
    with app.app_context():
        invoices = db.session.scalars(db.select(Invoice)).all()
        assert len(invoices) == 60
        for series in db.session.scalars(db.select(InvoiceSeries)):
            numbers = sorted(i.number for i in invoices if i.series == series.series)
            assert numbers == list(range(1, len(numbers) + 1))
            assert series.next_number == len(numbers) + 1
        for invoice in invoices:
            signer = verify_xml(invoice.xml)
            assert signer.tax_code == invoice.seller_tax_code
            doc = parse_xml(invoice.xml)
            assert (doc.form, doc.series, doc.number, doc.issued_on) == (
                invoice.form,
                invoice.series,
                invoice.number,
                invoice.issued_on,
            )
            assert (doc.total_amount, doc.total_tax, doc.lookup_code) == (
                invoice.total_amount,
                invoice.total_tax,
                invoice.lookup_code,
            )
            assert [(s.rate, s.tax_amount) for s in doc.summaries] == [
                (s.rate, s.tax_amount) for s in invoice.vat_summaries
            ]
            assert invoice.amount_in_words == doc.amount_in_words
            assert invoice.amount_in_words == amount_in_words(
                invoice.total_amount, invoice.currency
            )
        assert {i.form for i in invoices} == {1, 2}
        rates = {line.vat_rate for i in invoices for line in i.lines}
        assert {"0%", "5%", "8%", "10%", "KCT", "KKKNT", "KHAC:3.5%"} <= rates
        foreign = [i for i in invoices if i.currency != "VND"]
        assert foreign and all(i.exchange_rate for i in foreign)
        assert any(not i.buyer_tax_code for i in invoices)  # retail buyers
        assert any(not i.buyer_email for i in invoices)
        assert all(i.total_amount > Decimal(0) for i in invoices)
        seller = db.session.scalar(db.select(Seller))
        assert len(seller.tax_code) == 10 and seller.tax_code.isdigit()
        assert db.session.query(Customer).count() == 50
        users = {u.username: u for u in db.session.scalars(db.select(User))}
        assert users["admin"].role == "admin" and users["admin"].check_password(logins["admin"])
        assert users["ketoan"].role == "sender"
        assert users["ketoan"].check_password(logins["ketoan"])


def test_same_seed_same_bytes_also_when_signed_in_other_processes(tmp_path, migrated_db):
    # One demo certificate for all three databases (RSA PKCS#1 v1.5 signatures are
    # deterministic), so the whole signed files can be compared.
    shared = {
        "SIGNING_KEY_PATH": str(tmp_path / "key.pem"),
        "SIGNING_CERT_PATH": str(tmp_path / "cert.pem"),
    }
    apps = []
    for name in ("a", "b", "c"):
        (tmp_path / name).mkdir()
        apps.append(make_app(tmp_path / name, migrated_db, **shared))
    first = seeded_xml(apps[0], 7)
    assert len(first) == 30
    assert seeded_xml(apps[1], 7) == first
    assert seeded_xml(apps[2], 7, "--workers", "2") == first


def test_another_seed_other_invoices(tmp_path, migrated_db):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = seeded_xml(make_app(tmp_path / "a", migrated_db), 1)
    second = seeded_xml(make_app(tmp_path / "b", migrated_db), 2)
    strip = lambda xml: xml.split(b"<DSCKS>")[0]  # noqa: E731
    assert {k: strip(v) for k, v in first.items()} != {k: strip(v) for k, v in second.items()}


def test_seeding_again_continues_the_numbers(app):
    runner = app.test_cli_runner()
    assert runner.invoke(args=["demo", "seed", "--invoices", "10"]).exit_code == 0
    assert runner.invoke(args=["demo", "seed", "--invoices", "10", "--seed", "3"]).exit_code == 0
    with app.app_context():
        for series in db.session.scalars(db.select(InvoiceSeries)):
            numbers = sorted(
                db.session.scalars(db.select(Invoice.number).filter_by(series=series.series))
            )
            assert numbers == list(range(1, series.next_number))
        assert db.session.query(Invoice).count() == 20
        assert db.session.query(Customer).count() == 50
        for form in (1, 2):
            dates = db.session.scalars(
                db.select(Invoice.issued_on).filter_by(form=form).order_by(Invoice.number)
            ).all()
            assert dates == sorted(dates)  # later numbers never carry earlier dates


def test_an_invoice_issued_meanwhile_stops_the_seed_without_gaps(app, monkeypatch):
    import portal.demo.cli as demo
    from portal.issuing.service import issue_invoice, load_signer
    from tests.test_issuing import document

    monkeypatch.setattr(demo, "BATCH", 5)
    stored = []
    real_store = demo._store

    def store_then_issue(*args):
        real_store(*args)
        stored.append(1)
        if len(stored) == 1:  # the API issues on the first series between two batches
            series = db.session.scalar(db.select(InvoiceSeries).filter_by(form=1))
            issue_invoice(document(), series.id, load_signer())

    monkeypatch.setattr(demo, "_store", store_then_issue)
    result = app.test_cli_runner().invoke(args=["demo", "seed", "--invoices", "20"])
    assert result.exit_code != 0 and "moved on while seeding" in result.output
    with app.app_context():
        for series in db.session.scalars(db.select(InvoiceSeries)):
            numbers = sorted(
                db.session.scalars(db.select(Invoice.number).filter_by(series=series.series))
            )
            assert numbers == list(range(1, series.next_number))
        assert db.session.query(Invoice).count() == 6


def test_if_empty_leaves_existing_data_alone(app):
    runner = app.test_cli_runner()
    runner.invoke(args=["demo", "seed", "--invoices", "5"])
    result = runner.invoke(args=["demo", "seed", "--invoices", "5", "--if-empty"])
    assert "not loaded again" in result.output
    with app.app_context():
        assert db.session.query(Invoice).count() == 5


def test_after_seeding_every_tab_of_this_month_has_invoices(app, users):
    from portal.invoices.service import TABS, Filters, tab_counts
    from tests.conftest import login

    assert app.test_cli_runner().invoke(args=["demo", "seed", "--invoices", "60"]).exit_code == 0
    with app.app_context():
        counts, _over = tab_counts(Filters())  # the list opens on this month
        assert set(counts) == set(TABS) and all(counts[tab] > 0 for tab in TABS), counts
        assert counts["sent"] >= 5 and counts["failed"] == 1
        received = db.session.scalars(db.select(Invoice).where(Invoice.received_at.is_not(None)))
        assert len(received.all()) == 1
        # Sends leave their marks the way the outbox does: an attempt each, the mail server's
        # answer, a buyer link.
        [failed] = db.session.scalars(db.select(Invoice).filter_by(send_status="failed")).all()
    client = app.test_client()
    login(client)
    client.post("/lang/en")
    html = client.get("/?tab=failed").get_data(as_text=True)
    assert "mailbox does not exist" in html and "550" in html
    html = client.get(f"/invoices/{failed.id}").get_data(as_text=True)
    assert "Recipient address rejected" in html
    # Seeding more does not write the history twice.
    assert app.test_cli_runner().invoke(args=["demo", "seed", "--invoices", "5"]).exit_code == 0
    with app.app_context():
        assert tab_counts(Filters())[0]["failed"] == 1


def test_benchmarks_seed_without_a_history(app):
    """They count every send themselves: a send they did not make would read as lost."""
    args = ["demo", "seed", "--invoices", "30", "--no-history"]
    assert app.test_cli_runner().invoke(args=args).exit_code == 0
    with app.app_context():
        assert db.session.query(Invoice).count() == 30
        assert db.session.query(Delivery).count() == 0
        assert db.session.query(ReceiptEvent).count() == 0


def test_the_sample_files_are_signed_for_the_demo_seller_and_import(app, users):
    from portal.importing.service import import_files
    from tests.conftest import login

    assert app.test_cli_runner().invoke(args=["demo", "seed", "--invoices", "20"]).exit_code == 0
    client = app.test_client()
    login(client, "sender")
    page = client.get("/import/").get_data(as_text=True)
    names = re.findall(r'href="/import/samples/([^"]+)"', page)
    assert len(names) == 2 and any(n.endswith(".zip") for n in names)
    files = []
    for name in names:
        with client.get(f"/import/samples/{name}") as response:
            assert response.status_code == 200
            assert "attachment" in response.headers["Content-Disposition"]
            files.append((name, response.data))
    assert client.get("/import/samples/..%2Fdemo-logins.txt").status_code == 404
    with app.app_context():
        seller = db.session.scalar(db.select(Seller))
        report = import_files(files[1:] if files[1][0].endswith(".zip") else files[:1], seller)
        assert report.results and all(r.imported for r in report.results), report.messages()
        assert len(report.results) == 3
        for result in report.results:
            invoice = db.session.get(Invoice, result.invoice_id)
            assert verify_xml(invoice.xml).tax_code == seller.tax_code
            assert not invoice.warnings
