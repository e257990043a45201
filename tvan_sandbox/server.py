"""The sandbox's HTTP server: the provider's API, its answers, its ledger, its faults.

    python -m tvan_sandbox --port 8600 --data instance/tvan --user U --password P
                           [--control-token T] [--callback URL --callback-secret S]
                           [--notice-delay 1.0]
    python -m tvan_sandbox --credentials instance/tvan/credentials.json ...

--credentials names a JSON file of user, password, control_token and callback_secret, so
the secrets are not on the command line (where `ps` shows them, and where a value that
starts with "-" reads as an option); a flag given as well overrides the file.

API (HTTP Basic authentication):
- POST /api/v1/messages            a TDiep 203; answers at once with the 999
- GET  /api/v1/messages/<MTDiep>   what is known of a message: {"answers": [xml, ...]}, or 404
- GET  /api/v1/answers?after=<n>   answers in order, for polling: {"answers": [{"seq", "xml"}]}
- GET  /api/v1/ping                who answers, for a connection test
Control (header X-Control-Token): POST /_control with faults as JSON, GET /_ledger.
The 204 follows after --notice-delay seconds and is pushed to --callback (if given), signed
with HMAC-SHA256 of the body in X-TVAN-Signature.
"""

import argparse
import base64
import hashlib
import hmac
import json
import sqlite3
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from lxml import etree

from tvan_sandbox import answers, checks

NAME = "hoadon-portal T-VAN sandbox"


class Store:
    """The sandbox's memory, in SQLite: messages, their answers in order, and the ledger."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.lock = threading.Lock()
        self.db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self.db.executescript(
            """
            PRAGMA journal_mode=WAL;
            CREATE TABLE IF NOT EXISTS message (
                code TEXT PRIMARY KEY, sender TEXT, tax_code TEXT, body BLOB,
                received_at REAL, notice_due REAL);
            CREATE TABLE IF NOT EXISTS answer (
                seq INTEGER PRIMARY KEY AUTOINCREMENT, answers TEXT, kind TEXT, xml BLOB,
                in_feed INTEGER DEFAULT 1);
            CREATE TABLE IF NOT EXISTS ledger (
                tax_code TEXT, form INTEGER, series TEXT, number INTEGER, message_code TEXT,
                verdict TEXT, at REAL);
            """
        )

    def run(self, sql: str, *args):
        with self.lock:
            return self.db.execute(sql, args).fetchall()


class Sandbox:
    def __init__(self, options):
        self.options = options
        self.store = Store(Path(options.data) / "sandbox.db")
        self.faults = {}
        self.fault_lock = threading.Lock()
        self.submits = 0

    # --- faults ------------------------------------------------------------------------

    def fault(self, name, default=None):
        with self.fault_lock:
            return self.faults.get(name, default)

    def take(self, name) -> bool:
        """Use up one of a counted fault ("lose the next 2 answers")."""
        with self.fault_lock:
            left = int(self.faults.get(name, 0) or 0)
            if left > 0:
                self.faults[name] = left - 1
                return True
            return False

    # --- the provider's work -------------------------------------------------------------

    def submit(self, data: bytes) -> bytes:
        self.submits += 1
        root, header, problems = checks.check_envelope(data)
        code, sender, tax_code = (
            header.get("MTDiep", ""),
            header.get("MNGui", ""),
            header.get("MST", ""),
        )
        if code and self.store.run("SELECT 1 FROM message WHERE code = ?", code):
            problems = [checks.Problem("10011", "Mã thông điệp đã tồn tại.")]
        forced = self.fault("receipt_error")
        if forced and self.take("receipt_error_count"):
            problems = [checks.Problem(forced.get("code", "10099"), forced.get("text", "Từ chối"))]
        receipt = answers.receipt(code, sender, tax_code, problems)
        if problems:
            self.store.run("INSERT INTO answer (answers, kind, xml) VALUES (?, '999', ?)",
                           code, receipt)  # fmt: skip
            return receipt
        delay = float(self.fault("notice_delay", self.options.notice_delay))
        self.store.run(
            "INSERT INTO message VALUES (?, ?, ?, ?, ?, ?)",
            code, sender, tax_code, data, time.time(), time.time() + delay,
        )  # fmt: skip
        self.store.run(
            "INSERT INTO answer (answers, kind, xml) VALUES (?, '999', ?)", code, receipt
        )
        threading.Timer(delay, self.notify, args=(code,)).start()
        return receipt

    def notify(self, code: str) -> None:
        """Check every invoice of the message and answer with the 204."""
        rows = self.store.run(
            "SELECT sender, tax_code, body FROM message WHERE code = ? AND notice_due IS NOT NULL",
            code,
        )
        if not rows:
            return
        sender, tax_code, body = rows[0]
        self.store.run("UPDATE message SET notice_due = NULL WHERE code = ?", code)
        invoices = checks.invoices_of(checks.parse(body))
        forced = self.fault("reject")
        for invoice in invoices:
            checks.check_invoice(invoice)
            if forced and (forced.get("numbers") in (None, "all")
                           or invoice.number in forced["numbers"]):  # fmt: skip
                invoice.problems.append(checks.Problem(
                    forced.get("code", "20199"), forced.get("text", "Hóa đơn bị từ chối."),
                    forced.get("hint", "")))  # fmt: skip
            if not invoice.problems:
                known = self.store.run(
                    "SELECT 1 FROM ledger WHERE tax_code=? AND form=? AND series=? AND number=?"
                    " AND verdict='accepted'", *invoice.identity,
                )  # fmt: skip
                if known:
                    invoice.problems.append(checks.Problem(
                        "20609", "Hóa đơn đã tồn tại: trùng mã số thuế người bán, ký hiệu mẫu "
                        "số, ký hiệu và số hóa đơn.",
                        "Không gửi lại hóa đơn đã được tiếp nhận; lập hóa đơn mới với số khác.",
                    ))  # fmt: skip
            self.store.run(
                "INSERT INTO ledger VALUES (?, ?, ?, ?, ?, ?, ?)", *invoice.identity, code,
                "rejected" if invoice.problems else "accepted", time.time(),
            )  # fmt: skip
        notice = answers.notice(code, sender, tax_code, invoices)
        lost = self.take("lose_notices")
        self.store.run("INSERT INTO answer (answers, kind, xml, in_feed) VALUES (?, '204', ?, ?)",
                       code, notice, 0 if lost else 1)  # fmt: skip
        if lost:
            return
        twice = bool(self.fault("answer_twice"))
        if twice:
            self.store.run("INSERT INTO answer (answers, kind, xml) VALUES (?, '204', ?)", code,
                           notice)  # fmt: skip
        for _ in range(2 if twice else 1):
            self.push(notice)

    def push(self, xml: bytes) -> None:
        if not self.options.callback:
            return
        signature = hmac.new(self.options.callback_secret.encode(), xml, hashlib.sha256)
        request = urllib.request.Request(  # noqa: S310  (http(s) only, checked in main)
            self.options.callback, xml, method="POST",
            headers={"Content-Type": "application/xml", "X-TVAN-Signature": signature.hexdigest()},
        )  # fmt: skip
        for attempt in range(5):
            try:
                # The callback is checked to be http(s) at start (main).
                with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310
                    if answer.status < 300:
                        return
            except OSError:
                pass
            time.sleep(2**attempt)  # it is also in the feed and the lookup meanwhile

    def recover(self) -> None:
        """After a restart: answer the messages whose 204 was still to come."""
        for (code,) in self.store.run("SELECT code FROM message WHERE notice_due IS NOT NULL"):
            threading.Timer(0.5, self.notify, args=(code,)).start()

    def known(self, code: str) -> list[str] | None:
        if not self.store.run("SELECT 1 FROM answer WHERE answers = ?", code):
            return None
        rows = self.store.run(
            "SELECT MIN(seq), xml FROM answer WHERE answers = ? GROUP BY kind ORDER BY 1", code
        )
        return [xml.decode() for _seq, xml in rows]

    def feed(self, after: int) -> list[dict]:
        rows = self.store.run(
            "SELECT seq, xml FROM answer WHERE seq > ? AND in_feed = 1 ORDER BY seq LIMIT 500",
            after,
        )
        return [{"seq": seq, "xml": xml.decode()} for seq, xml in rows]

    def ledger(self) -> dict:
        rows = self.store.run(
            "SELECT tax_code, form, series, number, verdict, COUNT(*) FROM ledger "
            "GROUP BY tax_code, form, series, number, verdict"
        )
        return {"invoices": [list(row) for row in rows], "submits": self.submits,
                "messages": self.store.run("SELECT COUNT(*) FROM message")[0][0]}  # fmt: skip


def handler_for(sandbox: Sandbox):
    options = sandbox.options
    expected = "Basic " + base64.b64encode(f"{options.user}:{options.password}".encode()).decode()

    class Handler(BaseHTTPRequestHandler):
        server_version = "TVANSandbox/1"

        def log_message(self, *args):  # quiet: the portal logs what matters
            pass

        def _send(self, status: int, body: bytes, kind: str = "application/json") -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _json(self, status: int, value) -> None:
            self._send(status, json.dumps(value, ensure_ascii=False).encode())

        def _control(self) -> bool:
            token = self.headers.get("X-Control-Token", "")
            if not options.control_token or not hmac.compare_digest(token, options.control_token):
                self._json(403, {"error": "control token"})
                return False
            return True

        def _api(self) -> bool:
            if sandbox.fault("down"):
                self._json(503, {"error": "Hệ thống đang bảo trì"})
                return False
            slow = float(sandbox.fault("slow", 0) or 0)
            if slow:
                time.sleep(slow)
            if not hmac.compare_digest(self.headers.get("Authorization", ""), expected):
                self._json(401, {"error": "Sai tên đăng nhập hoặc mật khẩu"})
                return False
            return True

        def _body(self) -> bytes:
            return self.rfile.read(int(self.headers.get("Content-Length", "0") or 0))

        def do_POST(self):  # noqa: N802  (http.server's names)
            path = urlsplit(self.path).path
            if path == "/_control":
                if self._control():
                    with sandbox.fault_lock:
                        sandbox.faults.update(json.loads(self._body() or b"{}"))
                    self._json(200, {"faults": sandbox.faults})
                return
            if path != "/api/v1/messages":
                self._json(404, {"error": "not found"})
                return
            body = self._body()
            if not self._api():
                return
            receipt = sandbox.submit(body)
            if sandbox.take("lose_receipts"):
                # Taken and answered, but the answer never reaches the sender.
                self.close_connection = True
                self.connection.close()
                return
            self._send(200, receipt, "application/xml")

        def do_GET(self):  # noqa: N802
            parts = urlsplit(self.path)
            if parts.path == "/_ledger":
                if self._control():
                    self._json(200, sandbox.ledger())
                return
            if not self._api():
                return
            if parts.path == "/api/v1/ping":
                self._json(200, {"provider": NAME, "status": "ok"})
            elif parts.path.startswith("/api/v1/messages/"):
                found = sandbox.known(parts.path.rsplit("/", 1)[1])
                if found is None:
                    self._json(404, {"error": "Không tìm thấy thông điệp"})
                else:
                    self._json(200, {"answers": found})
            elif parts.path == "/api/v1/answers":
                after = parse_qs(parts.query).get("after", ["0"])[0]
                self._json(200, {"answers": sandbox.feed(int(after) if after.isdigit() else 0)})
            else:
                self._json(404, {"error": "not found"})

    return Handler


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=NAME)
    parser.add_argument("--port", type=int, default=8600)
    parser.add_argument("--data", default="instance/tvan")
    parser.add_argument("--credentials", help="a JSON file of the secrets below")
    parser.add_argument("--user")
    parser.add_argument("--password")
    parser.add_argument("--control-token")
    parser.add_argument("--callback", default="")
    parser.add_argument("--callback-secret")
    parser.add_argument("--notice-delay", type=float, default=1.0)
    options = parser.parse_args(argv)
    kept = json.loads(Path(options.credentials).read_text()) if options.credentials else {}
    for name in ("user", "password", "control_token", "callback_secret"):
        if getattr(options, name) is None:
            setattr(options, name, kept.get(name, ""))
    if not options.user or not options.password:
        parser.error("a user and a password are needed (--user, --password or --credentials)")
    if options.callback and not options.callback.startswith(("http://", "https://")):
        parser.error("--callback must be an http(s) URL")
    etree.set_default_parser(etree.XMLParser(resolve_entities=False, no_network=True))
    sandbox = Sandbox(options)
    sandbox.recover()
    server = ThreadingHTTPServer(("127.0.0.1", options.port), handler_for(sandbox))
    server.daemon_threads = True
    print(f"{NAME} on 127.0.0.1:{options.port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
