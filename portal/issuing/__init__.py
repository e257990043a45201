"""Issue invoices we make ourselves (demo data, the JSON API): number, sign, store."""
