"""The audit log's one table."""

from datetime import datetime

from sqlalchemy import JSON, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from portal.extensions import db
from portal.types import UTCDateTime, utcnow


class AuditEntry(db.Model):
    """One thing someone (or the system) did: the action's code, its target, and its details."""

    __tablename__ = "audit_entry"
    __table_args__ = (
        Index("ix_audit_entry_at", "at"),
        Index("ix_audit_entry_action", "action", "at"),
        Index("ix_audit_entry_user", "user_id", "at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    action: Mapped[str] = mapped_column(String(64))
    # The user, and their name as it was (a failed login names no user, or the one tried).
    user_id: Mapped[int | None] = mapped_column(
        ForeignKey("user.id", ondelete="SET NULL"), nullable=True
    )
    username: Mapped[str] = mapped_column(String(80), default="")
    # web (a request), cli (a flask command) or system (a worker, the reconciler).
    via: Mapped[str] = mapped_column(String(8), default="web")
    ip: Mapped[str] = mapped_column(String(45), default="")
    user_agent: Mapped[str] = mapped_column(String(400), default="")
    # What the action was done to: a table's name and row id, and its label at the time
    # (an invoice's series and number), so the row reads right after the target changes.
    target_type: Mapped[str] = mapped_column(String(32), default="")
    target_id: Mapped[int | None] = mapped_column(nullable=True)
    target_label: Mapped[str] = mapped_column(String(200), default="")
    details: Mapped[dict] = mapped_column(JSON, default=dict)
