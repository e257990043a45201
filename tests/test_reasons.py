"""Why a send failed and the send status, in the seller's Vietnamese words."""

import pytest

from portal.sending.reasons import OURS, REASONS, explain
from portal.statuses import send_status_label as status_label


@pytest.fixture
def vietnamese(app):
    with app.test_request_context():
        yield


@pytest.mark.parametrize(
    ("kind", "words"),
    [
        ("auth", "từ chối tên đăng nhập hoặc mật khẩu"),
        ("sender_refused", "không cho phép gửi từ địa chỉ người gửi"),
        ("recipient_refused", "Hộp thư người nhận không tồn tại"),
        ("unreachable", "Không kết nối được máy chủ thư"),
        ("temporary", "tạm thời từ chối"),
        ("rejected", "thư rác"),
        ("tls", "Kết nối bảo mật"),
        ("no_answer", "hỏi khách hàng trước khi gửi lại"),
        ("no_settings", "Chưa có thiết lập email gửi hóa đơn"),
        ("bad_header", "tiêu đề không hợp lệ"),
        ("internal", "lỗi từ phía hệ thống"),
        ("database_busy", "Cơ sở dữ liệu của hệ thống đang bận"),
        ("worker_stopped", "Tiến trình gửi đã dừng trước"),
        ("something_new", "Gửi không thành công"),
    ],
)
def test_each_failure_kind_has_its_own_vietnamese_sentence(vietnamese, kind, words):
    assert words in explain(kind, None, "")


def test_every_kind_says_something_different(vietnamese):
    sentences = [explain(kind, None, "") for kind in REASONS]
    assert len(set(sentences)) == len(sentences)


def test_the_servers_exact_answer_follows_the_sentence(vietnamese):
    text = explain("auth", 535, "5.7.8 Authentication credentials invalid")
    assert text.endswith("Máy chủ thư: 535 5.7.8 Authentication credentials invalid")
    assert explain("unreachable", None, "[Errno 111] Connection refused").endswith(
        "Máy chủ thư: [Errno 111] Connection refused"
    )
    assert "Máy chủ thư:" not in explain("tls", None, "")


def test_our_own_faults_are_never_shown_as_the_mail_servers_answer(vietnamese):
    for kind in OURS:
        text = explain(kind, None, "OperationalError: database is locked")
        assert "Máy chủ thư" not in text
        assert text.endswith("Chi tiết kỹ thuật: OperationalError: database is locked")


def test_a_worker_stopped_after_the_data_says_it_may_have_arrived(vietnamese):
    assert "sẽ tự gửi lại" in explain("worker_stopped", None, "")
    assert "có thể đã đến" in explain("worker_stopped", None, "", status="unknown")


def test_a_send_that_is_not_retried_promises_no_retry(vietnamese):
    assert "tự gửi lại" in explain("unreachable", None, "")
    text = explain("unreachable", None, "", retried=False)
    assert "Không kết nối được máy chủ thư" in text and "tự gửi lại" not in text
    assert "thử lại sau ít phút" in explain("temporary", 451, "4.7.1 Try later", retried=False)
    assert explain("auth", None, "", retried=False) == explain("auth", None, "")


def test_status_labels_use_the_domain_words(vietnamese):
    labels = ("queued", "sending", "retrying", "sent", "failed", "unknown")
    assert [status_label(s) for s in labels] == [
        "Đang gửi",
        "Đang gửi",
        "Chờ gửi lại",
        "Đã gửi HĐ cho KH",
        "Gửi lỗi",
        "Chưa rõ kết quả",
    ]
    assert status_label("not_sent") == "Chưa gửi cho KH"


def test_english_when_the_seller_chose_english(app):
    with app.test_request_context():
        from flask import session
        from flask_babel import refresh

        session["lang"] = "en"
        refresh()
        assert explain("auth", None, "").startswith("The mail server refused the user name")
        assert status_label("sent") == "Invoice sent to customer"
