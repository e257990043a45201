"""`flask demo seed`: realistic, verifiable, deterministic demo invoices."""

from decimal import Decimal

from portal.einvoice.signing import verify_xml
from portal.einvoice.words import amount_in_words
from portal.einvoice.xml import parse_xml
from portal.extensions import db
from portal.models import Invoice, InvoiceSeries, User
from tests.conftest import make_app


def seeded_xml(app, seed):
    result = app.test_cli_runner().invoke(
        args=["demo", "seed", "--invoices", "30", "--seed", str(seed)]
    )
    assert result.exit_code == 0, result.output
    with app.app_context():
        return {(i.series, i.number): i.xml for i in db.session.scalars(db.select(Invoice))}


def test_seed_issues_verifiable_invoices_with_gapless_numbers(app):
    result = app.test_cli_runner().invoke(args=["demo", "seed", "--invoices", "40"])
    assert result.exit_code == 0 and "Issued 40" in result.output
    with app.app_context():
        invoices = db.session.scalars(db.select(Invoice)).all()
        assert len(invoices) == 40
        for series in db.session.scalars(db.select(InvoiceSeries)):
            numbers = sorted(i.number for i in invoices if i.series == series.series)
            assert numbers == list(range(1, len(numbers) + 1))
            assert series.next_number == len(numbers) + 1
        for invoice in invoices:
            signer = verify_xml(invoice.xml)
            assert signer.tax_code == invoice.seller_tax_code
            doc = parse_xml(invoice.xml)
            assert (doc.total_amount, doc.lookup_code) == (
                invoice.total_amount,
                invoice.lookup_code,
            )
            if invoice.currency == "VND":
                assert invoice.amount_in_words == amount_in_words(invoice.total_amount)
        assert any(not i.buyer_tax_code for i in invoices)  # retail buyers
        assert any(not i.buyer_email for i in invoices)
        assert {"admin", "ketoan"} <= {u.username for u in db.session.scalars(db.select(User))}
        assert all(i.total_amount > Decimal(0) for i in invoices)


def test_same_seed_same_invoices(tmp_path, migrated_db):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = seeded_xml(make_app(tmp_path / "a", migrated_db), 7)
    second = seeded_xml(make_app(tmp_path / "b", migrated_db), 7)
    # Each database got its own demo certificate, so compare what was signed, not the signature.
    strip = lambda xml: xml.split(b"<DSCKS>")[0]  # noqa: E731
    assert {k: strip(v) for k, v in first.items()} == {k: strip(v) for k, v in second.items()}


def test_if_empty_leaves_existing_data_alone(app):
    runner = app.test_cli_runner()
    runner.invoke(args=["demo", "seed", "--invoices", "5"])
    result = runner.invoke(args=["demo", "seed", "--invoices", "5", "--if-empty"])
    assert "not loaded again" in result.output
    with app.app_context():
        assert db.session.query(Invoice).count() == 5
