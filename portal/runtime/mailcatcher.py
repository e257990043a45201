"""A local SMTP server for `make run` that keeps every message it receives.

Each message is stored byte for byte as `<time>-<id>.eml` in a folder, with the envelope
(MAIL FROM, RCPT TO) beside it in `<same name>.json`; the portal's mailbox page reads them.
"""

import argparse
import json
import os
import signal
import time
import uuid
from pathlib import Path

from aiosmtpd.controller import Controller


class StoringHandler:
    def __init__(self, folder: Path):
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)

    async def handle_DATA(self, server, session, envelope):
        name = f"{time.time_ns()}-{uuid.uuid4().hex[:8]}"
        envelope_record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": list(envelope.rcpt_tos),
            "received_at": time.time(),
            "peer": str(session.peer[0]) if session.peer else "",
        }
        # The envelope first and each file renamed into place whole: the mailbox page lists
        # .eml files and must never read half a message or miss its envelope.
        _write(self.folder / f"{name}.json", json.dumps(envelope_record).encode())
        _write(self.folder / f"{name}.eml", envelope.original_content or envelope.content)
        return "250 2.0.0 Ok: kept by the hoadon-portal mail catcher"


def _write(path: Path, data: bytes) -> None:
    partial = path.with_name(path.name + ".part")
    partial.write_bytes(data)
    os.replace(partial, path)


def start(folder: Path, port: int, host: str = "127.0.0.1") -> Controller:
    """Start the catcher in a thread; call .stop() on the result."""
    controller = Controller(StoringHandler(folder), hostname=host, port=port)
    controller.start()
    return controller


def _interrupt(_signum, _frame):
    raise KeyboardInterrupt


def main() -> None:
    parser = argparse.ArgumentParser(description="Keep every email sent to this SMTP server.")
    parser.add_argument("folder", type=Path)
    parser.add_argument("--port", type=int, default=1025)
    args = parser.parse_args()
    controller = start(args.folder, args.port)
    # The launcher stops its children with SIGTERM: close the server cleanly then too.
    signal.signal(signal.SIGTERM, _interrupt)
    print(f"mail catcher on 127.0.0.1:{args.port}, keeping messages in {args.folder}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
