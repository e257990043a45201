"""hoadon-portal: deliver issued e-invoices to buyers and the tax authority."""

from pathlib import Path

from portal.config import ROOT, Config, load_secret_key


def create_app(test_config: dict | None = None):
    """Build the Flask app; no I/O beyond reading settings and the kept secret key."""
    # Imported here: the launcher and the worker pool import this package (for its config)
    # and supervise processes without loading Flask at all.
    from flask import Flask

    config = Config()
    app = Flask(
        __name__,
        instance_path=config.INSTANCE_PATH,
        template_folder=str(ROOT / "templates"),
        static_folder=str(ROOT / "static"),
    )
    app.config.from_object(config)
    if test_config:
        app.config.update(test_config)
    if not app.config.get("SECRET_KEY"):
        app.config["SECRET_KEY"] = load_secret_key(Path(app.instance_path))

    from portal import database, i18n, security, statuses, web
    from portal.api import views as api
    from portal.audit import views as audit
    from portal.auth import views as auth
    from portal.bulk import views as bulk
    from portal.buyer import views as buyer
    from portal.demo import cli as demo
    from portal.extensions import csrf, htmx, limiter, mail, migrate
    from portal.importing import views as importing
    from portal.invoices import views as invoices
    from portal.mailbox import views as mailbox
    from portal.outbox import cli as outbox
    from portal.runtime import cli as runtime
    from portal.sending import views as sending
    from portal.settings import views as settings
    from portal.tax import views as tax

    if app.config.get("TRUST_PROXY"):
        # Behind nginx: take the client's address and scheme from one proxy hop.
        from werkzeug.middleware.proxy_fix import ProxyFix

        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1, x_proto=1)
    database.init_app(app)
    migrate.init_app(app, database.db, directory=str(ROOT / "migrations"))
    csrf.init_app(app)
    limiter.init_app(app)
    mail.init_app(app)
    htmx.init_app(app)
    i18n.init_app(app)
    security.init_app(app)
    statuses.init_app(app)
    web.init_app(app)
    auth.init_app(app)
    app.register_blueprint(invoices.bp)
    app.register_blueprint(importing.bp)
    api.init_app(app)
    sending.init_app(app)
    tax.init_app(app)
    bulk.init_app(app)
    app.register_blueprint(buyer.bp)
    app.register_blueprint(settings.bp)
    app.register_blueprint(mailbox.bp)
    audit.init_app(app)
    demo.init_app(app)
    outbox.init_app(app)
    runtime.init_app(app)
    return app
