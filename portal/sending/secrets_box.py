"""Encrypt the SMTP password at rest with a key derived from SECRET_KEY."""

import base64
import hashlib

from cryptography.fernet import Fernet, InvalidToken
from flask import current_app


def _fernet() -> Fernet:
    digest = hashlib.sha256(b"hoadon-portal smtp password\x00" + current_app.secret_key.encode())
    return Fernet(base64.urlsafe_b64encode(digest.digest()))


def encrypt(plain: str) -> str:
    return _fernet().encrypt(plain.encode()).decode() if plain else ""


def decrypt(token: str) -> str | None:
    """Return the password, or None when SECRET_KEY changed since it was stored."""
    if not token:
        return ""
    try:
        return _fernet().decrypt(token.encode()).decode()
    except InvalidToken:
        return None
