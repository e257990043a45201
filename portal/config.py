"""Read the portal's configuration from the environment (and an optional .env)."""

import os
import secrets
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
INSTANCE = Path(os.environ.get("PORTAL_INSTANCE", ROOT / "instance"))


def _bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _instance_secret(instance: Path, name: str, make) -> str:
    """Return the secret kept in instance/<name>, made once (0600 from its first byte)."""
    path = instance / name
    if path.exists():
        return path.read_text().strip()
    instance.mkdir(mode=0o700, parents=True, exist_ok=True)
    value = make()
    try:
        handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it meanwhile: use that one
        return path.read_text().strip()
    with os.fdopen(handle, "w") as out:
        out.write(value)  # never readable by others, not even for a moment
    return value


def load_secret_key(instance: Path) -> str:
    """Return SECRET_KEY from the environment, else the one kept in instance/, made once."""
    if os.environ.get("SECRET_KEY"):
        return os.environ["SECRET_KEY"]
    return _instance_secret(instance, "secret_key", lambda: secrets.token_hex(32))


def load_redis_password(instance: Path) -> str:
    """Return the embedded Redis's password, kept in instance/redis_password, made once."""
    return _instance_secret(instance, "redis_password", lambda: secrets.token_urlsafe(32))


class Config:
    """Settings taken from the environment when the app is created."""

    def __init__(self) -> None:
        self.INSTANCE_PATH = str(INSTANCE)
        self.SQLALCHEMY_DATABASE_URI = os.environ.get(
            "DATABASE_URL", f"sqlite:///{INSTANCE / 'portal.db'}"
        )
        # None means: `make run` starts the embedded redis-server and sets REDIS_URL.
        self.REDIS_URL = os.environ.get("REDIS_URL")
        self.RQ_QUEUE = os.environ.get("RQ_QUEUE", "portal")
        self.MAIL_SERVER = os.environ.get("MAIL_SERVER", "127.0.0.1")
        self.MAIL_PORT = int(os.environ.get("MAIL_PORT", "1025"))
        self.MAIL_USE_TLS = _bool("MAIL_USE_TLS")
        self.MAIL_USE_SSL = _bool("MAIL_USE_SSL")
        self.MAIL_USERNAME = os.environ.get("MAIL_USERNAME")
        self.MAIL_PASSWORD = os.environ.get("MAIL_PASSWORD")
        self.MAIL_DEFAULT_SENDER = os.environ.get("MAIL_DEFAULT_SENDER", "hoadon@localhost")
        # Set by `make run` when its own mail catcher is the mail server.
        self.MAIL_CATCHER_DIR = os.environ.get("MAIL_CATCHER_DIR")
        self.PORTAL_BASE_URL = os.environ.get("PORTAL_BASE_URL", "http://127.0.0.1:8000")
        self.PORTAL_TIMEZONE = os.environ.get("PORTAL_TIMEZONE", "Asia/Ho_Chi_Minh")
        self.BABEL_DEFAULT_LOCALE = "vi"
        self.BABEL_TRANSLATION_DIRECTORIES = str(ROOT / "translations")
        self.LANGUAGES = ["vi", "en"]
        self.WTF_CSRF_TIME_LIMIT = None
        self.SESSION_COOKIE_HTTPONLY = True
        self.SESSION_COOKIE_SAMESITE = "Lax"
        self.SESSION_COOKIE_SECURE = _bool("SESSION_COOKIE_SECURE")
        # Shared by every web process when Redis is there; per process otherwise.
        self.RATELIMIT_STORAGE_URI = os.environ.get(
            "RATELIMIT_STORAGE_URI", self.REDIS_URL or "memory://"
        )
        self.RATELIMIT_HEADERS_ENABLED = True
        # Redis down must not take the buyer's pages down with it: count in memory meanwhile.
        self.RATELIMIT_IN_MEMORY_FALLBACK_ENABLED = True
        self.RATELIMIT_STORAGE_OPTIONS = {"socket_connect_timeout": 1, "socket_timeout": 1}
        # Buyer links stop working this many days after sending; 0 = never.
        self.BUYER_LINK_DAYS = int(os.environ.get("BUYER_LINK_DAYS", "0"))
        self.SEND_RETRY_INTERVALS = os.environ.get("SEND_RETRY_INTERVALS", "30,120,600")
        self.SMTP_TIMEOUT = float(os.environ.get("SMTP_TIMEOUT", "30"))
        # A worker's kept SMTP connection is closed after this many idle seconds.
        self.SMTP_IDLE_TIMEOUT = float(os.environ.get("SMTP_IDLE_TIMEOUT", "30"))
        # The outbox (portal/outbox): a claim a worker holds longer than OUTBOX_LEASE is
        # given up; the reconciler runs every RECONCILE_EVERY seconds and re-enqueues items
        # queued longer than QUEUED_STALE_AFTER whose job Redis no longer holds.
        self.OUTBOX_LEASE = int(os.environ.get("OUTBOX_LEASE", "300"))
        self.RECONCILE_EVERY = float(os.environ.get("RECONCILE_EVERY", "5"))
        self.QUEUED_STALE_AFTER = int(os.environ.get("QUEUED_STALE_AFTER", "15"))
        # How long a worker keeps trying to record an outcome while the database is locked.
        self.OUTBOX_FINISH_PATIENCE = float(os.environ.get("OUTBOX_FINISH_PATIENCE", "120"))
        # Bulk send: a batch pauses itself after this many permanent failures in a row, or a
        # third of the last BULK_PAUSE_WINDOW; the selected-invoices PDF holds at most
        # BULK_PREVIEW_MAX; a "slow down" answer pauses the account THROTTLE_SECONDS.
        self.BULK_PAUSE_IN_A_ROW = int(os.environ.get("BULK_PAUSE_IN_A_ROW", "20"))
        self.BULK_PAUSE_WINDOW = int(os.environ.get("BULK_PAUSE_WINDOW", "50"))
        self.BULK_PREVIEW_MAX = int(os.environ.get("BULK_PREVIEW_MAX", "500"))
        self.THROTTLE_SECONDS = float(os.environ.get("THROTTLE_SECONDS", "60"))
        # How long a SQLite writer waits for another's write lock before giving up.
        self.SQLITE_BUSY_TIMEOUT_MS = int(os.environ.get("SQLITE_BUSY_TIMEOUT_MS", "15000"))
        # The sender code (MNGui) that starts every message id (MTDiep) sent to the T-VAN.
        self.TVAN_SENDER_CODE = os.environ.get("TVAN_SENDER_CODE", "V0000000000")
        # The first tax settings (sellers change them in Thiết lập kết nối CQT); `make run`
        # points them at its sandbox and sets TVAN_SANDBOX.
        self.TVAN_PROVIDER = os.environ.get("TVAN_PROVIDER", "sandbox")
        self.TVAN_ENDPOINT = os.environ.get("TVAN_ENDPOINT", "")
        self.TVAN_USERNAME = os.environ.get("TVAN_USERNAME", "")
        self.TVAN_PASSWORD = os.environ.get("TVAN_PASSWORD", "")
        self.TVAN_CALLBACK_SECRET = os.environ.get("TVAN_CALLBACK_SECRET", "")
        self.TVAN_SANDBOX = _bool("TVAN_SANDBOX")
        self.TVAN_TIMEOUT = float(os.environ.get("TVAN_TIMEOUT", "30"))
        # Seconds before each retry of a message the provider could not take.
        self.TAX_RETRY_INTERVALS = os.environ.get(
            "TAX_RETRY_INTERVALS", "30,120,600,1800,3600,3600"
        )
        # A message whose 204 is late is looked up this long after it was taken, then every...
        self.TAX_LOOKUP_AFTER = int(os.environ.get("TAX_LOOKUP_AFTER", "30"))
        self.TAX_LOOKUP_EVERY = int(os.environ.get("TAX_LOOKUP_EVERY", "300"))
        # No 999 this many minutes after the data went out raises an alarm.
        self.TAX_RECEIPT_ALARM_MINUTES = int(os.environ.get("TAX_RECEIPT_ALARM_MINUTES", "10"))
        # One render of the seller's email template may produce this many characters per
        # part, run its loops this many times in all and take this long (docs/decisions.md).
        self.TEMPLATE_MAX_OUTPUT = int(os.environ.get("TEMPLATE_MAX_OUTPUT", "100000"))
        self.TEMPLATE_MAX_ITERATIONS = int(os.environ.get("TEMPLATE_MAX_ITERATIONS", "10000"))
        self.TEMPLATE_MAX_SECONDS = float(os.environ.get("TEMPLATE_MAX_SECONDS", "1"))
        self.PDF_FONT_DIR = str(ROOT / "static" / "fonts")
        self.TRUST_PROXY = _bool("TRUST_PROXY")
        self.PAGE_SIZE = int(os.environ.get("PAGE_SIZE", "50"))
        # The API refuses an issue date more than this many days before today (or after it).
        self.ISSUE_DATE_MAX_AGE_DAYS = int(os.environ.get("ISSUE_DATE_MAX_AGE_DAYS", "31"))
        # The list counts a tab no further than this and shows "10000+" (0: always exactly);
        # a search matching more invoices than LIST_SEARCH_COUNT_LIMIT shows "1000+" and no
        # other tab counts: counting each match costs a read of each (docs/decisions.md).
        self.LIST_COUNT_LIMIT = int(os.environ.get("LIST_COUNT_LIMIT", "10000"))
        self.LIST_SEARCH_COUNT_LIMIT = int(os.environ.get("LIST_SEARCH_COUNT_LIMIT", "1000"))
        # Uploads (XML files, zips of them) are read into memory.
        self.MAX_CONTENT_LENGTH = 50 * 1024 * 1024
