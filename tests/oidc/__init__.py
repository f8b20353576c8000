"""Federated login (OpenID Connect) against a real server and real identity provider processes."""
