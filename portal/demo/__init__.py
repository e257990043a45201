"""Demo data: `flask demo seed`."""
