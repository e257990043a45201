"""`flask api-tokens create|revoke NAME`: the bearer tokens of the JSON API, kept as hashes."""

import hashlib
import secrets

import click
from flask.cli import AppGroup

from portal import audit
from portal.database import write
from portal.extensions import db
from portal.models import ApiToken

tokens_cli = AppGroup("api-tokens", help="Tokens for the JSON API.")


def hash_token(token: str) -> str:
    """Return the SHA-256 hex digest under which a token is stored and looked up."""
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(name: str) -> str:
    """Create and commit a token; only its hash is kept, so this is the one time it is seen."""
    token = secrets.token_urlsafe(32)
    with write():
        row = ApiToken(name=name, token_hash=hash_token(token))
        db.session.add(row)
        audit.record("api_token.created", target=row)
    return token


@tokens_cli.command("create")
@click.argument("name")
def create_command(name: str):
    """Create an API token and print it once."""
    click.echo(create_token(name))


@tokens_cli.command("revoke")
@click.argument("name")
def revoke_command(name: str):
    """Revoke every token with this name."""
    with write():
        rows = db.session.scalars(db.select(ApiToken).filter_by(name=name, revoked=False)).all()
        for row in rows:
            row.revoked = True
            audit.record("api_token.revoked", target=row)
    click.echo(f"Revoked {len(rows)} token(s) named {name}.")
