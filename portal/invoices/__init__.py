"""The issued-invoice list and the invoice page."""
