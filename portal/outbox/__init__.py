"""The outbox: what the portal owes the outside world, one row per item, worked by RQ jobs."""
