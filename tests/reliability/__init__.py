"""Faults and hostile input (issue 7): the fast tests, and the long runs.

The fast tests run in the normal suite. ``python -m tests.reliability`` runs the
long versions (20 kill cycles, node and database faults on PostgreSQL, a fuzz
of 10,000+ frames) and writes ``docs/RELIABILITY.md``.
"""
