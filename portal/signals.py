"""Signals between capabilities, so one can react to another without importing it."""

from blinker import Namespace

_signals = Namespace()

# Sent after a delivery row is committed, with invoice_id and delivery_id. The transfer of
# the invoice data to the tax authority starts here (DOMAIN.md: at the same time).
delivery_queued = _signals.signal("delivery-queued")
