"""The buyer portal: the personal link in each email, and the public invoice lookup."""
