"""Job functions the worker tests enqueue by dotted path."""

import json
import os
from pathlib import Path

from flask import current_app, g

from portal.extensions import db
from portal.models import User


def record_context(path: str, label: str = "") -> None:
    """Write what the job sees of the app: its queue, its users, a clean `g`, its process."""
    Path(path).write_text(
        json.dumps(
            {
                "queue": current_app.config["RQ_QUEUE"],
                "users": db.session.scalar(db.select(db.func.count()).select_from(User)),
                "g_was_clean": not hasattr(g, "touched"),
                "pid": os.getpid(),
                "label": label,
            }
        )
    )
    # A job that leaves something in `g` must not leak it into the next job.
    g.touched = True
