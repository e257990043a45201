"""Send an invoice to its buyer: the dialog, the mail worker, and the send status."""
