"""`flask setup`: what a first (and every) start needs before the processes run."""

from pathlib import Path

import click
from flask import Flask, current_app
from flask.cli import with_appcontext

from portal.config import ROOT


@click.command("setup")
@with_appcontext
def setup_command():
    """Migrate, check the PDF fonts, load demo data once, point mail and tax at the local ones."""
    from flask_migrate import upgrade

    from portal.demo.cli import seed_command
    from portal.rendering.pdf import self_check
    from portal.sending.service import ensure_mail_settings
    from portal.tax.service import ensure_tax_settings

    upgrade(directory=str(ROOT / "migrations"))
    try:
        self_check(Path(current_app.config["PDF_FONT_DIR"]))
    except Exception as error:
        raise click.ClickException(f"the PDF fonts fail their self-check: {error}") from error
    click.get_current_context().invoke(seed_command, if_empty=True)
    ensure_mail_settings()
    ensure_tax_settings()


def init_app(app: Flask) -> None:
    app.cli.add_command(setup_command)
