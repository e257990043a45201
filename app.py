"""The WSGI app: target of `flask --app app` and gunicorn."""

from dotenv import load_dotenv

load_dotenv()

from portal import create_app  # noqa: E402  (settings come from .env first)

app = create_app()
