"""Nhật ký: who did what, when and from where, written in the unit of work of the change.

Recording an action is one line in the service or view where it happens::

    from portal import audit

    with write():
        ...  # the change
        audit.record("invoice.sent", target=invoice, details={"to": "a@b.vn"})

The action code must be one of `portal.audit.labels.ACTIONS` (add a code and its label
there when adding an action). Details are data (ids, counts, addresses, field names), never
sentences: the log page renders them in the reader's language.
"""

from portal.audit.service import changes, record

__all__ = ["changes", "record"]
