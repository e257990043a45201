"""The `flask demo` commands."""

import click
from flask import Flask
from flask.cli import AppGroup


@click.group("demo", cls=AppGroup)
def demo_cli():
    """Demo data."""


def init_app(app: Flask) -> None:
    app.cli.add_command(demo_cli)
