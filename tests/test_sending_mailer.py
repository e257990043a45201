"""The mailer against a real SMTP server on loopback: MIME, envelope, answers, failures."""

from email.utils import getaddresses

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


LONG_SELLER = "Công ty TNHH Thương mại và Dịch vụ Ánh Dương Việt Nam – Chi nhánh Hà Nội"
LONG_BUYER = "Công ty Cổ phần Đầu tư Xây dựng và Phát triển Hạ tầng Đô thị Sông Hồng"
LONG_CC = "Phòng Kế toán Tổng hợp Công ty Cổ phần Đầu tư Xây dựng Sông Hồng"


def _names(value: str) -> list[tuple[str, str]]:
    return getaddresses([value])


@pytest.mark.parametrize("parser", ["modern", "compat32"])
def test_long_vietnamese_names_arrive_whole_in_from_to_and_cc(smtp_server, parser):
    from email import message_from_bytes, policy
    from email.header import decode_header, make_header

    smtp = settings(smtp_server.port, sender_name=LONG_SELLER)
    subject = f"Hóa đơn điện tử số 00000123 của {LONG_SELLER} gửi {LONG_BUYER}"
    mailer.send(smtp, message(smtp, recipient_name=LONG_BUYER, to=["an@example.com", "b@example.com"],
                              cc=[(LONG_CC, "cc@example.com")], subject=subject))  # fmt: skip
    (received,) = smtp_server.messages
    if parser == "modern":
        parsed = message_from_bytes(received.data, policy=policy.default)
        read = {h: [(a.display_name, a.addr_spec) for a in parsed[h].addresses]
                for h in ("From", "To", "Cc")}  # fmt: skip
        read_subject = str(parsed["Subject"])
    else:
        # What a mail app that follows RFC 2047 shows: encoded words decoded, then split.
        parsed = message_from_bytes(received.data, policy=policy.compat32)
        read = {h: _names(str(make_header(decode_header(parsed[h])))) for h in ("From", "To", "Cc")}
        read_subject = str(make_header(decode_header(parsed["Subject"])))
    assert read_subject == subject[:200]
    assert read == {
        "From": [(LONG_SELLER, "hoadon@anhduong.vn")],
        "To": [(LONG_BUYER, "an@example.com"), ("", "b@example.com")],
        "Cc": [(LONG_CC, "cc@example.com")],
    }
    assert all(len(line) <= 998 for line in received.data.split(b"\r\n"))


def test_a_name_that_looks_like_an_address_stays_a_name(smtp_server):
    smtp = settings(smtp_server.port)
    mailer.send(smtp, message(smtp, recipient_name="Ke toan: someone@example.org"))
    (received,) = smtp_server.messages
    (to,) = received.message["To"].addresses
    assert (to.display_name, to.addr_spec) == ("Ke toan: someone@example.org", "an@example.com")
    assert '"Ke toan: someone@example.org" <an@example.com>' in received.data.decode()
    assert received.rcpt_tos.count("someone@example.org") == 0


@pytest.mark.parametrize("sneaky", ["\u2028", "\u2029", "\u202e", "\u2066", "\x85", "\ud800"])
def test_separators_bidi_overrides_and_surrogates_are_dropped_from_names(smtp_server, sneaky):
    smtp = settings(smtp_server.port)
    mailer.send(
        smtp, message(smtp, recipient_name=f"Nguyễn{sneaky} Văn An{sneaky}Bcc: x@evil.example")
    )
    (received,) = smtp_server.messages
    (to,) = received.message["To"].addresses
    assert (
        to.display_name == "Nguyễn Văn AnBcc: x@evil.example" and to.addr_spec == "an@example.com"
    )
    assert "x@evil.example" not in received.rcpt_tos


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


def test_the_message_is_written_as_the_standard_generator_writes_it():
    import email.message
    import os

    pdf = os.urandom(60_000)  # an 80 KB message, as an invoice email is
    smtp = settings(25)
    mail = message(
        smtp, attachments=[mailer.Attachment("1K26TAA_00000123.pdf", "application/pdf", pdf)]
    )
    built = mail._message()
    built.set_boundary("==boundary==")  # the stock output then has the same boundaries
    built.get_payload()[0].set_boundary("==inner==")
    mail._message = lambda: built
    ours = mail.as_bytes()
    assert ours == email.message.Message.as_bytes(built)
    assert b"\r\n\r\n" in ours and b"\n" not in ours.replace(b"\r\n", b"")


@pytest.mark.parametrize(
    ("body", "stuffed"),
    [
        (b"a\r\n.b\r\n", b"a\r\n..b\r\n.\r\n"),
        (b".first\r\nlast", b"..first\r\nlast\r\n.\r\n"),
        (b"bare\n.lf\nends", b"bare\r\n..lf\r\nends\r\n.\r\n"),
        (b"mixed\r\n.x\n..y\r\n", b"mixed\r\n..x\r\n...y\r\n.\r\n"),
        (b"", b"\r\n.\r\n"),
    ],
)
def test_data_lines_are_dot_stuffed_and_end_in_crlf(body, stuffed):
    assert mailer._dot_stuffed(body) == stuffed


def test_every_multipart_has_its_own_boundary_that_no_encoded_body_can_contain():
    smtp = settings(25)
    boundaries = [
        part.get_boundary()
        for _ in range(2)
        for part in message(smtp)._message().walk()
        if part.is_multipart()
    ]
    assert len(boundaries) == len(set(boundaries)) == 4  # mixed and alternative, twice
    assert all(b.startswith("=_") and len(b) == 34 for b in boundaries)
