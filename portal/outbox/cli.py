"""`flask outbox reconcile`: run the outbox reconciler once, by hand."""

import click
from flask import Flask
from flask.cli import AppGroup

from portal.outbox import service

outbox_cli = AppGroup("outbox", help="What the portal owes the outside world.")


@outbox_cli.command("reconcile")
def reconcile_command():
    """Resolve abandoned claims, queue due retries and re-enqueue what Redis lost."""
    for kind, counts in service.reconcile().items():
        click.echo(f"{kind}: " + ", ".join(f"{key} {value}" for key, value in counts.items()))


def init_app(app: Flask) -> None:
    app.cli.add_command(outbox_cli)
