"""The local mail catcher of `make run` and the admins' mailbox page."""

import json
import smtplib
from email.message import EmailMessage

import pytest

from portal.runtime import mailcatcher
from tests.conftest import free_port, login


@pytest.fixture
def catcher(tmp_path):
    port = free_port()
    controller = mailcatcher.start(tmp_path / "mail", port)
    yield port, tmp_path / "mail"
    controller.stop()


def send(port, subject="Hóa đơn số 00000001", text="Xem tại http://127.0.0.1:8000/hd/abc?x=1&y=2"):
    message = EmailMessage()
    message["From"] = "hoadon@anhduong.vn"
    message["To"] = "an@example.com"
    message["Subject"] = subject
    message.set_content(text)
    message.add_alternative("<p>Hóa đơn</p><script>alert(2)</script>", subtype="html")
    message.add_attachment(
        b"%PDF-1.4", maintype="application", subtype="pdf", filename="1K26TAA_1.pdf"
    )
    message.add_attachment(
        b"<HDon/>\r\n", maintype="application", subtype="xml", filename="Hóa đơn 1.xml"
    )
    data = message.as_bytes().replace(b"\n", b"\r\n")
    with smtplib.SMTP("127.0.0.1", port) as smtp:
        smtp.sendmail("hoadon@anhduong.vn", ["an@example.com", "hidden@example.com"], data)
    return data


def test_catcher_keeps_the_message_and_its_envelope(catcher):
    port, folder = catcher
    # A line starting with a dot is dot-stuffed on the wire and must come back unstuffed.
    sent = send(port, text="Kính gửi quý khách,\n.\n..dot line\nhttp://x/hd/1\n")
    (eml,) = folder.glob("*.eml")
    envelope = json.loads(eml.with_suffix(".json").read_text())
    assert envelope["mail_from"] == "hoadon@anhduong.vn"
    assert envelope["rcpt_tos"] == ["an@example.com", "hidden@example.com"]
    assert eml.read_bytes() == sent


def test_mailbox_lists_and_shows_messages_to_admins(app, users, catcher):
    port, folder = catcher
    app.config["MAIL_CATCHER_DIR"] = str(folder)
    send(port, subject="<script>alert(1)</script>")
    send(port, subject="Hóa đơn mới nhất")
    client = app.test_client()
    login(client, "admin")
    listing = client.get("/mailbox/").get_data(as_text=True)
    assert listing.index("Hóa đơn mới nhất") < listing.index("&lt;script&gt;")  # newest first
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in listing and "<script>alert" not in listing
    name = min(folder.glob("*.eml")).stem
    page = client.get(f"/mailbox/{name}").get_data(as_text=True)
    assert '<a href="http://127.0.0.1:8000/hd/abc?x=1&amp;y=2">' in page
    assert "hidden@example.com" in page and "1K26TAA_1.pdf" in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "<script>alert" not in page
    assert "<script>alert(2)" not in page  # the HTML body is not inlined in the portal page
    assert client.get(f"/mailbox/{name}/attachments/0").data == b"%PDF-1.4"
    xml = client.get(f"/mailbox/{name}/attachments/1")
    assert xml.data == b"<HDon/>\r\n"  # the bytes as sent, line ends and all
    assert xml.headers["Content-Disposition"].startswith("attachment;")
    assert "filename*=UTF-8''H%C3%B3a%20%C4%91%C6%A1n%201.xml" in xml.headers["Content-Disposition"]
    assert client.get(f"/mailbox/{name}/attachments/2").status_code == 404
    html = client.get(f"/mailbox/{name}/html")
    # Shown on a page of its own that may run nothing and fetch nothing.
    assert "sandbox" in html.headers["Content-Security-Policy"].split(";")[0]
    assert "default-src 'none'" in html.headers["Content-Security-Policy"]
    assert client.get("/mailbox/../../etc/passwd").status_code == 404


def test_mailbox_is_for_admins_and_only_with_the_catcher(app, users, catcher):
    port, folder = catcher
    client = app.test_client()
    login(client, "admin")
    assert client.get("/mailbox/").status_code == 404  # the catcher is not the mail server
    app.config["MAIL_CATCHER_DIR"] = str(folder)
    client.post("/logout")
    login(client, "sender")
    assert client.get("/mailbox/").status_code == 403
