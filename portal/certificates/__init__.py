"""The seller's signing certificates (Chữ ký số): registered in settings, they make signatures count."""
