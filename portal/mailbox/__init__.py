"""The caught-mail page of `make run`: read what the portal sent, click the buyer link."""
