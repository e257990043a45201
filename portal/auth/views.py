"""Log sellers in and out; guard views by role."""

import secrets
from functools import lru_cache, wraps

import click
from flask import Blueprint, Flask, abort, flash, redirect, render_template, request, url_for
from flask.cli import AppGroup
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user, login_required, login_user, logout_user
from werkzeug.security import check_password_hash, generate_password_hash
from wtforms import PasswordField, StringField
from wtforms.validators import DataRequired

from portal import audit
from portal.database import write
from portal.extensions import db, limiter, login_manager
from portal.inputs import CheckedForm
from portal.models import ROLES, User
from portal.web import safe_target

bp = Blueprint("auth", __name__)

# admin may do what sender may, sender what viewer may.
RANK = {role: rank for rank, role in enumerate(reversed(ROLES))}
ROLE_LABELS = {
    "admin": _l("Administrator"),
    "sender": _l("Sends invoices"),
    "viewer": _l("Views only"),
}


@bp.app_template_global()
def role_label(role: str) -> str:
    """The seller's words for a role (the code is for the database and the command line)."""
    return str(ROLE_LABELS.get(role, role))


class LoginForm(CheckedForm):
    username = StringField("Username", validators=[DataRequired()])
    password = PasswordField("Password", validators=[DataRequired()])


def role_required(role: str):
    """Let in only logged-in users whose role is at least `role`."""

    def decorator(view):
        @wraps(view)
        @login_required
        def wrapped(*args, **kwargs):
            if RANK[current_user.role] < RANK[role]:
                abort(403)
            return view(*args, **kwargs)

        return wrapped

    return decorator


@login_manager.user_loader
def load_user(session_id: str) -> User | None:
    """The user of a session made since their last logout or password change, if active."""
    user_id, _sep, version = session_id.partition(":")
    if not user_id.isdigit() or not version.isdigit():
        return None  # a cookie from before session versions, or forged
    user = db.session.get(User, int(user_id))
    if user is None or not user.active or user.session_version != int(version):
        return None
    return user


# Failed logins only are counted (a right password costs nothing), per address and per
# user name, whether or not that user exists (docs/decisions.md, Login).
LOGIN_LIMIT = "10/minute;50/hour"
USERNAME_LIMIT = "5/minute;30/hour"


def _failed(response) -> bool:
    return response.status_code != 302


def _username_key() -> str:
    return "login-user:" + (request.form.get("username") or "").strip().casefold()[:80]


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    return generate_password_hash(secrets.token_urlsafe(16))


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit(LOGIN_LIMIT, methods=["POST"], deduct_when=_failed)
@limiter.limit(USERNAME_LIMIT, methods=["POST"], key_func=_username_key, deduct_when=_failed)
def login():
    """Show the login form and log the seller in."""
    form = LoginForm()
    if form.validate_on_submit():
        user = db.session.scalar(db.select(User).filter_by(username=form.username.data))
        # The same hashing work for an unknown user as for a known one.
        hashed = user.password_hash if user else _dummy_hash()
        if check_password_hash(hashed, form.password.data) and user and user.active:
            audit.record("auth.login", user=user)
            login_user(user)
            return redirect(safe_target(request.args.get("next"), url_for("invoices.index")))
        # The user tried, if the name is one (filtering by that user shows the attempts).
        audit.record("auth.login_failed", user=user,
                     details={"username": form.username.data[:80]})  # fmt: skip
        flash(_("Wrong username or password."), "error")
    return render_template("auth/login.html", form=form)


@bp.post("/logout")
@login_required
def logout():
    """Log the seller out: this session and every other one of the same user end."""
    with write():
        user = db.session.get(User, current_user.id)
        user.session_version += 1
        audit.record("auth.logout", user=user)
    logout_user()
    return redirect(url_for("auth.login"))


@click.group("users", cls=AppGroup)
def users_cli():
    """Manage seller accounts."""


@users_cli.command("create")
@click.argument("username")
@click.option("--role", type=click.Choice(ROLES), default="sender")
@click.option("--name", default="")
@click.password_option()
def create_user(username: str, role: str, name: str, password: str):
    """Create a seller account."""
    create(username, password, role, name)
    click.echo(f"Created {role} {username}")


def create(username: str, password: str, role: str = "sender", name: str = "") -> User:
    """Create and commit a user."""
    with write():
        user = User(username=username, role=role, name=name or username)
        user.set_password(password)
        db.session.add(user)
        audit.record("user.created", target=user, details={"role": role})
    return user


def init_app(app: Flask) -> None:
    login_manager.init_app(app)
    login_manager.login_view = "auth.login"
    login_manager.login_message = None
    app.register_blueprint(bp)
    app.cli.add_command(users_cli)
