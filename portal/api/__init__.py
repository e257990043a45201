"""The token-authenticated JSON API other software uses to issue invoices."""
