"""The mailer against a real SMTP server on loopback: MIME, envelope, answers, failures."""

import pytest

from portal.sending import mailer
from portal.sending.addresses import parse_addresses


@pytest.fixture(autouse=True)
def app_context(app):
    # Flask-Mail's Message reads the app's mail settings while it builds the MIME.
    with app.app_context():
        yield


def settings(port, **overrides):
    values = dict(
        host="127.0.0.1", port=port, security="none", username="", password="",
        sender_name="Công ty Ánh Dương", sender_email="hoadon@anhduong.vn",
        reply_to="ketoan@anhduong.vn", timeout=5,
    )  # fmt: skip
    values.update(overrides)
    return mailer.SmtpSettings(**values)


def message(smtp, **overrides):
    values = dict(
        recipient_name="Nguyễn Văn An",
        to=["an@example.com"],
        cc=["cc@example.com"],
        bcc=["hidden@example.com"],
        subject="Hóa đơn số 00000123",
        text="Kính gửi Quý khách",
        html="<p>Kính gửi Quý khách</p>",
        attachments=[
            mailer.Attachment("1K26TAA_00000123.pdf", "application/pdf", b"%PDF-1.4 test"),
            mailer.Attachment("1K26TAA_00000123.xml", "application/xml", b"<HDon/>"),
        ],
        message_id="<abc@anhduong.vn>",
    )
    values.update(overrides)
    return mailer.build_message(smtp, **values)


def test_message_reaches_the_server_with_envelope_headers_and_attachments(smtp_server):
    smtp = settings(smtp_server.port)
    code, answer = mailer.send(smtp, message(smtp))
    assert code == 250 and "queued" in answer
    (received,) = smtp_server.messages
    assert received.mail_from == "hoadon@anhduong.vn"
    assert sorted(received.rcpt_tos) == ["an@example.com", "cc@example.com", "hidden@example.com"]
    parsed = received.message
    assert parsed["Message-ID"] == "<abc@anhduong.vn>"
    assert parsed["Reply-To"] == "ketoan@anhduong.vn"
    assert "hidden@example.com" not in received.data.decode()  # Bcc is envelope only
    assert str(parsed["To"]) == "Nguyễn Văn An <an@example.com>"
    files = {part.get_filename(): part.get_content() for part in parsed.iter_attachments()}
    assert files == {"1K26TAA_00000123.pdf": b"%PDF-1.4 test", "1K26TAA_00000123.xml": b"<HDon/>"}


def test_buyer_name_cannot_inject_headers(smtp_server):
    smtp = settings(smtp_server.port)
    evil = "X\r\nBcc: evil@example.com"
    mailer.send(smtp, message(smtp, recipient_name=evil, subject="Hi\r\nBcc: evil@example.com"))
    (received,) = smtp_server.messages
    assert "evil@example.com" not in received.rcpt_tos
    parsed = received.message
    assert "Bcc" not in parsed.keys()
    assert "\n" not in str(parsed["Subject"]) and "\n" not in str(parsed["To"])
    assert parsed["To"].addresses[0].addr_spec == "an@example.com"


def test_temporary_answer_is_temporary(smtp_server):
    smtp_server.handler.data_replies = ["421 4.3.2 Service not available, try later"]
    smtp = settings(smtp_server.port)
    with pytest.raises(mailer.SendError) as caught:
        mailer.send(smtp, message(smtp))
    assert caught.value.outcome == mailer.TEMPORARY and caught.value.code == 421


def test_rejected_message_is_permanent(smtp_server):
    smtp_server.handler.data_replies = ["550 5.7.1 Message rejected as spam"]
    smtp = settings(smtp_server.port)
    with pytest.raises(mailer.SendError) as caught:
        mailer.send(smtp, message(smtp))
    assert (caught.value.outcome, caught.value.kind, caught.value.code) == (
        mailer.PERMANENT,
        "rejected",
        550,
    )


def test_every_recipient_refused_is_permanent(smtp_server):
    smtp_server.handler.refuse_rcpt = {
        addr: "550 5.1.1 No such user"
        for addr in ("an@example.com", "cc@example.com", "hidden@example.com")
    }
    smtp = settings(smtp_server.port)
    with pytest.raises(mailer.SendError) as caught:
        mailer.send(smtp, message(smtp))
    assert caught.value.kind == "recipient_refused" and caught.value.code == 550
    assert smtp_server.messages == []


def test_some_recipients_refused_still_sends_and_says_so(smtp_server):
    smtp_server.handler.refuse_rcpt = {"cc@example.com": "550 5.1.1 No such user"}
    smtp = settings(smtp_server.port)
    code, answer = mailer.send(smtp, message(smtp))
    assert code == 250 and "cc@example.com" in answer


def test_stopped_server_is_temporary_unreachable(smtp_server):
    smtp_server.stop()
    smtp = settings(smtp_server.port)
    with pytest.raises(mailer.SendError) as caught:
        mailer.send(smtp, message(smtp))
    assert (caught.value.outcome, caught.value.kind) == (mailer.TEMPORARY, "unreachable")


def test_no_answer_after_data_is_unknown_not_failed(smtp_server):
    smtp_server.handler.data_delay = 3
    smtp = settings(smtp_server.port, timeout=1)
    with pytest.raises(mailer.SendError) as caught:
        mailer.send(smtp, message(smtp))
    assert caught.value.outcome == mailer.UNKNOWN


def test_addresses_are_split_normalised_and_deduplicated():
    parsed = parse_addresses(" An@Example.com; b@example.com,an@example.com ;; not-an-email; c@ ")
    assert parsed.addresses == ["An@example.com", "b@example.com"]
    assert [bad for bad, _ in parsed.errors] == ["not-an-email", "c@"]


def test_a_kept_connection_carries_consecutive_messages(smtp_server):
    smtp = settings(smtp_server.port)
    pool = mailer.SmtpConnections(idle_timeout=30)
    try:
        for _ in range(3):
            assert pool.send(smtp, message(smtp))[0] == 250
    finally:
        pool.close()
    assert len(smtp_server.messages) == 3 and smtp_server.handler.sessions == 1


def test_a_connection_the_server_closed_is_reopened_before_anything_goes(smtp_server):
    smtp = settings(smtp_server.port)
    pool = mailer.SmtpConnections(idle_timeout=30)
    try:
        pool.send(smtp, message(smtp))
        smtp_server.stop()  # the server drops the idle connection
        smtp_server.start()
        assert pool.send(smtp, message(smtp))[0] == 250
    finally:
        pool.close()
    assert len(smtp_server.messages) == 2 and smtp_server.handler.sessions == 2


def test_a_421_on_a_kept_connection_sends_on_a_new_one(smtp_server):
    smtp = settings(smtp_server.port)
    pool = mailer.SmtpConnections(idle_timeout=30)
    try:
        pool.send(smtp, message(smtp))
        # The server caps messages per session, or dropped the idle one: 421 to MAIL FROM.
        smtp_server.handler.mail_replies = ["421 4.4.2 too many messages on this connection"]
        assert pool.send(smtp, message(smtp))[0] == 250
    finally:
        pool.close()
    assert len(smtp_server.messages) == 2 and smtp_server.handler.sessions == 2


def test_an_idle_or_failed_connection_is_not_reused(smtp_server):
    smtp = settings(smtp_server.port)
    pool = mailer.SmtpConnections(idle_timeout=0)
    try:
        pool.send(smtp, message(smtp))
        pool.send(smtp, message(smtp))  # idle for longer than 0 s: a new connection
        smtp_server.handler.data_replies = ["550 5.7.1 rejected"]
        with pytest.raises(mailer.SendError):
            pool.send(smtp, message(smtp))
        pool.idle_timeout = 30
        pool.send(smtp, message(smtp))  # after an error: a new connection again
    finally:
        pool.close()
    assert smtp_server.handler.sessions == 4


def test_nothing_goes_when_before_data_says_no(smtp_server):
    smtp = settings(smtp_server.port)
    calls = []
    with pytest.raises(mailer.SendError) as caught:
        mailer.send(smtp, message(smtp), before_data=lambda: calls.append(1) or False)
    assert calls == [1] and caught.value.kind == "aborted"
    assert smtp_server.messages == []
