"""Seller login, roles and the users command."""
