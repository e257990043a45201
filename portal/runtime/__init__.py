"""Processes and connections around the web app: Redis, the queue, the mail catcher."""
