"""The seller's settings: the invoice email (SMTP) and the email template."""
