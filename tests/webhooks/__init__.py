"""Webhooks and capacity alerts against a real server and a real receiver process."""
