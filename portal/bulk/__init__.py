"""Gửi hóa đơn cho KH hàng loạt: send many invoices at once, as one batch of deliveries."""
