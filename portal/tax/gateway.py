"""The T-VAN gateway: one interface, one adapter per provider, chosen in the tax settings.

Every provider that takes a signed TDiep offers the same four operations (docs/domain.md,
"Talking to a T-VAN"): submit a message (the 999 comes back), look a message up by its id,
fetch the answers that came since a cursor (polling), and a connection test. Pushed
answers arrive at the portal's callback instead (portal/tax/views.py).

To add a provider, write a class with these methods, translating its API and its errors
into GatewayError kinds, and add it to PROVIDERS.
"""

from __future__ import annotations

import base64
import json
import socket
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Protocol

UNREACHABLE = "unreachable"  # nothing reached the provider: safe to try again
NO_ANSWER = "no_answer"  # it may have the message: look it up before sending again
UNAVAILABLE = "unavailable"  # it answered that it cannot take messages now
AUTH = "auth"  # it refused our credentials
REFUSED = "refused"  # it refused the request itself (a bug on one side)


class GatewayError(Exception):
    """The provider could not be talked to; `kind` says how, `message` what it said."""

    def __init__(self, kind: str, message: str, code: int | None = None):
        super().__init__(f"{kind}: {code or ''} {message}")
        self.kind = kind
        self.message = message
        self.code = code

    @property
    def temporary(self) -> bool:
        return self.kind in (UNREACHABLE, NO_ANSWER, UNAVAILABLE)


@dataclass
class Connection:
    endpoint: str
    username: str
    password: str
    timeout: float = 30.0


class Gateway(Protocol):
    def submit(self, message_code: str, payload: bytes) -> bytes:
        """Send a TDiep; return the provider's immediate answer (the 999)."""

    def lookup(self, message_code: str) -> list[bytes] | None:
        """Return the answers known for a message id (999, 204), or None if it is unknown."""

    def fetch(self, cursor: str) -> tuple[list[bytes], str]:
        """Return the answers that came after the cursor, and the new cursor."""

    def ping(self) -> str:
        """Return the provider's exact answer to a connection test."""


class SandboxGateway:
    """The API of the sandbox that ships with the project (tvan_sandbox), over HTTP."""

    def __init__(self, connection: Connection):
        self.connection = connection
        token = f"{connection.username}:{connection.password}".encode()
        self.auth = "Basic " + base64.b64encode(token).decode()

    def _call(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        url = self.connection.endpoint.rstrip("/") + path
        if not url.startswith(("http://", "https://")):
            raise GatewayError(REFUSED, f"not an http(s) address: {url}")
        headers = {"Authorization": self.auth}
        if body is not None:
            headers["Content-Type"] = "application/xml"
        request = urllib.request.Request(url, body, headers=headers, method=method)  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=self.connection.timeout) as answer:  # noqa: S310
                return answer.status, answer.read()
        except urllib.error.HTTPError as error:
            with error:  # an HTTPError holds the response open
                text = error.read().decode("utf-8", "replace")[:500]
            if error.code == 404:
                return 404, text.encode()
            if error.code in (401, 403):
                raise GatewayError(AUTH, _said(text), error.code) from error
            if error.code >= 500:
                raise GatewayError(UNAVAILABLE, _said(text), error.code) from error
            raise GatewayError(REFUSED, _said(text), error.code) from error
        except urllib.error.URLError as error:
            reason = error.reason
            if isinstance(reason, ConnectionRefusedError | socket.gaierror):
                raise GatewayError(UNREACHABLE, str(reason)) from error
            raise GatewayError(NO_ANSWER, str(reason)) from error
        except (TimeoutError, ConnectionError, OSError) as error:
            # The request may have been read: the caller looks the message up before again.
            raise GatewayError(NO_ANSWER, str(error) or type(error).__name__) from error

    def submit(self, message_code: str, payload: bytes) -> bytes:
        _status, body = self._call("POST", "/api/v1/messages", payload)
        return body

    def lookup(self, message_code: str) -> list[bytes] | None:
        status, body = self._call("GET", f"/api/v1/messages/{message_code}")
        if status == 404:
            return None
        return [item.encode() for item in json.loads(body)["answers"]]

    def fetch(self, cursor: str) -> tuple[list[bytes], str]:
        after = cursor if cursor.isdigit() else "0"
        _status, body = self._call("GET", f"/api/v1/answers?after={after}")
        items = json.loads(body)["answers"]
        if not items:
            return [], cursor
        return [item["xml"].encode() for item in items], str(items[-1]["seq"])

    def ping(self) -> str:
        _status, body = self._call("GET", "/api/v1/ping")
        return body.decode("utf-8", "replace")


def _said(text: str) -> str:
    try:
        return str(json.loads(text).get("error", text))
    except (ValueError, AttributeError):
        return text


# The providers the settings offer: name -> (label, adapter).
PROVIDERS: dict[str, tuple[str, type]] = {
    "sandbox": ("hoadon-portal T-VAN sandbox", SandboxGateway),
}


def gateway_for(provider: str, connection: Connection) -> Gateway:
    """The adapter of a provider, on a connection."""
    try:
        return PROVIDERS[provider][1](connection)
    except KeyError:
        raise GatewayError(REFUSED, f"unknown provider {provider!r}") from None
