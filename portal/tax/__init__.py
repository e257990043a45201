"""Transfer invoice data to the tax authority (CQT) through a T-VAN provider."""
