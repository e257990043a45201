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
    message.add_attachment(
        b"%PDF-1.4", maintype="application", subtype="pdf", filename="1K26TAA_1.pdf"
    )
    data = message.as_bytes().replace(b"\n", b"\r\n")
    with smtplib.SMTP("127.0.0.1", port) as smtp:
        smtp.sendmail("hoadon@anhduong.vn", ["an@example.com", "hidden@example.com"], data)
    return data


def test_catcher_keeps_the_message_and_its_envelope(catcher):
    port, folder = catcher
    sent = send(port)
    (eml,) = folder.glob("*.eml")
    envelope = json.loads(eml.with_suffix(".json").read_text())
    assert envelope["mail_from"] == "hoadon@anhduong.vn"
    assert envelope["rcpt_tos"] == ["an@example.com", "hidden@example.com"]
    assert eml.read_bytes() == sent


def test_mailbox_lists_and_shows_messages_to_admins(app, users, catcher):
    port, folder = catcher
    app.config["MAIL_CATCHER_DIR"] = str(folder)
    send(port, subject="<script>alert(1)</script>")
    client = app.test_client()
    login(client, "admin")
    listing = client.get("/mailbox/").get_data(as_text=True)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in listing and "<script>alert" not in listing
    name = next(folder.glob("*.eml")).stem
    page = client.get(f"/mailbox/{name}").get_data(as_text=True)
    assert '<a href="http://127.0.0.1:8000/hd/abc?x=1&amp;y=2">' in page
    assert "hidden@example.com" in page and "1K26TAA_1.pdf" in page
    assert client.get(f"/mailbox/{name}/attachments/0").data == b"%PDF-1.4"
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
