"""Login, roles, CSRF and security headers."""

import pytest

from tests.conftest import PASSWORD, login


def test_seller_pages_redirect_to_login(client):
    response = client.get("/")
    assert response.status_code == 302
    assert "/login" in response.headers["Location"]


def test_login_with_right_password_opens_the_list(client, users):
    response = login(client, "viewer")
    assert response.status_code == 302
    assert client.get("/").status_code == 200


def test_wrong_password_is_refused_in_vietnamese(client, users):
    response = login(client, "viewer", "nope")
    assert response.status_code == 200
    assert "Sai tên đăng nhập hoặc mật khẩu." in response.get_data(as_text=True)
    assert client.get("/").status_code == 302


def test_passwords_are_hashed(app, users):
    from portal.extensions import db
    from portal.models import User

    with app.app_context():
        admin = db.session.get(User, users["admin"])
        assert PASSWORD not in admin.password_hash
        assert admin.check_password(PASSWORD)


def test_viewer_cannot_reach_sender_pages(client, users):
    login(client, "viewer")
    assert client.get("/import/").status_code == 403
    client.post("/logout")
    login(client, "sender")
    assert client.get("/import/").status_code == 200


def test_forms_without_csrf_token_are_refused(app, users):
    app.config["WTF_CSRF_ENABLED"] = True
    client = app.test_client()
    response = client.post("/login", data={"username": "admin", "password": PASSWORD})
    assert response.status_code == 400
    page = client.get("/login").get_data(as_text=True)
    token = page.split('name="csrf_token" type="hidden" value="')[1].split('"')[0]
    response = client.post(
        "/login", data={"username": "admin", "password": PASSWORD, "csrf_token": token}
    )
    assert response.status_code == 302


def test_security_headers(client):
    headers = client.get("/login").headers
    assert "default-src 'self'" in headers["Content-Security-Policy"]
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["X-Frame-Options"] == "DENY"


def test_english_is_selectable(client, users):
    login(client, "viewer")
    assert "Đã phát hành" in client.get("/").get_data(as_text=True)
    client.post("/lang/en", data={"next": "/"})
    assert "Issued invoices" in client.get("/").get_data(as_text=True)


def test_users_create_command(runner, app):
    result = runner.invoke(
        args=["users", "create", "lan", "--role", "viewer", "--password", "s3cret!"]
    )
    assert result.exit_code == 0, result.output
    client = app.test_client()
    assert login(client, "lan", "s3cret!").status_code == 302


@pytest.mark.parametrize("role", ["nobody"])
def test_unknown_role_is_rejected_by_the_command(runner, role):
    result = runner.invoke(args=["users", "create", "x", "--role", role, "--password", "p"])
    assert result.exit_code != 0


# The provider's callback: no login, its own signed-body check (tests/test_tax.py).
PUBLIC = {"static", "auth.login", "i18n.set_language", "tax.callback"}
PUBLIC_PREFIXES = ("buyer.",)  # the buyer's link and the lookup page: no login by design


def test_every_seller_route_needs_login(app):
    client = app.test_client()
    checked = 0
    for rule in app.url_map.iter_rules():
        if rule.endpoint in PUBLIC or rule.endpoint.startswith(PUBLIC_PREFIXES):
            continue
        url = rule.rule
        for argument in rule.arguments:
            url = url.replace(f"<int:{argument}>", "1").replace(f"<{argument}>", "x")
        url = url.replace("<any(pdf, xml):kind>", "pdf")
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            response = client.open(url, method=method)
            if rule.endpoint.startswith("api."):
                assert response.status_code == 401, (method, url)
            else:
                assert response.status_code == 302, (method, url, response.status_code)
                assert "/login" in response.headers["Location"], (method, url)
            checked += 1
    assert checked > 25


@pytest.mark.parametrize(
    "target",
    [
        "//evil.example", "/\\evil.example", "https://evil.example/", "javascript:alert(1)",
        "/%09/evil.example", "/%0d%0a/evil.example", "/%0aSet-Cookie:x=1", "/%2F%2Fevil.example",
        "/%5C%5Cevil.example", "%2F%2Fevil.example", " //evil.example", "/\t/evil.example",
        "http:evil.example", "/%5C/evil.example",
    ],
)  # fmt: skip
def test_no_open_redirect_after_login_or_language_switch(client, users, target):
    response = client.post(
        f"/login?next={target}", data={"username": "viewer", "password": PASSWORD}
    )
    assert response.headers["Location"] == "/"
    response = client.post("/lang/en", data={"next": target})
    assert response.headers["Location"] == "/"


@pytest.mark.parametrize("target", ["/?tab=failed&period=all", "/invoices/1", "/bulk/"])
def test_a_same_site_path_is_where_login_and_the_language_switch_return(client, users, target):
    from urllib.parse import quote

    response = client.post(
        f"/login?next={quote(target)}", data={"username": "viewer", "password": PASSWORD}
    )
    assert response.headers["Location"] == target
    response = client.post("/lang/en", data={"next": target})
    assert response.headers["Location"] == target


@pytest.fixture
def limited(tmp_path, migrated_db):
    """An app with login throttling on (the other tests turn it off), and its users."""
    from portal.auth.views import create
    from tests.conftest import make_app

    app = make_app(tmp_path, migrated_db, RATELIMIT_ENABLED=True)
    with app.app_context():
        create("viewer", PASSWORD, "viewer")
    return app


@pytest.mark.parametrize("username", ["viewer", "no-such-user"])
def test_wrong_passwords_are_throttled_per_user_name_known_or_not(limited, username):
    client = limited.test_client()
    codes = [login(client, username, f"wrong-{i}").status_code for i in range(6)]
    assert codes[:5] == [200] * 5 and codes[5] == 429
    assert "Retry-After" in login(client, username, "wrong").headers
    if username == "viewer":
        # Even the right password waits now: a guesser cannot tell it found it.
        assert login(client, "viewer").status_code == 429
    # Another user name from the same address is not locked out by it.
    assert login(client, "other", "wrong").status_code == 200


def test_wrong_passwords_are_throttled_per_address(limited):
    client = limited.test_client()
    codes = [login(client, f"user-{i}", "wrong").status_code for i in range(11)]
    assert codes[:10] == [200] * 10 and codes[10] == 429


def test_right_passwords_are_not_counted(limited):
    client = limited.test_client()
    for _ in range(8):
        assert login(client, "viewer").status_code == 302
        client.post("/logout")


def test_an_unknown_user_costs_the_same_hashing_as_a_known_one(client, users, monkeypatch):
    from portal.auth import views

    checked = []
    real = views.check_password_hash
    monkeypatch.setattr(views, "check_password_hash", lambda h, p: checked.append(h) or real(h, p))
    login(client, "viewer", "wrong")
    login(client, "no-such-user", "wrong")
    assert len(checked) == 2
    # Both hashes are made with the same method and cost.
    assert checked[0].split("$")[0] == checked[1].split("$")[0]


def test_logout_ends_the_session_on_the_server(app, users):
    client = login_client(app, "viewer")
    cookie = client.get_cookie("session").value
    other_device = login_client(app, "viewer")
    assert client.post("/logout").status_code == 302
    # The cookie from before the logout is refused, and so is the user's other session.
    stolen = app.test_client()
    stolen.set_cookie("session", cookie)
    assert stolen.get("/").status_code == 302
    assert other_device.get("/").status_code == 302
    assert login_client(app, "viewer").get("/").status_code == 200


def test_a_new_password_ends_the_users_sessions(app, users):
    from portal.extensions import db
    from portal.models import User

    client = login_client(app, "viewer")
    with app.app_context():
        db.session.get(User, users["viewer"]).set_password("a-new-password-1")
        db.session.commit()
    assert client.get("/").status_code == 302


def login_client(app, username):
    client = app.test_client()
    assert login(client, username).status_code == 302
    assert client.get("/").status_code == 200
    return client
